"""CCAE and the class separating autoencoder (dAE): autoencoders trained on shifted targets.

The reconstruction target of every sample is moved towards samples of its own cluster (or class)
and away from the others, and the autoencoder is retrained to reconstruct the moved targets
(eq. 6). The shift is repeated a few times, each one applied to the previous targets.

* :class:`CCAE` (Algorithm 1, clustering): a standard AE, k-means++ on its codes, then
  ``n_shifts`` rounds of shift -> retrain from the last weights -> k-means warm-started from the
  previous centres.
* :class:`ClassSeparatingAE` (Algorithm 2, supervised; dAE-1 and dAE-2): the same with the class
  labels in place of the clusters; a transformer ``fit(X, y)`` / ``transform(X)``.

References
----------
Nousi, P. and Tefas, A. Self-supervised autoencoders for clustering and classification (cluster
compacting autoencoders, CCAE; class separating autoencoders, dAE). Text in
``shared/papers/ccae-cluster-compacting-autoencoders.txt``: eqs. 6-15, Algorithms 1-2, Sec. 5.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from aeclust import distributed
from aeclust._utils import local_seed, seed_from
from aeclust.methods.base import (
    BaseDeepClusterer,
    register_estimator,
)
from aeclust.methods.params import (
    FRACTION,
    NON_NEGATIVE_INT,
    NON_NEGATIVE_REAL,
    POSITIVE_INT,
    PRETRAINED_AUTOENCODER_PARAMS,
    DeclaredParams,
    Param,
    Params,
    declare,
)
from aeclust.nn import Autoencoder, build_autoencoder, encode_decode
from aeclust.pretrain import PretrainConfig, pretrain_autoencoder
from aeclust.primitives import grouped_knn, kmeans, squared_distances
from aeclust.primitives.kmeans import cluster_sums
from aeclust.primitives.losses import reconstruction_loss
from aeclust.training import Trainer, TrainingModule, batched_apply, make_optimizer

__all__ = [
    "CCAE",
    "CCAE_SHIFTS",
    "DAE_SHIFTS",
    "RIVALS",
    "ClassSeparatingAE",
    "group_means",
    "neighbour_means",
    "rival_means",
    "shift_away",
    "shift_towards",
    "train_on_targets",
]

#: CCAE-1..4 (Sec. 5.3.1): towards the cluster centre (eq. 9), plus away from the rival centre
#: (eq. 12), towards same-cluster neighbours (eq. 10), plus away from rival neighbours (eq. 13);
#: "none" trains the same rounds on unshifted targets (the standard AE of the paper's Fig. 2a).
CCAE_SHIFTS = ("centre", "centre+rival", "neighbours", "neighbours+rivals", "none")
#: dAE-1 (eq. 14) and dAE-2 (eqs. 14 and 15).
DAE_SHIFTS = ("class", "class+rival")
#: What "the rival centre" of eqs. 12 / 15 is: the nearest other centre (Sec. 5's wording) or the
#: mean of all other samples (the equations as printed).
RIVALS = ("nearest", "all")

#: Constraints of the shift parameters CCAE and the dAE share (their ``shift`` options differ).
#: The target-shift parameters CCAE and the dAE share (CCAE's defaults; the dAE changes some).
SHIFT_PARAMS = declare(
    "lr",
    "hidden_dims",
    alpha=Param(0.1, FRACTION),
    beta=Param(0.05, NON_NEGATIVE_REAL),
    rival=Param("nearest", StrOptions(set(RIVALS))),
    n_shifts=Param(4, NON_NEGATIVE_INT),
    shift_epochs=Param(25, NON_NEGATIVE_INT),
)

_SILHOUETTE_SAMPLE = 2000


# ---------------------------------------------------------------------------------------------
# Target shifts (eqs. 7-15): batched tensor ops, no N x N matrix.
# ---------------------------------------------------------------------------------------------
def shift_towards(targets: torch.Tensor, means: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 7: ``x~ + alpha (m - x~)``, i.e. ``(1 - alpha) x~ + alpha m`` (row-wise)."""
    return targets + alpha * (means - targets)


