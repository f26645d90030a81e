"""DEC and IDEC: self-training on a Student's t soft assignment, with and without reconstruction.

References
----------
Xie, J., Girshick, R. and Farhadi, A. (2016). Unsupervised deep embedding for clustering
analysis. ICML. (DEC)
Guo, X., Gao, L., Liu, X. and Yin, J. (2017). Improved deep embedded clustering with local
structure preservation. IJCAI. (IDEC)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
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
    PRETRAINED_AUTOENCODER_PARAMS,
    Param,
    Params,
    declare,
)
from aeclust.nn import Autoencoder, encode_decode
from aeclust.primitives import kl_divergence, student_t_assignment, target_distribution
from aeclust.primitives.losses import reconstruction_loss
from aeclust.training import (
    StopTraining,
    Trainer,
    TrainingModule,
    batch_slices,
    batched_apply,
    eval_mode,
)


class DECModule(TrainingModule):
    """DEC's model: the autoencoder, the centres mu (trained), and the target P (eqs. 1-3).

    P is recomputed from the whole data set every ``update_interval`` steps
    (:meth:`before_step`), which also stops training once fewer than ``tol`` of the labels
    changed since the previous refresh. The loss is ``rec_weight * L_r + clu_weight * KL(P||Q)``
    (DEC: 0 and 1; IDEC: 1 and gamma, eq. 7). P, the labels of its refresh and the record of
    refreshes are the module's extra state, so checkpoints carry them.
    """

    def __init__(
        self,
        autoencoder: Autoencoder,
        centers: torch.Tensor,
        data: torch.Tensor,
        *,
        alpha: float,
        update_interval: int,
        tol: float,
        rec_weight: float,
        clu_weight: float,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.centers = nn.Parameter(centers.clone())
        self.data = data  # the whole training set, for the refreshes of P (not state)
        self.alpha = alpha
        self.update_interval = update_interval
        self.tol = tol
        self.rec_weight = rec_weight
        self.clu_weight = clu_weight
        self.autocast_dtype = autocast_dtype
        self.target: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.updates: list[dict[str, float]] = []

    def before_step(self, step: int) -> None:
        if step % self.update_interval:
            return
        with torch.no_grad(), eval_mode(self):
            encode = self.autoencoder.encode
            z = batched_apply(encode, self.data, autocast_dtype=self.autocast_dtype)
            q = student_t_assignment(z, self.centers, self.alpha)
        labels = q.argmax(dim=1)
        self.target = target_distribution(q)
        previous, self.labels = self.labels, labels
        if previous is not None:
            delta = distributed.global_mean(labels != previous)
            self.updates.append({"step": step, "delta_label": delta})
            if delta < self.tol:
                raise StopTraining

    def training_step(self, idx: torch.Tensor, xb: torch.Tensor) -> Any:
        if self.rec_weight > 0:
            zb, x_hat = encode_decode(self.autoencoder, xb)
            rec = reconstruction_loss(x_hat, xb, "mse")
        else:
            zb, rec = self.autoencoder.encode(xb), None
        assert self.target is not None  # refreshed at step 0
        q = student_t_assignment(zb, self.centers, self.alpha)
        kl = kl_divergence(self.target[idx], q)
        if rec is None:
            return self.clu_weight * kl, {"kl": kl}
        return self.rec_weight * rec + self.clu_weight * kl, {"kl": kl, "reconstruction": rec}

    def get_extra_state(self) -> dict[str, Any]:
        # the target P in use and the labels of its refresh, until the next refresh
        return {"p": self.target, "labels": self.labels, "updates": list(self.updates)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        device = self.data.device
        self.target = None if state["p"] is None else state["p"].to(device)
        self.labels = None if state["labels"] is None else state["labels"].to(device)
        self.updates = list(state["updates"])


@register_estimator(cli_name="dec")
class DEC(BaseDeepClusterer):
    """Deep Embedded Clustering (Xie et al., 2016).

    After pretraining the autoencoder and k-means on its embedding, the encoder f and the centres
    mu are trained to minimise KL(P || Q) (eq. 2), where Q is the Student's t soft assignment
    q_ij ∝ (1 + |f(x_i) - mu_j|^2 / alpha)^(-(alpha+1)/2) (eq. 1) and P the sharpened target
    p_ij ∝ q_ij^2 / f_j (eq. 3). P is recomputed on the **whole data set** every
    ``update_interval`` iterations; training stops when fewer than ``tol`` of the labels changed
    between two updates, or after ``max_iter`` iterations. ``labels_`` = argmax_j q_ij.

    Parameters
    ----------
    n_clusters : int
    autoencoder, embedding_dim, activation, embedding_activation, batch_norm, image_shape
        The network (see :class:`aeclust.AEKMeans`); default d-500-500-2000-10 ReLU.
    pretrain_epochs, pretrain_lr, pretrain_loss, pretrain_patience, pretrain_corruption
        Autoencoder pretraining (DEC pretrains a stacked denoising AE; ``pretrain_corruption=0.2``
        reproduces its masking noise end to end); ``pretrain_epochs="auto"`` (default) is 100
        epochs, ``"steps"`` counts them in steps on small data (see :class:`aeclust.AEKMeans`).
    center_inputs : bool or "auto"
        Centre the inputs on the training mean, as :class:`aeclust.AEKMeans`.
    batch_size : int
        Minibatch size (256 in the paper).
    optimizer : {"sgd", "adam", "adamw"}
        Fine-tuning optimiser (the paper: SGD, lr 0.01, momentum 0.9).
    lr, momentum : float
    max_iter : int
        Maximum fine-tuning iterations (minibatch steps).
    update_interval : int
        Iterations between target refreshes (140 for MNIST in DEC's code, 30 for USPS).
    tol : float
        Stop when the fraction of changed labels between refreshes is below ``tol``.
    alpha : float
        Student's t degrees of freedom.
    n_init : int
        k-means restarts for the initial centres.
    pretrain_cache, device, precision, random_state, verbose
        As for every estimator. Under bf16 the network runs in autocast; Q, P and the KL stay
        fp32.

    Attributes
    ----------
    labels_ : ndarray (n_samples,)
    cluster_centers_ : ndarray (n_clusters, embedding_dim)
    autoencoder_ : Autoencoder
    history_ : list of dict
        Per-epoch losses.
    target_updates_ : list of dict
        ``{"step", "delta_label"}`` at every target refresh.
    n_iter_ : int
        Fine-tuning iterations run.
    pretrain_history_ : list of dict
    """

    out_of_core: ClassVar[bool] = True  # every pass: a minibatch or a chunked batched_apply
    #: pretraining, k-means, the target's frequencies f_j and the convergence test reduce
    #: across processes (IDEC too)
    data_parallel: ClassVar[bool] = True

    params: ClassVar[Params] = declare(
        PRETRAINED_AUTOENCODER_PARAMS,
        "momentum",
        optimizer="sgd",
        lr=0.01,
        max_iter=Param(20000, POSITIVE_INT),
        update_interval=Param(140, POSITIVE_INT),
        tol=Param(0.001, FRACTION),
        alpha=Param(1.0, POSITIVE_REAL),
    )

    def _reconstruction_weight(self) -> float:
        # DEC drops the decoder after pretraining.
        return 0.0

    def _clustering_weight(self) -> float:
        return 1.0

    def _soft_assignment(self, x: torch.Tensor) -> torch.Tensor:
        return self._soft_assignment_of(self._embed(x))

    def _soft_assignment_of(self, z: torch.Tensor) -> torch.Tensor:
        return student_t_assignment(
            z, torch.from_numpy(self.cluster_centers_).to(z.device), self.alpha
        )

    def _labels_of(self, z: torch.Tensor) -> torch.Tensor:
        return self._soft_assignment_of(z).argmax(dim=1)

    def _training_module(self, ae: Autoencoder, x: torch.Tensor, seed: int) -> DECModule:
        _, init = self._initial_kmeans(ae, x, seed)
        return DECModule(
            ae,
            init.centers,
            x,
            alpha=self.alpha,
            update_interval=self.update_interval,
            tol=self.tol,
            rec_weight=self._reconstruction_weight(),
            clu_weight=self._clustering_weight(),
            autocast_dtype=self._autocast_dtype(x.device),
        )

    def _training_epochs(self, n_samples: int) -> int:
        # max_iter counts steps; the loop counts epochs (the convergence test stops it sooner)
        n_batches = len(batch_slices(n_samples, self.batch_size))
        return max(1, math.ceil(self.max_iter / n_batches))

    def _fitted_from(self, module: DECModule, trainer: Trainer, x: torch.Tensor) -> None:
        self.cluster_centers_ = module.centers.detach().cpu().numpy()
        self.target_updates_ = module.updates
        self.n_iter_ = trainer.n_steps

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return self._labels_of(self._embed(x))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Soft assignment Q (eq. 1) of each row of ``X`` to each cluster."""
        return self._apply(X, self._soft_assignment)


@register_estimator(cli_name="idec")
class IDEC(DEC):
    """Improved DEC (Guo et al., 2017): DEC's clustering loss plus the reconstruction loss.

    L = L_r + gamma * L_c (eq. 7), with L_r the mean squared reconstruction error of the full
    autoencoder and L_c = KL(P || Q) as in DEC; the decoder is kept, which preserves the local
    structure of the data. gamma = 0.1 and Adam (lr 1e-3) as the paper for MNIST; the authors'
    code uses SGD (lr 0.1, momentum 0.99) for USPS and REUTERS, set in the protocol files.

    Parameters
    ----------
    gamma : float
        Weight of the clustering loss.
    (others)
        As :class:`DEC`.
    """

    params: ClassVar[Params] = DEC.params.with_defaults(optimizer="adam", lr=1e-3).extended(
        gamma=Param(0.1, NON_NEGATIVE_REAL)
    )

    def _reconstruction_weight(self) -> float:
        return 1.0

    def _clustering_weight(self) -> float:
        return self.gamma
