"""The scikit-learn contract shared by every clusterer, plus device, seeding and model files.

Subclasses implement ``_fit(x)`` (a float32 tensor on the device, inside a locally seeded block)
and ``_predict(x)``; ``_embed(x)`` defaults to the fitted autoencoder's encoder. Learned state goes
in attributes with a trailing underscore, which :meth:`BaseDeepClusterer.save` stores: tensors and
arrays as a ``state_dict``-like mapping, modules as config + weights, everything else as JSON.

Parameters are declared once per estimator, as a ``params`` class attribute
(:func:`aeclust.methods.params.declare`: the parameters several estimators share come from
:data:`~aeclust.methods.params.SHARED_PARAMS`); it becomes the class's ``__init__`` and its
``_parameter_constraints`` (scikit-learn's ``sklearn.utils._param_validation`` objects), which
``fit`` and ``pretrain`` check every parameter against before any work.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from abc import abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from aeclust import distributed
from aeclust._utils import (
    atomic_torch_save,
    check_n_clusters,
    local_seed,
    resolve_device,
    resolve_precision,
    seed_from,
)
from aeclust.diagnostics import DegenerateClusteringWarning, partition_problems
from aeclust.methods.params import (
    PRETRAIN_CONFIG_FIELDS,
    SHARED_PARAMS,
    DeclaredParams,
)
from aeclust.nn import Autoencoder, autoencoder_from_config, build_autoencoder
from aeclust.nn.factory import AUTOENCODER_CLASSES
from aeclust.pretrain import (
    PretrainConfig,
    Pretrained,
    auto_pretrain_epochs,
    pretrain_autoencoder,
)
from aeclust.primitives import KMeansResult, kmeans
from aeclust.rows import CHUNK_ROWS, DiskRows, disk_rows_of
from aeclust.training import (
    EarlyStopping,
    Trainer,
    TrainingModule,
    batched_apply,
    make_optimizer,
)

MODEL_FORMAT = "aeclust-model"
MODEL_VERSION = 1

#: Every estimator class by class name, filled by :func:`register_estimator` (``aeclust.load``
#: restores a model file by it).
ESTIMATORS: dict[str, type[BaseDeepClusterer]] = {}
#: The clustering methods by command-line name (DESIGN.md: the class name lower-cased), the
#: part of the same registry that :func:`register_estimator` fills when given a ``cli_name``.
METHODS: dict[str, type[BaseDeepClusterer]] = {}
logger = logging.getLogger(__name__)
#: What the command line and the bench set on every estimator that accepts it; the first three
#: override a value in the parameters, the last two only fill one in (they describe the data
#: and where to cache, which a user may have chosen).
RUNNER_SETTINGS = ("device", "precision", "verbose", "image_shape", "pretrain_cache")
_FILL_ONLY = frozenset({"image_shape", "pretrain_cache"})


def register_estimator(
    cls: type[BaseDeepClusterer] | None = None, *, cli_name: str | None = None
) -> Any:
    """Class decorator: register an estimator, restorable by :func:`load` under its class name
    and, with ``cli_name``, a method of the command line and the bench under that name.

    ``@register_estimator`` or ``@register_estimator(cli_name="kdae")``.
    """

    def register(estimator: type[BaseDeepClusterer]) -> type[BaseDeepClusterer]:
        ESTIMATORS[estimator.__name__] = estimator
        if cli_name is not None:
            if METHODS.get(cli_name, estimator) is not estimator:
                raise ValueError(f"method name {cli_name!r} is already registered")
            METHODS[cli_name] = estimator
        return estimator

    return register if cls is None else register(cls)


def estimator_params(
    method: str, params: Mapping[str, Any] | None = None, **settings: Any
) -> tuple[type[BaseDeepClusterer], dict[str, Any]]:
    """The class a method name stands for and the parameters to build it with.

    The one way the command line and the bench turn a method name, the user's or protocol's
    parameters and the runner's settings into an estimator (:func:`build_estimator`).

    Parameters
    ----------
    method : str
        A name of :data:`METHODS` (``"kdae"``, ``"ae-kmeans"``, ...).
    params : mapping, optional
        The estimator's own parameters (``n_clusters``, ``random_state``, ...); each must be
        one the estimator accepts.
    **settings
        Any of :data:`RUNNER_SETTINGS`, applied to the estimators that accept them (k-means
        has no ``pretrain_cache``); None values are skipped.

    Returns
    -------
    cls : type
    params : dict

    Raises
    ------
    ValueError
        On an unknown method, a parameter the estimator does not accept or an unknown setting,
        naming the valid ones.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(sorted(METHODS))}")
    return METHODS[method], with_runner_settings(METHODS[method], params, method, **settings)


