"""Neural network building blocks: autoencoders shared by every method."""

from aeclust.nn.autoencoders import (
    Autoencoder,
    ConvAutoencoder,
    MLPAutoencoder,
    autoencoder_from_config,
    build_autoencoder,
    make_activation,
)

__all__ = [
    "Autoencoder",
    "ConvAutoencoder",
    "MLPAutoencoder",
    "autoencoder_from_config",
    "build_autoencoder",
    "make_activation",
]
