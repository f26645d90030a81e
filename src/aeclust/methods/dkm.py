"""DKM: deep k-means, a differentiable k-means loss trained jointly with the autoencoder.

References
----------
Moradi Fard, M., Thonet, T. and Gaussier, E. (2020). Deep k-Means: jointly clustering with
k-Means and learning representations. Pattern Recognition Letters 138:185-192.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from sklearn.utils._param_validation import StrOptions
from torch import nn

from aeclust.methods.base import (
    BaseDeepClusterer,
    register_estimator,
)
from aeclust.methods.params import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    POSITIVE_REAL,
    PRETRAINED_AUTOENCODER_PARAMS,
    Param,
    Params,
    SequenceOf,
    declare,
)
from aeclust.nn import Autoencoder, encode_decode
from aeclust.pretrain import PretrainConfig
from aeclust.primitives import assign, kmeans, softmax_assignment, squared_distances
from aeclust.primitives.losses import reconstruction_loss
from aeclust.training import Trainer, TrainingModule, batched_apply, eval_mode

REINITS = ("none", "kmeans")


def annealed_alphas(n_values: int = 40, alpha_1: float = 0.1) -> list[float]:
    """DKM's annealing schedule of the inverse temperature alpha (no-pretraining variant).

    alpha_1 = ``alpha_1`` and alpha_{i+1} = 2^(1 / ln(i + 1)^2) alpha_i for i = 1, ..., n - 1.

    The paper writes the factor as 2^(1 / log(i)^2), which is undefined for i = 1 (log 1 = 0);
    the authors' code (GitHub MaziarMF/deep-k-means, ``dkm.py``) computes
    ``alphas[i] = 2 ** (1 / np.log(i + 1) ** 2) * alphas[i - 1]`` for the 0-based i = 1..39,
    i.e. the natural log of i + 1 in the paper's 1-based numbering, which is what this returns.

    Parameters
    ----------
    n_values : int
        Length of the schedule (40 in the paper).
    alpha_1 : float
        First value (0.1 in the paper).

    Returns
    -------
    list of float
        Increasing values (0.1 to about 28.1 for the defaults).
    """
    if n_values < 1:
        raise ValueError(f"n_values must be >= 1, got {n_values}")
    alphas = [float(alpha_1)]
    for i in range(1, n_values):
        alphas.append(alphas[-1] * 2.0 ** (1.0 / math.log(i + 1) ** 2))
    return alphas


def dkm_clustering_loss(
    z: torch.Tensor, representatives: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """DKM's k-means term for a batch: mean_i sum_k |z_i - r_k|^2 G_k(z_i), in fp32.

    G_k(z) = softmax_k(-alpha |z - r_k|^2), shifted by the row minimum so that no row underflows
    to 0/0 even for alpha = 1000 and distant points (:func:`aeclust.primitives.softmax_assignment`).
    Gradients flow through both the distances and G, as in the authors' code.

    Returns
    -------
    loss : Tensor ()
    g : Tensor (n, k)
        The soft assignments.
    """
    with torch.autocast(z.device.type, enabled=False):
        z = z.float()
        reps = representatives.float()
        d2 = squared_distances(z, reps)
        g = softmax_assignment(z, reps, alpha)
        return (d2 * g).sum(dim=1).mean(), g


class DKMModule(TrainingModule):
    """DKM's model: the autoencoder and the representatives R, trained together on
    L_r + lambda * L_c (eq. 8) with the softmax of eq. 9 at the alpha of the current epoch
    (``alphas[epoch // epochs_per_alpha]``; the schedule follows the epoch, so a resumed run
    picks it up by itself). ``reinit="kmeans"`` (ours) replaces R by k-means on the embedding
    after every epoch.
    """

    all_parameters_used: ClassVar[bool] = True

    def __init__(
        self,
        autoencoder: Autoencoder,
        representatives: torch.Tensor,
        data: torch.Tensor,
        *,
        alphas: Sequence[float],
        epochs_per_alpha: int,
        lam: float,
        rec_loss: str,
        reinit: str = "none",
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.representatives = nn.Parameter(representatives.detach().float().clone())
        self.data = data  # the training set, for the k-means re-initialisation (not state)
        self.alphas = list(alphas)
        self.epochs_per_alpha = int(epochs_per_alpha)
        self.lam = float(lam)
        self.rec_loss = rec_loss
        self.reinit = reinit
        self.autocast_dtype = autocast_dtype
        self.alpha = self.alphas[0]

    def on_epoch_start(self, epoch: int) -> None:
        self.alpha = self.alphas[min(epoch // self.epochs_per_alpha, len(self.alphas) - 1)]

    def training_step(self, idx: torch.Tensor, xb: torch.Tensor) -> Any:
        zb, x_hat = encode_decode(self.autoencoder, xb)
        rec = reconstruction_loss(x_hat, xb, self.rec_loss)
        clu, _ = dkm_clustering_loss(zb, self.representatives, self.alpha)
        return rec + self.lam * clu, {"reconstruction": rec, "clustering": clu}

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        record["alpha"] = self.alpha
        if self.reinit == "kmeans":
            with eval_mode(self.autoencoder) as ae:
                z = batched_apply(ae.encode, self.data, autocast_dtype=self.autocast_dtype)
            result = kmeans(z, self.representatives.shape[0], init=self.representatives.detach())
            with torch.no_grad():
                self.representatives.copy_(result.centers)


@register_estimator(cli_name="dkm")
class DKM(BaseDeepClusterer):
    """Deep k-Means (Moradi Fard, Thonet and Gaussier, 2020).

    The network (encoder h, decoder) and the cluster representatives r_1..r_K are trained jointly
    by gradient descent (Adam) on

        sum_x  g(x, A(x)) + lam * sum_k |h(x) - r_k|^2 G_k(h(x), alpha),
        G_k(z, alpha) = exp(-alpha |z - r_k|^2) / sum_k' exp(-alpha |z - r_k'|^2),

    a continuous relaxation of k-means whose argmin indicator is replaced by a softmax with
    inverse temperature alpha (G becomes the hard assignment as alpha -> inf). g is the squared
    reconstruction error. ``labels_`` = argmin_k |h(x) - r_k| of the final embedding, as in the
    authors' code; ``predict`` applies the same rule.

    Two variants (the paper's "DKMp" and "DKMa"):

    - ``pretrained=True``: pretrain the autoencoder, initialise R by k-means++ (``n_init``
      restarts) on its embedding, and keep alpha constant (``alpha`` = 1000) for
      ``n_alpha_steps`` (20) x ``epochs_per_alpha`` (5) epochs.
    - ``pretrained=False``: no pretraining (``pretrain_epochs`` is ignored), R drawn uniformly in
      [-1, 1], and alpha annealed over ``n_alpha_steps`` (40) values from 0.1 by
      :func:`annealed_alphas`, ``epochs_per_alpha`` epochs each.

    ``alphas`` overrides both schedules.

    Parameters
    ----------
    n_clusters : int
        Number of clusters K.
    autoencoder : "mlp", "conv", sequence of int or Autoencoder
        Network (see :func:`aeclust.nn.build_autoencoder`); the authors use d-500-500-2000-K with
        ReLU (``embedding_dim = n_clusters``).
    embedding_dim : int
        Size of the embedding for the presets.
    activation : str
        Hidden activation for the presets.
    embedding_activation : str
        Activation of the presets' code layer (default ``"linear"``: none).
    image_shape : (C, H, W) or None
        For ``autoencoder="conv"``.
    pretrain_epochs : int, "auto" or "steps"
        Epochs of reconstruction pretraining (50 in the authors' code); ignored when
        ``pretrained=False``. ``"auto"`` (default): 50, raised on data sets under 32 batches an
        epoch to the same number of optimisation steps
        (:func:`aeclust.pretrain.auto_pretrain_epochs`).
    pretrain_lr : float
        Adam learning rate of the pretraining.
    pretrain_loss : {"mse", "bce"}
        Pretraining loss; the clustering stage always uses the squared error ``rec_loss``.
    batch_norm, pretrain_patience, pretrain_corruption
        Batch norm in the preset's hidden layers, early stopping of pretraining on the training
        loss, masking noise while pretraining — as :class:`aeclust.AEKMeans`, so that every
        method of a protocol can share one pretrained network.
    center_inputs : bool or "auto"
        Centre the inputs on the training mean, as :class:`aeclust.AEKMeans`.
    batch_size : int
        Minibatch size (256 in the authors' code).
    lam : float
        Weight lambda of the k-means term (1.0 in the authors' code).
    pretrained : bool
        Which variant (see above).
    alpha : float
        The constant alpha of the pretrained variant.
    n_alpha_steps : int or None
        Number of alpha values; None: 20 (pretrained) or 40 (annealed), as in the paper.
    epochs_per_alpha : int
        Epochs per alpha value (5 in the authors' code).
    alphas : sequence of float or None
        Explicit schedule (one value per ``epochs_per_alpha`` epochs); overrides ``alpha`` and
        ``n_alpha_steps``.
    optimizer : {"adam", "adamw", "sgd"}
        Optimiser of the network and R (the authors: Adam).
    lr : float
        Its learning rate (1e-3, TensorFlow's Adam default, in the authors' code).
    rec_loss : {"sum", "mean"}
        ``"sum"``: per-sample sum of squares averaged over the batch, as in the authors' code;
        ``"mean"``: mean over all entries (D times smaller, so ``lam`` weighs D times more).
    reinit : {"none", "kmeans"}
        ``"kmeans"``: after every epoch, re-run k-means on the new embedding, warm-started from
        the current R, and replace R by its centres (the "DKM+rein" ablation of the CT paper,
        arXiv:2411.19496, Tables 5-6). The optimiser's moment estimates for R are kept.
    n_init : int
        k-means restarts for the initial R of the pretrained variant.
    pretrain_cache : bool or path
        Cache the pretrained network on disk (True: the default cache folder).
    device : "auto", "cpu", "cuda"
    precision : "fp32", "bf16", "auto"
        Autocast dtype of the network; distances, G, the k-means term and k-means always run in
        fp32.
    random_state : int or None
    verbose : bool

    Attributes
    ----------
    labels_ : ndarray (n_samples,)
    cluster_centers_ : ndarray (n_clusters, embedding_dim)
        The final representatives R.
    autoencoder_ : Autoencoder
    alphas_ : list of float
        The alpha schedule used.
    history_ : list of dict
        One record per epoch: ``loss``, ``reconstruction``, ``clustering`` (the unweighted
        k-means term; ``loss = reconstruction + lam * clustering``) and ``alpha``.
    n_iter_ : int
        Epochs of joint training run.
    pretrain_history_ : list of dict

    Notes
    -----
    Choices the paper leaves open, and the authors' code (GitHub MaziarMF/deep-k-means):

    - The annealing factor uses ln(i + 1), as the code does (see :func:`annealed_alphas`).
    - The code samples every minibatch at random with replacement; here every epoch is a
      shuffled pass over the data.
    - The code reuses its pretraining Adam state for the joint stage; here the joint stage starts
      a fresh optimiser (the pretrained network is shared with other methods through the cache).
    - The code initialises R with scikit-learn's k-means (then 10 restarts); here
      :func:`aeclust.primitives.kmeans` with ``n_init`` = 20 restarts, the same call as
      :class:`~aeclust.AEKMeans`, so both start from the same clustering of a shared network.
    - The code labels each point with distances recorded during its last training batch; here
      the final network embeds all points once.

    References
    ----------
    Moradi Fard, M., Thonet, T. and Gaussier, E. (2020). Deep k-Means: jointly clustering with
    k-Means and learning representations. Pattern Recognition Letters 138:185-192.

    An approach towards learning K-means-friendly deep latent representation (2024).
    arXiv:2411.19496 (the CT paper; its "DKM+rein" ablation).
    """

    out_of_core: ClassVar[bool] = True  # every pass: a minibatch or a chunked batched_apply
    #: R is trained (its gradients averaged over processes); the optional k-means reduces
    data_parallel: ClassVar[bool] = True

    #: DKM's code: 50 pretraining epochs (pretrain_epochs="auto": in steps on small data)
    pretrain_epochs_base: ClassVar[int] = 50
    pretrain_counts_steps: ClassVar[bool] = True

    params: ClassVar[Params] = declare(
        PRETRAINED_AUTOENCODER_PARAMS,
        "lam",
        "optimizer",
        "lr",
        "rec_loss",
        pretrained=Param(True, "boolean"),
        alpha=Param(1000.0, POSITIVE_REAL),
        n_alpha_steps=Param(None, None, POSITIVE_INT),
        epochs_per_alpha=Param(5, NON_NEGATIVE_INT),
        alphas=Param(None, None, SequenceOf(POSITIVE_REAL)),
        reinit=Param("none", StrOptions(set(REINITS))),
    )

    def alpha_schedule(self) -> list[float]:
        """The alpha values this configuration trains with, one per ``epochs_per_alpha`` epochs."""
        self._validate_params()
        if self.alphas is not None:
            return [float(a) for a in self.alphas]
        if self.n_alpha_steps is None:
            n = 20 if self.pretrained else 40
        else:
            n = int(self.n_alpha_steps)
        if self.pretrained:
            return [float(self.alpha)] * n
        return annealed_alphas(n)

    def _pretrain_config(self, n_samples: int) -> PretrainConfig:
        config = super()._pretrain_config(n_samples)
        if not self.pretrained:
            # The no-pretraining variant still builds the network through the shared path (same
            # initial weights for a seed), it just trains it for 0 epochs.
            config = dataclasses.replace(config, epochs=0)
        return config

    def _training_module(self, ae: Autoencoder, x: torch.Tensor, seed: int) -> DKMModule:
        if self.pretrained:
            _, init = self._initial_kmeans(ae, x, seed)
            reps = init.centers
        else:
            gen = self._generator(seed, x.device)
            reps = torch.rand((self.n_clusters, ae.embedding_dim), generator=gen, device=x.device)
            reps = 2.0 * reps - 1.0
        return DKMModule(
            ae,
            reps,
            x,
            alphas=self.alpha_schedule(),
            epochs_per_alpha=self.epochs_per_alpha,
            lam=self.lam,
            rec_loss=self.rec_loss,
            reinit=self.reinit,
            autocast_dtype=self._autocast_dtype(x.device),
        )

    def _training_epochs(self, n_samples: int) -> int:
        return len(self.alpha_schedule()) * int(self.epochs_per_alpha)

    def _fitted_from(self, module: DKMModule, trainer: Trainer, x: torch.Tensor) -> None:
        self.cluster_centers_ = module.representatives.detach().cpu().numpy()
        self.alphas_ = module.alphas
        self.n_iter_ = len(self.history_)

    def _labels_of(self, z: torch.Tensor) -> torch.Tensor:
        return assign(z, torch.from_numpy(self.cluster_centers_).to(z.device))[0]

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return self._labels_of(self._embed(x))