def shift_away(targets: torch.Tensor, means: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 11: ``x~ - beta (m - x~)``, i.e. ``(1 + beta) x~ - beta m`` (row-wise)."""
    return targets - beta * (means - targets)


def group_means(
    targets: torch.Tensor, labels: torch.Tensor, n_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean target of each cluster / class (eqs. 9 and 14 as centres, never as an N x N W).

    Returns
    -------
    means : Tensor (n_groups, D)
        Zero for an empty group.
    counts : Tensor (n_groups,)
    """
    sums, counts = cluster_sums(targets.float(), labels.unsqueeze(0), n_groups)
    sums, counts = sums[0], counts[0]
    return sums / counts.clamp_min(1).unsqueeze(1), counts


def rival_means(
    targets: torch.Tensor,
    labels: torch.Tensor,
    n_groups: int,
    *,
    rival: str = "nearest",
    points: torch.Tensor | None = None,
    centres: torch.Tensor | None = None,
) -> torch.Tensor:
    """The rival mean m_i each target is pushed away from (eqs. 12 and 15).

    Parameters
    ----------
    targets : Tensor (N, D)
        Current targets x~ (the means are taken over them).
    labels : LongTensor (N,)
        Cluster or class of each sample.
    n_groups : int
    rival : {"nearest", "all"}
        ``"all"``: the mean of every sample of the other groups (eqs. 12 / 15 as printed:
        W_ij = -1/|V_-k|). ``"nearest"``: the mean target of the nearest other group, the
        nearest being measured between ``points`` and ``centres`` (Sec. 5.3's "away from the
        nearest rival-cluster center").
    points, centres : Tensor, optional
        Where "nearest" is measured (defaults: the targets and the group means of the targets);
        CCAE passes the codes and the k-means centres.

    Returns
    -------
    Tensor (N, D)
        A sample with no rival (a single non-empty group) gets its own target (no shift).
    """
    if rival not in RIVALS:
        raise ValueError(f"rival must be one of {RIVALS}, got {rival!r}")
    means, counts = group_means(targets, labels, n_groups)
    t = targets.float()
    if rival == "all":
        total = t.sum(dim=0, keepdim=True)
        own_sum = means[labels] * counts[labels].unsqueeze(1)
        others = (t.shape[0] - counts[labels]).unsqueeze(1)
        out = (total - own_sum) / others.clamp_min(1)
        return torch.where(others > 0, out, t)
    pts = t if points is None else points.float()
    ctr = means if centres is None else centres.float()
    d = squared_distances(pts, ctr)  # (N, K): K is small
    d[torch.arange(d.shape[0], device=d.device), labels] = torch.inf
    d[:, counts == 0] = torch.inf  # an empty group has no mean to flee from
    nearest = d.argmin(dim=1)
    has_rival = torch.isfinite(d.min(dim=1).values).unsqueeze(1)
    return torch.where(has_rival, means[nearest], t)


def neighbour_means(targets: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean target over each sample's valid neighbours (eqs. 10 and 13, W_ij = ±1/|N_i|).

    A sample without any valid neighbour (a singleton cluster, or no rival) keeps its target.
    Gathered in row chunks so that the (chunk, k, D) block stays small.
    """
    t = targets.float()
    n, k = idx.shape
    d = t.shape[1]
    rows = max(1, (1 << 24) // max(1, k * d))
    out = torch.empty_like(t)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        w = valid[start:stop].float()
        count = w.sum(dim=1, keepdim=True)
        summed = torch.einsum("nk,nkd->nd", w, t[idx[start:stop]])
        mean = summed / count.clamp_min(1)
        out[start:stop] = torch.where(count > 0, mean, t[start:stop])
    return out


class ShiftedTargetModule(TrainingModule):
    """An autoencoder trained to map each input to its shifted target (eq. 6, mean squared
    error): a batch is ``(x, x~)`` rows."""

    all_parameters_used: ClassVar[bool] = True

    def __init__(self, autoencoder: Autoencoder) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def training_step(
        self, idx: torch.Tensor, xb: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        _, x_hat = encode_decode(self.autoencoder, xb)
        return reconstruction_loss(x_hat, targets, "mse")


def train_on_targets(
    ae: Autoencoder,
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    autocast_dtype: torch.dtype | None = None,
    verbose: bool = False,
    desc: str = "shift",
) -> list[dict[str, Any]]:
    """Train ``ae`` in place to map ``x`` to the shifted ``targets`` (eq. 6, mean squared error).

    Training continues from the current weights with a fresh Adam optimiser (Algorithm 1, line
    12: "retrain"). Returns the per-epoch records of :class:`aeclust.training.Trainer`.
    """
    module = ShiftedTargetModule(ae)
    trainer = Trainer(
        module,
        make_optimizer(module.parameters(), "adam", lr),
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        autocast_dtype=autocast_dtype,
        verbose=verbose,
        desc=desc,
    )
    return trainer.fit([x, targets])


def retrain_round(
    estimator: Any,
    ae: Autoencoder,
    x: torch.Tensor,
    targets: torch.Tensor,
    new_targets: torch.Tensor,
    stage: int,
    seed: int,
    label: str,
) -> tuple[list[dict[str, Any]], float, float]:
    """One round of CCAE's Algorithm 1 or the dAE's Algorithm 2 after its SampleShift: retrain
    ``ae`` on ``new_targets`` with the estimator's ``shift_epochs``, ``batch_size`` and ``lr``.

    Returns the round's per-epoch records, the mean distance the targets moved in the shift and
    their mean distance from the inputs (``target_shift`` and ``target_drift`` of the history).
    """
    with torch.no_grad():
        moved = float((new_targets - targets).norm(dim=1).mean())
        drift = float((new_targets - x).norm(dim=1).mean())
    history = train_on_targets(
        ae,
        distributed.own_rows(x),  # data-parallel (CCAE): this process's block of the rows
        distributed.own_rows(new_targets),
        epochs=int(estimator.shift_epochs),
        batch_size=estimator.batch_size,
        lr=estimator.lr,
        seed=seed + stage,
        autocast_dtype=estimator._autocast_dtype(x.device),
        verbose=estimator.verbose,
        desc=f"{label} shift {stage}",
    )
    return history, moved, drift


def _changed(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a != b).float().mean())


# ---------------------------------------------------------------------------------------------
# CCAE (Algorithm 1)
# ---------------------------------------------------------------------------------------------
@register_estimator(cli_name="ccae")
class CCAE(BaseDeepClusterer):
    """Cluster Compacting Autoencoder (Nousi & Tefas; Algorithm 1).

    1. Train a standard autoencoder to convergence (eq. 2; the shared, cached pretraining) and
       run k-means++ on its codes Y. This stage is the paper's "AE" row: its labels are kept in
       ``initial_labels_`` and ``history_[0]``.
    2. Repeat ``n_shifts`` times: shift the reconstruction targets x~ (starting from x~ = x)
       towards the cluster (eq. 7 with W of eq. 9 or 10), then away from the rivals (eq. 11 with
       W of eq. 12 or 13), each applied to the previous targets; retrain the autoencoder from
       its last weights to reconstruct x~ from x (eq. 6); re-run k-means on the new codes from
       the previous centres.

    Every W is applied without building it: cluster means by per-cluster sums, neighbours and
    rivals by an exact chunked kNN search in the code space (means taken over the current
    targets). ``labels_`` is the final k-means assignment; ``predict`` assigns new rows to the
    nearest final centre in the final code space.

    Parameters
    ----------
    n_clusters : int
    shift : {"centre", "centre+rival", "neighbours", "neighbours+rivals", "none"}
        CCAE-1 (eq. 9), CCAE-2 (eqs. 9, 12), CCAE-3 (eq. 10), CCAE-4 (eqs. 10, 13). ``"none"``
        runs the same rounds on unshifted targets: the standard AE trained for as many epochs as
        the CCAEs, as in the paper's Fig. 2a.
    alpha : float in [0, 1]
        Size of the shift towards the cluster (eq. 7).
    beta : float >= 0
        Size of the shift away from the rivals (eq. 11).
    rival : {"nearest", "all"}
        CCAE-2's rival centre: the nearest other k-means centre to the sample's code (Sec. 5.3.1)
        or the mean of all other clusters (eq. 12 as printed).
    n_neighbours : int
        |N_i| of eq. 10 (same-cluster neighbours, the sample excluded).
    n_rivals : int
        |R_i| of eq. 13 (nearest samples of other clusters).
    n_shifts : int
        Shift rounds after the standard AE (4: "five iterations" of Sec. 5.3.1, the first being
        the standard AE).
    shift_epochs : int
        Training epochs after each shift.
    lr : float
        Adam learning rate of the retraining (a fresh optimiser per round).
    autoencoder : "mlp", sequence of int or Autoencoder
        ``"mlp"`` is the paper's D-512-d (``hidden_dims`` then ``embedding_dim``): sigmoid units
        up to and including the code (``embedding_activation``), a linear output.
    hidden_dims : sequence of int
        Hidden widths of the ``"mlp"`` preset.
    embedding_dim : int
        d (10 for MNIST, 32 otherwise in the paper).
    activation, batch_norm, image_shape
        As for every estimator.
    embedding_activation : str
        The code layer's activation: ``"sigmoid"``, Sec. 5.3.1's "D-512-d encoder architecture
        with sigmoid nonlinearities and a symmetrical decoder with a linear final layer" (the one
        linear layer it names is the decoder's last); ``"linear"`` was the default until
        session 29 (docs/METHODS.md, CCAE, "Code layer").
    pretrain_epochs, pretrain_lr, pretrain_loss, pretrain_patience, pretrain_corruption
        The standard AE's training (stage 0); ``pretrain_epochs="auto"`` (default) is 100
        epochs counted in steps on small data (``"steps"``, see :class:`aeclust.AEKMeans`): the
        paper's AE is "trained to convergence", and 100 epochs of ORL's 400 faces at batch 256
        are 200 steps.
    center_inputs : bool or "auto"
        Centre the inputs on the training mean, as :class:`aeclust.AEKMeans`.
    batch_size : int
    n_init : int
        k-means++ restarts on the standard AE's codes (the same call as :class:`AEKMeans`, so
        ``initial_labels_`` equals AE+k-means with the same seed and pretraining).
    keep_snapshots : bool
        Keep the codes of the training data after every stage in ``embedding_snapshots_`` (for
        the paper's Fig. 2, see :func:`aeclust.bench.plots.shift_snapshots_figure`).
    pretrain_cache, device, precision, random_state, verbose
        As for every estimator. Shifts, kNN and k-means run in fp32.

    Attributes
    ----------
    labels_ : ndarray (n_samples,)
    cluster_centers_ : ndarray (n_clusters, embedding_dim)
    autoencoder_ : Autoencoder
    initial_labels_ : ndarray (n_samples,)
        k-means on the standard AE (the "AE" row of Table 2, from the same run).
    initial_centers_ : ndarray (n_clusters, embedding_dim)
    stage_labels_ : ndarray (n_shifts + 1, n_samples)
        Labels after each stage (0: standard AE).
    history_ : list of dict
        One record per stage: ``stage``, ``epochs``, ``loss`` (last epoch), ``target_shift``
        (mean distance the targets moved this round), ``target_drift`` (mean distance of the
        targets from the inputs), ``inertia``, ``kmeans_iter``, ``changed`` (fraction of labels
        changed), ``silhouette`` (on the codes, a 2,000-sample subsample), ``cluster_sizes``.
        No external metric: labels are never seen.
    train_history_ : list of dict
        Per-epoch records of the retraining rounds (with their ``stage``).
    embedding_snapshots_ : tuple of ndarray
        With ``keep_snapshots``: codes (n_samples, d) after each stage.
    n_iter_ : int
        Shift rounds run.
    pretrain_history_ : list of dict
    """

    #: bf16 held CCAE's accuracy within 0.7 ACC points of fp32 seed by seed (0.2 on the means) on
    #: usps and mnist_test (standard AE, CCAE-1, CCAE-2; 3 seeds; docs/METHODS.md "Precision"),
    #: so ``precision="auto"`` uses it.
    auto_bf16: ClassVar[bool] = True

    #: data-parallel with every row in every process (the shift's kNN joins any two codes of a
    #: cluster): each process retrains on its block, the rest is computed alike everywhere
    data_parallel: ClassVar[bool] = True
    replicates_rows: ClassVar[bool] = True

    #: the standard AE is "trained to convergence" (Sec. 5.3.1): pretrain_epochs="auto" counts
    #: its 100 epochs in steps on small data
    pretrain_counts_steps: ClassVar[bool] = True

    params: ClassVar[Params] = declare(
        PRETRAINED_AUTOENCODER_PARAMS,
        SHIFT_PARAMS,
        shift=Param("centre", StrOptions(set(CCAE_SHIFTS))),
        n_neighbours=Param(5, POSITIVE_INT),
        n_rivals=Param(5, POSITIVE_INT),
        hidden_dims=(512,),
        embedding_dim=32,
        activation="sigmoid",
        embedding_activation="sigmoid",
        keep_snapshots=Param(False, "boolean"),
    )

    def _pretrained_autoencoder(
        self, x: torch.Tensor, seed: int, **build_kwargs: Any
    ) -> Autoencoder:
        # The "mlp" preset is the paper's D-512-d; pretrain() and fit() must build the same one.
        build_kwargs.setdefault("hidden_dims", tuple(self.hidden_dims))
        return super()._pretrained_autoencoder(x, seed, **build_kwargs)

    def shift_targets(
        self,
        targets: torch.Tensor,
        codes: torch.Tensor,
        labels: torch.Tensor,
        centres: torch.Tensor,
    ) -> torch.Tensor:
        """One SampleShift of Algorithm 1 (lines 1-4) with this estimator's ``shift``.

        Parameters
        ----------
        targets : Tensor (N, D)
            Current targets x~(t).
        codes : Tensor (N, d)
            Codes of the inputs (where neighbours, rivals and the nearest centre are found).
        labels : LongTensor (N,)
            Current clusters.
        centres : Tensor (K, d)
            Current k-means centres.

        Returns
        -------
        Tensor (N, D)
            x~(t+1): first the intra-cluster shift (eq. 7), then, on its result, the
            inter-cluster shift (eq. 11), as lines 2-3 of the algorithm.
        """
        k = self.n_clusters
        t = targets.float()
        if self.shift == "none":
            return t
        if self.shift.startswith("centre"):
            means, _ = group_means(t, labels, k)
            t = shift_towards(t, means[labels], self.alpha)
            if self.shift == "centre+rival":
                m = rival_means(t, labels, k, rival=self.rival, points=codes, centres=centres)
                t = shift_away(t, m, self.beta)
            return t
        idx, valid = grouped_knn(codes, labels, self.n_neighbours, same=True)
        t = shift_towards(t, neighbour_means(t, idx, valid), self.alpha)
        if self.shift == "neighbours+rivals":
            idx, valid = grouped_knn(codes, labels, self.n_rivals, same=False)
            t = shift_away(t, neighbour_means(t, idx, valid), self.beta)
        return t

    def _record(
        self,
        stage: int,
        epochs: int,
        loss: float,
        codes: torch.Tensor,
        result: Any,
        previous: torch.Tensor | None,
        moved: float,
        drift: float,
        seed: int,
    ) -> dict[str, Any]:
        from aeclust.metrics import silhouette

        labels = result.labels
        sizes = torch.bincount(labels, minlength=self.n_clusters).cpu().tolist()
        try:
            sil = silhouette(
                codes.cpu().numpy(),
                labels.cpu().numpy(),
                sample_size=_SILHOUETTE_SAMPLE,
                random_state=seed,
            )
        except ValueError:  # a single non-empty cluster has no silhouette
            sil = float("nan")
        return {
            "stage": stage,
            "epochs": int(epochs),
            "loss": float(loss),
            "target_shift": float(moved),
            "target_drift": float(drift),
            "inertia": float(result.inertia),
            "kmeans_iter": int(result.n_iter),
            "changed": 0.0 if previous is None else _changed(labels, previous),
            "silhouette": float(sil),
            "cluster_sizes": [int(s) for s in sizes],
        }

    def _fit(self, x: torch.Tensor, seed: int) -> None:
        # Data-parallel, every process holds all rows (the shift's kNN joins any two codes of a
        # cluster): the trainings take this process's block, everything else is computed alike
        # in every process.
        ae = self._pretrained_autoencoder(distributed.own_rows(x), seed)
        with distributed.replicated():
            self._shift_rounds(ae, x, seed)

    def _shift_rounds(self, ae: Autoencoder, x: torch.Tensor, seed: int) -> None:
        """Algorithm 1 after the pretraining: k-means, then ``n_shifts`` rounds of shift,
        retraining and k-means from the previous centres."""
        # Codes and k-means exactly as AEKMeans, so stage 0 is the AE+k-means row of the run.
        codes = batched_apply(ae.encode, x)
        result = kmeans(
            codes, self.n_clusters, n_init=self.n_init, generator=self._generator(seed, x.device)
        )
        pre = getattr(self, "pretrain_history_", None) or []
        records = [
            self._record(
                0,
                len(pre),
                pre[-1]["loss"] if pre else float("nan"),
                codes,
                result,
                None,
                0.0,
                0.0,
                seed,
            )
        ]
        stage_labels = [result.labels]
        snapshots = [codes.cpu().numpy()] if self.keep_snapshots else []
        self.initial_labels_ = result.labels.cpu().numpy().astype(np.int64)
        self.initial_centers_ = result.centers.cpu().numpy()
        targets = x.float().clone()
        train_history: list[dict[str, Any]] = []
        for stage in range(1, int(self.n_shifts) + 1):
            with torch.no_grad():
                new_targets = self.shift_targets(targets, codes, result.labels, result.centers)
            with distributed.sharded_fit():  # the retraining itself: data-parallel
                epochs, moved, drift = retrain_round(
                    self, ae, x, targets, new_targets, stage, seed, "CCAE"
                )
            targets = new_targets
            for rec in epochs:
                train_history.append({"stage": stage, **rec})
            ae.eval()
            codes = batched_apply(ae.encode, x)
            previous = result.labels
            # Algorithm 1, line 13: k-means from the previous centres.
            result = kmeans(codes, self.n_clusters, init=result.centers)
            loss = epochs[-1]["loss"] if epochs else float("nan")
            records.append(
                self._record(stage, len(epochs), loss, codes, result, previous, moved, drift, seed)
            )
            stage_labels.append(result.labels)
            if self.keep_snapshots:
                snapshots.append(codes.cpu().numpy())
        self.autoencoder_ = ae.eval()
        self.cluster_centers_ = result.centers.cpu().numpy()
        self.labels_ = result.labels.cpu().numpy().astype(np.int64)
        self._keep_training_embedding(codes)
        self.stage_labels_ = torch.stack(stage_labels).cpu().numpy().astype(np.int64)
        self.history_ = records
        self.train_history_ = train_history
        if self.keep_snapshots:
            self.embedding_snapshots_ = tuple(snapshots)
        self.n_iter_ = int(self.n_shifts)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        from aeclust.primitives import assign

        centres = torch.from_numpy(self.cluster_centers_).to(x.device)
        return assign(self._embed(x), centres)[0]


# ---------------------------------------------------------------------------------------------
# Class separating autoencoder (Algorithm 2)
# ---------------------------------------------------------------------------------------------
class _TorchEstimatorMixin(DeclaredParams):
    """Validation, device, precision and model files of :class:`BaseDeepClusterer`, for a torch
    estimator that is not a clusterer (the same functions, not copies)."""

    _validate_X = BaseDeepClusterer._validate_X
    _device = BaseDeepClusterer._device
    _autocast_dtype = BaseDeepClusterer._autocast_dtype
    _to_tensor = BaseDeepClusterer._to_tensor
    _fitted_device = BaseDeepClusterer._fitted_device
    save = BaseDeepClusterer.save


@register_estimator
class ClassSeparatingAE(_TorchEstimatorMixin, TransformerMixin, BaseEstimator):
    """Class separating autoencoder, dAE-1 / dAE-2 (Nousi & Tefas; Algorithm 2, Sec. 4.2).

    A supervised dimensionality reduction: the reconstruction targets are moved towards their
    class centre (eq. 7 with W of eq. 14) and, for dAE-2, away from the rival class (eq. 11
    with W of eq. 15), ``n_shifts`` times, each shift applied to the previous targets, and the
    autoencoder is trained to reconstruct the shifted targets from the inputs (eq. 6). The codes
    of new samples (``transform``) then lie near their class, which helps light classifiers
    (nearest centroid, kNN, SVM; Tables 4-5).

    Stage 0 is a standard AE trained for ``epochs`` on the inputs (the "AE" rows of Tables 4-5,
    "same architecture, number of epochs and initialization"); stage i is the network after the
    i-th shift and ``shift_epochs`` more epochs from the previous weights. ``transform(X,
    stage=i)`` gives the codes of any stage (the paper's Figs. 3-4), so one fit yields the AE
    row and the dAE row. The shifts depend only on the labels and the targets (not on the
    network), as in Algorithm 2.

    Parameters
    ----------
    shift : {"class", "class+rival"}
        dAE-1 (eq. 14) or dAE-2 (eqs. 14 and 15).
    alpha : float in [0, 1]
        Shift towards the class centre (eq. 7); the paper notes larger values are safe here.
    beta : float >= 0
        Shift away from the rival class (eq. 11).
    rival : {"nearest", "all"}
        dAE-2's rival: the nearest other class centre to the sample's target (Sec. 5.3.2, "the
        nearest rival-class center") or the mean of all other classes (eq. 15 as printed).
    n_shifts : int
        Shifts after the standard AE (5: "shifted five times in total", Figs. 3-6).
    autoencoder : "mlp", sequence of int or Autoencoder
        ``"mlp"``: D-512-d with sigmoid units up to and including the code
        (``embedding_activation``) and a linear output (the paper's architecture, Sec. 5.3.1).
    hidden_dims : sequence of int
    embedding_dim : int
        d (256 for the 1024-pixel faces, Sec. 5.1).
    activation : str
    embedding_activation : str
        The code layer's activation, ``"sigmoid"`` as :class:`CCAE`'s (the paper's one network
        for both tasks); ``"linear"`` until session 29.
    epochs : int
        Epochs of the standard AE (stage 0).
    shift_epochs : int
        Epochs after each shift.
    batch_size : int
    lr : float
        Adam learning rate (a fresh optimiser per stage).
    device : "auto", "cpu", "cuda"
    precision : "fp32", "bf16", "auto"
        Autocast of the training step; the shifts run in fp32.
    random_state : int or None
    verbose : bool

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
    autoencoder_ : Autoencoder
        The final network (stage ``n_shifts``).
    stage_autoencoders_ : tuple of Autoencoder
        The network after each stage (0: the standard AE).
    n_stages_ : int
        ``n_shifts + 1``.
    history_ : list of dict
        One record per stage: ``stage``, ``epochs``, ``loss`` (last epoch), ``target_shift``,
        ``target_drift``.
    train_history_ : list of dict
        Per-epoch records with their ``stage``.
    n_features_in_ : int
    """

    params: ClassVar[Params] = declare(
        SHIFT_PARAMS,
        "autoencoder",
        "embedding_activation",
        "device",
        "precision",
        "random_state",
        "verbose",
        shift=Param("class", StrOptions(set(DAE_SHIFTS))),
        alpha=0.3,
        n_shifts=5,
        hidden_dims=(512,),
        embedding_dim=256,
        activation="sigmoid",
        embedding_activation="sigmoid",
        epochs=100,
        batch_size=32,
    ).with_positional("shift")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _validate_Xy(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: "
                "it is supervised (fit(X, y) with class labels)"
            )
        X, y = validate_data(
            self,
            X,
            y,
            reset=True,
            dtype=[np.float32, np.float64],
            ensure_min_samples=2,
            ensure_all_finite=True,
        )
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"y has a single class ({classes[0]!r}); class separation needs at least 2"
            )
        self.classes_ = classes
        return np.ascontiguousarray(X, dtype=np.float32), codes.astype(np.int64)

    def shift_targets(self, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One SampleShift of Algorithm 2: eq. 7 with eq. 14, then (dAE-2) eq. 11 with eq. 15.

        Parameters
        ----------
        targets : Tensor (N, D)
            Current targets x~(t).
        labels : LongTensor (N,)
            Class index of each sample (0..n_classes-1).
        """
        k = len(self.classes_)
        t = targets.float()
        means, _ = group_means(t, labels, k)
        t = shift_towards(t, means[labels], self.alpha)
        if self.shift == "class+rival":
            t = shift_away(t, rival_means(t, labels, k, rival=self.rival), self.beta)
        return t

    def fit(self, X: Any, y: Any = None) -> ClassSeparatingAE:
        """Train the standard AE, then shift the targets and retrain ``n_shifts`` times.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
        y : array-like (n_samples,)
            Class labels (at least two classes).

        Returns
        -------
        self
        """
        self._validate_params()  # before any work, as BaseDeepClusterer.fit
        X, codes = self._validate_Xy(X, y)
        device = self._device()
        seed = seed_from(self.random_state)
        with local_seed(seed, device):
            x = self._to_tensor(X, device)
            labels = torch.from_numpy(codes).to(device)
            self._fit(x, labels, seed)
        return self

    def _fit(self, x: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
        spec = self.autoencoder
        if isinstance(spec, nn.Module):
            spec = copy.deepcopy(spec)  # never mutate a module the caller shares
        ae = build_autoencoder(
            spec,
            x.shape[1],
            embedding_dim=self.embedding_dim,
            activation=self.activation,
            embedding_activation=self.embedding_activation,
            hidden_dims=tuple(self.hidden_dims),
        ).to(x.device)
        # Stage 0: the standard AE (pretrain_autoencoder is the same loop, without the cache).
        ae, pre, _, _ = pretrain_autoencoder(
            ae,
            x,
            PretrainConfig(epochs=int(self.epochs), batch_size=self.batch_size, lr=self.lr),
            seed=seed,
            autocast_dtype=self._autocast_dtype(x.device),
            precision=self.precision,
            verbose=self.verbose,
        )
        stages = [copy.deepcopy(ae).eval()]
        records = [
            {
                "stage": 0,
                "epochs": len(pre),
                "loss": float(pre[-1]["loss"]) if pre else float("nan"),
                "target_shift": 0.0,
                "target_drift": 0.0,
            }
        ]
        train_history = [{"stage": 0, **r} for r in pre]
        targets = x.float().clone()
        for stage in range(1, int(self.n_shifts) + 1):
            with torch.no_grad():
                new_targets = self.shift_targets(targets, labels)
            hist, moved, drift = retrain_round(
                self, ae, x, targets, new_targets, stage, seed, "dAE"
            )
            targets = new_targets
            train_history.extend({"stage": stage, **r} for r in hist)
            records.append(
                {
                    "stage": stage,
                    "epochs": len(hist),
                    "loss": float(hist[-1]["loss"]) if hist else float("nan"),
                    "target_shift": moved,
                    "target_drift": drift,
                }
            )
            stages.append(copy.deepcopy(ae).eval())
        self.autoencoder_ = stages[-1]
        self.stage_autoencoders_ = tuple(stages)
        self.n_stages_ = len(stages)
        self.history_ = records
        self.train_history_ = train_history

    def transform(self, X: Any, stage: int | None = None) -> np.ndarray:
        """Codes of ``X`` by the final network, or by the network of ``stage``.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
        stage : int or None
            None: the final network; 0: the standard AE before any shift; i: after shift i
            (negative values count from the end, as for a list).

        Returns
        -------
        ndarray (n_samples, embedding_dim), float32
        """
        check_is_fitted(self)
        if stage is None:
            ae = self.autoencoder_
        else:
            if isinstance(stage, bool) or not isinstance(stage, (int, np.integer)):
                raise TypeError(f"stage must be an int or None, got {type(stage).__name__}")
            if not -self.n_stages_ <= stage < self.n_stages_:
                raise ValueError(
                    f"stage must be in [0, {self.n_stages_ - 1}] (0: the standard AE), got {stage}"
                )
            ae = self.stage_autoencoders_[int(stage)]
        X = self._validate_X(X, reset=False)
        x = self._to_tensor(X, self._fitted_device())
        ae.eval()
        with torch.no_grad():
            return batched_apply(ae.encode, x).cpu().numpy()

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """Fit on ``(X, y)``, then return the final codes of ``X``."""
        return self.fit(X, y).transform(X)
