"""ICAE: image clustering autoencoder with predefined evenly-distributed class centroids and MMD.

Zhu, Q. and Wang, Z. An Image Clustering Auto-Encoder Based on Predefined Evenly-Distributed
Class Centroids and MMD Distance. Shanghai University; code github.com/zyWang-Power/Clustering.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from aeclust import distributed
from aeclust.augment import random_affine
from aeclust.methods.base import (
    BaseDeepClusterer,
    register_estimator,
)
from aeclust.methods.params import (
    FRACTION,
    NON_NEGATIVE_INT,
    NON_NEGATIVE_REAL,
    POSITIVE_INT,
    POSITIVE_REAL,
    Param,
    Params,
    SequenceOf,
    declare,
)
from aeclust.nn import Autoencoder, ResNetAutoencoder
from aeclust.primitives import mmd, pedcc
from aeclust.training import TrainingModule, batched_apply

SOBEL_LOSSES = ("mse", "power")

_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def sobel_responses(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel responses G_x * I, G_y * I of (N, C, H, W) images, per
    channel, zero-padded to the same size, in fp32."""
    gx = torch.tensor(_SOBEL_X, device=images.device)
    kernel = torch.stack([gx, gx.T])[:, None]  # (2, 1, 3, 3): G_x, G_y
    n, c, h, w = images.shape
    out = F.conv2d(images.float().reshape(n * c, 1, h, w), kernel, padding=1)
    out = out.reshape(n, c, 2, h, w)
    return out[:, :, 0], out[:, :, 1]


