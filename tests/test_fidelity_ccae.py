"""CCAE / dAE (Nousi & Tefas) step by step against values worked out by hand.

Each test takes a few points in two dimensions through one equation or algorithm step of the
paper (eqs. 6-15, Algorithms 1-2, the nearest-centroid and kNN classifiers of Sec. 3.3) and
compares the result with the arithmetic written in its comments. The mapping from the paper to
the code is the fidelity table of docs/METHODS.md (CCAE); ``tests/test_ccae.py`` holds the
checks on random data and the end-to-end fits, which these tests do not repeat.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from aeclust.evaluation import evaluate_split, make_classifier
from aeclust.evaluation.classifiers import score_classifiers
from aeclust.methods.ccae import CCAE, ClassSeparatingAE, train_on_targets
from aeclust.primitives import kmeans


@pytest.fixture(scope="module", autouse=True)
def _optimizer_machinery_loaded():
    # torch imports its compiler stack (~2 s) the first time an optimiser is built; pay it once
    # here rather than inside whichever test builds the first one.
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])


def _close(got: torch.Tensor, want: list[list[float]]) -> None:
    torch.testing.assert_close(got, torch.tensor(want), atol=1e-5, rtol=0)


# -- Algorithm 1: SampleShift with the CCAE weights ----------------------------------------------
def test_ccae1_centre_shift_eqs_7_and_9_and_its_repetition():
    # Targets of two clusters of sizes 3 and 2 (W_ij = 1/|V_k| of eq. 9: plain cluster means of
    # the targets). Cluster 0: (0,0), (4,0), (2,6) -> mean (2,2); cluster 1: (10,10), (12,14)
    # -> mean (11,12). The codes deliberately put sample 2 next to cluster 1's centre: the labels,
    # not the codes, choose the mean.
    t = torch.tensor([[0.0, 0.0], [4.0, 0.0], [2.0, 6.0], [10.0, 10.0], [12.0, 14.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    codes = torch.tensor([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 5.0], [6.0, 5.0]])
    centres = torch.tensor([[0.0, 0.5], [5.5, 5.0]])
    est = CCAE(2, shift="centre", alpha=0.25)
    # eq. 7, alpha = 0.25: 0.75 x~ + 0.25 m
    #   (0,0)  -> (0.5, 0.5)      (4,0) -> (3 + 0.5, 0 + 0.5) = (3.5, 0.5)
    #   (2,6)  -> (1.5 + 0.5, 4.5 + 0.5) = (2, 5)
    #   (10,10)-> (7.5 + 2.75, 7.5 + 3) = (10.25, 10.5)
    #   (12,14)-> (9 + 2.75, 10.5 + 3) = (11.75, 13.5)
    once = est.shift_targets(t, codes, labels, centres)
    _close(once, [[0.5, 0.5], [3.5, 0.5], [2.0, 5.0], [10.25, 10.5], [11.75, 13.5]])
    # x~(2) is built on x~(1) (eq. 7's superscripts). The means stay (2,2) and (11,12)
    # ((0.5 + 3.5 + 2) / 3 = 2, (0.5 + 0.5 + 5) / 3 = 2), so x~(2) = m + 0.75^2 (x - m),
    # 0.75^2 = 0.5625: (0,0) -> 2 - 1.125 = 0.875 on both axes; (4,0) -> (3.125, 0.875);
    # (2,6) -> (2, 2 + 2.25) = (2, 4.25); (10,10) -> (11 - 0.5625, 12 - 1.125) = (10.4375, 10.875);
    # (12,14) -> (11.5625, 13.125)
    twice = est.shift_targets(once, codes, labels, centres)
    _close(
        twice, [[0.875, 0.875], [3.125, 0.875], [2.0, 4.25], [10.4375, 10.875], [11.5625, 13.125]]
    )


# Three clusters of two samples. Targets: cluster 0 (0,0), (2,0) -> mean M0 = (1,0);
# cluster 1 (10,0), (10,2) -> M1 = (10,1); cluster 2 (0,10), (2,10) -> M2 = (1,10).
# Codes: k-means centres C0 = (0,0), C1 = (5,0), C2 = (-5,0) (the means of the codes below).
_T3 = [[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 2.0], [0.0, 10.0], [2.0, 10.0]]
_Z3 = [[-1.0, 0.0], [1.0, 0.0], [5.0, 1.0], [5.0, -1.0], [-5.0, 1.0], [-5.0, -1.0]]
_C3 = [[0.0, 0.0], [5.0, 0.0], [-5.0, 0.0]]
_L3 = [0, 0, 1, 1, 2, 2]


def test_ccae2_rival_is_the_nearest_other_centre_in_the_code_space():
    t, codes, centres = torch.tensor(_T3), torch.tensor(_Z3), torch.tensor(_C3)
    labels = torch.tensor(_L3)
    est = CCAE(3, shift="centre+rival", alpha=0.5, beta=0.1, rival="nearest")
    # Line 2 (eq. 7, alpha 0.5, halfway to the own mean): (0.5,0), (1.5,0), (10,0.5), (10,1.5),
    # (0.5,10), (1.5,10); the cluster means stay M0, M1, M2.
    # Nearest other centre to each code (squared distances):
    #   (-1,0): C1 36, C2 16 -> cluster 2     (1,0): C1 16, C2 36 -> cluster 1
    #   (5,+-1): C0 26, C2 101 -> cluster 0   (-5,+-1): C0 26, C1 101 -> cluster 0
    # (in the target space sample 0's line-2 target (0.5,0) is nearer M1, 91.25 against 100.25:
    # the codes decide).
    # Line 3 (eq. 11, beta 0.1): 1.1 x~ - 0.1 M_rival
    #   (0.5,0)  - 0.1 (1,10) = (0.55 - 0.1, -1)     = (0.45, -1)
    #   (1.5,0)  - 0.1 (10,1) = (1.65 - 1, -0.1)     = (0.65, -0.1)
    #   (10,0.5) - 0.1 (1,0)  = (11 - 0.1, 0.55)     = (10.9, 0.55)
    #   (10,1.5) - 0.1 (1,0)  = (10.9, 1.65)
    #   (0.5,10) - 0.1 (1,0)  = (0.55 - 0.1, 11)     = (0.45, 11)
    #   (1.5,10) - 0.1 (1,0)  = (1.55, 11)
    got = est.shift_targets(t, codes, labels, centres)
    _close(
        got, [[0.45, -1.0], [0.65, -0.1], [10.9, 0.55], [10.9, 1.65], [0.45, 11.0], [1.55, 11.0]]
    )


def test_ccae2_rival_all_is_eq_12_as_printed():
    t, codes, centres = torch.tensor(_T3), torch.tensor(_Z3), torch.tensor(_C3)
    labels = torch.tensor(_L3)
    est = CCAE(3, shift="centre+rival", alpha=0.5, beta=0.1, rival="all")
    # m_i = mean of the (line-2) targets of every other cluster (W_ij = 1/|V_-k|, four samples):
    #   cluster 0: ((10 + 10 + 0.5 + 1.5) / 4, (0.5 + 1.5 + 10 + 10) / 4) = (5.5, 5.5)
    #   cluster 1: ((0.5 + 1.5 + 0.5 + 1.5) / 4, (0 + 0 + 10 + 10) / 4)   = (1, 5)
    #   cluster 2: ((0.5 + 1.5 + 10 + 10) / 4, (0 + 0 + 0.5 + 1.5) / 4)   = (5.5, 0.5)
    # 1.1 x~ - 0.1 m: (0.55 - 0.55, -0.55) = (0, -0.55); (1.65 - 0.55, -0.55) = (1.1, -0.55);
    #   (11 - 0.1, 0.55 - 0.5) = (10.9, 0.05); (10.9, 1.65 - 0.5) = (10.9, 1.15);
    #   (0.55 - 0.55, 11 - 0.05) = (0, 10.95); (1.65 - 0.55, 10.95) = (1.1, 10.95)
    got = est.shift_targets(t, codes, labels, centres)
    _close(
        got, [[0.0, -0.55], [1.1, -0.55], [10.9, 0.05], [10.9, 1.15], [0.0, 10.95], [1.1, 10.95]]
    )


# Two clusters of three. Codes on a line: cluster 0 at 0, 1, 3; cluster 1 at 10, 11, 13.
# Targets elsewhere: (0,0), (4,0), (0,8) and (20,0), (20,4), (24,4).
_ZN = [[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [10.0, 0.0], [11.0, 0.0], [13.0, 0.0]]
_TN = [[0.0, 0.0], [4.0, 0.0], [0.0, 8.0], [20.0, 0.0], [20.0, 4.0], [24.0, 4.0]]
_LN = [0, 0, 0, 1, 1, 1]


def test_ccae3_moves_towards_the_nearest_same_cluster_neighbour_in_the_code_space():
    t, codes, labels = torch.tensor(_TN), torch.tensor(_ZN), torch.tensor(_LN)
    centres = torch.tensor([[4 / 3, 0.0], [34 / 3, 0.0]])
    est = CCAE(2, shift="neighbours", alpha=0.5, n_neighbours=1)
    # eq. 10 with n = 1, nearest same-cluster code, the sample excluded:
    #   0 -> 1, 1 -> 0 (1 < 2), 3 -> 1 (2 < 3); 10 -> 11, 11 -> 10 (1 < 2), 13 -> 11.
    # (In the target space sample 2, (0,8), is nearer (0,0) than (4,0): the codes decide.)
    # eq. 7, alpha 0.5, the mean of the sample's and its neighbour's targets:
    #   ((0,0) + (4,0)) / 2 = (2,0) twice; ((0,8) + (4,0)) / 2 = (2,4);
    #   ((20,0) + (20,4)) / 2 = (20,2) twice; ((24,4) + (20,4)) / 2 = (22,4)
    got = est.shift_targets(t, codes, labels, centres)
    _close(got, [[2.0, 0.0], [2.0, 0.0], [2.0, 4.0], [20.0, 2.0], [20.0, 2.0], [22.0, 4.0]])


def test_ccae4_then_away_from_the_nearest_rival_neighbour_of_the_shifted_targets():
    t, codes, labels = torch.tensor(_TN), torch.tensor(_ZN), torch.tensor(_LN)
    centres = torch.tensor([[4 / 3, 0.0], [34 / 3, 0.0]])
    est = CCAE(2, shift="neighbours+rivals", alpha=0.5, beta=0.1, n_neighbours=1, n_rivals=1)
    # Line 2 as in the CCAE-3 test: (2,0), (2,0), (2,4), (20,2), (20,2), (22,4).
    # eq. 13 with r = 1, the nearest code of the other cluster: 0, 1, 3 -> 10 (sample 3);
    # 10, 11, 13 -> 3 (sample 2). Its line-2 target: (20,2) and (2,4) (not the original (20,0)
    # and (0,8)). Line 3, 1.1 x~ - 0.1 r:
    #   (2.2 - 2, 0 - 0.2) = (0.2, -0.2) twice;   (2.2 - 2, 4.4 - 0.2) = (0.2, 4.2)
    #   (22 - 0.2, 2.2 - 0.4) = (21.8, 1.8) twice; (24.2 - 0.2, 4.4 - 0.4) = (24, 4)
    got = est.shift_targets(t, codes, labels, centres)
    _close(got, [[0.2, -0.2], [0.2, -0.2], [0.2, 4.2], [21.8, 1.8], [21.8, 1.8], [24.0, 4.0]])


# -- Eq. 6: the loss the autoencoder is retrained on ---------------------------------------------
class _ShiftByBias(nn.Module):
    """x_hat = x + b with b = 0 at the start: eq. 6 and its gradient are easy to work by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.zeros(2))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.b


