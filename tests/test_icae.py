"""ICAE and its parts: PEDCC evenness, MMD, augmentation, the ResNet autoencoder, the estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from aeclust.augment import random_affine
from aeclust.methods.base import load
from aeclust.methods.icae import ICAE, sobel_loss
from aeclust.nn import ResNetAutoencoder, autoencoder_from_config
from aeclust.primitives import min_pairwise_angle, mmd, pedcc, simplex_angle

TINY = dict(
    channels=(4, 8),
    embedding_dim=8,
    epochs=2,
    batch_size=32,
    n_views=1,
    device="cpu",
    random_state=0,
)


# -- PEDCC ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,d", [(3, 2), (4, 3), (10, 60), (20, 160)])
def test_pedcc_approaches_the_regular_simplex(k, d):
    result = pedcc(k, d, n_iter=1000)
    assert result.centers.shape == (k, d) and result.centers.dtype == torch.float32
    assert torch.allclose(result.centers.norm(dim=1), torch.ones(k), atol=1e-5)
    assert result.min_angle == pytest.approx(simplex_angle(k), abs=0.5)
    # evenness: every pairwise angle is (nearly) the same
    cos = result.centers @ result.centers.T
    off = cos[~torch.eye(k, dtype=torch.bool)]
    assert float(off.max() - off.min()) < 0.02


def test_pedcc_spreads_more_points_than_dimensions():
    start = pedcc(20, 3, n_iter=0, random_state=1).min_angle
    result = pedcc(20, 3, n_iter=2000, random_state=1)
    # the optimum for 20 points on S^2 is about 47.4 degrees (Tammes problem)
    assert result.min_angle > 40 > start


def test_pedcc_is_deterministic_and_validates():
    a, b = pedcc(10, 60, random_state=3), pedcc(10, 60, random_state=3)
    assert torch.equal(a.centers, b.centers)
    assert not torch.equal(a.centers, pedcc(10, 60, random_state=4).centers)
    assert min_pairwise_angle(a.centers) == pytest.approx(a.min_angle)
    with pytest.raises(ValueError, match="n_centers"):
        pedcc(0, 3)
    with pytest.raises(ValueError, match="dim"):
        pedcc(3, 1)


# -- MMD -----------------------------------------------------------------------------------------
def test_mmd_is_zero_for_equal_sets_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 5, generator=g)
    assert float(mmd(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(mmd(x, x[torch.randperm(50, generator=g)])) == pytest.approx(0.0, abs=1e-6)
    y = torch.randn(50, 5, generator=g) + 2.0
    assert float(mmd(x, y)) > 0.5
    near = torch.randn(50, 5, generator=g)
    assert float(mmd(x, near)) < float(mmd(x, y))
    # bf16 inputs under autocast are computed in fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert mmd(x, y).dtype == torch.float32
    with pytest.raises(ValueError, match="columns"):
        mmd(x, y[:, :3])


def test_mmd_pulls_points_onto_the_centres():
    centers = pedcc(4, 8).centers
    z = torch.nn.functional.normalize(torch.randn(40, 8), dim=1).requires_grad_()
    opt = torch.optim.Adam([z], lr=0.05)
    before = float(mmd(z.detach(), centers.repeat(10, 1)))
    for _ in range(200):
        opt.zero_grad()
        mmd(z, centers.repeat(10, 1)).backward()
        opt.step()
    assert float(mmd(z.detach(), centers.repeat(10, 1))) < 0.2 * before
    nearest = (z.detach() @ centers.T).argmax(1)
    assert np.bincount(nearest.numpy(), minlength=4).min() >= 5


# -- augmentation and network ---------------------------------------------------------------------
def test_random_affine_identity_shift_and_flip():
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 2, 1] = 1.0
    assert torch.allclose(random_affine(img), img, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    flipped = [random_affine(img, hflip=True, generator=g) for _ in range(8)]
    assert any(torch.allclose(f, img.flip(-1), atol=1e-6) for f in flipped)
    batch = torch.rand(16, 1, 12, 12)
    out = random_affine(batch, rotation=10, shift=0.1, scale=(0.9, 1.1), shear=(-10, 5),
                        generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert out.shape == batch.shape and not torch.allclose(out, batch)
    again = random_affine(batch, rotation=10, shift=0.1, scale=(0.9, 1.1), shear=(-10, 5),
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="N, C, H, W"):
        random_affine(batch[0])


def test_resnet_autoencoder_shapes_and_config():
    ae = ResNetAutoencoder((1, 28, 28), channels=(4, 8, 16), embedding_dim=6)
    x = torch.rand(5, 784)
    z, x_hat = ae(x)
    assert z.shape == (5, 6) and x_hat.shape == (5, 784)
    assert torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)
    rebuilt = autoencoder_from_config(ae.config())
    rebuilt.load_state_dict(ae.state_dict())
    ae.eval(), rebuilt.eval()
    assert torch.equal(rebuilt.encode(x), ae.encode(x))
    small = ResNetAutoencoder((3, 20, 24), channels=(4, 8), embedding_dim=3, input_size=8)
    assert small.decode(small.encode(torch.rand(2, 3 * 20 * 24))).shape == (2, 3 * 20 * 24)
    with pytest.raises(ValueError, match="image_shape"):
        ResNetAutoencoder((28, 28))


def test_sobel_losses():
    x = torch.rand(3, 1, 8, 8)
    for kind in ("mse", "power"):
        assert float(sobel_loss(x, x, kind)) == pytest.approx(0.0, abs=1e-6)
        assert float(sobel_loss(x, torch.zeros_like(x), kind)) > 0.0
    with pytest.raises(ValueError, match="sobel_loss"):
        sobel_loss(x, x, "l1")


# -- the estimator --------------------------------------------------------------------------------
_CLUSTERING_REASON = (
    "check_clustering wants ARI > 0.4 on 50 two-feature blobs: ICAE is an image method (its "
    "convolutional network sees the 2 features as a zero-padded 2x2 image, its augmentations "
    "rotate and shift that image) and 2 epochs are 4 steps; longer runs pass or fail by seed "
    "(ARI 0.49 / -0.00 for seeds 0 / 42 after 20 epochs without augmentation)"
)
EXPECTED_FAILURES = {
    "check_clustering": _CLUSTERING_REASON,
    "check_clustering(readonly_memmap=True)": _CLUSTERING_REASON,
}


@parametrize_with_checks(
    [ICAE(n_clusters=3, **TINY)], expected_failed_checks=lambda est: EXPECTED_FAILURES
)
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_icae_deterministic_predict_equals_labels_and_roundtrip(digits, tmp_path):
    x, _ = digits
    x = x[:400]
    a = ICAE(n_clusters=10, image_shape=(1, 8, 8), **TINY).fit(x)
    b = ICAE(n_clusters=10, image_shape=(1, 8, 8), **TINY).fit(x)
    assert np.array_equal(a.labels_, b.labels_)
    assert np.array_equal(a.predict(x), a.labels_)
    assert a.labels_.dtype == np.int64 and 0 <= a.labels_.min() and a.labels_.max() < 10
    assert a.cluster_centers_.shape == (10, 8)
    assert a.pedcc_min_angle_ > 80.0  # 10 points in 8 dimensions: below the simplex
    assert a.n_iter_ == len(a.history_) == 2
    assert {"loss", "augmentation", "mmd", "reconstruction", "sobel"} <= set(a.history_[0])
    z = a.transform(x)
    assert z.shape == (400, 8) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-4)
    # labels_ is the nearest centre by cosine
    assert np.array_equal((z @ a.cluster_centers_.T).argmax(1), a.labels_)
    images = a.generate(3)
    assert images.shape == (30, 64) and images.min() >= 0 and images.max() <= 1
    restored = load(a.save(tmp_path / "icae.pt"))
    assert restored.get_params() == a.get_params()
    assert np.array_equal(restored.predict(x), a.labels_)
    assert np.allclose(restored.generate(3), images, atol=1e-5)


def test_icae_learns_digits(digits):
    from aeclust.metrics import cluster_accuracy

    x, y = digits
    est = ICAE(n_clusters=10, image_shape=(1, 8, 8), channels=(8, 16, 32), embedding_dim=16,
               epochs=6, n_views=1, device="cpu", random_state=0)  # fmt: skip
    est.fit(x)
    # k-means on raw digits gets about 0.79; this is a 6-epoch run, well above chance (0.1)
    assert cluster_accuracy(y, est.labels_) > 0.5
    assert est.history_[-1]["mmd"] < est.history_[0]["mmd"]


def test_icae_ablation_switches_and_errors(digits):
    x, _ = digits
    x = x[:200]
    est = ICAE(n_clusters=4, image_shape=(1, 8, 8), augment=False, sobel_weight=0.0,
               latent_noise=0.0, rec_weight=0.0, **{**TINY, "epochs": 1})  # fmt: skip
    est.fit(x)
    h = est.history_[0]
    assert h["augmentation"] == h["reconstruction"] == h["sobel"] == 0.0 and h["mmd"] > 0
    with pytest.raises(ValueError, match="image_shape"):
        ICAE(n_clusters=3, image_shape=(1, 7, 7), **TINY).fit(x)
    with pytest.raises(ValueError, match="sobel_loss"):
        ICAE(n_clusters=3, sobel_loss="l2", **TINY).fit(x)
    with pytest.raises(ValueError, match="aug_weight"):
        ICAE(n_clusters=3, aug_weight=-1.0, **TINY).fit(x)
    with pytest.raises(ValueError, match="autoencoder"):
        ICAE(n_clusters=3, autoencoder="mlp", **TINY).fit(x)
    assert math.isfinite(est.pedcc_min_angle_)


def test_plot_generated_grid(tmp_path):
    pytest.importorskip("matplotlib")
    from aeclust.bench.plots import plot_generated_grid

    images = np.random.default_rng(0).random((12, 64)).astype(np.float32)
    path = plot_generated_grid(images, tmp_path / "g" / "grid.png", image_shape=(1, 8, 8), n_rows=3)
    assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="rows"):
        plot_generated_grid(images, tmp_path / "x.png", image_shape=(1, 8, 8), n_rows=5)
