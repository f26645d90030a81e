"""DCN: joint autoencoder training and k-means by alternating stochastic optimisation.

References
----------
Yang, B., Fu, X., Sidiropoulos, N. D. and Hong, M. (2017). Towards K-means-friendly spaces:
simultaneous deep learning and clustering. ICML, PMLR 70:3861-3870.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch.nn import functional as F

from aeclust import distributed
from aeclust._utils import autocast
from aeclust.methods.base import (
    BaseDeepClusterer,
    register_estimator,
)
from aeclust.methods.params import (
    NON_NEGATIVE_REAL,
    PRETRAINED_AUTOENCODER_PARAMS,
    Param,
    Params,
    declare,
)
from aeclust.nn import Autoencoder, encode_decode
from aeclust.primitives import assign
from aeclust.primitives.losses import reconstruction_loss
from aeclust.training import Trainer, TrainingModule, eval_mode


@torch.no_grad()
def dcn_centroid_update(
    centers: torch.Tensor, counts: torch.Tensor, z: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """DCN's centroid step for one minibatch, vectorised.

    The paper processes the batch's points one at a time: ``c_k <- c_k + 1`` then
    ``m_k <- m_k - (1 / c_k) (m_k - f(x_i))`` for the point's cluster k (eq. 8). Points of the same
    cluster applied in sequence with these step sizes give exactly the running mean, whatever
    their order, so the whole batch is one sum per cluster:
    ``m_k <- (c_k m_k + sum_{i in k} f(x_i)) / (c_k + n_k)``, ``c_k <- c_k + n_k``. Clusters with no
    point in the batch are unchanged. Computed in fp32.

    Parameters
    ----------
    centers : Tensor (k, d)
    counts : Tensor (k,)
        Per-cluster counts c_k (>= 0).
    z : Tensor (n, d)
        Embeddings of the batch.
    labels : LongTensor (n,)
        Their (already updated) assignments.

    Returns
    -------
    centers, counts : Tensor (k, d), Tensor (k,)
        New tensors; the inputs are not modified.
    """
    centers = centers.float()
    counts = counts.float()
    z = z.float()
    # A one-hot product rather than scatter/index_add: those use atomics on CUDA, whose float sums
    # change from run to run, and a fit must be reproducible for its seed.
    onehot = F.one_hot(labels, centers.shape[0]).to(z.dtype)
    with torch.autocast(z.device.type, enabled=False):
        sums = onehot.t() @ z
    n_k = onehot.sum(dim=0)
    # data-parallel: the minibatch is every process's rows, so every process updates alike
    distributed.all_reduce_sum(sums)
    distributed.all_reduce_sum(n_k)
    new_counts = counts + n_k
    # A cluster without points keeps its centre bit for bit (and avoids 0/0 when c_k = 0).
    new_centers = torch.where(
        (n_k > 0).unsqueeze(1),
        (counts.unsqueeze(1) * centers + sums) / new_counts.clamp_min(1.0).unsqueeze(1),
        centers,
    )
    return new_centers, new_counts


class DCNModule(TrainingModule):
    """DCN's model: the autoencoder plus its k-means state (centroids M, counts c, assignments
    s) as buffers, which the optimiser does not touch and checkpoints capture.

    One step of Algorithm 1: the network step on L_r + lambda/2 |f(x) - M s|^2 (eq. 5,
    :meth:`training_step`), then, for the same minibatch, the assignment (eq. 6) and centroid
    (eq. 7) updates — run just before the next step and at the end of each epoch.
    """

    all_parameters_used: ClassVar[bool] = True

    def __init__(
        self,
        autoencoder: Autoencoder,
        centers: torch.Tensor,
        assignments: torch.Tensor,
        data: torch.Tensor,
        *,
        initial_count: float,
        lam: float,
        rec_loss: str,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.register_buffer("centers", centers.detach().float().clone())
        self.register_buffer(
            "counts", torch.full((centers.shape[0],), float(initial_count), device=centers.device)
        )
        self.register_buffer("assignments", assignments.detach().long().clone())
        self.data = data  # the training set, to re-encode a minibatch after its step (not state)
        self.half_lam = 0.5 * float(lam)
        self.rec_loss = rec_loss
        self.autocast_dtype = autocast_dtype
        self.pending: torch.Tensor | None = None  # the minibatch whose updates are due
        self.changed = torch.zeros((), device=centers.device)  # assignment changes this epoch

    def training_step(self, idx: torch.Tensor, xb: torch.Tensor) -> Any:
        zb, x_hat = encode_decode(self.autoencoder, xb)
        rec = reconstruction_loss(x_hat, xb, self.rec_loss)
        target = self.centers[self.assignments[idx]]
        clu = (zb.float() - target).pow(2).sum(dim=1).mean()
        self.pending = idx
        return rec + self.half_lam * clu, {"reconstruction": rec, "clustering": clu}

    def before_step(self, step: int) -> None:
        self._update_clusters()

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        self._update_clusters()
        device = self.data.device
        changed = distributed.total(float(self.changed), device=device)
        record["assignment_changes"] = changed / distributed.total(
            self.data.shape[0], device=device
        )
        self.changed.zero_()

    def on_train_end(self) -> None:
        self._update_clusters()

    @torch.no_grad()
    def _update_clusters(self) -> None:
        """Steps 2 and 3 (eqs. 6-7) for the minibatch whose network step was just taken."""
        idx = self.pending
        if idx is None:
            return
        self.pending = None
        with eval_mode(self.autoencoder) as ae, autocast(self.data.device, self.autocast_dtype):
            zb = ae.encode(self.data[idx])
        zb = zb.float()
        labels, _ = assign(zb, self.centers)
        self.changed += (labels != self.assignments[idx]).sum()
        self.assignments[idx] = labels
        centers, counts = dcn_centroid_update(self.centers, self.counts, zb, labels)
        self.centers.copy_(centers)
        self.counts.copy_(counts)


@register_estimator(cli_name="dcn")
class DCN(BaseDeepClusterer):
    """Deep Clustering Network (Yang et al., 2017).

    The autoencoder (f, g) is pretrained, then M (centroids) and s (hard assignments) are
    initialised by k-means on the embedding, and DCN minimises, per sample,

        L_i = l(g(f(x_i)), x_i) + (lam / 2) |f(x_i) - M s_i|^2,     l(x, y) = |x - y|^2,

    by alternating stochastic optimisation, minibatch by minibatch:

    1. one optimiser step on the network with M and s fixed (the batch mean of L_i);
    2. with the updated network (no gradient), s_i = argmin_k |f(x_i) - m_k|^2 for the batch;
    3. centroid update with count-based step sizes, c_k <- c_k + 1,
       m_k <- m_k - (1 / c_k) (m_k - f(x_i)) for each point (eq. 8), computed for the whole batch
       at once as a running mean (:func:`dcn_centroid_update`; no per-sample loop).

    ``labels_`` is the final hard assignment, argmin_k |f(x_i) - m_k|^2 of the final embedding to
    the final M; ``predict`` applies the same rule to new rows.

    Parameters
    ----------
    n_clusters : int
        Number of clusters.
    autoencoder : "mlp", "conv", sequence of int or Autoencoder
        Network (see :func:`aeclust.nn.build_autoencoder`); ``"mlp"`` is d-500-500-2000-e, the
        paper's network for MNIST.
    embedding_dim : int
        Size of the embedding for the presets.
    activation : str
        Hidden activation for the presets.
    embedding_activation : str
        Activation of the presets' code layer (default ``"linear"``: none).
    image_shape : (C, H, W) or None
        For ``autoencoder="conv"``.
    pretrain_epochs : int, "auto" or "steps"
        Epochs of reconstruction pretraining (0 uses the network as given); ``"auto"``
        (default) is 100, ``"steps"`` counts them in steps on small data, as
        :class:`aeclust.AEKMeans`.
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
        Minibatch size of the pretraining and of the alternating optimisation (256 in DCN's code).
    lam : float
        Weight lambda of the k-means term (the paper's objective carries lam / 2).
    epochs : int
        Passes of the alternating optimisation over the data (50 in DCN's code).
    optimizer : {"sgd", "adam", "adamw"}
        Network optimiser of step 1 (the paper: SGD).
    lr : float
        Its learning rate (1e-4 with momentum 0.9 in DCN's code, with the summed squared loss).
    momentum : float
        SGD momentum.
    rec_loss : {"sum", "mean"}
        ``"sum"``: the paper's l(x, y) = |x - y|^2 per sample, averaged over the batch, as in the
        authors' code; ``"mean"``: the mean squared error over all entries (D times smaller, so
        ``lam`` weighs the k-means term D times more).
    initial_count : float
        Starting value of the counts c_k, which sets the first centroid step sizes
        1 / (c_k + 1). The paper leaves it open; the authors' code starts at 100, so the k-means
        centroids are not overwritten by the first few points (0 would make the first assigned
        point replace its centroid).
    n_init : int
        k-means restarts for the initial M and s.
    pretrain_cache : bool or path
        Cache the pretrained network on disk (True: the default cache folder).
    device : "auto", "cpu", "cuda"
    precision : "fp32", "bf16", "auto"
        Autocast dtype of the network; the k-means initialisation, assignments and centroid
        updates always run in fp32.
    random_state : int or None
    verbose : bool

    Attributes
    ----------
    labels_ : ndarray (n_samples,)
        argmin_k of the distance of each final embedding to the final centroids.
    cluster_centers_ : ndarray (n_clusters, embedding_dim)
        Final centroids M in the embedding space.
    cluster_counts_ : ndarray (n_clusters,)
        Final counts c_k (``initial_count`` plus every assignment made during training).
    autoencoder_ : Autoencoder
    history_ : list of dict
        One record per epoch: ``loss``, ``reconstruction`` and ``clustering`` (the batch means of
        l and of |f(x) - M s|^2, unweighted; ``loss = reconstruction + lam / 2 * clustering``),
        and ``assignment_changes`` (fraction of points whose s changed during the epoch).
    n_iter_ : int
        Epochs of alternating optimisation run.
    pretrain_history_ : list of dict

    Notes
    -----
    Choices the paper leaves open, and the authors' code (GitHub boyangumn/DCN-New):

    - In step 2 all points of the batch are assigned with the current M, then M is updated, as
      in the authors' ``batch_km`` (the paper's Algorithm 1 interleaves the two per sample).
    - The embedding of steps 2-3 is computed in eval mode (batch norm running statistics,
      no dropout), like ``labels_``.
    - The data are reshuffled every epoch; the authors' code shuffles once.
    - The authors' code also re-runs k-means warm-started from M every 10 epochs and reports a
      fresh k-means on the final embedding; neither is in the paper, and neither is done here:
      ``labels_`` is DCN's own assignment.
    - Empty clusters are left as they are (the paper has no rule; the code's reseeding is
      commented out).

    References
    ----------
    Yang, B., Fu, X., Sidiropoulos, N. D. and Hong, M. (2017). Towards K-means-friendly spaces:
    simultaneous deep learning and clustering. ICML, PMLR 70:3861-3870.
    """

    out_of_core: ClassVar[bool] = True  # every pass: a minibatch or a chunked batched_apply
    data_parallel: ClassVar[bool] = True  # the centroid updates sum the minibatch over processes

    params: ClassVar[Params] = declare(
        PRETRAINED_AUTOENCODER_PARAMS,
        "lam",
        "epochs",
        "momentum",
        "rec_loss",
        optimizer="sgd",
        lr=0.0001,
        initial_count=Param(100, NON_NEGATIVE_REAL),
    )

    def _training_module(self, ae: Autoencoder, x: torch.Tensor, seed: int) -> DCNModule:
        _, init = self._initial_kmeans(ae, x, seed)
        return DCNModule(
            ae,
            init.centers,
            init.labels,
            x,
            initial_count=self.initial_count,
            lam=self.lam,
            rec_loss=self.rec_loss,
            autocast_dtype=self._autocast_dtype(x.device),
        )

    def _fitted_from(self, module: DCNModule, trainer: Trainer, x: torch.Tensor) -> None:
        self.cluster_centers_ = module.centers.cpu().numpy()
        self.cluster_counts_ = module.counts.cpu().numpy()
        self.n_iter_ = len(self.history_)

    def _labels_of(self, z: torch.Tensor) -> torch.Tensor:
        return assign(z, torch.from_numpy(self.cluster_centers_).to(z.device))[0]

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return self._labels_of(self._embed(x))
