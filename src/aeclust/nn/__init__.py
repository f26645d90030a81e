"""Neural network building blocks: autoencoders shared by every method."""

from aeclust.nn.autoencoders import (
    Autoencoder,
    ConvAutoencoder,
    MLPAutoencoder,
    encode_decode,
    make_activation,
)
from aeclust.nn.batched import BatchedMLPAutoencoder, MLPClassifier
from aeclust.nn.factory import autoencoder_from_config, build_autoencoder, register_module
from aeclust.nn.resnet import ResNetAutoencoder

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