def sobel_loss(x: torch.Tensor, y: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """ICAE's Sobel smooth loss between images ``x`` and their reconstructions ``y``.

    ``"mse"`` (the authors' code): MSE(G_x * x, G_x * y) + MSE(G_y * x, G_y * y).
    ``"power"`` (the paper's Eq. 6): mean over images of
    |MS(G_x * y) + MS(G_y * y) - MS(G_x * x) - MS(G_y * x)|, MS = mean square: only the edges'
    average power has to match, not their positions.
    """
    with torch.autocast(x.device.type, enabled=False):
        xx, xy = sobel_responses(x)
        yx, yy = sobel_responses(y)
        if kind == "mse":
            return F.mse_loss(yx, xx) + F.mse_loss(yy, xy)
        if kind == "power":

            def ms(t: torch.Tensor) -> torch.Tensor:
                return t.square().flatten(1).mean(dim=1)

            return (ms(yx) + ms(yy) - ms(xx) - ms(xy)).abs().mean()
    raise ValueError(f"unknown sobel_loss {kind!r}; valid: {', '.join(map(repr, SOBEL_LOSSES))}")


def normalise_pixels(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels to [-1, 1], the paper's input (torchvision ``Normalize(0.5, 0.5)``)."""
    return (x - 0.5) / 0.5


class ICAEModule(TrainingModule):
    """ICAE's model: the autoencoder and the fixed PEDCC centroids (a buffer, never trained).

    :meth:`training_step` is Eq. 7, a·α²·Loss1 + b·Loss2 + c·Loss3 + d·Loss4: the chain of
    squared distances between the unit codes of an image and its ``n_views`` augmented views
    (Loss1, at the radius α of the paper's codes), the MMD between all codes and the tiled
    centroids (Loss2), the reconstruction (Loss3) and the Sobel loss of the reconstruction of
    the noisy code z + β·n (Loss4, Eqs. 4-6). The generator of the augmentations and the latent
    noise is its extra state, so a resumed run draws the same ones.
    """

    centers: torch.Tensor

    def __init__(
        self,
        autoencoder: nn.Module,
        centers: torch.Tensor,
        *,
        image_shape: tuple[int, int, int],
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
        n_views: int,
        weights: tuple[float, float, float, float],
        latent_radius: float,
        latent_noise: float,
        mmd_kernels: int,
        sobel_loss: str,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.register_buffer("centers", centers)
        self.image_shape = image_shape
        self.augment = augment
        self.n_views = n_views if augment is not None else 0
        aug, mmd_w, rec, sobel = weights
        # Loss1 at the paper's scale (codes of norm alpha): alpha^2 times the unit-norm value.
        self.weights = (aug * float(latent_radius) ** 2, mmd_w, rec, sobel)
        self.latent_noise = latent_noise
        self.mmd_kernels = mmd_kernels
        self.sobel_loss = sobel_loss
        self.generator = generator

    def training_step(self, idx: torch.Tensor, xb: torch.Tensor) -> Any:
        a, b, c, d = self.weights
        n_views, gen, ae = self.n_views, self.generator, self.autoencoder
        m = xb.shape[0]
        inputs = xb
        if n_views:
            assert self.augment is not None
            inputs = torch.cat([xb, self.augment(xb, gen)])
        z_all = F.normalize(ae.encode(normalise_pixels(inputs)).float(), dim=1)
        z = z_all[:m]
        parts: dict[str, torch.Tensor] = {}
        zero = z.new_zeros(())
        if n_views:
            chain = z_all.reshape(n_views + 1, m, -1)
            aug = (chain[1:] - chain[:-1]).square().sum(dim=2).sum(dim=0).mean()
        else:
            aug = zero
        parts["augmentation"] = aug
        k = self.centers.shape[0]
        # data-parallel: the MMD of every process's codes (the global batch)
        z_batch = distributed.gather_rows_with_grad(z_all) if b > 0 else z_all
        targets = self.centers.repeat(-(-z_batch.shape[0] // k), 1)[: z_batch.shape[0]]
        clu = mmd(z_batch, targets, kernel_num=self.mmd_kernels) if b > 0 else zero
        parts["mmd"] = clu
        codes = []
        if c > 0:
            codes.append(z)
        if d > 0:
            noise = torch.randn(z.shape, generator=gen, device=z.device)
            codes.append(z + self.latent_noise * noise)
        rec = sob = zero
        if codes:
            target = normalise_pixels(xb)
            out = ae.decode(torch.cat(codes)).float()
            if c > 0:
                rec = F.mse_loss(out[:m], target)
            if d > 0:
                imgs = out[-m:].reshape(m, *self.image_shape)
                sob = sobel_loss(target.reshape(m, *self.image_shape), imgs, self.sobel_loss)
        parts["reconstruction"] = rec
        parts["sobel"] = sob
        loss = a * aug + b * clu + c * rec + d * sob
        return loss, parts

    def get_extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


@register_estimator(cli_name="icae")
class ICAE(BaseDeepClusterer):
    """Image clustering autoencoder with predefined evenly-distributed class centroids (Zhu and
    Wang).

    k unit vectors u_1..u_k spread evenly on the latent hypersphere (PEDCC,
    :func:`aeclust.primitives.pedcc`) are fixed before training and never change. A ResNet
    convolutional autoencoder (Table 1) with L2-normalised latent z = E(x) is trained end to end,
    without pretraining, on (Algorithm 1, Eq. 7)

        Loss = a * Loss1 + b * Loss2 + c * Loss3 + d * Loss4
        Loss1 = mean_i sum_v |z_i^(v) - z_i^(v-1)|^2                 (augmentation, Eqs. 1, 8)
        Loss2 = MMD^2([Z, Z^(1), ..., Z^(V)], PEDCC)                  (clustering, Eq. 2)
        Loss3 = MSE(x, D(z))                                           (reconstruction, Eq. 3)
        Loss4 = Sobel(x, D(z + beta * n)),  n ~ N(0, I)                (Eqs. 4-6)

    where z^(v) = E(T_v(x)) for V random geometric augmentations T_v (rotation, shift, scale,
    shear, optional flips) of each image, and (a, b, c, d) = (0.01, 1, 1, 0.05) (Table 3). The
    MMD pulls the distribution of all the batch's codes towards the k Dirac masses at the
    centroids (uniform between classes); the cluster of x is its nearest centroid by cosine,
    argmax_k z . u_k (Sec. 4.2), which is ``labels_`` and ``predict``. :meth:`generate`
    decodes the centroids (plus a little noise) into images of each cluster (Fig. 3).

    Parameters
    ----------
    n_clusters : int
        Number of clusters k (= PEDCC centroids).
    autoencoder : "resnet" or Autoencoder
        ``"resnet"``: :class:`aeclust.nn.ResNetAutoencoder` with ``channels``, ``embedding_dim``
        and ``input_size``; or a module with ``encode``/``decode`` (its codes are
        L2-normalised here).
    embedding_dim : int
        Latent size d (60 for MNIST, 100 for Fashion-MNIST, 160 for COIL20 in the paper).
    image_shape : (C, H, W) or None
        Shape of one image. None: square single-channel images when n_features is a perfect
        square, otherwise the features are zero-padded to the next square (so that any
        tabular data can be fed, e.g. scikit-learn's checks).
    channels : sequence of int
        Widths of the ResNet (Table 1: 32, 64, 128, 256, 512 on 32x32 inputs).
    input_size : int or None
        Resize images to input_size x input_size inside the network (e.g. COIL20's 128x128 to
        32 on a CPU); None keeps the resolution.
    epochs : int
        Passes over the data (400 in the paper); the last epoch's network is kept.
    batch_size : int
        Images per minibatch (100 in the authors' code); each image brings ``n_views``
        augmented copies.
    optimizer : {"adam", "adamw", "sgd"}
        Optimiser (the paper: Adam).
    lr : float
        Learning rate (1e-3 in the paper).
    aug_weight, mmd_weight, rec_weight, sobel_weight : float
        a, b, c, d of Eq. 7 (Table 3: 0.01, 1, 1, 0.05).
    latent_noise : float
        beta: the std of the Gaussian noise added, per coordinate, to the unit-norm codes fed to
        the decoder for the Sobel term (0.05). 0 disables the noise.
    sobel_loss : {"mse", "power"}
        The Sobel term as in the authors' code (MSE between Sobel responses) or as in the
        paper's Eq. 6 (difference of the edges' mean powers).
    augment : bool
        Use augmented views (Loss1 and extra MMD points); False is Table 4's ablation: one view,
        no Loss1.
    n_views : int
        Augmented views per image V (Eq. 8 and the authors' June-2019 code: 4; their current
        code: 5; Algorithm 1: 1).
    rotation : float
        Rotation range in degrees, uniform in [-rotation, rotation] (code: 10).
    shift : float
        Translation range as a fraction of the image size, each axis (the authors' code: 0.1,
        vertical only).
    scale : (low, high)
        Zoom range (code: 0.9 to 1.1).
    shear : (low, high)
        Horizontal shear range in degrees (the authors' code: -10 to 5 in torchvision's sign
        convention, where a positive shear moves the lower rows left; ours moves them right, so
        the same numbers draw the mirrored range).
    hflip, vflip : bool
        Random left-right / up-down mirroring (the paper adds flips for Fashion and COIL20).
    pedcc_iter : int
        Iterations of the PEDCC simulation (200 in the authors' code).
    mmd_kernels : int
        Number of Gaussian kernels of the MMD (5, bandwidths mean-distance x 2^-2..2^2).
    latent_radius : float or None
        The radius alpha of the paper's PEDCC sphere, at which Loss1 is measured (None:
        sqrt(embedding_dim), as in the authors' code). Codes are kept at unit norm; Loss1 is
        multiplied by alpha^2 so that a = 0.01 weighs what it weighs in the paper. Nothing
        else depends on it (the MMD's bandwidths follow the data's scale).
    device : "auto", "cpu", "cuda"
    precision : "fp32", "bf16", "auto"
        Autocast dtype of the network; the MMD, the PEDCC, the cosines and the Sobel term run in
        fp32.
    random_state : int or None
        Seeds the network, the PEDCC, the augmentations and the noise.
    verbose : bool

    Attributes
    ----------
    labels_ : ndarray (n_samples,)
        Nearest centroid by cosine.
    cluster_centers_ : ndarray (n_clusters, embedding_dim)
        The PEDCC centroids (unit vectors).
    pedcc_min_angle_ : float
        Their smallest pairwise angle in degrees (the regular simplex's arccos(-1/(k-1)) when
        k <= d + 1).
    autoencoder_ : Autoencoder
    image_shape_ : tuple of int
        The image shape the network sees (after the padding of non-image data).
    pad_features_ : int
        Zero features appended to each row to reach ``image_shape_`` (0 for images).
    history_ : list of dict
        Per epoch: ``loss`` and the unweighted ``augmentation``, ``mmd``, ``reconstruction`` and
        ``sobel`` terms.
    n_iter_ : int
        Epochs run.

    Notes
    -----
    Choices the paper leaves open (see docs/METHODS.md, ICAE):

    - Scale: codes and centroids have unit norm here, as in the authors' current code (their
      June-2019 upload scaled the centroids to norm alpha = sqrt(d) and did not normalise the
      codes). Loss1 is Eq. 1 read literally, the squared distance summed over the coordinates,
      measured at the paper's radius alpha (``latent_radius``): alpha^2 |z - z'|^2 for unit
      codes. The noise beta * N(0, I) at unit norm is the paper's alpha * beta * n0 (Eq. 4) at
      radius alpha (the June-2019 code's 0.05 sqrt(d) N(0, I); the current code adds
      0.05 N(0, I) / sqrt(d)). The codes' own weights differ from Table 3 (June-2019: 5 x the
      per-coordinate MSE for the augmentation term, 5 x the MMD; current: 0.01 x that MSE,
      1 x the MMD on the clean codes only); Table 3's are the defaults.
    - Inputs in [0, 1] are mapped to [-1, 1] (the paper's normalisation) for the network and
      the losses; augmentations act on the [0, 1] images, so that the pixels entering the frame
      are background (0).
    - The V + 1 views go through the encoder as one batch, and the clean and noisy codes through
      the decoder as one batch (batch-norm statistics over the joint batch; the code makes
      separate calls).
    - The MMD's targets are the k centroids tiled to the batch's number of codes, as in the
      code (a balanced-classes prior); the bandwidths come from the joint set's mean pairwise
      squared distance, detached.
    - No epoch is chosen by looking at labels (the authors' evaluation picked the best epoch by
      test accuracy): the last epoch is reported.

    References
    ----------
    Zhu, Q. and Wang, Z. An Image Clustering Auto-Encoder Based on Predefined Evenly-Distributed
    Class Centroids and MMD Distance (ICAE).

    Zhu, Q. and Zhang, R. (2019). A classification supervised auto-encoder based on predefined
    evenly-distributed class centroids. arXiv:1902.00220.
    """

    #: rows split across processes; the MMD (Loss2) is over every process's codes
    data_parallel: ClassVar[bool] = True

    params: ClassVar[Params] = declare(
        "n_clusters",
        "image_shape",
        "optimizer",
        "lr",
        "device",
        "precision",
        "random_state",
        "verbose",
        autoencoder=Param("resnet", StrOptions({"resnet"}), nn.Module),
        embedding_dim=60,
        channels=Param((32, 64, 128, 256, 512), SequenceOf(POSITIVE_INT)),
        input_size=Param(None, None, POSITIVE_INT),
        epochs=400,
        batch_size=100,
        aug_weight=Param(0.01, NON_NEGATIVE_REAL),
        mmd_weight=Param(1.0, NON_NEGATIVE_REAL),
        rec_weight=Param(1.0, NON_NEGATIVE_REAL),
        sobel_weight=Param(0.05, NON_NEGATIVE_REAL),
        latent_noise=Param(0.05, NON_NEGATIVE_REAL),
        sobel_loss=Param("mse", StrOptions(set(SOBEL_LOSSES))),
        augment=Param(True, "boolean"),
        n_views=Param(4, POSITIVE_INT),
        rotation=Param(10.0, NON_NEGATIVE_REAL),
        shift=Param(0.1, FRACTION),
        scale=Param((0.9, 1.1), SequenceOf(POSITIVE_REAL, length=2)),
        shear=Param((-10.0, 5.0), SequenceOf(Interval(Real, -90, 90, closed="neither"), length=2)),
        hflip=Param(False, "boolean"),
        vflip=Param(False, "boolean"),
        pedcc_iter=Param(200, NON_NEGATIVE_INT),
        mmd_kernels=Param(5, POSITIVE_INT),
        latent_radius=Param(None, None, POSITIVE_REAL),
    )

    # -- shapes ---------------------------------------------------------------------------------
    def _network_shape(self, n_features: int) -> tuple[tuple[int, int, int], int]:
        """The (C, H, W) the network sees and how many zero features pad X to it."""
        if self.image_shape is not None:
            shape = tuple(int(s) for s in self.image_shape)
            if len(shape) != 3 or math.prod(shape) != n_features:
                raise ValueError(
                    f"image_shape {tuple(self.image_shape)} does not match X's {n_features} "
                    "features (need (C, H, W) with C*H*W = n_features)"
                )
            return shape, 0  # type: ignore[return-value]
        side = math.isqrt(n_features - 1) + 1 if n_features > 1 else 1
        return (1, side, side), side * side - n_features

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Pad non-image data to the network's square; images pass unchanged."""
        pad = getattr(self, "pad_features_", 0)
        return F.pad(x, (0, pad)) if pad else x

    def _build(self, n_features: int, device: torch.device) -> Autoencoder:
        if isinstance(self.autoencoder, nn.Module):
            import copy

            ae = copy.deepcopy(self.autoencoder)
            if getattr(ae, "n_features", n_features) != n_features:
                raise ValueError(
                    f"the autoencoder expects {ae.n_features} input features but the network "
                    f"input has {n_features}"
                )
            return ae.to(device)
        return ResNetAutoencoder(
            self.image_shape_,
            channels=tuple(self.channels),
            embedding_dim=self.embedding_dim,
            input_size=self.input_size,
        ).to(device)

    def _augment(self, x01: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``n_views`` augmented copies of a [0, 1] batch, stacked view by view."""
        images = x01.reshape(x01.shape[0], *self.image_shape_)
        views = torch.cat([images] * int(self.n_views))
        out = random_affine(
            views,
            rotation=float(self.rotation),
            shift=float(self.shift),
            scale=tuple(self.scale),
            shear=tuple(self.shear),
            hflip=bool(self.hflip),
            vflip=bool(self.vflip),
            generator=gen,
        )
        return out.flatten(1)

    # -- fitting --------------------------------------------------------------------------------
    def _fit(self, x: torch.Tensor, seed: int) -> None:
        shape, pad = self._network_shape(x.shape[1])
        self.image_shape_ = shape
        self.pad_features_ = pad
        x = self._prepare(x)
        ae = self._build(x.shape[1], x.device)
        result = pedcc(
            self.n_clusters, self.embedding_dim, n_iter=int(self.pedcc_iter), random_state=seed
        )
        module = self._icae_module(ae, result.centers.to(x.device), seed)
        self.history_ = self._trainer(module, seed, epochs=int(self.epochs)).fit([x])
        self.autoencoder_ = ae.eval()
        self.cluster_centers_ = result.centers.cpu().numpy()
        self.pedcc_min_angle_ = float(result.min_angle)
        self.n_iter_ = len(self.history_)
        codes = self._codes(x)
        self.labels_ = self._assign(codes).cpu().numpy().astype(np.int64)
        self._keep_training_embedding(codes)

    def _icae_module(self, ae: nn.Module, centers: torch.Tensor, seed: int) -> ICAEModule:
        """ICAE's model with this estimator's losses, weights and augmentation (after
        ``image_shape_`` is set)."""
        radius = math.sqrt(self.embedding_dim) if self.latent_radius is None else self.latent_radius
        return ICAEModule(
            ae,
            centers,
            image_shape=self.image_shape_,
            augment=self._augment if self.augment else None,
            n_views=int(self.n_views),
            weights=(
                float(self.aug_weight),
                float(self.mmd_weight),
                float(self.rec_weight),
                float(self.sobel_weight),
            ),
            latent_radius=float(radius),
            latent_noise=float(self.latent_noise),
            mmd_kernels=int(self.mmd_kernels),
            sobel_loss=self.sobel_loss,
            # data-parallel: each process augments and perturbs its rows with its own draws
            generator=self._generator(seed + 1 + 7919 * distributed.world()[0], centers.device),
        )

    # -- inference ------------------------------------------------------------------------------
    def _codes(self, x_prepared: torch.Tensor) -> torch.Tensor:
        ae = self.autoencoder_
        ae.eval()
        dtype = self._autocast_dtype(x_prepared.device)

        def encode(xb: torch.Tensor) -> torch.Tensor:
            return F.normalize(ae.encode(normalise_pixels(xb)).float(), dim=1)

        return batched_apply(encode, x_prepared, batch_size=1024, autocast_dtype=dtype)

    def _assign(self, z: torch.Tensor) -> torch.Tensor:
        # Sec. 4.2: Y = P^T Z, the cosine with each unit-norm centroid; the largest wins (fp32).
        centers = torch.from_numpy(self.cluster_centers_).to(z.device)
        return (z.float() @ centers.T).argmax(dim=1)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._codes(self._prepare(x))

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        return self._assign(self._embed(x))

    def generate(
        self, n_per_class: int = 10, noise: float | None = None, random_state: int | None = 0
    ) -> np.ndarray:
        """Decode each PEDCC centroid (plus Gaussian noise) into images (the paper's Fig. 3).

        Parameters
        ----------
        n_per_class : int
            Images per cluster.
        noise : float or None
            Std of the per-coordinate noise added to the centroid; None: ``latent_noise``.
        random_state : int or None
            Seeds the noise.

        Returns
        -------
        ndarray (n_clusters * n_per_class, n_features)
            Images in the input's [0, 1] scale, cluster by cluster (rows j*n .. (j+1)*n - 1 come
            from centroid j), clipped to [0, 1].
        """
        check_is_fitted(self)
        if isinstance(n_per_class, bool) or int(n_per_class) != n_per_class or n_per_class < 1:
            raise ValueError(f"n_per_class must be a positive int, got {n_per_class!r}")
        beta = float(self.latent_noise if noise is None else noise)
        if not beta >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        device = self._fitted_device()
        centers = torch.from_numpy(self.cluster_centers_).to(device)
        gen = self._generator(0 if random_state is None else int(random_state), device)
        z = centers.repeat_interleave(int(n_per_class), dim=0)
        z = z + beta * torch.randn(z.shape, generator=gen, device=device)
        ae = self.autoencoder_
        ae.eval()
        out = batched_apply(ae.decode, z, autocast_dtype=self._autocast_dtype(device))
        out = out[:, : self.n_features_in_] * 0.5 + 0.5
        return out.clamp(0.0, 1.0).cpu().numpy()
