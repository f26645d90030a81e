"""k-DAE (one autoencoder per cluster) and DAMIC (a gated mixture of autoencoders).

References
----------
Opochinsky, Y., Chazan, S. E., Gannot, S. and Goldberger, J. (2020). K-autoencoders deep
clustering. ICASSP. (k-DAE)
Chazan, S. E., Gannot, S. and Goldberger, J. (2019). Deep clustering based on a mixture of
autoencoders. IEEE MLSP. (DAMIC)
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from aeclust import distributed
from aeclust.methods.base import (
    BaseDeepClusterer,
    register_estimator,
)
from aeclust.methods.params import (
    NON_NEGATIVE_INT,
    NON_NEGATIVE_REAL,
    POSITIVE_INT,
    PRETRAINED_AUTOENCODER_PARAMS,
    Param,
    Params,
    SequenceOf,
    declare,
)
from aeclust.nn import Autoencoder, BatchedMLPAutoencoder, MLPClassifier
from aeclust.primitives.losses import reconstruction_loss
from aeclust.training import (
    EarlyStopping,
    Trainer,
    TrainingModule,
    batched_apply,
    eval_mode,
    make_optimizer,
)

LOSSES = ("hard", "soft")
DISTANCES = ("squared", "norm")


def _errors(models: BatchedMLPAutoencoder, x: torch.Tensor, distance: str) -> torch.Tensor:
    """Reconstruction error of every row by every model, (N, k), fp32."""
    x_hat = models(x).float()
    err = (x_hat - x.float().unsqueeze(0)).pow(2).sum(dim=-1).t()
    # sqrt'(0) is infinite: keep the norm differentiable at a perfect reconstruction.
    return torch.sqrt(err + 1e-12) if distance == "norm" else err


def assign_to_best_reconstructor(
    models: BatchedMLPAutoencoder, x: torch.Tensor, distance: str
) -> torch.Tensor:
    """argmin_i d(x_t, f_i(x_t)) of every row of ``x`` (k-DAE's clusters), models in eval mode."""
    with eval_mode(models):
        errors = batched_apply(lambda xb: _errors(models, xb, distance), x, 2048)
    return errors.argmin(dim=1)


def reseed_empty(
    models: BatchedMLPAutoencoder,
    optimizer: torch.optim.Optimizer,
    labels: torch.Tensor,
    generator: torch.Generator,
    noise: float,
) -> int:
    """Give each autoencoder that won no point of ``labels`` a copy of the largest cluster's.

    Ours, not the paper's: the copy (plus relative ``noise``) splits the largest cluster, and
    the copied model's Adam moments are zeroed so that it starts afresh. Returns the number of
    autoencoders re-seeded. In a data-parallel fit the cluster sizes are every process's, so
    every process re-seeds alike.
    """
    counts = cluster_sizes(labels, models.n_models)
    empty = (counts == 0).nonzero().flatten().tolist()
    for target in empty:
        source = int(counts.argmax())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            models.copy_model(source, target, noise)
        for param, per_model in models.per_model_parameters():
            for value in optimizer.state.get(param, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    per_model(value)[target] = 0  # Adam's moments of the copied model
        counts[target] = counts[source] // 2
        counts[source] -= counts[target]
    return len(empty)


def cluster_sizes(labels: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """Points per cluster (every process's points in a data-parallel fit)."""
    return distributed.all_reduce_sum(torch.bincount(labels, minlength=n_clusters))


class ClusterPretrainModule(TrainingModule):
    """Autoencoder i pretrained on the points of initial cluster i, all k in one pass.

    With a ``gate`` (DAMIC), the gate learns the initial labels at the same time: the loss is
    the reconstruction plus the gate's cross entropy.
    """

    def __init__(
        self, models: BatchedMLPAutoencoder, loss_kind: str, gate: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.models = models
        self.gate = gate
        self.loss_kind = loss_kind

    def training_step(self, idx: torch.Tensor, xb: torch.Tensor, lb: torch.Tensor) -> Any:
        x_hat = self.models(xb)[lb, torch.arange(xb.shape[0], device=xb.device)]
        rec = reconstruction_loss(x_hat, xb, self.loss_kind)
        if self.gate is None:
            return rec
        ce = F.cross_entropy(self.gate(xb).float(), lb)
        return rec + ce, {"reconstruction": rec, "gate_cross_entropy": ce}


class KDAEModule(TrainingModule):
    """k-DAE's joint stage: the k autoencoders and each point's best reconstructor.

    The loss is eq. 1, mean_t min_i d(x_t, f_i(x_t)), or with ``loss="soft"`` eq. 4,
    −mean_t log Σ_i exp(−d(x_t, f_i(x_t))). Each step also records, in the ``labels`` buffer,
    the best reconstructor of its rows from the errors the loss has just computed: after an
    epoch every point holds the autoencoder that won it when its batch was trained, at no extra
    cost (a whole-data assignment pass at every epoch's end cost about a third of an epoch, for
    the same purpose: issue 33). An autoencoder that won no point in the whole epoch (so eq. 2
    gave it no gradient) is re-seeded at the epoch's end (:func:`reseed_empty`); the count of
    re-seedings and the generator that draws their noise are the module's extra state.
    """

    labels: torch.Tensor

    def __init__(
        self,
        models: BatchedMLPAutoencoder,
        initial_labels: torch.Tensor,
        *,
        loss: str,
        distance: str,
        reseed_noise: float,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.models = models
        self.register_buffer("labels", initial_labels.clone())
        self.loss = loss
        self.distance = distance
        self.reseed_noise = reseed_noise
        self.generator = generator
        self.n_reseeded = 0
        self.epoch_start_labels = self.labels.clone()  # not state: set at every epoch's start

    def training_step(self, idx: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        err = _errors(self.models, xb, self.distance)
        self.labels[idx] = err.detach().argmin(dim=1)
        if self.loss == "soft":
            return -torch.logsumexp(-err, dim=1).mean()
        return err.min(dim=1).values.mean()

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch_start_labels = self.labels.clone()

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        current = self.labels
        # Recorded because the hard min of eq. 1 lets one autoencoder that reconstructs a
        # whole family of classes absorb its neighbours' clusters (Fashion-MNIST): the sizes
        # show the collapse, the fraction of changed labels the convergence.
        record["cluster_sizes"] = cluster_sizes(current, self.models.n_models).tolist()
        record["label_changes"] = distributed.global_mean(current != self.epoch_start_labels)
        assert self.trainer is not None  # set by Trainer.fit
        reseeded = reseed_empty(
            self.models, self.trainer.optimizer, current, self.generator, self.reseed_noise
        )
        self.n_reseeded += reseeded
        record["reseeded"] = reseeded

    def get_extra_state(self) -> dict[str, Any]:
        return {"reseeded": self.n_reseeded, "generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.n_reseeded = int(state["reseeded"])
        self.generator.set_state(state["generator"])


class DAMICModule(TrainingModule):
    """DAMIC's joint stage (k-DAE paper, eq. 5): the k autoencoders and the gate p(c | x),
    trained on −mean_t log Σ_i p(c_t = i | x_t) exp(−d(x_t, f_i(x_t)))."""

    def __init__(self, models: BatchedMLPAutoencoder, gate: nn.Module, *, distance: str) -> None:
        super().__init__()
        self.models = models
        self.gate = gate
        self.distance = distance

    def training_step(self, idx: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        err = _errors(self.models, xb, self.distance)
        log_p = F.log_softmax(self.gate(xb).float(), dim=1)
        return -torch.logsumexp(log_p - err, dim=1).mean()


@register_estimator(cli_name="kdae")
class KDAE(BaseDeepClusterer):
    """k-DAE clustering: each cluster is an autoencoder; a point goes to its best reconstructor.

    1. Pretrain one autoencoder on all data; k-means (``n_init`` restarts) on its embedding.
    2. Pretrain autoencoder i on the points of initial cluster i (``cluster_pretrain_epochs``).
    3. Jointly minimise L = Σ_t min_i d(x_t, f_i(x_t)) (eq. 1), or with ``loss="soft"`` the soft
       version L = −Σ_t log Σ_i exp(−d(x_t, f_i(x_t))) (eq. 4), with early stopping on the
       training loss.
    ``labels_`` and ``predict`` = argmin_i d(x, f_i(x)). The k autoencoders are one batched module
    (:class:`aeclust.nn.BatchedMLPAutoencoder`). An autoencoder that loses all its points is
    re-seeded from the largest cluster's autoencoder (plus small noise) so it splits that cluster:
    one that wins no point of an epoch's batches, and so gets no gradient from eq. 2.

    Parameters
    ----------
    n_clusters : int
    autoencoder, embedding_dim, activation, embedding_activation, batch_norm, image_shape
        The initial autoencoder; default the paper's 1024-256-10 (Sec. 3.5) with ELU and batch
        norm. The defaults are the full protocol of ``kdae-table2`` (0.752 on USPS against
        0.736 with mirrored 500-500-2000-10 and 500-100-10 networks, close to the authors' code,
        whose initial decoder is 10-500-500 without the 2000 layer; BENCHMARKS.md).
    pretrain_epochs, pretrain_lr, pretrain_loss, pretrain_patience, pretrain_corruption
        Its pretraining: 50 epochs of BCE with a sigmoid output, Adam, early stopping
        (patience 10); ``pretrain_epochs="auto"`` (default) raises the 50 on data sets under 32
        batches an epoch to the same number of steps
        (:func:`aeclust.pretrain.auto_pretrain_epochs`).
    center_inputs : bool or "auto"
        Centre the inputs on the training mean, as :class:`aeclust.AEKMeans`.
    batch_size : int
    n_init : int
        k-means restarts on the initial embedding (100 in the authors' code).
    cluster_autoencoder : sequence of int
        Hidden widths of each cluster's autoencoder (the paper's 1024-256-10; 500-100-10 in the
        authors' code).
    cluster_pretrain_epochs : int
        Pretraining epochs of each cluster's autoencoder on its initial cluster.
    epochs : int
        Maximum epochs of the joint stage (the paper: 50, with early stopping).
    lr : float
        Adam learning rate of the per-cluster stages.
    loss : {"hard", "soft"}
        Eq. 1 or eq. 4.
    distance : {"squared", "norm"}
        d = ‖x − x̂‖² (the paper) or ‖x − x̂‖ (the authors' code).
    patience : int or None
        Early stopping of the joint stage on its training loss.
    reseed_noise : float
        Relative noise added to a re-seeded autoencoder's copied weights.
    pretrain_cache, device, precision, random_state, verbose
        As every estimator; errors and the loss are computed in fp32.

    Attributes
    ----------
    labels_ : ndarray (n_samples,)
    initial_labels_ : ndarray (n_samples,)
        The k-means clustering that initialised the cluster autoencoders.
    autoencoders_ : BatchedMLPAutoencoder
    autoencoder_ : Autoencoder
        The initial (shared) autoencoder.
    history_ : list of dict
        Per joint epoch: ``loss``, ``cluster_sizes`` (points won by each autoencoder during
        the epoch, each point counted at its batch's step, before re-seeding),
        ``label_changes`` (fraction of points whose best reconstructor changed since the
        previous epoch; the first epoch compares with the k-means initialisation) and
        ``reseeded``.
    cluster_pretrain_history_, pretrain_history_ : list of dict
    n_reseeded_ : int
        How many times an empty cluster's autoencoder was re-seeded.
    """

    #: bf16 held k-DAE's and DAMIC's accuracy within 0.2 ACC points of fp32 on usps and
    #: mnist_test (3 seeds each; docs/METHODS.md "Precision"), so ``precision="auto"`` uses it.
    auto_bf16: ClassVar[bool] = True

    #: the per-row winners stay with each process's rows; cluster sizes, label changes and the
    #: re-seeding use every process's (DAMIC too)
    data_parallel: ClassVar[bool] = True
    out_of_core: ClassVar[bool] = True  # every pass: a minibatch or a chunked batched_apply

    #: the authors' code: 50 pretraining epochs (pretrain_epochs="auto": in steps on small data)
    pretrain_epochs_base: ClassVar[int] = 50
    pretrain_counts_steps: ClassVar[bool] = True

    params: ClassVar[Params] = declare(
        PRETRAINED_AUTOENCODER_PARAMS,
        "epochs",
        "lr",
        autoencoder=(1024, 256, 10),
        activation="elu",
        batch_norm=True,
        pretrain_loss="bce",
        pretrain_patience=10,
        n_init=100,
        cluster_autoencoder=Param((1024, 256, 10), SequenceOf(POSITIVE_INT)),
        cluster_pretrain_epochs=Param(10, NON_NEGATIVE_INT),
        loss=Param("hard", StrOptions(set(LOSSES))),
        distance=Param("squared", StrOptions(set(DISTANCES))),
        patience=Param(10, None, NON_NEGATIVE_INT),
        reseed_noise=Param(0.01, NON_NEGATIVE_REAL),
    )

    # -- pieces shared with DAMIC ---------------------------------------------------------------
    def _initial_labels(self, ae: Autoencoder, x: torch.Tensor, seed: int) -> torch.Tensor:
        """k-means on the initial autoencoder's embedding (step 1)."""
        _, init = self._initial_kmeans(ae, x, seed)
        self.initial_labels_ = init.labels.cpu().numpy().astype(np.int64)
        return init.labels

    def _build_cluster_autoencoders(self, n_features: int) -> BatchedMLPAutoencoder:
        return BatchedMLPAutoencoder(
            self.n_clusters,
            [n_features, *self.cluster_autoencoder],
            activation=self.activation,
            batch_norm=self.batch_norm,
            output_activation="sigmoid" if self.pretrain_loss == "bce" else None,
        )

    def _make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        return make_optimizer(params, "adam", self.lr)

    def _early_stopping(self) -> EarlyStopping | None:
        return EarlyStopping(self.patience) if self.patience else None

    def _pretrain_clusters(
        self,
        models: BatchedMLPAutoencoder,
        x: torch.Tensor,
        labels: torch.Tensor,
        seed: int,
        gate: nn.Module | None = None,
    ) -> None:
        """Pretrain autoencoder i (and the gate, if any) on the points of initial cluster i."""
        module = ClusterPretrainModule(models, self.pretrain_loss, gate)
        trainer = self._trainer(
            module, seed, epochs=self.cluster_pretrain_epochs, stage="cluster pretrain"
        )
        self.cluster_pretrain_history_ = trainer.fit([x, labels])

    # -- the template's steps -------------------------------------------------------------------
    def _training_module(self, ae: Autoencoder, x: torch.Tensor, seed: int) -> KDAEModule:
        labels = self._initial_labels(ae, x, seed)
        models = self._build_cluster_autoencoders(x.shape[1]).to(x.device)
        self._pretrain_clusters(models, x, labels, seed)
        return KDAEModule(
            models,
            labels,
            loss=self.loss,
            distance=self.distance,
            reseed_noise=self.reseed_noise,
            generator=self._generator(seed + 1, torch.device("cpu")),
        )

    def _fitted_from(self, module: KDAEModule, trainer: Trainer, x: torch.Tensor) -> None:
        self.autoencoders_ = module.models.eval()
        self.n_reseeded_ = module.n_reseeded
        self.n_iter_ = len(self.history_)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return assign_to_best_reconstructor(self.autoencoders_, x, self.distance)

    def _training_labels(self, x: torch.Tensor) -> torch.Tensor:
        # One pass of the k autoencoders gives both labels_ and the embedding the checks use.
        errors = self._embed(x)
        self._keep_training_embedding(errors)
        return errors.argmin(dim=1)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        # Like k-means' transform (distances to the centres): the error of each cluster's AE.
        self.autoencoders_.eval()
        return batched_apply(lambda xb: _errors(self.autoencoders_, xb, self.distance), x, 2048)

    def reconstruction_errors(self, X: Any) -> np.ndarray:
        """The n × k matrix of reconstruction errors d(x, f_i(x)) of every cluster's autoencoder."""
        return self.transform(X)

    def reconstructions(self, X: Any) -> np.ndarray:
        """Each cluster's reconstruction of ``X``, array (k, n, n_features) (the paper's Fig. 2)."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        x = self._to_tensor(X, self._fitted_device())
        self.autoencoders_.eval()
        with torch.no_grad():
            return self.autoencoders_(x).float().cpu().numpy()


@register_estimator(cli_name="damic")
class DAMIC(KDAE):
    """DAMIC: k autoencoders plus a gate network p(c | x) (Chazan et al., 2019).

    Loss (k-DAE paper, eq. 5): L = −Σ_t log Σ_i p(c_t = i | x_t) exp(−d(x_t, f_i(x_t))). The
    autoencoders and the gate are initialised as in k-DAE: the gate is pretrained with the cross
    entropy of the initial k-means labels while autoencoder i is pretrained on cluster i. Clusters
    come from the gate: ``labels_`` = argmax_i p(c = i | x).

    Parameters
    ----------
    gate_hidden : sequence of int
        Hidden widths of the gate network (it ends in n_clusters logits).
    (others)
        As :class:`KDAE` (``loss`` is not used, nor ``reseed_noise``: DAMIC never re-seeds an
        autoencoder, the gate decides the clusters).
    """

    params: ClassVar[Params] = KDAE.params.without("loss").extended(
        gate_hidden=Param((512, 512), SequenceOf(POSITIVE_INT, min_len=0))
    )

    def _training_module(self, ae: Autoencoder, x: torch.Tensor, seed: int) -> DAMICModule:
        labels = self._initial_labels(ae, x, seed)
        models = self._build_cluster_autoencoders(x.shape[1])
        gate = MLPClassifier(
            [x.shape[1], *self.gate_hidden, self.n_clusters], self.activation, self.batch_norm
        )
        models, gate = models.to(x.device), gate.to(x.device)
        self._pretrain_clusters(models, x, labels, seed, gate)
        return DAMICModule(models, gate, distance=self.distance)

    def _fitted_from(self, module: DAMICModule, trainer: Trainer, x: torch.Tensor) -> None:
        self.autoencoders_ = module.models.eval()
        self.gate_ = module.gate.eval()
        self.n_reseeded_ = 0
        self.n_iter_ = len(self.history_)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        self.gate_.eval()
        return batched_apply(self.gate_, x).argmax(dim=1)

    def _training_labels(self, x: torch.Tensor) -> torch.Tensor:
        # The gate decides the clusters, so the checks after fit look at p(c | x), the space
        # labels_ come from, rather than at a pass of all k autoencoders (transform's errors).
        self.gate_.eval()
        logits = batched_apply(self.gate_, x)
        self._keep_training_embedding(torch.softmax(logits, dim=1))
        return logits.argmax(dim=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The gate's p(c | x) for each row of ``X``."""
        check_is_fitted(self)
        self.gate_.eval()
        return self._apply(X, lambda x: torch.softmax(batched_apply(self.gate_, x), dim=1))
