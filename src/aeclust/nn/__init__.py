"""Neural network building blocks: autoencoders shared by every method."""

from aeclust.nn.autoencoders import (
    Autoencoder,
    ConvAutoencoder,
    MLPAutoencoder,
    autoencoder_from_config,
    build_autoencoder,
    encode_decode,
    make_activation,
    register_module,
)
from aeclust.nn.batched import BatchedMLPAutoencoder, MLPClassifier
from aeclust.nn.resnet import ResNetAutoencoder

register_module(BatchedMLPAutoencoder)
register_module(MLPClassifier)
register_module(ResNetAutoencoder)

__all__ = [
    "Autoencoder",
    "BatchedMLPAutoencoder",
    "ConvAutoencoder",
    "MLPAutoencoder",
    "MLPClassifier",
    "ResNetAutoencoder",
    "autoencoder_from_config",
    "build_autoencoder",
    "encode_decode",
    "make_activation",
    "register_module",
]
