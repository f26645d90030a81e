"""N2D: an autoencoder, UMAP of its embedding, and a Gaussian mixture (McConville et al. 2020).

N2D is what a practitioner reaches for instead of a deep clustering method: no clustering loss,
only a manifold learned on the autoencoder's codes. It is every table's "user's alternative".
"""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from sklearn.utils._param_validation import Interval, StrOptions

from aeclust.methods.base import (
    BaseDeepClusterer,
    register_estimator,
)
from aeclust.methods.params import (
    NON_NEGATIVE_REAL,
    POSITIVE_INT,
    PRETRAINED_AUTOENCODER_PARAMS,
    Param,
    Params,
    declare,
)
from aeclust.primitives.mixture import (
    COVARIANCE_TYPES,
    MixtureParameters,
    fit_gaussian_mixture,
    rebuild_gaussian_mixture,
)
from aeclust.training import batched_apply


def _import_umap() -> Any:
    try:
        import umap
    except ImportError as exc:  # a regular dependency; only a broken install lands here
        raise ImportError(
            "N2D needs umap-learn (a dependency of aeclust): pip install umap-learn"
        ) from exc
    return umap


@register_estimator(cli_name="n2d")
class N2D(BaseDeepClusterer):
    """N2D: cluster the UMAP manifold of an autoencoder's embedding with a Gaussian mixture.

    Three stages, none trained jointly (McConville et al. 2020, Sec. III):

    1. an autoencoder d-500-500-2000-k (ReLU, linear code and output, MSE, Adam, batch 256,
       1000 epochs) is pretrained on X, with the code size equal to the number of clusters;
    2. UMAP learns a manifold of the codes with ``n_components = k``, ``n_neighbors = 20`` and
       ``min_dist = 0`` (points of a cluster may pack tightly, which is what clustering wants);
    3. a Gaussian mixture with full covariances is fitted on the manifold; ``labels_`` is the
       argmax of its responsibilities.

    ``predict`` is the whole chain on new rows: the encoder, UMAP's ``transform`` (new points are
    placed against the fitted manifold, which does not move) and the mixture's assignment — not a
    re-run of any clustering. ``transform`` returns the manifold coordinates, the space in which
    the clusters are found.

    Parameters
    ----------
    n_clusters : int
        Number of clusters (mixture components).
    autoencoder : "mlp", "conv", sequence of int or Autoencoder
        Network (see :func:`aeclust.nn.build_autoencoder`); ``"mlp"`` is d-500-500-2000-e.
    embedding_dim : int or None
        Code size; None uses ``n_clusters``, as N2D does.
    activation : str
        Hidden activation of the presets.
    embedding_activation : str
        Activation of the presets' code layer (default ``"linear"``: none).
    batch_norm : bool
        Batch normalisation in the hidden layers of the presets.
    image_shape : (C, H, W) or None
        For ``autoencoder="conv"``.
    pretrain_epochs : int, "auto" or "steps"
        Epochs of reconstruction training (N2D: 1000, the default, as given on any data size;
        ``"auto"`` is the same). ``"steps"`` counts the 1000 in steps on small data (see
        :class:`aeclust.AEKMeans`).
    pretrain_lr : float
        Adam learning rate (Keras' default, 1e-3, in N2D's code).
    pretrain_loss : {"mse", "bce"}
    pretrain_patience : int or None
        Early stopping of pretraining on the training loss (None: all epochs).
    pretrain_corruption : float
        Masking noise during pretraining (0: a plain autoencoder, as N2D).
    center_inputs : bool or "auto"
        Centre the inputs on the training mean, as :class:`aeclust.AEKMeans`.
    batch_size : int
    umap_neighbors : int
        UMAP's ``n_neighbors`` (N2D: 20). Capped at ``n_samples - 1`` on tiny data.
    umap_components : int or None
        Dimension of the manifold; None uses ``n_clusters``, as N2D does.
    umap_min_dist : float
        UMAP's ``min_dist`` (N2D: 0).
    umap_metric : str
        UMAP's metric on the codes (N2D: "euclidean").
    covariance_type : {"full", "tied", "diag", "spherical"}
        Of the Gaussian mixture (N2D: "full").
    n_init : int
        Starts of the mixture's EM; the one with the highest likelihood is kept (label-free).
        N2D's code used scikit-learn's default, 1; a single start can stop in a local optimum
        that merges two clusters (see docs/METHODS.md, N2D), so the default is 10.
    pretrain_cache : bool or path
        Cache the pretrained network on disk (True: the default cache folder).
    device : "auto", "cpu", "cuda"
        Where the autoencoder trains; UMAP and the mixture run on the CPU.
    precision : "fp32", "bf16", "auto"
        Autocast dtype of pretraining.
    random_state : int or None
        Seeds the network, UMAP (which then runs single-threaded, as UMAP requires for
        reproducible layouts) and the mixture.
    verbose : bool

    Attributes
    ----------
    labels_ : ndarray (n_samples,)
        Argmax of the mixture's responsibilities on the training manifold.
    autoencoder_ : Autoencoder
    pretrain_history_ : list of dict
    codes_ : ndarray (n_samples, embedding_dim)
        The training codes UMAP was fitted on (needed to place new points).
    manifold_ : ndarray (n_samples, umap_components)
        UMAP's layout of the training codes.
    mixture_weights_, mixture_means_, mixture_covariances_ : ndarray
        The fitted Gaussian mixture.
    n_iter_ : int
        EM iterations of the kept mixture.

    References
    ----------
    McConville, Santos-Rodriguez, Piechocki and Craddock, "N2D: (Not Too) Deep Clustering via
    Clustering the Local Manifold of an Autoencoded Embedding", ICPR 2020 (arXiv 1908.05968).
    McInnes, Healy and Melville, "UMAP", arXiv 1802.03426.
    """

    #: the paper's 1000 epochs, at any data size under "auto" (already 1,000 steps on Yale's 165
    #: faces; "steps" would make COIL-20 hours on a CPU)
    pretrain_epochs_base: ClassVar[int] = 1000

    params: ClassVar[Params] = declare(
        PRETRAINED_AUTOENCODER_PARAMS,
        embedding_dim=Param(None, None, POSITIVE_INT),
        pretrain_epochs=1000,
        umap_neighbors=Param(20, Interval(Integral, 2, None, closed="left")),
        umap_components=Param(None, None, POSITIVE_INT),
        umap_min_dist=Param(0.0, NON_NEGATIVE_REAL),
        umap_metric=Param("euclidean", str),
        covariance_type=Param("full", StrOptions(set(COVARIANCE_TYPES))),
        n_init=10,
    )

    # -- fit ------------------------------------------------------------------------------------
    def _fit(self, x: torch.Tensor, seed: int) -> None:
        umap = _import_umap()  # before any work: a missing dependency fails at once
        self.autoencoder_ = self._pretrained_autoencoder(x, seed)
        codes = self._codes(x).cpu().numpy().astype(np.float32)
        reducer = self._new_reducer(umap, n_samples=len(codes), seed=seed)
        with warnings.catch_warnings():
            # UMAP warns when it falls back from the spectral start on tiny data; not an error.
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            manifold = reducer.fit_transform(codes).astype(np.float32)
        mixture, params = fit_gaussian_mixture(
            manifold,
            self.n_clusters,
            covariance_type=self.covariance_type,
            n_init=self.n_init,
            seed=seed,
        )
        self.codes_ = codes
        self.manifold_ = manifold
        self.mixture_weights_ = params.weights
        self.mixture_means_ = params.means
        self.mixture_covariances_ = params.covariances
        self.n_iter_ = params.n_iter
        self.labels_ = mixture.predict(manifold.astype(np.float64)).astype(np.int64)
        self._reducer, self._mixture = reducer, mixture

    def _pretrained_autoencoder(self, x: torch.Tensor, seed: int, **build_kwargs: Any) -> Any:
        # N2D's code has as many units as clusters (also for the bench's separate pretraining).
        build_kwargs.setdefault("embedding_dim", self.embedding_dim or self.n_clusters)
        return super()._pretrained_autoencoder(x, seed, **build_kwargs)

    def _new_reducer(self, umap: Any, *, n_samples: int, seed: int, **overrides: Any) -> Any:
        """The UMAP of N2D's stage 2 (the same settings at fit and when rebuilt after load)."""
        params: dict[str, Any] = {
            "n_neighbors": max(2, min(self.umap_neighbors, n_samples - 1)),
            "n_components": self.umap_components or self.n_clusters,
            "min_dist": self.umap_min_dist,
            "metric": self.umap_metric,
            "random_state": seed,
            "transform_seed": seed,
            "n_jobs": 1,  # what random_state implies anyway; said here to silence UMAP's warning
            "verbose": bool(self.verbose),
        }
        params.update(overrides)
        return umap.UMAP(**params)

    # -- the fitted chain -----------------------------------------------------------------------
    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        ae = self.autoencoder_
        ae.eval()
        return batched_apply(ae.encode, x)

    def _fitted_reducer(self) -> Any:
        """The fitted UMAP; rebuilt from ``codes_`` and ``manifold_`` after :func:`aeclust.load`.

        UMAP's state is not tensors, so a model file keeps what defines ``transform``: the
        training codes (new points are placed by their neighbours among them) and the training
        layout (which ``transform`` holds fixed). The rebuild indexes the codes with zero
        optimisation epochs and then puts the saved layout back.
        """
        reducer = getattr(self, "_reducer", None)
        if reducer is None:
            seed = int(self.random_state) if self.random_state is not None else 0
            reducer = self._new_reducer(
                _import_umap(),
                n_samples=len(self.codes_),
                seed=seed,
                n_epochs=0,
                init=self.manifold_,
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning, module="umap")
                reducer.fit(self.codes_)
            reducer.n_epochs = None  # transform's own epochs follow the fitted reducer's
            reducer.embedding_ = self.manifold_.copy()
            self._reducer = reducer
        return reducer

    def _fitted_mixture(self) -> GaussianMixture:
        mixture = getattr(self, "_mixture", None)
        if mixture is None:
            mixture = rebuild_gaussian_mixture(
                MixtureParameters(
                    self.mixture_weights_,
                    self.mixture_means_,
                    self.mixture_covariances_,
                    self.covariance_type,
                )
            )
            self._mixture = mixture
        return mixture

    def _training_embedding(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.manifold_)  # the layout fit clustered: no second UMAP pass

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        codes = self._codes(x).cpu().numpy().astype(np.float32)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            manifold = self._fitted_reducer().transform(codes)
        return torch.from_numpy(np.ascontiguousarray(manifold, dtype=np.float32))

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        manifold = self._embed(x).numpy().astype(np.float64)
        return torch.from_numpy(self._fitted_mixture().predict(manifold).astype(np.int64))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Responsibilities of the mixture's components for each row of ``X``, shape (n, k)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        manifold = self.transform(X).astype(np.float64)
        return self._fitted_mixture().predict_proba(manifold)

    def __getstate__(self) -> dict[str, Any]:
        # The reducer and mixture are caches, rebuilt from the fitted arrays on first use.
        state = dict(super().__getstate__())
        state.pop("_reducer", None)
        state.pop("_mixture", None)
        return state
