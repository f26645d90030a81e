"""The network factory: the registry model files rebuild networks from, and the presets.

It imports every network module and none imports it back, so the networks never import each
other in a circle (:mod:`aeclust.nn.resnet` and :mod:`aeclust.nn.batched` build on
:mod:`aeclust.nn.autoencoders` alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from aeclust.nn.autoencoders import (
    IDENTITY_NAMES,
    Autoencoder,
    ConvAutoencoder,
    MLPAutoencoder,
)
from aeclust.nn.batched import BatchedMLPAutoencoder, MLPClassifier
from aeclust.nn.resnet import ResNetAutoencoder

#: Modules that model files can rebuild from ``config()["class"]`` (see :func:`register_module`).
AUTOENCODER_CLASSES: dict[str, type[nn.Module]] = {}


def register_module(cls: type[nn.Module]) -> type[nn.Module]:
    """Make a module with a ``config()`` method rebuildable by :func:`autoencoder_from_config`."""
    AUTOENCODER_CLASSES[cls.__name__] = cls
    return cls


def autoencoder_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild an autoencoder (or another registered module) from its ``config()`` output."""
    cfg = dict(config)
    name = cfg.pop("class", None)
    if name not in AUTOENCODER_CLASSES:
        raise ValueError(
            f"unknown autoencoder class {name!r}; known: {sorted(AUTOENCODER_CLASSES)}"
        )
    return AUTOENCODER_CLASSES[name](**cfg)


def build_autoencoder(
    spec: str | Sequence[int] | nn.Module,
    n_features: int,
    *,
    embedding_dim: int = 10,
    image_shape: Sequence[int] | None = None,
    activation: str = "relu",
    batch_norm: bool = False,
    output_activation: str | None = None,
    hidden_dims: Sequence[int] = (500, 500, 2000),
    embedding_activation: str | None = None,
) -> Autoencoder:
    """Build an autoencoder from a preset name, a list of widths or an existing module.

    Parameters
    ----------
    spec : {"mlp", "conv", "resnet"}, sequence of int or Autoencoder
        ``"mlp"`` -> ``[n_features, *hidden_dims, embedding_dim]``; a sequence of widths from the
        first hidden layer to the embedding (the input width is prepended when it is missing);
        ``"conv"`` -> :class:`ConvAutoencoder`, ``"resnet"`` ->
        :class:`aeclust.nn.resnet.ResNetAutoencoder` (ICAE's network; both need ``image_shape``
        for non-square inputs); a module is returned as is
        (callers copy it so a shared pretrained network is never mutated).
    n_features : int
        Input dimension.
    embedding_dim, image_shape, activation, batch_norm, output_activation, hidden_dims
        Used by the presets.
    embedding_activation : str or None
        Activation of the embedding layer of the ``"mlp"`` and ``"conv"`` presets and of a list
        of widths (``None``/``"linear"``: none); ``"resnet"`` takes none.

    Returns
    -------
    Autoencoder
    """
    if isinstance(spec, nn.Module):
        if not isinstance(spec, Autoencoder) and not (
            hasattr(spec, "encode") and hasattr(spec, "decode")
        ):
            raise TypeError("an autoencoder module must define encode() and decode()")
        n_in = getattr(spec, "n_features", n_features)
        if n_in != n_features:
            raise ValueError(
                f"the autoencoder expects {n_in} input features but X has {n_features}"
            )
        return spec  # type: ignore[return-value]
    if isinstance(spec, str):
        if spec == "mlp":
            dims = [n_features, *hidden_dims, embedding_dim]
            return MLPAutoencoder(
                dims,
                activation,
                batch_norm=batch_norm,
                output_activation=output_activation,
                embedding_activation=embedding_activation,
            )
        if spec in ("conv", "resnet"):
            if image_shape is None:
                side = round(n_features**0.5)
                if side * side != n_features:
                    raise ValueError(
                        f"autoencoder={spec!r} needs image_shape=(C, H, W) for non-square inputs"
                    )
                image_shape = (1, side, side)
            if spec == "resnet":
                if embedding_activation is not None and embedding_activation not in IDENTITY_NAMES:
                    raise ValueError(
                        f"embedding_activation={embedding_activation!r} is for the 'mlp' and "
                        "'conv' autoencoders; the 'resnet' one has its own latent (leave it "
                        "'linear')"
                    )
                return ResNetAutoencoder(
                    image_shape, embedding_dim=embedding_dim, output_activation=output_activation
                )
            return ConvAutoencoder(
                image_shape,
                embedding_dim=embedding_dim,
                activation=activation,
                batch_norm=batch_norm,
                output_activation=output_activation,
                embedding_activation=embedding_activation,
            )
        raise ValueError(f"unknown autoencoder preset {spec!r}; valid: 'mlp', 'conv', 'resnet'")
    dims = [int(d) for d in spec]
    if not dims:
        raise ValueError("autoencoder dims must not be empty")
    if dims[0] != n_features:
        dims = [n_features, *dims]
    return MLPAutoencoder(
        dims,
        activation,
        batch_norm=batch_norm,
        output_activation=output_activation,
        embedding_activation=embedding_activation,
    )


for _network in (
    MLPAutoencoder,
    ConvAutoencoder,
    ResNetAutoencoder,
    BatchedMLPAutoencoder,
    MLPClassifier,
):
    register_module(_network)
