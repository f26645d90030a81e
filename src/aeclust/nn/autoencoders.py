"""Autoencoders shared by every method: a fully connected one and a small convolutional one.

Every autoencoder maps flattened inputs ``(N, D)`` to an embedding ``(N, d)`` and back, so methods
never care which kind they were given. ``forward`` returns ``(z, x_hat)``. ``config()`` returns the
JSON-serialisable arguments that rebuild the module (used by model files and the pretraining cache).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "selu": nn.SELU,
}


def encode_decode(autoencoder: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The embedding and the reconstruction of ``x``: an aeclust network's ``forward``; for a
    user's module, ``encode`` then ``decode`` (the documented contract), whatever its own
    ``forward`` returns (often the reconstruction alone)."""
    if isinstance(autoencoder, Autoencoder):
        return autoencoder(x)
    z = autoencoder.encode(x)
    return z, autoencoder.decode(z)


#: The names :func:`make_activation` reads as no activation (besides ``None``).
IDENTITY_NAMES = ("linear", "identity", "none")


def make_activation(name: str | None) -> nn.Module:
    """Instantiate an activation by name (``None`` or ``"linear"`` -> identity)."""
    if name is None or name in IDENTITY_NAMES:
        return nn.Identity()
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)} or 'linear'"
        ) from None


