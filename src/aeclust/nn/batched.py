"""k autoencoders as one batched module (k-DAE, DAMIC).

The k networks' weights are stacked, ``W_l`` of shape (k, in, out), and every layer is one
``torch.baddbmm`` over the k models, so a step costs about one forward pass of a k-times-wider
network instead of k small Python-looped ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from aeclust.nn.autoencoders import make_activation


class BatchedLinear(nn.Module):
    """k independent linear layers applied at once: (k, N, in) -> (k, N, out)."""

    def __init__(self, n_models: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        # The same init as nn.Linear (uniform +-1/sqrt(fan_in)) for each model.
        self.weight = nn.Parameter(torch.empty(n_models, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n_models, 1, out_features))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, h, self.weight)


class _BatchedPost(nn.Module):
    """Per-model batch norm (one channel per model and unit) and the activation."""

    def __init__(self, n_models: int, width: int, activation: str, batch_norm: bool) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n_models * width) if batch_norm else None
        self.act = make_activation(activation)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            k, n, w = h.shape
            h = self.norm(h.permute(1, 0, 2).reshape(n, k * w)).reshape(n, k, w).permute(1, 0, 2)
        return self.act(h)


class BatchedMLPAutoencoder(nn.Module):
    """k MLP autoencoders ``dims[0]-...-dims[-1]`` (mirrored decoders) evaluated together.

    Parameters
    ----------
    n_models : int
        Number of autoencoders k.
    dims : sequence of int
        Widths from the input to the embedding, e.g. ``[784, 500, 100, 10]``.
    activation : str
        Hidden activation.
    batch_norm : bool
        Batch normalisation of every hidden layer, with statistics per model.
    output_activation : str or None
        Activation of the reconstructions (``"sigmoid"`` for inputs in [0, 1]).
    """

    def __init__(
        self,
        n_models: int,
        dims: Sequence[int],
        activation: str = "elu",
        batch_norm: bool = True,
        output_activation: str | None = "sigmoid",
    ) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if n_models < 1 or len(dims) < 2:
            raise ValueError("need n_models >= 1 and at least two widths")
        self.n_models = int(n_models)
        self.dims = dims
        self.activation = activation
        self.batch_norm = batch_norm
        self.output_activation = output_activation
        self.n_features = dims[0]
        self.embedding_dim = dims[-1]
        rev = dims[::-1]
        self.encoder = nn.ModuleList(
            BatchedLinear(n_models, a, b) for a, b in itertools.pairwise(dims)
        )
        self.encoder_post = nn.ModuleList(
            _BatchedPost(n_models, b, activation, batch_norm) for b in dims[1:-1]
        )
        self.decoder = nn.ModuleList(
            BatchedLinear(n_models, a, b) for a, b in itertools.pairwise(rev)
        )
        self.decoder_post = nn.ModuleList(
            _BatchedPost(n_models, b, activation, batch_norm) for b in rev[1:-1]
        )
        self.output_act = make_activation(output_activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``x`` (N, D) by every model: (k, N, d)."""
        h = x.unsqueeze(0).expand(self.n_models, -1, -1)
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if i < len(self.encoder_post):
                h = self.encoder_post[i](h)
        return h

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions (k, N, D) from per-model embeddings (k, N, d)."""
        h = z
        for i, layer in enumerate(self.decoder):
            h = layer(h)
            if i < len(self.decoder_post):
                h = self.decoder_post[i](h)
        return self.output_act(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` (N, D) by every model: (k, N, D)."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def copy_model(self, source: int, target: int, noise: float = 0.0) -> None:
        """Overwrite model ``target``'s weights with model ``source``'s (plus Gaussian noise)."""
        for module in self.modules():
            if isinstance(module, BatchedLinear):
                for p in (module.weight, module.bias):
                    w = p[source]
                    # relative noise: the weights' spread, or a lone weight's own size (the bias
                    # of a 1-unit layer, whose std is undefined: it made the copy NaN)
                    scale = w.std() if w.numel() > 1 else w.abs()
                    p[target] = w + noise * torch.randn_like(w) * scale
            elif isinstance(module, nn.BatchNorm1d):
                k = self.n_models
                for t in (module.weight, module.bias, module.running_mean, module.running_var):
                    view = t.view(k, -1)
                    view[target] = view[source]

    def per_model_parameters(
        self,
    ) -> list[tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]]:
        """Every trainable parameter with the view that puts the model index first: a linear
        layer's (k, ...) as it is, a batch norm's (k * width,) as (k, width). Applied to a tensor
        of the parameter's shape (e.g. an optimiser's moments), ``view(t)[i]`` is model i's part."""
        k = self.n_models
        out: list[tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]] = []
        for module in self.modules():
            if isinstance(module, BatchedLinear):
                out += [(p, lambda t: t) for p in (module.weight, module.bias)]
            elif isinstance(module, nn.BatchNorm1d) and module.affine:
                out += [(p, lambda t: t.view(k, -1)) for p in (module.weight, module.bias)]
        return out

    def config(self) -> dict[str, Any]:
        """Arguments that rebuild this module."""
        return {
            "class": "BatchedMLPAutoencoder",
            "n_models": self.n_models,
            "dims": list(self.dims),
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "output_activation": self.output_activation,
        }


class MLPClassifier(nn.Module):
    """A plain MLP ``dims[0]-...-dims[-1]`` returning logits (DAMIC's gate network p(c | x)).

    Parameters
    ----------
    dims : sequence of int
        Widths from the input to the number of classes.
    activation : str
    batch_norm : bool
    """

    def __init__(self, dims: Sequence[int], activation: str = "elu", batch_norm: bool = True):
        super().__init__()
        self.dims = [int(d) for d in dims]
        self.activation = activation
        self.batch_norm = batch_norm
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(self.dims)):
            layers.append(nn.Linear(a, b))
            if i < len(self.dims) - 2:
                if batch_norm:
                    layers.append(nn.BatchNorm1d(b))
                layers.append(make_activation(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes)."""
        return self.net(x)

    def config(self) -> dict[str, Any]:
        """Arguments that rebuild this module."""
        return {
            "class": "MLPClassifier",
            "dims": list(self.dims),
            "activation": self.activation,
            "batch_norm": self.batch_norm,
        }
