"""A ResNet-style convolutional autoencoder (ICAE's network, Table 1 of Zhu and Wang).

Encoder: a 3x3 convolution, then one residual block per further width, each halving the
resolution (32x32 -> 16 -> 8 -> 4 -> 2 with the paper's widths 32, 64, 128, 256, 512), and a
linear layer to the latent code, optionally L2-normalised. Decoder: a linear layer back to the
last feature map, a residual block at that size, then upsampling blocks (2x2 transposed
convolution + residual 3x3 convolution) mirroring the encoder, and a 3x3 convolution to the image
channels. Like every aeclust autoencoder it takes flattened images ``(N, C*H*W)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from aeclust.nn.autoencoders import Autoencoder, make_activation


class BasicBlock(nn.Module):
    """He et al. (2016)'s basic residual block: two 3x3 convolutions with batch norm; a strided
    1x1 projection on the shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class UpBlock(nn.Module):
    """Decoder block: a 2x2 stride-2 transposed convolution (doubles the resolution), then a 3x3
    convolution with a residual connection around it."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.up(x)))
        return F.relu(self.bn2(self.conv(h)) + h)


class ResNetAutoencoder(Autoencoder):
    """ResNet convolutional autoencoder on flattened images (ICAE, Table 1).

    Parameters
    ----------
    image_shape : (C, H, W)
        Shape of one image.
    channels : sequence of int
        Width of the first convolution, then of each stride-2 residual block; the paper's
        ``(32, 64, 128, 256, 512)`` turns a 32x32 input into 512 x 2 x 2.
    embedding_dim : int
        Latent size (60 for MNIST in the paper, 100 for Fashion, 160 for COIL20).
    input_size : int or None
        Resize images (bilinear, antialiased) to ``input_size`` x ``input_size`` before the
        encoder, and the decoder's output back to (H, W); None keeps the resolution.
    normalize_latent : bool
        L2-normalise the code (ICAE compares it with unit-norm class centroids by cosine).
    output_activation : str or None
        Activation of the reconstruction (None: linear).

    Notes
    -----
    The working size is padded (replicating the border) up to a multiple of
    2^(len(channels) - 1), e.g. 28 -> 32 as in the paper, and the output is cropped back.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        embedding_dim: int = 60,
        input_size: int | None = None,
        normalize_latent: bool = True,
        output_activation: str | None = None,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
        channels = [int(c) for c in channels]
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        if input_size is not None and int(input_size) < 1:
            raise ValueError(f"input_size must be a positive int or None, got {input_size}")
        if int(embedding_dim) < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.channels = channels
        self.embedding_dim = int(embedding_dim)
        self.input_size = None if input_size is None else int(input_size)
        self.normalize_latent = bool(normalize_latent)
        self.output_activation = output_activation
        c, h, w = self.image_shape
        self.n_features = c * h * w
        work_h, work_w = (h, w) if self.input_size is None else (self.input_size,) * 2
        mult = 2 ** (len(channels) - 1)
        self._work = (work_h, work_w)
        self._padded = (-(-work_h // mult) * mult, -(-work_w // mult) * mult)
        self._final = (self._padded[0] // mult, self._padded[1] // mult)
        flat = channels[-1] * self._final[0] * self._final[1]

        self.stem = nn.Sequential(
            nn.Conv2d(c, channels[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(
            *(BasicBlock(a, b, stride=2) for a, b in itertools.pairwise(channels))
        )
        self.to_latent = nn.Linear(flat, self.embedding_dim)
        self.from_latent = nn.Sequential(nn.Linear(self.embedding_dim, flat), nn.ReLU())
        rev = channels[::-1]
        self.decoder_blocks = nn.Sequential(
            BasicBlock(rev[0], rev[0]),
            *(UpBlock(a, b) for a, b in itertools.pairwise(rev)),
        )
        self.head = nn.Conv2d(channels[0], c, 3, 1, 1)
        self.output_act = make_activation(output_activation)

    def _to_work(self, img: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and img.shape[-2:] != self._work:
            img = F.interpolate(img, size=self._work, mode="bilinear", antialias=True)
        ph, pw = self._padded[0] - self._work[0], self._padded[1] - self._work[1]
        if ph or pw:
            img = F.pad(img, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
        return img

    def _from_work(self, img: torch.Tensor) -> torch.Tensor:
        ph, pw = self._padded[0] - self._work[0], self._padded[1] - self._work[1]
        if ph or pw:
            img = img[..., ph // 2 : ph // 2 + self._work[0], pw // 2 : pw // 2 + self._work[1]]
        if self.input_size is not None and img.shape[-2:] != self.image_shape[1:]:
            img = F.interpolate(img, size=self.image_shape[1:], mode="bilinear")
        return img

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map flattened images ``(N, C*H*W)`` to codes ``(N, d)`` (unit norm if
        ``normalize_latent``)."""
        img = self._to_work(x.reshape(x.shape[0], *self.image_shape))
        z = self.to_latent(self.blocks(self.stem(img)).flatten(1))
        if self.normalize_latent:
            # fp32: the unit-norm codes feed fp32 cosines and the MMD.
            z = F.normalize(z.float(), dim=1)
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map codes ``(N, d)`` back to flattened images."""
        h = self.from_latent(z).reshape(z.shape[0], self.channels[-1], *self._final)
        img = self.head(self.decoder_blocks(h))
        return self.output_act(self._from_work(img)).flatten(1)

    def config(self) -> dict[str, Any]:
        """Arguments that rebuild this autoencoder."""
        return {
            "class": "ResNetAutoencoder",
            "image_shape": list(self.image_shape),
            "channels": list(self.channels),
            "embedding_dim": self.embedding_dim,
            "input_size": self.input_size,
            "normalize_latent": self.normalize_latent,
            "output_activation": self.output_activation,
        }