def test_eq6_retraining_loss_is_the_squared_error_to_the_shifted_targets():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 3.0]])
    ae = _ShiftByBias()
    first = train_on_targets(ae, x, targets, epochs=1, batch_size=2, lr=0.1, seed=0)
    # One batch, b = 0: x_hat - x~ = (-1, 0), (0, -2); squares 1 + 0 + 0 + 4 = 5, the sum of
    # eq. 6; the code averages over the N * D = 4 entries: 5 / 4 = 1.25.
    # Gradient in b: 2 / 4 * sum_i (x_i - x~_i) = 0.5 * (-1, -2) = (-0.5, -1); Adam's first step
    # is lr * g / |g|, 0.1 against the gradient on each axis: b = (0.1, 0.1), towards x~.
    np.testing.assert_allclose(first[0]["loss"], 1.25, atol=1e-6)
    torch.testing.assert_close(ae.b.detach(), torch.tensor([0.1, 0.1]), atol=1e-6, rtol=0)
    # Next round: x_hat - x~ = (-0.9, 0.1), (0.1, -1.9): (0.81 + 0.01 + 0.01 + 3.61) / 4 = 1.11.
    # A fresh Adam (one per round) again steps exactly 0.1: b = (0.2, 0.2) (Adam state carried
    # over from the first round would give (0.1988, 0.1996)).
    second = train_on_targets(ae, x, targets, epochs=1, batch_size=2, lr=0.1, seed=1)
    np.testing.assert_allclose(second[0]["loss"], 1.11, atol=1e-6)
    torch.testing.assert_close(ae.b.detach(), torch.tensor([0.2, 0.2]), atol=1e-6, rtol=0)


