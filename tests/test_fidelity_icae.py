"""ICAE fidelity: each step of the method checked on a tiny input against a value worked out by
hand (the arithmetic is in the comments). The table that maps these tests to the paper's
equations and to the authors' code is in docs/METHODS.md (ICAE). Complements
tests/test_icae.py (properties, the estimator's contract); nothing here repeats it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from aeclust.augment import random_affine
from aeclust.methods.icae import ICAE, sobel_loss, sobel_responses
from aeclust.primitives import gaussian_kernel_bandwidths, mmd, pedcc

pytestmark = pytest.mark.filterwarnings("ignore::aeclust.diagnostics.DegenerateClusteringWarning")


@pytest.fixture(scope="module", autouse=True)
def _import_torch_optim():
    # The first optimiser a process builds imports torch's compiler stack (1-2 s, once); do it
    # here so that the test that happens to come first is not charged for it.
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])


def _k(d2: float, base: float) -> float:
    """The 5-kernel sum at squared distance d2 with bandwidths base * 2^-2..2^2."""
    return sum(math.exp(-d2 / (base * 2.0**i)) for i in (-2, -1, 0, 1, 2))


# -- Eq. 2: bandwidths and MMD ------------------------------------------------------------------
def test_bandwidths_mean_off_diagonal_squared_distance_times_powers_of_two():
    # Points 0, 1, 3 on a line: squared distances 1, 9, 4, each counted twice -> sum 28 over
    # n^2 - n = 6 ordered pairs (the zero diagonal left out): base 28 / 6 = 14/3.
    d2 = torch.tensor([[0.0, 1.0, 9.0], [1.0, 0.0, 4.0], [9.0, 4.0, 0.0]], requires_grad=True)
    bws = gaussian_kernel_bandwidths(d2)
    base = 14.0 / 3.0
    expected = [base / 4, base / 2, base, 2 * base, 4 * base]  # 7/6, 7/3, 14/3, 28/3, 56/3
    assert bws.tolist() == pytest.approx(expected, rel=1e-6)
    assert not bws.requires_grad  # detached: the bandwidths follow the data, never optimised
    # base * mul^(i - num // 2): 3 kernels with ratio 3 are base/3, base, 3 base
    assert gaussian_kernel_bandwidths(d2, 3.0, 3).tolist() == pytest.approx(
        [base / 3, base, 3 * base], rel=1e-6
    )


def test_mmd_of_two_single_points():
    # Joint set {0, 1}: base = (1 + 1) / (4 - 2) = 1, bandwidths 1/4 .. 4.
    # k(0) = 5 (five kernels at distance 0); k(1) = e^-4 + e^-2 + e^-1 + e^-0.5 + e^-0.25
    #      = 0.018316 + 0.135335 + 0.367879 + 0.606531 + 0.778801 = 1.906862.
    # MMD^2 = kxx + kyy - 2 kxy = 5 + 5 - 2 * 1.906862 = 6.186276.
    got = mmd(torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    assert float(got) == pytest.approx(6.186276, abs=1e-5)
    assert _k(1.0, 1.0) == pytest.approx(1.906862, abs=1e-6)


def test_mmd_two_against_two_points():
    # x = {0, 2}, y = {1, 1}. Squared distances in the joint set {0, 2, 1, 1}: 4 (0-2), 1 (four
    # pairs across), 0 (1-1): ordered sum 2 * (4 + 4 * 1) = 16 over 12 pairs, base = 4/3,
    # bandwidths 1/3, 2/3, 4/3, 8/3, 16/3.
    # k(1) = e^-3 + e^-1.5 + e^-0.75 + e^-0.375 + e^-0.1875 = 2.261602
    # k(4) = e^-12 + e^-6 + e^-3 + e^-1.5 + e^-0.75       = 0.747769
    # kxx = (5 + 5 + 2 k(4)) / 4 = 2.873884; kyy = 5; kxy = k(1)
    # MMD^2 = 2.873884 + 5 - 2 * 2.261602 = 3.350680
    got = mmd(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]]))
    assert float(got) == pytest.approx(3.350680, abs=1e-5)
    # in two dimensions (the same points on a diagonal scaled to the same distances) too
    u = torch.tensor([[0.6, 0.8]])
    got2 = mmd(torch.cat([0 * u, 2 * u]), torch.cat([u, u]))
    assert float(got2) == pytest.approx(3.350680, abs=1e-5)


def test_mmd_unequal_sizes_average_each_block():
    # x = {0}, y = {1, 1}: squared distances 1, 1, 0 -> ordered sum 4 over 6 pairs, base = 2/3.
    # k(1) = e^-6 + e^-3 + e^-1.5 + e^-0.75 + e^-0.375 = 1.435052; kxx = 5, kyy = 5 (both y
    # points coincide), kxy = k(1): MMD^2 = 10 - 2 * 1.435052 = 7.129896. (The authors'
    # mean(XX + YY - XY - YX) needs n = m; here each block is averaged on its own.)
    x, y = torch.tensor([[0.0]]), torch.tensor([[1.0], [1.0]])
    assert float(mmd(x, y)) == pytest.approx(7.129896, abs=1e-5)
    assert float(mmd(y, x)) == pytest.approx(7.129896, abs=1e-5)


# -- PEDCC --------------------------------------------------------------------------------------
def test_pedcc_first_iteration_is_still_and_the_second_is_one_repulsion_step():
    # Authors' update order: the position moves with the *previous* velocity, which starts at 0,
    # so iteration 1 only sets v = 0.01 F_t and iteration 2 moves each point by v.
    # Two unit points at angle t in 2-D: |r1 - r2| = 2 sin(t/2); the tangential part of r1 - r2
    # at r1 has length sin t; so |F_t| = sin t / (2 sin(t/2))^3 and each point turns away from
    # the other by atan(0.01 |F_t|). Seed 1 starts at t = 62.352 deg: |F_t| = 0.88576 / 1.10975
    # = 0.79817, atan(0.0079817) = 0.45731 deg, new angle 62.352 + 2 * 0.45731 = 63.267 deg.
    start = pedcc(2, 2, n_iter=0, random_state=1)
    one = pedcc(2, 2, n_iter=1, random_state=1)
    two = pedcc(2, 2, n_iter=2, random_state=1)
    assert torch.equal(one.centers, start.centers)
    t = math.radians(start.min_angle)
    f_t = math.sin(t) / (2 * math.sin(t / 2)) ** 3
    expected = start.min_angle + 2 * math.degrees(math.atan(0.01 * f_t))
    assert two.min_angle == pytest.approx(expected, abs=1e-4)
    assert two.min_angle - start.min_angle > 0.5  # it did move (0.915 deg for seed 1)
    # symmetric: the bisector of the two points does not turn
    mid0 = start.centers.sum(0) / start.centers.sum(0).norm()
    mid2 = two.centers.sum(0) / two.centers.sum(0).norm()
    assert torch.allclose(mid0, mid2, atol=1e-6)


def test_pedcc_two_points_end_antipodal():
    # The equilibrium of two repelling unit charges is 180 degrees. The force vanishes there
    # (sin t -> 0) and the velocity is never damped, so the approach is slow: after the
    # authors' 200 iterations the angle is still 166-180 deg depending on the seed (see the
    # fidelity note); 1000 iterations settle these seeds.
    for seed in (1, 2, 3):
        assert pedcc(2, 2, n_iter=1000, random_state=seed).min_angle > 179.9


# -- Eqs. 4-6: the Sobel term -------------------------------------------------------------------
def test_sobel_responses_are_cross_correlations_with_zero_padding():
    # A single 1 in the middle of a 3x3 image: the response of a cross-correlation is the kernel
    # rotated by 180 degrees.
    img = torch.zeros(1, 1, 3, 3)
    img[0, 0, 1, 1] = 1.0
    gx, gy = sobel_responses(img)
    assert gx[0, 0].tolist() == [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]
    assert gy[0, 0].tolist() == [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]
    # A constant 2x2 image c = 0.5 (zero padding makes edges at the frame): at (0, 0) the
    # kernel sees the image under G_x's entries 0, 2, 0, 1 -> 3c; at (0, 1) under -2, 0, -1, 0
    # -> -3c; likewise for G_y.
    gx, gy = sobel_responses(torch.full((1, 1, 2, 2), 0.5))
    assert gx[0, 0].tolist() == [[1.5, -1.5], [1.5, -1.5]]
    assert gy[0, 0].tolist() == [[1.5, 1.5], [-1.5, -1.5]]


def test_sobel_loss_mse_and_power_on_a_shifted_pixel():
    # 5x5 images, a single 1 at (2, 2) in x and at (2, 1) in y: the same edges, one column apart.
    x = torch.zeros(1, 1, 5, 5)
    y = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    y[0, 0, 2, 1] = 1.0
    # G_x responses: rows 1..3 carry w * [1, 0, -1] (w = 1, 2, 1), at columns 1..3 for x and
    # 0..2 for y; per row the difference is w * [-1, 1, 1, -1, 0], squares 4 w^2 -> 4 * 6 = 24.
    # G_y: rows 1 and 3 carry +-[1, 2, 1]; difference per row [-1, -1, 1, 1, 0], squares 4 each
    # -> 8. "mse": 24 / 25 + 8 / 25 = 32 / 25 = 1.28.
    assert float(sobel_loss(x, y, "mse")) == pytest.approx(1.28, abs=1e-6)
    # "power" (Eq. 6): the mean squares are equal (12/25 + 12/25 for both) -> 0.
    assert float(sobel_loss(x, y, "power")) == pytest.approx(0.0, abs=1e-7)


def test_sobel_power_takes_the_absolute_value_per_image():
    # Image A: x has the pixel, y is blank; image B: the other way round. Per image
    # |MS(y) - MS(x)| = 24/25 = 0.96 (mean squares 12/25 + 12/25), so the mean of the absolute
    # values is 0.96, while the absolute value of the batch mean would be 0.
    x = torch.zeros(2, 1, 5, 5)
    y = torch.zeros(2, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    y[1, 0, 2, 2] = 1.0
    assert float(sobel_loss(x, y, "power")) == pytest.approx(0.96, abs=1e-6)
    # "mse" against a blank image: 12/25 + 12/25 per image, the same 0.96 on average
    assert float(sobel_loss(x, y, "mse")) == pytest.approx(0.96, abs=1e-6)


# -- Sec. 4.3: augmentation geometry --------------------------------------------------------------
def test_random_affine_shear_and_rotation_directions():
    # Shear with tan(phi) = 0.5 on a 9x9 image with a vertical line in column 4: row r moves
    # 0.5 * (r - 4) pixels to the right (positive shear slants the bottom to the right).
    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, :, 4] = 1.0
    phi = math.degrees(math.atan(0.5))
    out = random_affine(img, shear=(phi, phi))[0, 0]
    assert float(out[8, 6]) == pytest.approx(1.0, abs=1e-5)  # +2 px
    assert float(out[0, 2]) == pytest.approx(1.0, abs=1e-5)  # -2 px
    assert float(out[5, 4]) == pytest.approx(0.5, abs=1e-5)  # +0.5 px: split over 4 and 5
    assert float(out[5, 5]) == pytest.approx(0.5, abs=1e-5)
    # Rotation by +90 degrees takes the right arm (row 4, columns 6-8) to the bottom (rows 6-8,
    # column 4): clockwise on screen (PIL's and torchvision's positive angles turn the other way;
    # the range +-10 is symmetric).
    arm = torch.zeros(1, 1, 9, 9)
    arm[0, 0, 4, 6:] = 1.0
    rot = random_affine(arm, rotation=(90.0, 90.0))[0, 0]
    expected = torch.zeros(9, 9)
    expected[6:, 4] = 1.0
    assert torch.allclose(rot, expected, atol=1e-5)


# -- the estimator's loss terms (Eqs. 1, 2, 3, 4-6, 7), with a scripted network -----------------
class _ScriptedAE(nn.Module):
    """Stand-in network with codes fixed by position: in training the encoder receives the clean
    batch and then the V views, V + 1 blocks of m rows, and block v gets the code ``table[v]``
    (``table[0]`` for every row otherwise). The decoder returns zeros and keeps its last input."""

    def __init__(self, n_features: int, table: list[list[float]]) -> None:
        super().__init__()
        self.n_features = n_features
        self.register_buffer("table", torch.tensor(table, dtype=torch.float32))
        self.w = nn.Parameter(torch.zeros(()))
        self.decoded: torch.Tensor | None = None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self.table.shape[0]
        if self.training and x.shape[0] % blocks == 0:
            codes = self.table.repeat_interleave(x.shape[0] // blocks, dim=0)
        else:
            codes = self.table[:1].expand(x.shape[0], -1)
        return codes + 0.0 * self.w

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self.decoded = z.detach().clone()
        return torch.zeros(z.shape[0], self.n_features) + 0.0 * self.w


def _fit(table, *, m=4, value=0.75, **params) -> ICAE:
    x = np.full((m, 4), value, dtype=np.float32)
    settings = dict(
        n_clusters=2,
        image_shape=(1, 2, 2),
        embedding_dim=len(table[0]),
        epochs=1,
        batch_size=m,
        mmd_weight=0.0,
        rec_weight=0.0,
        sobel_weight=0.0,
        device="cpu",
        random_state=0,
    )
    settings.update(params)
    return ICAE(autoencoder=_ScriptedAE(4, table), **settings).fit(x)


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_loss1_is_the_chain_of_squared_distances_at_radius_alpha():
    # Clean code at 0 deg, views 1-3 at 60, 120, 180 deg (unit vectors). Each link of the chain
    # clean -> v1 -> v2 -> v3 has |dz|^2 = 2 - 2 cos 60 = 1: Loss1 = 3 per image (Eq. 8).
    # (Each view against the clean code would give 1 + 3 + 4 = 8; the code's per-coordinate
    # MSE would give 3 / d = 1.5.)
    table = [_unit(0), _unit(60), _unit(120), _unit(180)]
    est = _fit(table, n_views=3, aug_weight=0.01, latent_radius=2.0)
    record = est.history_[0]
    assert record["augmentation"] == pytest.approx(3.0, abs=1e-5)
    # Eq. 7 with only a > 0: a * alpha^2 * Loss1 = 0.01 * 4 * 3 = 0.12
    assert record["loss"] == pytest.approx(0.12, abs=1e-6)
    # default radius alpha = sqrt(d) = sqrt(2): 0.01 * 2 * 3 = 0.06
    est = _fit(table, n_views=3, aug_weight=0.01)
    assert est.history_[0]["loss"] == pytest.approx(0.06, abs=1e-6)


def test_loss2_uses_every_view_and_the_centroids_tiled():
    # Every code (clean and view) is the first PEDCC centroid u0; targets are u0, u1, u0, u1
    # (the k = 2 centroids tiled to the 4 codes of m = 2 images x 2 blocks). With s = |u0 - u1|^2
    # the joint set has 6 u0 and 2 u1: ordered sum of squared distances 2 * 6 * 2 * s = 24 s
    # over 8 * 7 = 56 pairs, base = 3s/7. k(s) = sum_i exp(-(7/3) 2^-i), i = -2..2,
    # = e^-9.333 + e^-4.667 + e^-2.333 + e^-1.167 + e^-0.583 = 0.975902.
    # kxx = 5, kyy = (2 * 5 + 2 * k) / 4, kxy = (5 + k) / 2 -> MMD^2 = 2.5 - k / 2 = 2.012049,
    # whatever the angle between u0 and u1. (The clean codes alone, as in the authors' current
    # code: base = s/2, k = 1.128396, MMD^2 = 1.935802.)
    u0 = pedcc(2, 2, n_iter=200, random_state=0).centers[0].tolist()
    est = _fit([u0, u0], m=2, n_views=1, aug_weight=0.0, mmd_weight=1.0)
    assert np.allclose(est.cluster_centers_[0], u0)
    assert est.history_[0]["mmd"] == pytest.approx(2.012049, abs=1e-5)
    assert 2.5 - _k(1.0, 3 / 7) / 2 == pytest.approx(2.012049, abs=1e-6)
    # without views (Table 4's ablation): only the clean codes -> 1.935802
    est = _fit([u0], m=2, augment=False, aug_weight=0.0, mmd_weight=1.0)
    assert est.history_[0]["mmd"] == pytest.approx(1.935802, abs=1e-5)


def test_loss3_loss4_latent_noise_and_the_weighted_total():
    # Inputs all 0.75 -> (0.75 - 0.5) / 0.5 = 0.5 after the [-1, 1] normalisation; the scripted
    # decoder returns 0. Loss3 = mean((0 - 0.5)^2) = 0.25 (Eq. 3). Loss4 ("mse"): a constant
    # 2x2 image c = 0.5 has Sobel responses +-3c everywhere (zero padding), the blank
    # reconstruction none: 9c^2 + 9c^2 = 18 * 0.25 = 4.5. Eq. 7 with Table 3's c = 1, d = 0.05:
    # 1 * 0.25 + 0.05 * 4.5 = 0.475.
    d = 50
    code = [1.0] + [0.0] * (d - 1)
    m = 100
    est = _fit([code], m=m, augment=False, aug_weight=0.0, rec_weight=1.0, sobel_weight=0.05)
    record = est.history_[0]
    assert record["reconstruction"] == pytest.approx(0.25, abs=1e-6)
    assert record["sobel"] == pytest.approx(4.5, abs=1e-5)
    assert record["loss"] == pytest.approx(0.475, abs=1e-5)
    # Eqs. 4-5: the decoder got [z; z + beta n]; beta = 0.05 per coordinate on the unit code
    # (5,000 draws: the sample std is within 5 % of 0.05 with overwhelming probability; the
    # authors' current code uses 0.05 / sqrt(d) = 0.0071 here).
    decoded = est.autoencoder_.decoded
    assert decoded.shape == (2 * m, d)
    assert torch.allclose(decoded[:m], torch.tensor(code).expand(m, d))
    noise = decoded[m:] - decoded[:m]
    assert float(noise.std()) == pytest.approx(0.05, rel=0.05)
    assert abs(float(noise.mean())) < 0.005


# -- Sec. 4.2: assignment by cosine ---------------------------------------------------------------
def test_assignment_is_the_largest_cosine_to_a_centroid():
    # Centroids at 0, 120 and 240 degrees. A code at 50 deg is 50 deg from the first and 70 deg
    # from the second -> 0; 70 deg -> 1 (50 deg away); 200 deg -> 2 (40 deg from 240, 80 from
    # 120); 330 deg -> 0 (30 deg). A code's length does not matter (cosine).
    est = ICAE(n_clusters=3, embedding_dim=2)
    est.cluster_centers_ = np.array([_unit(0), _unit(120), _unit(240)], dtype=np.float32)
    z = torch.tensor([_unit(50), _unit(70), _unit(200), _unit(330)])
    assert est._assign(z).tolist() == [0, 1, 2, 0]
    assert est._assign(5.0 * z).tolist() == [0, 1, 2, 0]
    # the cosines themselves: cos 50 = 0.642788 against cos 70 = 0.342020 for the first code
    cos = z @ torch.from_numpy(est.cluster_centers_).T
    assert float(cos[0, 0]) == pytest.approx(0.642788, abs=1e-6)
    assert float(cos[0, 1]) == pytest.approx(0.342020, abs=1e-6)
