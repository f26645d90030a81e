"""VCC: Very Compact Clusters, end-to-end clustering of an MLP embedding guided by a kNN graph.

References
----------
VCC: Very Compact Clusters (Sec. 3, eqs. 3-15; setting in Sec. 4.1). The extracted text carries
no title page; see ``shared/papers/vcc-very-compact-clusters.txt``. No public code.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from aeclust import distributed
from aeclust.methods.base import (
    BaseDeepClusterer,
    register_estimator,
)
from aeclust.methods.params import (
    FRACTION,
    NON_NEGATIVE_REAL,
    POSITIVE_INT,
    POSITIVE_REAL,
    Param,
    Params,
    declare,
)
from aeclust.metrics import nmi
from aeclust.nn import MLPClassifier
from aeclust.primitives import kl_divergence, kmeans, student_t_assignment, target_distribution
from aeclust.primitives.knn import (
    KNN_METHODS,
    EdgeSampler,
    contraction_rates,
    graph_edges,
    knn,
    sample_non_edges,
    separation_rates,
    softmax_knn_graph,
    symmetrize_graph,
)
from aeclust.primitives.mixture import (
    MixtureParameters,
    fit_gaussian_mixture,
    rebuild_gaussian_mixture,
)
from aeclust.training import TrainingModule, batched_apply, eval_mode, make_optimizer

SOFTMAX_OF = ("distance", "negative_distance")
SEPARATION_LOSSES = ("cross_entropy", "printed", "attraction", "parametric_umap")
SYMMETRIZATIONS = ("sum_product", "fuzzy_union")
LOSS_REDUCTIONS = ("mean", "sum")
ASSIGNMENTS = ("argmax_q", "mixture")
# keep_snapshots="auto" keeps the three embeddings only for 2-D embeddings of at most this many
# points (3 x 20,000 x 2 floats = 480 kB in the model file).
_SNAPSHOT_MAX_POINTS = 20_000
# Distances in the latent space are clamped here before log(1 - exp(-d)), whose gradient is 1/d.
_MIN_DISTANCE = 1e-4


def _latent_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Euclidean d(E_i, E_j) in fp32, clamped away from 0 (sqrt and log(1 - e^-d) are singular).
    return (a.float() - b.float()).pow(2).sum(dim=1).clamp_min(_MIN_DISTANCE**2).sqrt()


def _log_one_minus_similarity(d: torch.Tensor) -> torch.Tensor:
    # log(1 - A_l) = log(1 - exp(-d)), computed as log(-expm1(-d)) for accuracy at small d.
    return torch.log(-torch.expm1(-d))


def _separation_terms(
    d: torch.Tensor, targets: torch.Tensor, form: str, d_negative: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-term L_bps on sampled A⁻ edges at latent distances ``d`` (-log A_l = d).

    ``"cross_entropy"``: eq. 6 without its constant entropy term, targets A_h; ``"printed"``:
    eq. 8, both terms with weight 1; ``"attraction"``: eq. 6 with A_h = 1, i.e. -log A_l;
    ``"parametric_umap"``: -log A_l on each edge and -log(1 - A_l) on the in-batch negative
    pairs at distances ``d_negative`` (both sets of terms, concatenated).
    """
    if form == "attraction":
        return d
    if form == "printed":
        return d - _log_one_minus_similarity(d)
    if form == "parametric_umap":
        assert d_negative is not None
        return torch.cat([d, -_log_one_minus_similarity(d_negative)])
    return targets * d - (1.0 - targets) * _log_one_minus_similarity(d)


def _separation_loss(
    d: torch.Tensor, targets: torch.Tensor, form: str, d_negative: torch.Tensor | None = None
) -> torch.Tensor:
    """L_bps as a batch mean of :func:`_separation_terms`."""
    return _separation_terms(d, targets, form, d_negative).mean()