# -- Algorithm 1, lines 6-14: the loop -----------------------------------------------------------
def test_kmeans_after_a_shift_starts_from_the_previous_centres():
    # Algorithm 1, line 13. Codes 0, 1, 4, 5 on a line, previous centres 0 and 1.
    # Lloyd 1: 0 -> c0; 1, 4, 5 -> c1: c0 = 0, c1 = 10/3.
    # Lloyd 2: 1 -> c0 (1 < (7/3)^2); c0 = 0.5, c1 = 4.5; Lloyd 3: unchanged.
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [4.0, 0.0], [5.0, 0.0]])
    res = kmeans(z, 2, init=torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    _close(res.centers, [[0.5, 0.0], [4.5, 0.0]])
    assert res.labels.tolist() == [0, 0, 1, 1]
    # the cluster indices follow the given centres' order
    res = kmeans(z, 2, init=torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    _close(res.centers, [[4.5, 0.0], [0.5, 0.0]])
    assert res.labels.tolist() == [1, 1, 0, 0]


def test_ccae_loop_shifts_the_previous_targets_each_round():
    # Two groups of four points 0.05 (on both axes) from their means (0.15,0.15) and (0.85,0.85):
    # |x - m| = 0.05 sqrt(2) = 0.0707107 for every point. With the clusters found again each
    # round, CCAE-1 gives x~(t) = m + (1 - alpha)^t (x - m); alpha = 0.5:
    #   moved in round t = alpha (1 - alpha)^(t-1) |x - m|: 0.0353553, 0.0176777, 0.0088388
    #   distance from x   = (1 - (1 - alpha)^t) |x - m|:    0.0353553, 0.0530330, 0.0618718
    x = np.array(
        [
            [0.1, 0.1],
            [0.2, 0.1],
            [0.1, 0.2],
            [0.2, 0.2],
            [0.8, 0.8],
            [0.9, 0.8],
            [0.8, 0.9],
            [0.9, 0.9],
        ],
        dtype=np.float32,
    )
    est = CCAE(
        2,
        shift="centre",
        alpha=0.5,
        n_shifts=3,
        shift_epochs=1,
        pretrain_epochs=1,
        autoencoder=[4, 2],
        n_init=2,
        batch_size=8,
        device="cpu",
        random_state=0,
    ).fit(x)
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    for labels in est.stage_labels_:  # the premise: the two groups at every stage
        assert len(set(zip(labels, groups, strict=True))) == 2
    assert [r["stage"] for r in est.history_] == [0, 1, 2, 3]  # standard AE + n_shifts rounds
    np.testing.assert_allclose(
        [r["target_shift"] for r in est.history_], [0.0, 0.0353553, 0.0176777, 0.0088388], atol=1e-5
    )
    np.testing.assert_allclose(
        [r["target_drift"] for r in est.history_], [0.0, 0.0353553, 0.0530330, 0.0618718], atol=1e-5
    )


# -- Algorithm 2: dAE-1 / dAE-2 ------------------------------------------------------------------
# Six samples of three classes of sizes 2, 1 and 3, interleaved, labels given as strings:
#   "a": (0,0), (0,4)          -> M_a = (0,2)
#   "b": (12,8)                -> M_b = (12,8)   (a class of one stays where it is)
#   "c": (0,10), (6,10), (12,10) -> M_c = (6,10)
_XD = np.array([[0, 0], [0, 10], [12, 8], [0, 4], [6, 10], [12, 10]], dtype=np.float32)
_YD = np.array(["a", "c", "b", "a", "c", "c"])


def _dae(shift: str, **kw) -> tuple[ClassSeparatingAE, torch.Tensor, torch.Tensor]:
    est = ClassSeparatingAE(shift, **kw)
    x, codes = est._validate_Xy(_XD, _YD)  # classes_ = a, b, c -> codes 0, 1, 2
    return est, torch.from_numpy(x), torch.from_numpy(codes)


def test_dae1_moves_towards_the_class_mean_eq_14():
    est, x, codes = _dae("class", alpha=0.5)
    assert codes.tolist() == [0, 2, 1, 0, 2, 2]
    # halfway to the class mean: (0,0) -> (0,1); (0,10) -> (3,10); (12,8) stays; (0,4) -> (0,3);
    # (6,10) is the mean of "c" and stays; (12,10) -> (9,10)
    got = est.shift_targets(x, codes)
    _close(got, [[0.0, 1.0], [3.0, 10.0], [12.0, 8.0], [0.0, 3.0], [6.0, 10.0], [9.0, 10.0]])


def test_dae2_nearest_rival_class_mean_of_each_shifted_target_eq_15():
    est, x, codes = _dae("class+rival", alpha=0.5, beta=0.1, rival="nearest")
    # Line 2 as in dAE-1: (0,1), (3,10), (12,8), (0,3), (6,10), (9,10); class means unchanged.
    # Nearest other class mean to each line-2 target (squared distances):
    #   (0,1)  a: M_b 144 + 49 = 193, M_c 36 + 81 = 117 -> M_c
    #   (3,10) c: M_a 9 + 64 = 73,    M_b 81 + 4 = 85   -> M_a
    #   (12,8) b: M_a 144 + 36 = 180, M_c 36 + 4 = 40   -> M_c
    #   (0,3)  a: M_b 144 + 25 = 169, M_c 36 + 49 = 85  -> M_c
    #   (6,10) c: M_a 36 + 64 = 100,  M_b 36 + 4 = 40   -> M_b
    #   (9,10) c: M_a 81 + 64 = 145,  M_b 9 + 4 = 13    -> M_b
    # (two samples of class c flee different classes). Line 3, 1.1 x~ - 0.1 m:
    #   (0 - 0.6, 1.1 - 1) = (-0.6, 0.1);   (3.3 - 0, 11 - 0.2) = (3.3, 10.8)
    #   (13.2 - 0.6, 8.8 - 1) = (12.6, 7.8); (0 - 0.6, 3.3 - 1) = (-0.6, 2.3)
    #   (6.6 - 1.2, 11 - 0.8) = (5.4, 10.2); (9.9 - 1.2, 11 - 0.8) = (8.7, 10.2)
    got = est.shift_targets(x, codes)
    _close(got, [[-0.6, 0.1], [3.3, 10.8], [12.6, 7.8], [-0.6, 2.3], [5.4, 10.2], [8.7, 10.2]])


def test_dae_loop_shifts_n_shifts_times_on_the_previous_targets():
    # dAE-1 targets do not depend on the network: x~(t) = M + (1 - alpha)^t (x - M).
    # |x - M| per sample: 2, 6, 0, 2, 0, 6 -> mean 16 / 6 = 8/3. alpha = 0.5:
    #   moved in round t: 0.5^t * 8/3 = 4/3, 2/3, 1/3
    #   distance from x:  (1 - 0.5^t) * 8/3 = 4/3, 2, 7/3
    est = ClassSeparatingAE(
        "class",
        alpha=0.5,
        n_shifts=3,
        hidden_dims=(4,),
        embedding_dim=2,
        epochs=2,
        shift_epochs=1,
        batch_size=8,
        device="cpu",
        random_state=0,
    ).fit(_XD, _YD)
    assert [r["epochs"] for r in est.history_] == [2, 1, 1, 1]  # AE first, then one per shift
    np.testing.assert_allclose(
        [r["target_shift"] for r in est.history_], [0, 4 / 3, 2 / 3, 1 / 3], rtol=1e-6
    )
    np.testing.assert_allclose(
        [r["target_drift"] for r in est.history_], [0, 4 / 3, 2, 7 / 3], rtol=1e-6
    )


# -- Sec. 3.3 / 5.3.2: the evaluation classifiers ------------------------------------------------
# Training codes: class "a" (0,0), (2,0) -> centroid (1,0); class "b" (3,0), (9,8), (9,10)
# -> centroid (7,6). Test codes (2.8,0.5) "a", (8,7) "b", (5,4) "a", (0.5,0) "a".
_XTR = np.array([[0, 0], [2, 0], [3, 0], [9, 8], [9, 10]], dtype=float)
_YTR = np.array(["a", "a", "b", "b", "b"])
_XTE = np.array([[2.8, 0.5], [8, 7], [5, 4], [0.5, 0]])
_YTE = np.array(["a", "b", "a", "a"])


def test_nearest_centroid_classifier_by_hand():
    # Squared distances to the centroids (1,0) / (7,6):
    #   (2.8,0.5): 3.24 + 0.25 = 3.49 / 17.64 + 30.25 = 47.89 -> a (its nearest training
    #              point is (3,0) of class b, 0.29 against 0.89: a 1-NN rule would say b)
    #   (8,7):     49 + 49 = 98 / 1 + 1 = 2                  -> b
    #   (5,4):     16 + 16 = 32 / 4 + 4 = 8                  -> b (wrong: true a)
    #   (0.5,0):   0.25 / 42.25 + 36 = 78.25                 -> a
    # kNN with the default k = 5 sees all five training codes: 3 b against 2 a -> b every time
    # (k = 1 would say a for (0.5,0)).
    clfs = {"nc": make_classifier("nearest-centroid"), "knn": make_classifier("knn")}
    pred = score_classifiers(clfs, _XTR, _YTR, _XTE, _YTE)
    assert pred["nc"].tolist() == ["a", "b", "b", "a"]
    assert pred["knn"].tolist() == ["b", "b", "b", "b"]
    # The protocol's test accuracy on the input codes: nc 3/4, knn 1/4.
    x = np.vstack([_XTR, _XTE]).astype(np.float32)
    y = np.concatenate([_YTR, _YTE])
    res = evaluate_split(
        x,
        y,
        np.arange(5),
        np.arange(5, 9),
        {"no-ae": None},
        {"nc": "nearest-centroid", "knn": "knn"},
    )
    np.testing.assert_allclose(
        [res.accuracy[("no-ae", "nc")], res.accuracy[("no-ae", "knn")]], [3 / 4, 1 / 4]
    )