class Autoencoder(nn.Module):
    """Base class: ``encode``, ``decode`` and ``forward -> (z, x_hat)`` on flattened inputs."""

    embedding_dim: int
    n_features: int

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the embedding and the reconstruction of ``x``."""
        z = self.encode(x)
        return z, self.decode(z)

    def _embedding_activation_config(self) -> dict[str, Any]:
        # Only when set: a linear embedding's config (a pretraining cache key, a model file) stays
        # what it was before the option existed.
        act = getattr(self, "embedding_activation", None)
        return {} if act is None or act in IDENTITY_NAMES else {"embedding_activation": act}

    def config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


class MLPAutoencoder(Autoencoder):
    """Fully connected autoencoder ``d-h1-...-hk-e`` with a mirrored decoder.

    The default of the deep clustering literature is ``dims=[d, 500, 500, 2000, 10]`` with ReLU
    (Xie et al., 2016, DEC; Guo et al., 2017, IDEC; Yang et al., 2017, DCN). The embedding layer is
    linear unless ``embedding_activation`` says otherwise; the output activation is chosen by the
    method (linear for MSE, sigmoid for BCE).

    Parameters
    ----------
    dims : sequence of int
        Layer widths from the input to the embedding, e.g. ``[784, 500, 500, 2000, 10]``.
    activation : str
        Hidden activation (``relu``, ``elu``, ``sigmoid``, ...).
    batch_norm : bool
        Batch normalisation after each hidden linear layer (before the activation).
    dropout : float
        Dropout probability after each hidden activation.
    output_activation : str or None
        Activation of the reconstruction (``None``/``"linear"``, ``"sigmoid"``, ...).
    tied : bool
        Decoder weights are the transposed encoder weights (separate biases).
    embedding_activation : str or None
        Activation of the embedding layer (``None``/``"linear"``: none). CCAE's network is
        "sigmoid nonlinearities" everywhere but the decoder's final layer (Nousi and Tefas,
        Sec. 5.3.1): ``"sigmoid"``.
    """

    def __init__(
        self,
        dims: Sequence[int],
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        output_activation: str | None = None,
        tied: bool = False,
        embedding_activation: str | None = None,
    ) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 2 or any(d < 1 for d in dims):
            raise ValueError(f"dims must list at least two positive widths, got {dims}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        make_activation(activation)  # fail early on an unknown name
        self.dims = dims
        self.activation = activation
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.output_activation = output_activation
        self.tied = tied
        self.embedding_activation = embedding_activation
        self.n_features = dims[0]
        self.embedding_dim = dims[-1]

        self.encoder_layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.encoder_post = nn.ModuleList(self._post(b) for b in dims[1:-1])
        rev = dims[::-1]
        if tied:
            self.decoder_layers = None
            self.decoder_biases = nn.ParameterList(nn.Parameter(torch.zeros(b)) for b in rev[1:])
        else:
            self.decoder_layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(rev))
            self.decoder_biases = None
        self.decoder_post = nn.ModuleList(self._post(b) for b in rev[1:-1])
        self.output_act = make_activation(output_activation)
        self.embedding_act = make_activation(embedding_activation)

    def _post(self, width: int) -> nn.Sequential:
        parts: list[nn.Module] = []
        if self.batch_norm:
            parts.append(nn.BatchNorm1d(width))
        parts.append(make_activation(self.activation))
        if self.dropout > 0:
            parts.append(nn.Dropout(self.dropout))
        return nn.Sequential(*parts)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs ``(N, D)`` to embeddings ``(N, d)``."""
        h = x
        last = len(self.encoder_layers) - 1
        for i, layer in enumerate(self.encoder_layers):
            h = layer(h)
            if i < last:
                h = self.encoder_post[i](h)
        return self.embedding_act(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map embeddings ``(N, d)`` back to the input space ``(N, D)``."""
        h = z
        n_layers = len(self.encoder_layers)
        for i in range(n_layers):
            if self.tied:
                enc = self.encoder_layers[n_layers - 1 - i]
                h = F.linear(h, enc.weight.t(), self.decoder_biases[i])
            else:
                h = self.decoder_layers[i](h)
            if i < n_layers - 1:
                h = self.decoder_post[i](h)
        return self.output_act(h)

    def config(self) -> dict[str, Any]:
        """Arguments that rebuild this autoencoder."""
        return {
            "class": "MLPAutoencoder",
            "dims": list(self.dims),
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "dropout": self.dropout,
            "output_activation": self.output_activation,
            "tied": self.tied,
            **self._embedding_activation_config(),
        }


class ConvAutoencoder(Autoencoder):
    """Small convolutional autoencoder for images (the CAE of Guo et al., 2017, DCEC).

    Three stride-2 convolutions (5x5, 5x5, 3x3 by default), a linear embedding, and a mirrored
    decoder of transposed convolutions whose output sizes are matched to the encoder's, so any
    image size works. Inputs are flattened ``(N, C*H*W)`` and reshaped internally.

    Parameters
    ----------
    image_shape : (C, H, W)
        Shape of one image.
    channels : sequence of int
        Output channels of each convolution.
    kernel_sizes : sequence of int
        Kernel size of each convolution (same length as ``channels``).
    embedding_dim : int
        Size of the linear embedding.
    activation : str
        Hidden activation.
    batch_norm : bool
        Batch normalisation after each convolution.
    output_activation : str or None
        Activation of the reconstruction.
    embedding_activation : str or None
        Activation of the embedding layer (``None``/``"linear"``: none).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[int] = (32, 64, 128),
        kernel_sizes: Sequence[int] = (5, 5, 3),
        embedding_dim: int = 10,
        activation: str = "relu",
        batch_norm: bool = False,
        output_activation: str | None = None,
        embedding_activation: str | None = None,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
        if len(channels) != len(kernel_sizes) or not channels:
            raise ValueError("channels and kernel_sizes must be non-empty and of equal length")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.channels = [int(c) for c in channels]
        self.kernel_sizes = [int(k) for k in kernel_sizes]
        self.embedding_dim = int(embedding_dim)
        self.activation = activation
        self.batch_norm = batch_norm
        self.output_activation = output_activation
        self.embedding_activation = embedding_activation
        c, h, w = self.image_shape
        self.n_features = c * h * w

        convs, posts, sizes = [], [], [(h, w)]
        in_c = c
        for out_c, k in zip(self.channels, self.kernel_sizes):
            convs.append(nn.Conv2d(in_c, out_c, k, stride=2, padding=k // 2))
            posts.append(self._post(out_c))
            hh, ww = sizes[-1]
            sizes.append(((hh + 2 * (k // 2) - k) // 2 + 1, (ww + 2 * (k // 2) - k) // 2 + 1))
            in_c = out_c
        self._sizes = sizes
        self.convs = nn.ModuleList(convs)
        self.conv_post = nn.ModuleList(posts)
        flat = self.channels[-1] * sizes[-1][0] * sizes[-1][1]
        self.to_embedding = nn.Linear(flat, self.embedding_dim)
        self.embedding_act = make_activation(embedding_activation)
        self.from_embedding = nn.Linear(self.embedding_dim, flat)
        self.from_embedding_post = make_activation(activation)
        deconvs, dposts = [], []
        rev_c = [*self.channels[::-1][1:], c]
        in_c = self.channels[-1]
        for i, (out_c, k) in enumerate(zip(rev_c, self.kernel_sizes[::-1])):
            deconvs.append(nn.ConvTranspose2d(in_c, out_c, k, stride=2, padding=k // 2))
            dposts.append(self._post(out_c) if i < len(rev_c) - 1 else nn.Identity())
            in_c = out_c
        self.deconvs = nn.ModuleList(deconvs)
        self.deconv_post = nn.ModuleList(dposts)
        self.output_act = make_activation(output_activation)

    def _post(self, n_channels: int) -> nn.Sequential:
        parts: list[nn.Module] = []
        if self.batch_norm:
            parts.append(nn.BatchNorm2d(n_channels))
        parts.append(make_activation(self.activation))
        return nn.Sequential(*parts)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map flattened images ``(N, C*H*W)`` to embeddings ``(N, d)``."""
        h = x.reshape(x.shape[0], *self.image_shape)
        for conv, post in zip(self.convs, self.conv_post):
            h = post(conv(h))
        return self.embedding_act(self.to_embedding(h.flatten(1)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map embeddings back to flattened images."""
        hh, ww = self._sizes[-1]
        h = self.from_embedding_post(self.from_embedding(z))
        h = h.reshape(z.shape[0], self.channels[-1], hh, ww)
        for i, (deconv, post) in enumerate(zip(self.deconvs, self.deconv_post)):
            out_size = self._sizes[-2 - i]
            h = post(deconv(h, output_size=list(out_size)))
        return self.output_act(h).flatten(1)

    def config(self) -> dict[str, Any]:
        """Arguments that rebuild this autoencoder."""
        return {
            "class": "ConvAutoencoder",
            "image_shape": list(self.image_shape),
            "channels": list(self.channels),
            "kernel_sizes": list(self.kernel_sizes),
            "embedding_dim": self.embedding_dim,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "output_activation": self.output_activation,
            **self._embedding_activation_config(),
        }
