import pytest
import torch

from aeclust.nn import (
    ConvAutoencoder,
    MLPAutoencoder,
    autoencoder_from_config,
    build_autoencoder,
)


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("tied", [False, True])
def test_mlp_shapes_and_config_roundtrip(batch_norm, tied):
    ae = MLPAutoencoder([20, 16, 8, 3], "elu", batch_norm=batch_norm, dropout=0.1, tied=tied)
    x = torch.rand(5, 20)
    z, x_hat = ae(x)
    assert z.shape == (5, 3) and x_hat.shape == (5, 20)
    clone = autoencoder_from_config(ae.config())
    clone.load_state_dict(ae.state_dict())
    ae.eval()
    clone.eval()
    assert torch.equal(ae(x)[1], clone(x)[1])


def test_tied_decoder_shares_encoder_weights():
    ae = MLPAutoencoder([6, 4, 2], tied=True)
    n_untied = sum(p.numel() for p in MLPAutoencoder([6, 4, 2]).parameters())
    n_tied = sum(p.numel() for p in ae.parameters())
    assert n_tied == n_untied - (6 * 4 + 4 * 2)
    z = torch.randn(3, 2)
    ae.encoder_layers[0].weight.data.zero_()
    out = ae.decode(z)
    # With the first encoder weight zeroed, the output is the last decoder bias only.
    assert torch.allclose(out, ae.decoder_biases[-1].expand(3, 6))


def test_sigmoid_output_in_unit_interval():
    ae = MLPAutoencoder([10, 5, 2], output_activation="sigmoid")
    out = ae.decode(torch.randn(50, 2) * 100)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 16, 16), (3, 32, 32), (1, 13, 17)])
def test_conv_autoencoder_reconstructs_any_size(shape):
    ae = ConvAutoencoder(shape, channels=(4, 8), kernel_sizes=(5, 3), embedding_dim=6)
    n = shape[0] * shape[1] * shape[2]
    z, x_hat = ae(torch.rand(2, n))
    assert z.shape == (2, 6) and x_hat.shape == (2, n)
    clone = autoencoder_from_config(ae.config())
    assert clone.config() == ae.config()


def test_build_autoencoder_presets_and_errors():
    assert build_autoencoder("mlp", 30).dims == [30, 500, 500, 2000, 10]
    assert build_autoencoder([64, 8], 30).dims == [30, 64, 8]
    assert build_autoencoder([30, 64, 8], 30).dims == [30, 64, 8]
    assert isinstance(build_autoencoder("conv", 784), ConvAutoencoder)
    module = MLPAutoencoder([30, 4])
    assert build_autoencoder(module, 30) is module
    with pytest.raises(ValueError, match="expects 30 input features but X has 12"):
        build_autoencoder(module, 12)
    with pytest.raises(ValueError, match="unknown autoencoder preset"):
        build_autoencoder("resnet50", 30)
    with pytest.raises(ValueError, match="image_shape"):
        build_autoencoder("conv", 30)
    with pytest.raises(ValueError, match="unknown activation"):
        MLPAutoencoder([4, 2], activation="swishy")


def test_resnet_preset_builds_icae_network():
    from aeclust.nn import build_autoencoder
    from aeclust.nn.resnet import ResNetAutoencoder

    ae = build_autoencoder("resnet", 28 * 28, embedding_dim=12)
    assert isinstance(ae, ResNetAutoencoder)
    z, x_hat = ae(torch.rand(3, 28 * 28))
    assert z.shape == (3, 12) and x_hat.shape == (3, 28 * 28)
    with pytest.raises(ValueError, match="needs image_shape"):
        build_autoencoder("resnet", 30)


def test_embedding_activation_bounds_the_code_and_survives_a_rebuild():
    # CCAE's network (Nousi and Tefas, Sec. 5.3.1): sigmoid units up to and including the code,
    # a linear reconstruction.
    ae = build_autoencoder([16, 3], 12, activation="sigmoid", embedding_activation="sigmoid")
    x = torch.randn(40, 12) * 50
    z = ae.encode(x)
    assert z.min() >= 0 and z.max() <= 1
    # the code is the sigmoid of the linear code layer's output, nothing else
    linear = autoencoder_from_config({**ae.config(), "embedding_activation": None})
    linear.load_state_dict(ae.state_dict())
    assert torch.allclose(z, torch.sigmoid(linear.encode(x)))
    assert ae.decode(z).min() < 0  # the reconstruction stays linear
    clone = autoencoder_from_config(ae.config())
    clone.load_state_dict(ae.state_dict())
    assert torch.equal(clone.encode(x), z)
    conv = build_autoencoder("conv", 64, embedding_dim=2, embedding_activation="tanh")
    assert conv.encode(torch.rand(3, 64) * 100).abs().max() <= 1
    # a linear code keeps the config it had before the option existed (pretraining cache keys)
    assert "embedding_activation" not in MLPAutoencoder([12, 3]).config()
    with pytest.raises(ValueError, match="embedding_activation='sigmoid' is for the 'mlp'"):
        build_autoencoder("resnet", 28 * 28, embedding_activation="sigmoid")
