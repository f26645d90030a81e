"""k-means on the raw data, and k-means on a pretrained autoencoder's embedding (AE+k-means)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from sklearn.cluster import KMeans as SKLearnKMeans

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
from aeclust.primitives import assign, kmeans


@register_estimator(cli_name="kmeans")
class KMeans(BaseDeepClusterer):
    """k-means with k-means++ seeding and ``n_init`` restarts (wraps scikit-learn).

    The shallow baseline of every seed paper ("KM"). ``predict`` assigns each row to the nearest
    centre and ``transform`` returns the distances to the centres, (n_samples, n_clusters),
    exactly as scikit-learn does; ``embed`` returns the rows themselves (the space k-means
    clusters in).

    Parameters
    ----------
    n_clusters : int
        Number of clusters.
    n_init : int
        Restarts; the lowest-inertia solution is kept.
    max_iter : int
        Maximum Lloyd iterations per restart.
    tol : float
        Relative tolerance on centre movement.
    random_state : int or None
        Seed.
    device, precision, verbose
        Accepted for a uniform interface; k-means runs on the CPU in scikit-learn.

    Attributes
    ----------
    labels_ : ndarray (n_samples,)
    cluster_centers_ : ndarray (n_clusters, n_features)
    inertia_ : float
    n_iter_ : int

    References
    ----------
    Lloyd (1982); Arthur and Vassilvitskii (2007), k-means++.
    """

    deep = False

    params: ClassVar[Params] = declare(
        "n_clusters",
        "random_state",
        "precision",
        "verbose",
        n_init=10,
        max_iter=Param(300, POSITIVE_INT),
        tol=Param(0.0001, NON_NEGATIVE_REAL),
        device="cpu",
    )

    def _device(self) -> torch.device:
        return torch.device("cpu")

    def _fit(self, x: torch.Tensor, seed: int) -> None:
        km = SKLearnKMeans(
            n_clusters=self.n_clusters,
            init="k-means++",
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=seed,
        ).fit(x.numpy())
        self.cluster_centers_ = km.cluster_centers_.astype(np.float32)
        self.labels_ = km.labels_.astype(np.int64)
        self.inertia_ = float(km.inertia_)
        self.n_iter_ = int(km.n_iter_)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return assign(x, torch.from_numpy(self.cluster_centers_))[0]

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return x  # k-means clusters the input itself

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        # scikit-learn's KMeans.transform: the Euclidean distance to every centre
        return torch.cdist(x, torch.from_numpy(self.cluster_centers_).to(x.device))


@register_estimator(cli_name="ae-kmeans")
class AEKMeans(BaseDeepClusterer):
    """AE+k-means: pretrain an autoencoder, then run k-means on its embedding.

    The two-stage baseline of every seed paper ("AE+KM", "AEKM"). The network is pretrained by
    :func:`aeclust.pretrain.pretrain_autoencoder` (cached when ``pretrain_cache`` is set, so it is
    shared with the other methods of a benchmark) and k-means runs in torch on the device, with all
    ``n_init`` restarts batched. ``labels_`` are the k-means assignment; ``predict`` embeds new
    rows and assigns them to the nearest centre.

    Parameters
    ----------
    n_clusters : int
        Number of clusters.
    autoencoder : "mlp", "conv", sequence of int or Autoencoder
        Network (see :func:`aeclust.nn.build_autoencoder`); ``"mlp"`` is d-500-500-2000-e.
    embedding_dim : int
        Size of the embedding for the presets.
    activation : str
        Hidden activation for the presets.
    embedding_activation : str
        Activation of the presets' code layer (default ``"linear"``: none).
    batch_norm : bool
        Batch normalisation in the hidden layers of the presets (k-DAE's network uses it).
    image_shape : (C, H, W) or None
        For ``autoencoder="conv"``.
    pretrain_epochs : int, "auto" or "steps"
        Epochs of reconstruction training (0 uses the network as given). ``"auto"`` (default):
        100 epochs at any data size. ``"steps"``: 100 epochs, raised on data sets under 32
        batches an epoch (8,192 rows at batch 256) to the optimisation steps 100 epochs of 32
        batches give, e.g. 1,600 epochs of ORL's 400 rows
        (:func:`aeclust.pretrain.auto_pretrain_epochs`); CT, DKM, k-DAE, DAMIC and CCAE take it
        as their ``"auto"``; this network lost 3 ACC points with it on ORL (docs/METHODS.md,
        "Pretraining length on small data"). An integer is used as given.
    pretrain_lr : float
        Adam learning rate.
    pretrain_loss : {"mse", "bce"}
    pretrain_patience : int or None
        Early stopping of pretraining on the training loss (None: all epochs).
    pretrain_corruption : float
        Masking noise of a denoising autoencoder during pretraining (0: plain autoencoder).
    center_inputs : bool or "auto"
        Remove the training mean from every input before the network (fit, predict,
        transform; stored as ``input_offset_``). ``"auto"`` (default) centres when the mean
        row holds more than half of the data's energy
        (:func:`aeclust.methods.base.mean_image_share`: faces and other dense images, where the
        ReLU autoencoder otherwise stops at the mean image with every code equal), never with
        ``pretrain_loss="bce"``.
    batch_size : int
    n_init : int
        k-means restarts.
    pretrain_cache : bool or path
        Cache the pretrained network on disk (True: the default cache folder).
    device : "auto", "cpu", "cuda"
    precision : "fp32", "bf16", "auto"
        Autocast dtype of the pretraining step; k-means always runs in fp32.
    random_state : int or None
    verbose : bool

    Attributes
    ----------
    labels_ : ndarray (n_samples,)
    cluster_centers_ : ndarray (n_clusters, embedding_dim)
        Centres in the embedding space.
    autoencoder_ : Autoencoder
    pretrain_history_ : list of dict
    inertia_ : float
    n_iter_ : int

    References
    ----------
    Hinton and Salakhutdinov (2006); used as "AE+KM" in Xie et al. (2016, DEC), Opochinsky et al.
    (2020, k-DAE, Table 2) and the CT paper (Tables 2-3).
    """

    params: ClassVar[Params] = declare(
        PRETRAINED_AUTOENCODER_PARAMS,
    )
    data_parallel: ClassVar[bool] = True  # pretraining and k-means reduce across processes
    out_of_core: ClassVar[bool] = True  # every pass: a minibatch or a chunked batched_apply

    def _fit(self, x: torch.Tensor, seed: int) -> None:
        self.autoencoder_ = self._pretrained_autoencoder(x, seed)
        z = self._embed(x)
        result = kmeans(
            z, self.n_clusters, n_init=self.n_init, generator=self._generator(seed, x.device)
        )
        self.cluster_centers_ = result.centers.cpu().numpy()
        self.labels_ = result.labels.cpu().numpy().astype(np.int64)
        self.inertia_ = result.inertia
        self.n_iter_ = result.n_iter
        self._keep_training_embedding(z)  # the degenerate-partition check needs no second pass

    def _labels_of(self, z: torch.Tensor) -> torch.Tensor:
        return assign(z, torch.from_numpy(self.cluster_centers_).to(z.device))[0]

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return self._labels_of(self._embed(x))
