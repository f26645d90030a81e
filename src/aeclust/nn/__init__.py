"""Neural network building blocks: autoencoders shared by every method."""

from aeclust.nn.autoencoders import (
    Autoencoder,
    ConvAutoencoder,
    MLPAutoencoder,
    autoencoder_from_config,
    build_autoencoder,
    make_activation,
    register_module,
)
from aeclust.nn.batched import BatchedMLPAutoencoder, MLPClassifier

register_module(BatchedMLPAutoencoder)
register_module(MLPClassifier)

__all__ = [
    "Autoencoder",
    "BatchedMLPAutoencoder",
    "ConvAutoencoder",
    "MLPAutoencoder",
    "MLPClassifier",
    "autoencoder_from_config",
    "build_autoencoder",
    "make_activation",
    "register_module",
]