def with_runner_settings(
    cls: type, params: Mapping[str, Any] | None = None, name: str | None = None, **settings: Any
) -> dict[str, Any]:
    """``params`` for ``cls`` with the runner's settings (:data:`RUNNER_SETTINGS`) applied where
    ``cls`` accepts them (the one place that decides it, for the methods of
    :func:`estimator_params` and for the bench's other estimators, the dAE encoders).

    Raises
    ------
    ValueError
        On a parameter ``cls`` does not accept or an unknown setting (``name`` names ``cls`` in
        the message).
    """
    valid = cls().get_params()
    params = dict(params or {})
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for {name or cls.__name__}; "
            f"valid: {', '.join(sorted(valid))}"
        )
    bad = sorted(set(settings) - set(RUNNER_SETTINGS))
    if bad:
        raise ValueError(f"unknown setting(s) {bad}; valid: {', '.join(RUNNER_SETTINGS)}")
    for key, value in settings.items():
        if value is None or key not in valid:
            continue
        if key in _FILL_ONLY:
            params.setdefault(key, value)
        else:
            params[key] = value
    return params


def build_estimator(
    method: str, params: Mapping[str, Any] | None = None, **settings: Any
) -> BaseDeepClusterer:
    """The estimator of a method name (see :func:`estimator_params`), not yet fitted.

    Examples
    --------
    >>> from aeclust.methods import build_estimator
    >>> build_estimator("kdae", {"n_clusters": 10}, device="cpu", pretrain_cache=True)
    KDAE(device='cpu', n_clusters=10, pretrain_cache=True)
    """
    cls, params = estimator_params(method, params, **settings)
    return cls(**params)


#: ``center_inputs="auto"`` centres the inputs when the training mean holds more than this share
#: of the data's energy (:func:`mean_image_share`). There the trivial reconstruction -- the mean
#: image -- already explains most of the loss, and the default ReLU autoencoders were seen to stop
#: in it with every code equal (ORL 0.94, Yale 0.81; benchmarks/notes/26). The digit sets whose
#: defaults were validated at the papers' protocols lie below it (USPS 0.45, MNIST 0.41), so their
#: runs are unchanged.
CENTERING_MEAN_SHARE = 0.5


def data_parallel_methods() -> list[str]:
    """Command-line names of the methods whose ``fit`` runs data-parallel."""
    return sorted(name for name, cls in METHODS.items() if cls.data_parallel)


def _column_mean(X: np.ndarray | DiskRows) -> np.ndarray:
    """The mean row (float64) of an array, or of a file's rows read in chunks."""
    if isinstance(X, DiskRows):
        return X.raw_sums()[0] / X.shape[0]
    return X.mean(axis=0, dtype=np.float64)


def mean_image_share(X: np.ndarray | DiskRows) -> float:
    """Share of the data's energy held by its mean row: ``|mean|^2 / mean_i |x_i|^2``.

    1 when every row is the same, near 0 for data centred at the origin; label-free.

    Examples
    --------
    >>> mean_image_share(np.array([[1.0, 1.0], [1.0, 1.0]]))
    1.0
    >>> mean_image_share(np.array([[1.0, 0.0], [-1.0, 0.0]]))
    0.0
    """
    if isinstance(X, DiskRows):
        energy = X.raw_sums()[1] / X.shape[0]
    else:
        X = np.asarray(X)
        # float64 sums without a float64 copy of X (MNIST: 70,000 x 784)
        energy = float(np.einsum("ij,ij->", X, X, dtype=np.float64)) / X.shape[0]
    if energy == 0.0:
        return 0.0
    mean = _column_mean(X)
    return float(mean @ mean) / energy