def _in_batch_negatives(
    heads: torch.Tensor, tails: torch.Tensor, rate: int, generator: torch.Generator
) -> torch.Tensor:
    """Distances of ParametricUMAP's negative pairs: each head with ``rate`` shuffled tails.

    ParametricUMAP (umap-learn 0.5.0-0.5.1, ``umap_loss``) repeats the batch's heads and tails
    ``rate`` times and pairs the heads with a random permutation of the tails; the negatives are
    thus drawn from the endpoints of the sampled (mostly weak, boundary) edges.
    """
    tails_repeated = tails.repeat_interleave(rate, dim=0)
    order = torch.randperm(tails_repeated.shape[0], generator=generator).to(heads.device)
    return _latent_distance(heads.repeat_interleave(rate, dim=0), tails_repeated[order])


class VCCModule(TrainingModule):
    """VCC's model: the encoder E and the learnable centres C (Sec. 3), trained on the kNN graph.

    A "batch" of the training loop is a minibatch of point ids for L_clu; each
    :meth:`training_step` also draws its A⁻ and A⁺ edges and its non-edges (eqs. 7, 9, 11)
    and returns L = L_bps + L_c + L_e + β L_clu (eq. 15). :meth:`on_epoch_start` embeds the
    whole data set, re-initialises C from k-means when NMI(k-means, argmax Q) < ϑ (Sec. 3.3)
    and recomputes P (eq. 14). The edge and k-means generators, whether C was ever set and the
    embedding snapshots (Fig. 2) are its extra state; P is rebuilt at each epoch's start.
    """

    def __init__(
        self,
        encoder: nn.Module,
        centers: torch.Tensor,
        data: torch.Tensor,
        graph: torch.Tensor,
        edges: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        separation: EdgeSampler,
        contraction: EdgeSampler,
        *,
        batch_size: int,
        separation_loss: str,
        negative_sample_rate: int,
        loss_reduction: str,
        use_contraction: bool,
        use_expansion: bool,
        gamma: float,
        nmi_threshold: float,
        n_init: int,
        sampler_generator: torch.Generator,
        kmeans_generator: torch.Generator,
        snapshot_epochs: Sequence[int],
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.centers = nn.Parameter(centers.clone())  # replaced by k-means at the first epoch
        # not state: the data and the graph are rebuilt from the training set
        self.data = data
        self.graph = graph
        self.rows, self.cols, values = edges
        # eq. 6's targets A_h, scaled into (0, 1] (Ã reaches 3 for mutual neighbours)
        self.targets = (values / values.max()).float().to(data.device)
        self.separation = separation
        self.contraction = contraction
        self.batch_size = batch_size
        self.separation_loss = separation_loss
        self.negative_sample_rate = negative_sample_rate
        self.reduce = torch.sum if loss_reduction == "sum" else torch.mean
        self.use_contraction = use_contraction
        self.use_expansion = use_expansion
        self.gamma = gamma
        self.nmi_threshold = nmi_threshold
        self.n_init = n_init
        self.sampler_generator = sampler_generator
        self.kmeans_generator = kmeans_generator
        self.snapshot_epochs = list(snapshot_epochs)
        self.autocast_dtype = autocast_dtype
        self.initialized = False
        self.target: torch.Tensor | None = None
        self.beta = 0.0
        self.nmi_kmeans = 0.0
        self.reinitialized = False
        self.snapshots: list[np.ndarray] = []

    def embed_all(self) -> torch.Tensor:
        """E of the whole training set, in evaluation mode."""
        with eval_mode(self):
            return batched_apply(self.encoder, self.data, autocast_dtype=self.autocast_dtype)

    def on_epoch_start(self, epoch: int) -> None:
        # data-parallel, every process holds all points and computes the same here
        with distributed.replicated():
            self._refresh(epoch)

    def _refresh(self, epoch: int) -> None:
        # Sec. 3.3: k-means centres replace C while VCC's own assignment disagrees with
        # k-means (NMI < ϑ); both label vectors come from the model, never from labels.
        e = self.embed_all()
        km = kmeans(e, self.centers.shape[0], n_init=self.n_init, generator=self.kmeans_generator)
        with torch.no_grad():
            if self.initialized:
                own = student_t_assignment(e, self.centers).argmax(dim=1)
                agreement = nmi(own.cpu().numpy(), km.labels.cpu().numpy())
            else:
                agreement = 0.0  # C has no value yet: take the k-means centres
            # the first epoch always takes them, whatever ϑ (ϑ = 0 would leave C at zero)
            reinit = not self.initialized or agreement < self.nmi_threshold
            if reinit:
                self.centers.copy_(km.centers.to(self.centers.dtype))
                if self.trainer is not None:  # (not when called after a run of 0 epochs)
                    # stale momentum would pull the new centres back towards the old ones
                    self.trainer.optimizer.state.pop(self.centers, None)
            self.initialized = True
            self.target = target_distribution(student_t_assignment(e, self.centers))
        self.beta = self.gamma * epoch
        self.nmi_kmeans = float(agreement)
        self.reinitialized = bool(reinit)

    def training_step(self, idx: torch.Tensor, points: torch.Tensor) -> Any:
        bs, gen, reduce = self.batch_size, self.sampler_generator, self.reduce
        device = points.device
        em = self.separation.sample(bs, gen).to(device)
        parts_idx = [points, self.rows[em], self.cols[em]]
        if self.use_contraction:
            ep = self.contraction.sample(bs, gen).to(device)
            parts_idx += [self.rows[ep], self.cols[ep]]
        if self.use_expansion:
            neg_r, neg_c = sample_non_edges(self.graph, bs, gen)
            parts_idx += [neg_r, neg_c]
        sizes = [t.numel() for t in parts_idx]
        # one forward pass of every point the step needs
        emb = self.encoder(self.data[torch.cat(parts_idx)]).float().split(sizes)
        d_minus = _latent_distance(emb[1], emb[2])
        d_negative = None
        if self.separation_loss == "parametric_umap":
            d_negative = _in_batch_negatives(emb[1], emb[2], self.negative_sample_rate, gen)
        terms = _separation_terms(d_minus, self.targets[em], self.separation_loss, d_negative)
        bps = reduce(terms)
        loss = bps
        parts: dict[str, torch.Tensor] = {"bps": bps}
        k = 3
        if self.use_contraction:
            lc = reduce(_latent_distance(emb[k], emb[k + 1]))  # eq. 10: -log A_l = d
            loss = loss + lc
            parts["contraction"] = lc
            k += 2
        if self.use_expansion:
            if sizes[k] > 0:
                d_non_edges = _latent_distance(emb[k], emb[k + 1])
                le = reduce(-_log_one_minus_similarity(d_non_edges))
            else:  # a complete graph has no non-edges
                le = emb[0].new_zeros(())
            loss = loss + le
            parts["expansion"] = le
        q = student_t_assignment(emb[0], self.centers)
        assert self.target is not None  # computed at the epoch's start
        clu = kl_divergence(self.target[points], q)
        if reduce is torch.sum:
            clu = clu * points.numel()
        parts["clustering"] = clu
        if self.beta > 0:
            loss = loss + self.beta * clu
        return loss, parts

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        record["beta"] = self.beta
        record["nmi_kmeans"] = self.nmi_kmeans
        record["reinitialized"] = self.reinitialized
        if epoch in self.snapshot_epochs:
            self.snapshots.append(self.embed_all().cpu().numpy())

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "sampler_gen": self.sampler_generator.get_state(),
            "kmeans_gen": self.kmeans_generator.get_state(),
            "initialized": bool(self.initialized),
            "snapshots": [torch.from_numpy(s) for s in self.snapshots],
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.sampler_generator.set_state(state["sampler_gen"])
        self.kmeans_generator.set_state(state["kmeans_gen"])
        self.initialized = bool(state["initialized"])
        self.snapshots = [t.numpy() for t in state["snapshots"]]


#: Above this many separation draws per edge and epoch (eq. 7), ``fit`` refuses the graph: its
#: weights span too many orders of magnitude for the sampling to finish (see ``_fit``).
MAX_DRAWS_PER_EDGE = 1000

#: ``distance_scale="auto"`` lowers s in eq. 3 only when an epoch would draw an edge more than
#: this many times on average: about twice the most of the seven shipped data sets (Extended
#: Yale B, 4.6), so that each of them keeps the paper's s = 1.
AUTO_DRAWS_PER_EDGE = 8


def mean_draws_per_edge(graph: torch.Tensor) -> float:
    """ΣR⁻ / |edges| of eq. 7 on the symmetrised graph Ã (inf when a weight underflowed to 0)."""
    values = graph_edges(graph)[2]
    if float(values.min()) <= 0.0:
        return math.inf
    return float(separation_rates(values).sum()) / values.numel()


@register_estimator(cli_name="vcc")
class VCC(BaseDeepClusterer):
    """Very Compact Clusters: an MLP embedding trained on a kNN graph, then self-trained.

    A kNN graph of the inputs (M neighbours) is weighted by the row-wise softmax of the neighbour
    distances (eq. 3) and symmetrised, Ã = A + Aᵀ + A∘Aᵀ (eq. 4). An MLP maps x_i to E_i, with
    latent similarity A_l(i, j) = exp(-|E_i - E_j|) (eq. 5). Each step draws a minibatch of

    * edges from A⁻, edge (i, j) with rate R⁻ = floor(Ã_max / Ã_ij) (eq. 7): the boundary-points
      separation loss, by default -mean(log A_l), eq. 6 with target 1 on every sampled edge
      (``separation_loss``: ``"cross_entropy"`` keeps eq. 6's targets A_h = Ã_ij / Ã_max,
      ``"printed"`` is eq. 8 as printed);
    * edges from A⁺, rate R⁺ = floor(Ã_ij / Ã_mean) (eq. 9): the contraction loss
      L_c = -mean(log A_l) (eq. 10);
    * non-edges B_neg (eq. 11): the expansion loss L_e = -mean(log(1 - A_l)) (eq. 12);
    * points, for the clustering loss L_clu = KL(P || Q) with the Student's t assignment Q to
      learnable centres C (eq. 13) and DEC's target P (eq. 14);

    and minimises L = L_bps + L_c + L_e + β L_clu with β = γ · epoch (eq. 15). At the start of
    every epoch the whole data set is embedded, k-means is run on E, and C is replaced by the
    k-means centres when NMI(k-means labels, argmax Q) < ``nmi_threshold`` (Sec. 3.3); P is then
    recomputed from Q on the whole data set. ``labels_`` = argmax_j Q_ij. There is no decoder and
    no pretraining (the paper trains the MLP from scratch, end to end).

    Parameters
    ----------
    n_clusters : int
        K.
    hidden_dims : sequence of int
        Hidden widths of the MLP (the paper: 128-500-256-64).
    embedding_dim : int
        Dimension of E (2 in the paper's Table 2; Table 4 varies it).
    activation : str
        Hidden activation (not stated in the paper; ReLU).
    n_neighbors : int
        M (10; 70 for REUTERS-10K). Clipped to n_samples - 1 on tiny inputs.
    softmax_of : {"distance", "negative_distance"}
        Eq. 3 is ``softmax(D_i)`` of the distances, read literally by ``"distance"`` (the
        farthest of the M neighbours gets the largest weight); ``"negative_distance"`` normalises
        ``exp(-D_i)`` instead (a similarity). See docs for the measured difference.
    distance_scale : float or "auto"
        s in eq. 3 read as ``softmax(s · D_i)``. The paper has s = 1: raw distances, so the
        graph's spread depends on the input's scale and dimension. ``"auto"`` (default) keeps
        s = 1 unless eq. 7 would then draw an edge more than ``AUTO_DRAWS_PER_EDGE`` (8) times
        an epoch on average; then it takes the largest s < 1 at which it draws 8 (found by
        bisection; the weights, not the data, are rescaled). The seven shipped data sets draw
        2.4-4.6 at s = 1 and keep the paper's graph; raw 128×128 COIL-20 would draw 15.6
        million (weights spanning 5e10) and is refused with s = 1. Not the paper's: ours, for
        data whose distances the literal softmax cannot take.
    separation_loss : {"attraction", "cross_entropy", "printed", "parametric_umap"}
        L_bps on a batch of A⁻ edges. ``"printed"`` is eq. 8 as printed,
        -mean(log A_l + log(1 - A_l)), which pulls every sampled edge to A_l = 1/2.
        ``"cross_entropy"`` keeps eq. 6's targets, -mean(A_h log A_l + (1 - A_h)
        log(1 - A_l)) with A_h = Ã_ij / Ã_max in (0, 1], so weak (boundary) edges are pushed
        apart and strong ones together; it clustered sklearn's digits better than eq. 8.
        ``"attraction"`` (default) is eq. 6 with target A_h = 1 on every sampled edge,
        -mean(log A_l): the sampling rates carry the edge weights and L_e's non-edges carry the
        repulsion, as in UMAP's sampled cross-entropy (the paper's ref. [17]). Not the paper's
        wording, but the only reading whose embedding clustered USPS at least as well as
        dropping L_bps (docs/METHODS.md, VCC). ``"parametric_umap"`` reads eq. 8 as the loss
        of ParametricUMAP (umap-learn 0.5.0-0.5.1), whose edge repetition ``floor(w_max / w)``
        and batch of 1000 eqs. 7 and Sec. 4.1 restate: -log A_l on each sampled edge and
        -log(1 - A_l) on ``negative_sample_rate`` in-batch negatives per edge (each head with
        shuffled tails of the batch), one mean over all terms.
    negative_sample_rate : int
        In-batch negatives per A⁻ edge for ``separation_loss="parametric_umap"`` (5,
        ParametricUMAP's default); unused otherwise.
    symmetrization : {"sum_product", "fuzzy_union"}
        Eq. 4 as printed, Ã = A + Aᵀ + A∘Aᵀ (default), or UMAP's fuzzy union A + Aᵀ - A∘Aᵀ.
    loss_reduction : {"mean", "sum"}
        Each loss term averaged over its batch (default; the paper's Fig. 3 shows values of
        0.07-0.25) or summed over it, as eqs. 8, 10 and 12 are written. With ``"sum"`` the
        same lr takes steps ``batch_size`` times larger.
    knn_method : {"auto", "exact", "faiss", "pynndescent"}
        How the kNN graph is built (:func:`aeclust.primitives.knn`).
    epochs : int
        Training epochs (not stated in the paper; 30, the length of its Fig. 3).
    steps_per_epoch : int, optional
        Minibatch steps per epoch. Default: |A⁻| / batch_size, i.e. every edge is drawn R⁻ times
        per epoch in expectation, as eq. 7 defines the rates "per epoch".
    batch_size : int
        Edges drawn from each of A⁻, A⁺ and B_neg, and points for L_clu, per step (1000).
    lr, momentum, weight_decay : float
        SGD (0.01, 0.9, 5e-4 in the paper).
    gamma : float
        β = gamma · epoch (epochs counted from 0, so the first epoch has no clustering loss).
    nmi_threshold : float
        ϑ of the k-means re-initialisation heuristic (0.8).
    contraction, expansion : bool
        Use L_c / L_e (the ablation of the paper's Table 3 turns them off).
    n_init : int
        k-means restarts for the centres (and EM starts of the mixture, ``assignment="mixture"``).
    assignment : {"argmax_q", "mixture"}
        How the clusters are read off the trained embedding. ``"argmax_q"`` (default) is the
        paper's argmax_j Q_ij (Sec. 3.3). ``"mixture"`` is **not the paper's**: a Gaussian
        mixture with full covariances fitted on E of the training data (``n_init`` EM starts,
        the most likely kept; no labels), whose components give ``labels_``, ``predict`` and
        ``predict_proba``. VCC's clusters on E are often elongated rather than round, which
        argmax Q (round, Student's t) splits; see docs/METHODS.md (VCC) for the measured rows.
        Training is the same for both.
    keep_snapshots : bool or "auto"
        Keep the full embedding after the first, middle and last epochs (the paper's Fig. 2);
        ``"auto"``: only for a 2-D embedding of at most 20,000 points.
    device, precision, random_state, verbose
        As for every estimator. Under bf16 the MLP runs in autocast; distances, similarities, Q,
        P and the KL stay fp32.

    Attributes
    ----------
    labels_ : ndarray (n_samples,)
    cluster_centers_ : ndarray (n_clusters, embedding_dim)
    encoder_ : MLPClassifier
        The trained MLP (input -> E).
    history_ : list of dict
        Per epoch: the losses (``bps``, ``contraction``, ``expansion``, ``clustering``), ``beta``,
        ``nmi_kmeans`` (NMI between k-means on E and argmax Q at the epoch start) and
        ``reinitialized`` (whether C was replaced by the k-means centres).
    n_edges_ : int
        Undirected edges of Ã.
    n_neighbors_ : int
        M actually used.
    distance_scale_ : float
        s actually used in eq. 3 (1.0 unless ``distance_scale="auto"`` had to lower it).
    steps_per_epoch_ : int
    n_iter_ : int
        Optimisation steps run.
    mixture_weights_, mixture_means_, mixture_covariances_ : ndarray
        The Gaussian mixture on E (``assignment="mixture"`` only).
    snapshot_epochs_ : list of int
        Epochs whose embedding is in ``embedding_snapshots_`` (empty when not kept).
    embedding_snapshots_ : ndarray (n_snapshots, n_samples, embedding_dim)
        The embedding of the training data after each of ``snapshot_epochs_``.
    """

    #: data-parallel with every point in every process (a step's edges join any two points):
    #: each process takes its share of a step's points and edges; the gradients are averaged
    data_parallel: ClassVar[bool] = True
    replicates_rows: ClassVar[bool] = True

    params: ClassVar[Params] = declare(
        "n_clusters",
        "activation",
        "momentum",
        "device",
        "precision",
        "random_state",
        "verbose",
        hidden_dims=(128, 500, 256, 64),
        embedding_dim=2,
        n_neighbors=Param(10, POSITIVE_INT),
        softmax_of=Param("distance", StrOptions(set(SOFTMAX_OF))),
        distance_scale=Param("auto", POSITIVE_REAL, StrOptions({"auto"})),
        separation_loss=Param("attraction", StrOptions(set(SEPARATION_LOSSES))),
        negative_sample_rate=Param(5, POSITIVE_INT),
        symmetrization=Param("sum_product", StrOptions(set(SYMMETRIZATIONS))),
        loss_reduction=Param("mean", StrOptions(set(LOSS_REDUCTIONS))),
        knn_method=Param("auto", StrOptions(set(KNN_METHODS))),
        epochs=30,
        steps_per_epoch=Param(None, None, POSITIVE_INT),
        batch_size=1000,
        lr=0.01,
        weight_decay=Param(0.0005, NON_NEGATIVE_REAL),
        gamma=Param(0.01, NON_NEGATIVE_REAL),
        nmi_threshold=Param(0.8, FRACTION),
        contraction=Param(True, "boolean"),
        expansion=Param(True, "boolean"),
        n_init=10,
        assignment=Param("argmax_q", StrOptions(set(ASSIGNMENTS))),
        keep_snapshots=Param("auto", "boolean", StrOptions({"auto"})),
    )

    # -- graph ----------------------------------------------------------------------------------
    def _graph(self, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, int]:
        m = min(int(self.n_neighbors), x.shape[0] - 1)
        dist, idx = knn(x, m, method=self.knn_method, seed=seed)
        sign = 1.0 if self.softmax_of == "distance" else -1.0
        union = self.symmetrization == "fuzzy_union"

        def graph(scale: float) -> torch.Tensor:
            # eq. 3 on s·D, then eq. 4; s = 1 is the paper's (and the same bits as before s)
            d = dist if scale == 1.0 else dist * scale
            return symmetrize_graph(softmax_knn_graph(d, idx, sign=sign), fuzzy_union=union)

        if self.distance_scale != "auto":
            self.distance_scale_ = float(self.distance_scale)
            return graph(self.distance_scale_), m
        self.distance_scale_, literal = 1.0, graph(1.0)
        draws = mean_draws_per_edge(literal)
        if draws <= AUTO_DRAWS_PER_EDGE:
            return literal, m
        # the draws grow with s (a wider softmax); the largest s whose epoch draws at most the
        # cap: s divided by 8 until it does, then halved intervals (s -> 0 gives uniform rows,
        # one or two draws per edge, so the search always ends feasible)
        low, high = 0.0, 1.0
        for _ in range(40):
            mid = (low + high) / 2 if low > 0 else high / 8
            if mean_draws_per_edge(graph(mid)) <= AUTO_DRAWS_PER_EDGE:
                low = mid
            else:
                high = mid
        self.distance_scale_ = low
        why = (
            f"would draw each edge {draws:,.0f} times an epoch on average (eq. 7)"
            if math.isfinite(draws)
            else "underflows to 0 on some edges (eq. 7 would draw them infinitely often)"
        )
        warnings.warn(
            f"VCC: eq. 3's softmax of the raw neighbour distances {why}; distances "
            f"are scaled by {low:.3g} so that it draws at most {AUTO_DRAWS_PER_EDGE} "
            "(distance_scale='auto'; pass distance_scale=1.0 for the paper's graph)",
            UserWarning,
            stacklevel=4,
        )
        return graph(low), m

    @staticmethod
    def _refuse_graph(values: torch.Tensor, draws: str) -> None:
        spread = float(values.max()) / float(values.min()) if float(values.min()) > 0 else math.inf
        raise ValueError(
            f"VCC: the kNN graph's weights (eq. 3, a softmax of neighbour distances) span "
            f"{spread:.3g} (max/min) on this data, so eq. 7 would draw {draws} edges an epoch "
            f"({values.numel():,} edges); the distances are too large for the softmax. Reduce the "
            "input's dimension or scale (downsample the images, PCA), let distance_scale='auto' "
            "scale the distances" + (", or set steps_per_epoch" if math.isfinite(spread) else "")
        )

    # -- fit ------------------------------------------------------------------------------------
    def _make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        return make_optimizer(
            params, "sgd", self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )

    def _fit(self, x: torch.Tensor, seed: int) -> None:
        device = x.device
        n = x.shape[0]
        graph, self.n_neighbors_ = self._graph(x, seed)
        rows, cols, values = graph_edges(graph)
        smallest = float(values.min())
        if smallest <= 0.0:  # weights underflowed to 0: the spread below is infinite
            self._refuse_graph(values, "no finite number of")
        separation = EdgeSampler(separation_rates(values))
        if not self.steps_per_epoch and separation.total > MAX_DRAWS_PER_EDGE * values.numel():
            # eq. 7's rates follow the spread of the weights; on the benchmark sets an epoch draws
            # each edge 2-4 times, while raw 128x128 images give a spread of 5e10 and 1.4e11 draws
            self._refuse_graph(values, f"{separation.total:,}")
        plus_rates = contraction_rates(values)
        # R⁺ is 0 for every edge only if all weights are equal; then every edge is "strong".
        contraction = EdgeSampler(plus_rates if int(plus_rates.sum()) > 0 else plus_rates + 1)
        self.n_edges_ = int(values.numel())
        bs = int(self.batch_size)
        steps = self.steps_per_epoch or max(1, math.ceil(separation.total / bs))
        self.steps_per_epoch_ = int(steps)
        # data-parallel (every process holds all points): each process draws its share of a
        # step's edges and points with its own generator; the gradients are averaged
        rank, world = distributed.world() if distributed.sharded() else (0, 1)

        dims = [x.shape[1], *(int(h) for h in self.hidden_dims), int(self.embedding_dim)]
        encoder = MLPClassifier(dims, activation=self.activation, batch_norm=False).to(device)
        keep = self.keep_snapshots
        if keep == "auto":
            keep = int(self.embedding_dim) == 2 and n <= _SNAPSHOT_MAX_POINTS
        snapshot_epochs = sorted({0, (self.epochs - 1) // 2, self.epochs - 1}) if keep else []
        snapshot_epochs = [e for e in snapshot_epochs if e >= 0]
        module = VCCModule(
            encoder,
            torch.zeros(self.n_clusters, self.embedding_dim, device=device),
            x,
            graph,
            (rows, cols, values),
            separation,
            contraction,
            batch_size=math.ceil(bs / world),
            separation_loss=self.separation_loss,
            negative_sample_rate=int(self.negative_sample_rate),
            loss_reduction=self.loss_reduction,
            use_contraction=self.contraction,
            use_expansion=self.expansion,
            gamma=self.gamma,
            nmi_threshold=self.nmi_threshold,
            n_init=self.n_init,
            sampler_generator=self._generator(seed + 1 + 7919 * rank, torch.device("cpu")),
            kmeans_generator=self._generator(seed + 2, device),
            snapshot_epochs=snapshot_epochs,
            autocast_dtype=self._autocast_dtype(device),
        )
        # One Trainer epoch = `steps` minibatches of points for L_clu (each point about equally
        # often); the edges of each step are drawn inside training_step.
        point_ids = torch.arange(steps * bs, device=device) % n
        trainer = self._trainer(module, seed, epochs=self.epochs)
        self.history_ = trainer.fit([distributed.own_rows(point_ids)])
        if not module.initialized:  # epochs=0: centres from k-means on the untrained MLP
            module.on_epoch_start(0)
        self.encoder_ = encoder.eval()
        self.cluster_centers_ = module.centers.detach().cpu().numpy()
        self.n_iter_ = trainer.n_steps
        snapshots = module.snapshots
        self.snapshot_epochs_ = snapshot_epochs[: len(snapshots)]
        self.embedding_snapshots_ = (
            np.stack(snapshots)
            if snapshots
            else np.zeros((0, n, int(self.embedding_dim)), dtype=np.float32)
        )
        self._mixture = None
        if self.assignment == "mixture":
            # one pass of the encoder serves both the mixture's fit and the training labels
            embedding = self._mixture_input(x)
            self._mixture, params = fit_gaussian_mixture(
                embedding, self.n_clusters, n_init=self.n_init, seed=seed
            )
            self.mixture_weights_ = params.weights
            self.mixture_means_ = params.means
            self.mixture_covariances_ = params.covariances
            self.labels_ = self._mixture.predict(embedding).astype(np.int64)
        else:
            self.labels_ = self._predict(x).cpu().numpy().astype(np.int64)

    def _mixture_input(self, x: torch.Tensor) -> np.ndarray:
        # the mixture is fitted and evaluated in float64 (its saved parameters rebuild it exactly)
        return self._embed(x).float().cpu().numpy().astype(np.float64)

    def _fitted_mixture(self) -> Any:
        # rebuilt from the saved arrays after aeclust.load (the predictor itself is not saved)
        if getattr(self, "_mixture", None) is None:
            self._mixture = rebuild_gaussian_mixture(
                MixtureParameters(
                    self.mixture_weights_, self.mixture_means_, self.mixture_covariances_, "full"
                )
            )
        return self._mixture

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_mixture", None)
        return state

    # -- inference ------------------------------------------------------------------------------
    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        self.encoder_.eval()
        return batched_apply(self.encoder_, x, autocast_dtype=self._autocast_dtype(x.device))

    def _soft_assignment(self, x: torch.Tensor) -> torch.Tensor:
        centers = torch.from_numpy(self.cluster_centers_).to(x.device)
        return student_t_assignment(self._embed(x), centers)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.assignment == "mixture":
            labels = self._fitted_mixture().predict(self._mixture_input(x))
            return torch.from_numpy(labels.astype(np.int64))
        return self._soft_assignment(x).argmax(dim=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Soft assignment of each row of ``X`` to each cluster, shape (n, K).

        Q of eq. 13; with ``assignment="mixture"``, the mixture's responsibilities.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        with torch.no_grad():
            x = self._to_tensor(X, self._fitted_device())
            if self.assignment == "mixture":
                return self._fitted_mixture().predict_proba(self._mixture_input(x))
            return self._soft_assignment(x).cpu().numpy()