class BaseDeepClusterer(DeclaredParams, ClusterMixin, TransformerMixin, BaseEstimator):
    """Base class of aeclust clusterers (scikit-learn API on top of torch).

    Subclasses declare their hyper-parameters once, as ``params`` (:func:`declare`; it becomes
    ``__init__``, which stores them unchanged as scikit-learn requires, and
    ``_parameter_constraints``), and implement ``_fit`` (or the template's steps) and
    ``_predict``.
    """

    #: Whether the method trains a network (drives docs/CLI, not behaviour).
    deep: ClassVar[bool] = True

    #: What each constructor parameter may be (scikit-learn's ``_parameter_constraints``), checked
    #: by ``fit`` and ``pretrain`` before any work; derived from the subclass's ``params``.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    #: Whether ``fit`` may run data-parallel (several processes, :mod:`aeclust.distributed`):
    #: the methods whose whole-data steps reduce across processes. The others refuse at once.
    data_parallel: ClassVar[bool] = False

    #: Whether ``fit`` reads a memory-mapped ``X`` from its file batch by batch instead of into
    #: memory (:mod:`aeclust.rows`): the methods whose every pass over the data is a minibatch
    #: or a chunked ``batched_apply``.
    out_of_core: ClassVar[bool] = False

    #: Data-parallel, whether every process trains on all rows instead of its block (VCC: its
    #: steps draw edges between any two points); its minibatches are still split.
    replicates_rows: ClassVar[bool] = False

    #: Whether ``precision="auto"`` may run this method in bf16 (on hardware with native bf16).
    #: Off unless the method has shown on the benchmark that its accuracy holds in bf16 (within
    #: one ACC point of fp32 on usps and mnist_test, docs/METHODS.md "Precision"): a method
    #: nobody has measured stays in fp32 under ``"auto"``.
    auto_bf16: ClassVar[bool] = False

    #: The method's pretraining epochs (its paper's count): what ``pretrain_epochs="auto"``
    #: trains, or ``"steps"`` on data sets of 32 or more batches an epoch.
    pretrain_epochs_base: ClassVar[int] = 100

    #: Whether ``pretrain_epochs="auto"`` counts :attr:`pretrain_epochs_base` in optimisation
    #: steps on small data (``"steps"``, :func:`aeclust.pretrain.auto_pretrain_epochs`) or keeps
    #: the epoch count. On for the methods where the longer pretraining was measured to help on
    #: ORL and Yale; AE+KM and DCN lost 3 ACC points with it on ORL (seeds 0-2) and were level
    #: on Yale (docs/METHODS.md, "Pretraining length on small data").
    pretrain_counts_steps: ClassVar[bool] = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Networks compute in float32 whatever the input dtype; transform returns float32.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- validation -----------------------------------------------------------------------------
    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float32, np.float64],
            ensure_min_samples=1 if not reset else 2,
            ensure_all_finite=True,
        )
        return np.ascontiguousarray(X, dtype=np.float32)

    def _streams(self, X: Any) -> bool:
        """Whether ``fit`` reads ``X`` from its file batch by batch (:mod:`aeclust.rows`): a
        memory-mapped float array in C order, and a method that can (``out_of_core``)."""
        if disk_rows_of(X) is None:
            return False
        if not type(self).out_of_core:
            logger.warning(
                "%s reads the memory-mapped X into memory; the methods that stream it from "
                "disk: %s",
                type(self).__name__,
                ", ".join(sorted(n for n, c in METHODS.items() if c.out_of_core)),
            )
            return False
        return True

    def _validate_rows(self, X: np.memmap, *, reset: bool) -> DiskRows:
        """:meth:`_validate_X` for a memory-mapped ``X`` read from its file in chunks.

        ``reset=True`` (fit): at least 2 rows, every value finite (one streamed pass, before any
        work); sets ``n_features_in_``. ``reset=False`` (predict, transform): at least 1 row and
        the fitted number of features; the values are checked chunk by chunk as they are used
        (:meth:`_apply`), so the file is read once, not twice.
        """
        rows = disk_rows_of(X)
        assert rows is not None
        least = 2 if reset else 1
        if rows.shape[0] < least or rows.shape[1] < 1:
            raise ValueError(
                f"Found array with {rows.shape[0]} sample(s) and {rows.shape[1]} feature(s) "
                f"while a minimum of {least} sample(s) and 1 feature is required by "
                f"{type(self).__name__}."
            )
        if not reset:
            if rows.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {rows.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
            return rows
        if not rows.raw_sums()[2]:
            raise ValueError(f"Input X ({rows.path}) contains NaN or infinity.")
        self.n_features_in_ = rows.shape[1]
        self.__dict__.pop("feature_names_in_", None)
        return rows

    def _param(self, name: str) -> Any:
        """The value of a shared parameter: this estimator's, or the shared default when the
        estimator does not take it (VCC has no ``pretrain_loss``: the default, "mse", is what
        its absence means)."""
        if name in type(self)._parameter_constraints:
            return getattr(self, name)
        return SHARED_PARAMS[name].default

    def _device(self) -> torch.device:
        return resolve_device(self.device)

    def _autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        precision = self.precision
        if precision == "auto" and not getattr(type(self), "auto_bf16", False):
            resolve_precision(precision, device)  # still validates the name
            return None
        return resolve_precision(precision, device)

    def _to_tensor(self, X: np.ndarray, device: torch.device) -> torch.Tensor:
        offset = getattr(self, "input_offset_", None)
        if offset is not None:  # the training mean, removed from every input (center_inputs)
            X = X - offset
        return torch.from_numpy(X).to(device)

    def _set_input_offset(self, X: np.ndarray) -> None:
        """Decide ``center_inputs`` on the training rows and store ``input_offset_``.

        ``input_offset_`` is the training mean (float32, shape (n_features,)) that every input
        loses before it reaches the network -- in ``fit``, ``predict``, ``transform`` -- or
        ``None`` when the inputs are used as given. Estimators without ``center_inputs`` never
        centre.
        """
        mode = self.center_inputs if "center_inputs" in self._parameter_constraints else False
        if mode == "auto":
            center = (
                self._param("pretrain_loss") != "bce" and mean_image_share(X) > CENTERING_MEAN_SHARE
            )
        else:
            center = bool(mode)
            if center and self._param("pretrain_loss") == "bce":
                raise ValueError(
                    "center_inputs=True conflicts with pretrain_loss='bce' (BCE needs targets in "
                    "[0, 1]); use pretrain_loss='mse' or center_inputs=False"
                )
        self.input_offset_ = _column_mean(X).astype(np.float32) if center else None

    # -- public API -----------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> BaseDeepClusterer:
        """Fit the clusterer on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (finite numbers; images flattened).
        y : ignored
            Labels are never used for training.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Before any work, when a parameter is outside its ``_parameter_constraints`` (one line
            naming the parameter and what it may be) or ``X`` is not valid.
        """
        self._validate_params()
        processes = distributed.world()[1]
        if processes > 1 and not type(self).data_parallel:
            raise ValueError(
                f"{type(self).__name__} does not train data-parallel yet ({processes} processes "
                "in the process group); run it in one process (data-parallel: "
                f"{', '.join(data_parallel_methods())})"
            )
        # a memory-mapped X stays on disk for the methods that stream (out_of_core)
        X = (
            self._validate_rows(X, reset=True)
            if self._streams(X)
            else self._validate_X(X, reset=True)
        )
        check_n_clusters(self.n_clusters, X.shape[0])
        self._set_input_offset(X)  # every process holds all of X: the same offset everywhere
        device = self._device()
        seed = seed_from(self.random_state)
        self.__dict__.pop("_kept_embedding", None)  # from a fit that failed before its check
        with distributed.sharded_fit() as parallel:
            # data-parallel: this process trains on its block of rows and labels_ is gathered,
            # unless the method keeps every row in every process (replicates_rows)
            own_block = parallel and not type(self).replicates_rows
            start, stop = distributed.shard_bounds(X.shape[0]) if own_block else (0, X.shape[0])
            if isinstance(X, DiskRows):
                x = X.block(start, stop, device=device).shifted(self.input_offset_)
            else:
                x = self._to_tensor(X[start:stop], device)
            with local_seed(seed, device):
                self._fit(x, seed)
            if own_block:
                labels = torch.from_numpy(self.labels_).to(device)
                self.labels_ = distributed.gather_rows(labels).cpu().numpy()
                self._warn_if_degenerate(x)
            else:
                with distributed.replicated():
                    self._warn_if_degenerate(x)
        return self

    def pretrain(self, X: Any, *, return_details: bool = False) -> Autoencoder | Pretrained:
        """Run (or fetch from the cache) exactly the pretraining ``fit`` starts with.

        The benchmark runner calls this first to time pretraining on its own; with
        ``pretrain_cache`` set, the following ``fit`` then loads the same network from the cache.
        The estimator's state is left unchanged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_details : bool, default=False
            Return :class:`aeclust.pretrain.Pretrained` (the network, its history, whether it
            came from the cache, the seconds it took) instead of the network alone.

        Returns
        -------
        Autoencoder or Pretrained
            The pretrained network (a new object), or the details with it.
        """
        if not hasattr(self, "pretrain_epochs"):
            raise TypeError(f"{type(self).__name__} does not pretrain an autoencoder")
        self._validate_params()
        saved = dict(vars(self))
        X = self._validate_X(X, reset=True)
        self._set_input_offset(X)
        device = self._device()
        seed = seed_from(self.random_state)
        try:
            with local_seed(seed, device):
                ae = self._pretrained_autoencoder(self._to_tensor(X, device), seed)
                return self._pretrained if return_details else ae
        finally:
            self.__dict__.clear()
            self.__dict__.update(saved)

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> np.ndarray:
        """Fit and return ``labels_``."""
        return self.fit(X).labels_

    def predict(self, X: Any) -> np.ndarray:
        """Cluster index of each row of ``X`` by the method's own assignment rule."""
        return self._apply(X, self._predict).astype(np.int64)

    def transform(self, X: Any) -> np.ndarray:
        """Embedding of ``X`` (the autoencoder's code), float32 array of shape (n, d).

        :class:`aeclust.KMeans` returns the distances to its centres instead, as scikit-learn's
        ``KMeans.transform`` does; :meth:`embed` is the space every method clusters in.
        """
        return self._apply(X, self._transform)

    def embed(self, X: Any) -> np.ndarray:
        """The representation of ``X`` the method clusters in, float32 array (n, d).

        The autoencoder's codes for the deep methods (equal to :meth:`transform`); ``X`` itself
        for :class:`aeclust.KMeans`. The benchmark's silhouette, ``select_k(space="embedding")``
        and ``aeclust cluster --embedding`` use it.
        """
        return self._apply(X, self._embed)

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit, then return ``transform(X)``."""
        return self.fit(X).transform(X)

    def _apply(self, X: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
        """``fn`` of the validated rows of ``X`` on the fitted device, as a NumPy array.

        ``fn`` must treat rows independently. A memory-mapped ``X`` is read from its file
        :data:`~aeclust.rows.CHUNK_ROWS` rows at a time for the methods that stream
        (``out_of_core``), so predicting a file larger than memory holds one chunk and the result.
        """
        check_is_fitted(self)
        device = self._fitted_device()
        if not (type(self).out_of_core and disk_rows_of(X) is not None):
            x = self._to_tensor(self._validate_X(X, reset=False), device)
            with torch.no_grad():
                return fn(x).cpu().numpy()
        rows = self._validate_rows(X, reset=False).shifted(getattr(self, "input_offset_", None))
        parts = []
        with torch.no_grad():
            for begin in range(0, len(rows), CHUNK_ROWS):
                chunk = rows.read(begin, min(begin + CHUNK_ROWS, len(rows)))
                if not np.isfinite(chunk).all():
                    raise ValueError(
                        f"Input X ({rows.path}) contains NaN or infinity (rows {begin} to "
                        f"{begin + len(chunk) - 1})."
                    )
                parts.append(fn(torch.from_numpy(chunk).to(device)).cpu().numpy())
        return np.concatenate(parts)

    # -- for subclasses -------------------------------------------------------------------------
    def _fit(self, x: torch.Tensor, seed: int) -> None:
        """Fit on a float32 tensor already on the device (inside a seeded block).

        The template every method that fine-tunes a pretrained autoencoder follows: pretrain
        (:meth:`_pretrained_autoencoder`) → initialise the method's
        :class:`~aeclust.training.TrainingModule` (:meth:`_training_module`, usually from
        k-means on the embedding: :meth:`_initial_kmeans`) → :meth:`Trainer.fit
        <aeclust.training.Trainer.fit>` for :meth:`_training_epochs` epochs, checkpointed
        under the key ``type(self).__name__.lower()`` → the fitted attributes
        (:meth:`_fitted_from`) → ``labels_ = predict(X)``. Methods of another shape (no
        pretrained network, several networks, rounds of training) override it.
        """
        ae = self._pretrained_autoencoder(x, seed)
        module = self._training_module(ae, x, seed)
        trainer = self._trainer(
            module,
            seed,
            epochs=self._training_epochs(int(distributed.total(x.shape[0], device=x.device))),
            early_stopping=self._early_stopping(),
        )
        self.history_ = trainer.fit([x])
        self.autoencoder_ = ae.eval()
        self._fitted_from(module, trainer, x)
        self.labels_ = self._training_labels(x).cpu().numpy().astype(np.int64)

    def _trainer(
        self,
        module: TrainingModule,
        seed: int,
        *,
        epochs: int,
        stage: str | None = None,
        early_stopping: EarlyStopping | None = None,
    ) -> Trainer:
        """A :class:`~aeclust.training.Trainer` of ``module`` with :meth:`_make_optimizer` and
        the estimator's batch size, precision and verbosity.

        ``stage`` (default the class name) labels the progress bar and, lower-cased with
        hyphens, keys the stage's checkpoint inside :func:`aeclust.training.checkpointing`.
        """
        stage = stage or type(self).__name__
        return Trainer(
            module,
            self._make_optimizer(module.parameters()),
            epochs=epochs,
            batch_size=self.batch_size,
            seed=seed,
            autocast_dtype=self._autocast_dtype(self._device()),
            early_stopping=early_stopping,
            verbose=self.verbose,
            desc=stage,
            resume_key=stage.lower().replace(" ", "-"),
        )

    def _early_stopping(self) -> EarlyStopping | None:
        """Early stopping of the training stage (the template :meth:`_fit`); default none."""
        return None

    def _training_module(self, ae: Autoencoder, x: torch.Tensor, seed: int) -> TrainingModule:
        """The method's model, initialised (the template :meth:`_fit`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _fit or _training_module")

    def _training_epochs(self, n_samples: int) -> int:
        """Epochs of the training stage (the template :meth:`_fit`); default ``epochs``."""
        return int(self.epochs)

    def _fitted_from(self, module: TrainingModule, trainer: Trainer, x: torch.Tensor) -> None:
        """Set the fitted attributes other than ``labels_``, ``history_`` and ``autoencoder_``
        from the trained module (the template :meth:`_fit`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _fit or _fitted_from")

    def _make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """The fine-tuning optimiser from ``optimizer``, ``lr`` (and ``momentum`` where the
        estimator has it)."""
        return make_optimizer(params, self.optimizer, self.lr, momentum=self._param("momentum"))

    def _initial_kmeans(
        self,
        ae: Autoencoder,
        x: torch.Tensor,
        seed: int,
        *,
        autocast_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, KMeansResult]:
        """k-means (``n_init`` restarts, seeded) on the pretrained embedding: the usual start.

        Returns
        -------
        z : Tensor (n_samples, embedding_dim)
            The embedding.
        result : KMeansResult
        """
        z = batched_apply(ae.encode, x, autocast_dtype=autocast_dtype)
        gen = self._generator(seed, x.device)
        return z, kmeans(z, self.n_clusters, n_init=self.n_init, generator=gen)

    @abstractmethod
    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster indices (LongTensor) of ``x`` on the fitted device."""

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        ae = self.autoencoder_
        ae.eval()
        return batched_apply(ae.encode, x)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        """What :meth:`transform` returns; the embedding unless a method says otherwise."""
        return self._embed(x)

    def _labels_of(self, z: torch.Tensor) -> torch.Tensor:
        """Cluster indices of rows already embedded (``z = _embed(x)``), for a method whose
        labels are a function of its embedding alone (DEC's argmax Q, the nearest centre of
        AE+KM, DCN, DKM and CT): ``labels_`` and the degenerate-partition check then share one
        pass over the training rows (:meth:`_training_labels`). Not defined by the others."""
        raise NotImplementedError

    def _training_labels(self, x: torch.Tensor) -> torch.Tensor:
        """``labels_`` of the training rows at the end of the template :meth:`_fit`; default
        ``_predict(x)``. A method whose labels come from its embedding (it defines
        :meth:`_labels_of`, or overrides this) computes both in one pass and keeps the
        embedding (:meth:`_keep_training_embedding`)."""
        if type(self)._labels_of is BaseDeepClusterer._labels_of:
            return self._predict(x)
        z = self.__dict__.get("_kept_embedding")  # kept already by _fitted_from (CT)
        if z is None:
            with torch.no_grad():
                z = self._embed(x)
            self._keep_training_embedding(z)
        return self._labels_of(z)

    def _keep_training_embedding(self, z: torch.Tensor) -> None:
        """Hand the training rows' final embedding, computed on the way to ``labels_``, to the
        checks after ``_fit`` (:meth:`_training_embedding`), so that they make no second pass."""
        self._kept_embedding = z

    def _training_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding of the training rows ``x`` right after ``_fit``: the one kept by
        :meth:`_keep_training_embedding` (released here), else a pass of :meth:`_embed`."""
        kept = self.__dict__.pop("_kept_embedding", None)
        if kept is not None:
            return kept
        with torch.no_grad():
            return self._embed(x)

    def _warn_if_degenerate(self, x: torch.Tensor) -> None:
        """Warn (:class:`aeclust.diagnostics.DegenerateClusteringWarning`) when the fitted
        partition is degenerate: a cluster with most points, empty clusters, a collapsed
        embedding. Label-free; the fit itself is kept as it is."""
        embedding = distributed.gather_rows(self._training_embedding(x))
        problems = partition_problems(
            self.labels_, self.n_clusters, embedding.float().cpu().numpy()
        )
        if problems:
            warnings.warn(
                f"{type(self).__name__} ended in a degenerate partition: {'; '.join(problems)}. "
                "Compare with KMeans on the same data, and try a longer pretraining, another "
                "random_state or fewer clusters (docs/METHODS.md, 'Degenerate partitions').",
                DegenerateClusteringWarning,
                stacklevel=3,
            )

    def _fitted_device(self) -> torch.device:
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                for p in value.parameters():
                    return p.device
        return torch.device("cpu")

    def _pretrain_config(self, n_samples: int) -> PretrainConfig:
        # the estimator's values of the parameters it takes; PretrainConfig's defaults for others
        taken = type(self)._parameter_constraints
        values = {
            field: getattr(self, name)
            for name, field in PRETRAIN_CONFIG_FIELDS.items()
            if name in taken
        }
        epochs = values.get("epochs")
        if epochs == "auto":
            epochs = "steps" if self.pretrain_counts_steps else self.pretrain_epochs_base
        if epochs == "steps":
            batch_size = values.get("batch_size", PretrainConfig.batch_size)
            epochs = auto_pretrain_epochs(self.pretrain_epochs_base, n_samples, batch_size)
            logger.info(
                "pretrain_epochs=%r: %d epochs (%d rows, batch %d)",
                values["epochs"],
                epochs,
                n_samples,
                batch_size,
            )
        if "epochs" in values:
            values["epochs"] = epochs
        return PretrainConfig(**values)

    def _pretrained_autoencoder(
        self, x: torch.Tensor, seed: int, **build_kwargs: Any
    ) -> Autoencoder:
        """Build the autoencoder from ``self.autoencoder`` and pretrain it (through the cache).

        Methods call this first in ``_fit``, before drawing any other random number, so that the
        initial weights (part of the cache key) are the same for every method with the same seed
        and the benchmark's methods share one pretrained network.

        A module passed by the user is deep-copied, so a shared pretrained network is never
        mutated by a method's fine-tuning.
        """
        spec = self.autoencoder
        if isinstance(spec, torch.nn.Module):
            spec = copy.deepcopy(spec)
        bce = self._param("pretrain_loss") == "bce"
        if bce and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise ValueError(
                f"pretrain_loss='bce' needs X scaled to [0, 1] (got values in "
                f"[{float(x.min()):.4g}, {float(x.max()):.4g}]); rescale X or use "
                "pretrain_loss='mse'"
            )
        kwargs = {
            "embedding_dim": self._param("embedding_dim"),
            "image_shape": self._param("image_shape"),
            "activation": self._param("activation"),
            "embedding_activation": self._param("embedding_activation"),
            "batch_norm": self._param("batch_norm"),
            # BCE needs outputs in [0, 1]: a sigmoid reconstruction layer.
            "output_activation": "sigmoid" if bce else None,
        }
        kwargs.update(build_kwargs)
        ae = build_autoencoder(spec, x.shape[1], **kwargs).to(x.device)
        cache = self._param("pretrain_cache")
        pretrained = pretrain_autoencoder(
            ae,
            x,
            self._pretrain_config(int(distributed.total(x.shape[0], device=x.device))),
            seed=seed,
            autocast_dtype=self._autocast_dtype(x.device),
            precision=self.precision,
            cache_dir=cache if isinstance(cache, (str, os.PathLike)) else None,
            # a process's rows are not the data set: no cache entry for a shard (issue 30)
            use_cache=bool(cache) and not distributed.sharded(),
            verbose=self.verbose,
        )
        self.pretrain_history_ = pretrained.history
        self._pretrained = pretrained  # for pretrain(return_details=True); not a fitted attribute
        return pretrained.autoencoder

    def _generator(self, seed: int, device: torch.device) -> torch.Generator:
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        return gen

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
        """Save the fitted model to one file, atomically.

        The file holds the constructor parameters and scalar fitted attributes as JSON, arrays and
        module weights as tensors; restore it with :func:`aeclust.load`, which reads it with
        ``torch.load(weights_only=True)``.

        aeclust's own networks (and modules registered with :func:`aeclust.nn.register_module`,
        which have a ``config()``) are stored as their config plus weights and rebuilt by
        ``load``. A module of your own class (e.g. ``DEC(autoencoder=MyAE())``) is stored as its
        ``state_dict`` plus its class path, never as code: ``load`` cannot rebuild it and takes
        it from you, ``load(path, modules={"autoencoder": MyAE(), "autoencoder_": MyAE()})``
        (or one factory per class, ``modules={"mypkg.MyAE": MyAE}``), then loads the saved
        weights into it.

        Parameters
        ----------
        path : path-like
            Destination (conventionally ``*.pt``).
        metadata : mapping, optional
            JSON-serialisable facts about the fit that are not the estimator's, such as how the
            training data were scaled (``aeclust cluster`` stores the data's ``scaling``); read
            back with :func:`aeclust.load_metadata`.

        Returns
        -------
        Path
        """
        check_is_fitted(self)
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {"params": {}, "attrs": {}}

        def encode(prefix: str, value: Any) -> Any:
            if isinstance(value, torch.nn.Module):
                for k, v in value.state_dict().items():
                    tensors[f"{prefix}.{k}"] = v.detach().cpu()
                if AUTOENCODER_CLASSES.get(type(value).__name__) is type(value):
                    return {"__module__": value.config()}
                # a module of the user's own class: its weights and class path, not its code
                return {"__user_module__": _class_path(type(value))}
            if isinstance(value, np.ndarray):
                tensors[prefix] = torch.from_numpy(np.ascontiguousarray(value))
                return {"__array__": True}
            if isinstance(value, torch.Tensor):
                tensors[prefix] = value.detach().cpu()
                return {"__tensor__": True}
            if isinstance(value, torch.device):
                return {"__device__": str(value)}
            if isinstance(value, (np.integer, np.floating)):
                return value.item()
            if isinstance(value, tuple):
                return {"__tuple__": [encode(f"{prefix}.{i}", v) for i, v in enumerate(value)]}
            json.dumps(value)  # raises TypeError for anything we cannot store faithfully
            return value

        for name, value in self.get_params(deep=False).items():
            meta["params"][name] = encode(f"param.{name}", value)
        for name, value in vars(self).items():
            if name.endswith("_") and not name.startswith("_"):
                meta["attrs"][name] = encode(f"attr.{name}", value)
        payload = {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "class": type(self).__name__,
            "meta_json": json.dumps(meta),
            "tensors": tensors,
        }
        if metadata is not None:
            try:
                payload["metadata_json"] = json.dumps(dict(metadata))
            except TypeError as exc:
                raise TypeError(f"metadata must be JSON-serialisable: {exc}") from exc
        path = Path(path)
        atomic_torch_save(payload, path)
        return path


ModuleSource = torch.nn.Module | Callable[[], torch.nn.Module]


def load(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    modules: Mapping[str, ModuleSource] | None = None,
) -> BaseDeepClusterer:
    """Restore a model written by :meth:`BaseDeepClusterer.save`.

    Parameters
    ----------
    path : path-like
        The model file.
    device : str or torch.device
        Where to put the restored networks (``"auto"`` picks CUDA when available).
    modules : mapping, optional
        Only for a model fitted with a network of your own class (one without an aeclust
        ``config()``): the file holds its weights and class name, not its code, so give the
        module, built as at fit time, for each such entry, keyed by the parameter or attribute
        name (``"autoencoder"``, ``"autoencoder_"``), or one for all entries of a class, keyed by
        its class path (``"mypkg.MyAE"``). A value is a module (copied) or a callable that
        returns one (e.g. the class); the saved weights are loaded into it. The error of a
        ``load`` without them lists the names needed.

    Returns
    -------
    BaseDeepClusterer
        A fitted estimator whose ``predict``/``transform`` equal the saved one's.

    Raises
    ------
    ValueError
        If the file holds a module of your own class that ``modules`` does not provide, or one
        whose class or weights do not match.
    """
    payload = _read_model_file(path)
    dev = resolve_device(device)
    name = payload["class"]
    meta = json.loads(payload["meta_json"])
    tensors: dict[str, torch.Tensor] = payload["tensors"]
    modules = dict(modules or {})
    _check_user_modules(path, meta, modules)

    def state(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

    def decode(prefix: str, value: Any) -> Any:
        if isinstance(value, dict) and "__module__" in value:
            module = module_from_config(value["__module__"])
            module.load_state_dict(state(prefix))
            return module.to(dev).eval()
        if isinstance(value, dict) and "__user_module__" in value:
            entry = prefix.split(".", 1)[1]
            module = _user_module(path, entry, value["__user_module__"], modules)
            try:
                module.load_state_dict(state(prefix))
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0]
                raise ValueError(
                    f"{path}: the saved weights of {entry!r} do not fit the module given for it "
                    f"({first}); build it as at fit time"
                ) from None
            return module.to(dev).eval()
        if isinstance(value, dict) and "__array__" in value:
            return tensors[prefix].numpy()
        if isinstance(value, dict) and "__tensor__" in value:
            return tensors[prefix].to(dev)
        if isinstance(value, dict) and "__device__" in value:
            return dev
        if isinstance(value, dict) and "__tuple__" in value:
            return tuple(decode(f"{prefix}.{i}", v) for i, v in enumerate(value["__tuple__"]))
        return value

    params = {k: decode(f"param.{k}", v) for k, v in meta["params"].items()}
    est = ESTIMATORS[name](**params)
    for attr, value in meta["attrs"].items():
        setattr(est, attr, decode(f"attr.{attr}", value))
    return est


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata`` a model file was saved with (:meth:`BaseDeepClusterer.save`).

    Parameters
    ----------
    path : path-like
        The model file.

    Returns
    -------
    dict
        The saved mapping; empty when the model was saved without one.
    """
    payload = _read_model_file(path)
    return json.loads(payload.get("metadata_json", "{}"))


def _read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a model file: its format, version and estimator class."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/non-torch files
        raise ValueError(f"{path} is not a readable aeclust model file ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not an aeclust model file")
    if payload["version"] > MODEL_VERSION:
        raise ValueError(
            f"{path} was written by a newer aeclust (model format {payload['version']})"
        )
    if payload["class"] not in ESTIMATORS:
        raise ValueError(f"{path}: unknown estimator class {payload['class']!r}")
    return payload


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _user_modules(meta: dict[str, Any]) -> dict[str, str]:
    """Entry name -> class path of every module of a user's own class in a model file."""
    found: dict[str, str] = {}

    def walk(name: str, value: Any) -> None:
        if isinstance(value, dict) and "__user_module__" in value:
            found[name] = value["__user_module__"]
        elif isinstance(value, dict) and "__tuple__" in value:
            for i, v in enumerate(value["__tuple__"]):
                walk(f"{name}.{i}", v)

    for section in ("params", "attrs"):
        for name, value in meta[section].items():
            walk(name, value)
    return found


def _check_user_modules(
    path: str | os.PathLike, meta: dict[str, Any], modules: Mapping[str, Any]
) -> None:
    """Fail before rebuilding anything when ``modules`` lacks a user module the file needs."""
    needed = _user_modules(meta)
    missing = {n: c for n, c in needed.items() if n not in modules and c not in modules}
    if not missing:
        return
    classes = sorted(set(missing.values()))
    example = ", ".join(f"{n!r}: {c.rsplit('.', 1)[-1]}(...)" for n, c in missing.items())
    raise ValueError(
        f"{path} holds network weights of your own class{'es' if len(classes) > 1 else ''} "
        f"{', '.join(classes)}, whose code a model file does not store: pass them, built as at "
        f"fit time, to aeclust.load(path, modules={{{example}}}) or one entry per class, "
        f"modules={{{', '.join(repr(c) + ': ...' for c in classes)}}}"
    )


def _user_module(
    path: str | os.PathLike, entry: str, class_path: str, modules: Mapping[str, Any]
) -> torch.nn.Module:
    """The module ``modules`` gives for ``entry`` (by name, else by class path), a new object."""
    source = modules[entry] if entry in modules else modules[class_path]
    if isinstance(source, torch.nn.Module):
        module = copy.deepcopy(source)
    elif callable(source):
        module = source()
    else:
        module = source
    if not isinstance(module, torch.nn.Module):
        raise ValueError(
            f"{path}: modules[{entry!r}] must be a torch module or a callable returning one, got "
            f"{type(module).__name__}"
        )
    saved, given = class_path.rsplit(".", 1)[-1], type(module).__qualname__
    if given.rsplit(".", 1)[-1] != saved:
        raise ValueError(
            f"{path}: {entry!r} was saved as a {class_path}, but modules gives a "
            f"{_class_path(type(module))}"
        )
    return module


def module_from_config(config: dict[str, Any]) -> torch.nn.Module:
    """Rebuild a module from its ``config()`` (autoencoders and method-specific networks)."""
    return autoencoder_from_config(config)
