"""Speaker-verification metrics (EER, minDCF, DET, scoring, trials) and the AAM / AM softmax head."""

import math

import numpy as np
import pytest
import torch

from polymodal.errors import ConfigError, DataError, ShapeError
from polymodal.metrics import cosine_scores, det_curve, eer, length_normalise, make_trials, min_dcf, s_norm
from polymodal.models.margin import AAMSoftmax

# Targets 0.9, 0.8, 0.4; non-targets 0.7, 0.3, 0.2, 0.1. Accepting >= t:
# t:      0.1   0.2   0.3   0.4   0.7        0.8   0.9   inf
# P_miss: 0     0     0     0     1/3        1/3   2/3   1
# P_fa:   1     3/4   1/2   1/4   1/4        0     0     0
SCORES_A = [0.9, 0.1, 0.8, 0.7, 0.4, 0.3, 0.2]
LABELS_A = [1, 0, 1, 0, 1, 0, 0]
# Ties: targets 0.5, 0.9, 0.5; non-targets 0.5, 0.5, 0.1. Points (t: P_miss, P_fa):
# 0.1: (0, 1), 0.5: (0, 2/3), 0.9: (2/3, 0), inf: (1, 0).
SCORES_T = [0.5, 0.5, 0.5, 0.9, 0.1, 0.5]
LABELS_T = [1, 0, 0, 1, 0, 1]


def test_det_curve_hand_computed_and_monotone():
    p_miss, p_fa, thr = det_curve(SCORES_A, LABELS_A)
    np.testing.assert_allclose(thr, [0.1, 0.2, 0.3, 0.4, 0.7, 0.8, 0.9, np.inf])
    np.testing.assert_allclose(p_miss, [0, 0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(p_fa, [1, 0.75, 0.5, 0.25, 0.25, 0, 0, 0])
    p_miss, p_fa, thr = det_curve(SCORES_T, LABELS_T)  # ties move together: one point per value
    np.testing.assert_allclose(thr, [0.1, 0.5, 0.9, np.inf])
    np.testing.assert_allclose(p_miss, [0, 0, 2 / 3, 1])
    np.testing.assert_allclose(p_fa, [1, 2 / 3, 0, 0])
    rng = np.random.default_rng(0)
    p_miss, p_fa, thr = det_curve(rng.integers(0, 20, 300) / 4, rng.random(300) < 0.3)
    assert (np.diff(p_miss) >= 0).all() and (np.diff(p_fa) <= 0).all() and (np.diff(thr) > 0).all()
    assert (p_miss[0], p_fa[0], p_miss[-1], p_fa[-1]) == (0, 1, 1, 0)


def test_eer_hand_computed():
    # A: crosses between t=0.4 (0, 1/4) and t=0.7 (1/3, 1/4): the line meets P_miss = P_fa at 1/4.
    assert eer(SCORES_A, LABELS_A) == (pytest.approx(0.25), 0.7)
    # Ties: between (0, 2/3) and (2/3, 0), halfway: 1/3; a per-trial sweep through the tie would differ.
    assert eer(SCORES_T, LABELS_T) == (pytest.approx(1 / 3), 0.9)
    perm = np.random.default_rng(1).permutation(6)
    assert eer(np.array(SCORES_T)[perm], np.array(LABELS_T)[perm]) == (pytest.approx(1 / 3), 0.9)
    # An exact crossing at t=0.7: P_miss = P_fa = 1/2.
    assert eer([0.6, 0.9, 0.1, 0.7], [1, 1, 0, 0]) == (0.5, 0.7)
    assert eer([0.6, 0.9, 0.1, 0.2], [1, 1, 0, 0]) == (0.0, 0.6)  # separable: lowest target score
    assert eer([0.1, 0.9], [1, 0]) == (1.0, 0.9)  # perfectly wrong
    assert eer([0.3, 0.3], [1, 0]) == (0.5, np.inf)  # all tied


def test_min_dcf_hand_computed():
    raw, norm, thr = min_dcf(SCORES_A, LABELS_A, p_target=0.25)  # 0.25 P_miss + 0.75 P_fa
    assert (raw, norm, thr) == (pytest.approx(1 / 12), pytest.approx(1 / 3), 0.8)
    raw, norm, thr = min_dcf(SCORES_A, LABELS_A, p_target=0.01, c_miss=10)  # NIST SRE08 costs
    assert (raw, norm, thr) == (pytest.approx(1 / 30), pytest.approx(1 / 3), 0.8)
    raw, norm, thr = min_dcf(SCORES_T, LABELS_T, p_target=0.5)  # tied minimum: the lowest threshold
    assert (raw, norm, thr) == (pytest.approx(1 / 3), pytest.approx(2 / 3), 0.5)
    with pytest.raises(ConfigError):
        min_dcf(SCORES_A, LABELS_A, p_target=1.0)


def _brute(scores, labels):
    """Every candidate threshold at once: accept[k, n] = scores[n] >= t_k (O(N^2), tests only)."""
    thr = np.r_[np.unique(scores), np.inf]
    accept = scores[None, :] >= thr[:, None]
    y = labels.astype(bool)
    return (~accept & y).sum(1) / y.sum(), (accept & ~y).sum(1) / (~y).sum(), thr


@pytest.mark.parametrize("tied", [False, True])
def test_against_a_brute_force_sweep(tied):
    rng = np.random.default_rng(2)
    for _ in range(20):
        labels = rng.random(150) < 0.3
        labels[:2] = [True, False]
        scores = rng.normal(size=150) + labels
        if tied:
            scores = np.round(scores, 1)
        p_miss, p_fa, thr = _brute(scores, labels)
        got = det_curve(scores, labels)
        for a, b in zip(got, (p_miss, p_fa, thr), strict=True):
            np.testing.assert_array_equal(a, b)
        # EER: where the polyline of (P_fa, P_miss) points meets P_miss = P_fa, every segment tried.
        d = p_miss - p_fa
        d0, d1 = d[:-1], d[1:]
        hit = (d0 <= 0) & (d1 >= 0) & (d1 > d0)
        alpha = -d0[hit] / (d1[hit] - d0[hit])
        crossings = p_miss[:-1][hit] + alpha * (p_miss[1:][hit] - p_miss[:-1][hit])
        value, t = eer(scores, labels)
        np.testing.assert_allclose(crossings, value, atol=1e-12)
        k = int(np.flatnonzero(thr == t)[0])
        assert p_miss[k] >= value >= p_fa[k] and (k == 0 or p_miss[k - 1] < p_fa[k - 1])
        for p_target, c_miss in ((0.01, 1.0), (0.05, 1.0), (0.01, 10.0)):
            dcf = c_miss * p_target * p_miss + (1 - p_target) * p_fa
            raw, norm, t = min_dcf(scores, labels, p_target, c_miss)
            assert raw == pytest.approx(dcf.min()) and t == thr[np.argmin(dcf)]
            assert norm == pytest.approx(dcf.min() / min(c_miss * p_target, 1 - p_target))


def test_bad_trials():
    with pytest.raises(ShapeError):
        eer([0.1, 0.2], [1])
    with pytest.raises(DataError):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(DataError):
        eer([0.1, 0.2], [1, 2])
    with pytest.raises(DataError):
        eer([0.1, np.nan], [1, 0])


def test_cosine_length_and_s_norm():
    a = np.array([[3.0, 4.0], [1.0, 0.0]])
    b = np.array([[4.0, 3.0], [0.0, 2.0]])
    np.testing.assert_allclose(length_normalise(a), [[0.6, 0.8], [1.0, 0.0]])
    np.testing.assert_allclose(length_normalise(a, mean=[3.0, 0.0]), [[0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(cosine_scores(a, b), [24 / 25, 0.0])
    np.testing.assert_allclose(cosine_scores(a, b, pairwise=True), [[24 / 25, 0.8], [0.8, 0.0]])
    s = np.array([0.5, 0.2])
    e = np.array([[0.1, 0.3, 0.2], [0.0, 0.4, 0.2]])
    t = np.array([[0.2, 0.4], [0.1, 0.3]])
    want = 0.5 * ((s - e.mean(1)) / e.std(1) + (s - t.mean(1)) / t.std(1))
    np.testing.assert_allclose(s_norm(s, e, t), want)
    top = np.sort(e, axis=1)[:, 1:]  # adaptive s-norm, the 2 highest enrolment-cohort scores
    np.testing.assert_allclose(
        s_norm(s, e, t, top_k=2), 0.5 * ((s - top.mean(1)) / top.std(1) + (s - t.mean(1)) / t.std(1))
    )
    with pytest.raises(DataError):
        s_norm(s, np.ones((2, 3)), t)
    with pytest.raises(ShapeError):
        cosine_scores(a, b[:1])


def test_make_trials():
    ids = np.array(["a", "b", "a", "c", "b", "a", "c", "c", "a"])
    trials = make_trials(ids, 5, 7, seed=3)
    assert trials.shape == (12, 3) and trials.dtype == np.int64
    np.testing.assert_array_equal(trials, make_trials(list(ids), 5, 7, seed=3))
    assert not np.array_equal(trials, make_trials(ids, 5, 7, seed=4))
    i, j, target = trials.T
    assert (i < j).all() and target.sum() == 5
    np.testing.assert_array_equal(ids[i] == ids[j], target == 1)
    assert len({(a, b) for a, b in zip(i, j, strict=True)}) == 12
    # Asking for every pair of a kind returns each exactly once (the unranking is a bijection).
    pairs = [(a, b) for a in range(9) for b in range(a + 1, 9)]
    n_same = sum(ids[a] == ids[b] for a, b in pairs)
    every = make_trials(ids, n_same, len(pairs) - n_same, seed=0)
    assert [tuple(r[:2]) for r in every] == pairs
    np.testing.assert_array_equal(every[:, 2], [ids[a] == ids[b] for a, b in pairs])
    with pytest.raises(ConfigError):
        make_trials(ids, n_same + 1, 0)
    assert make_trials([1, 2, 3], 0, 2, seed=0).shape == (2, 3)


def test_aam_and_am_closed_form():
    torch.manual_seed(0)
    head = AAMSoftmax(2, 3, margin=0.3, scale=10.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]]))
    theta = torch.tensor([0.4, 2.0, 3.0])  # the last one has theta + m > pi
    x = torch.stack([theta.cos(), theta.sin()], 1) * 3.0
    y = torch.tensor([0, 0, 0])
    cos = theta.cos()
    plain = 10.0 * torch.stack([cos, theta.sin(), -cos], 1)
    torch.testing.assert_close(head.eval()(x, y), plain)  # eval: plain scaled cosines
    head.train()
    torch.testing.assert_close(head(x), plain)  # no targets: no margin
    got = head(x, y)
    want = plain.clone()
    want[0, 0] = 10 * math.cos(0.4 + 0.3)
    want[1, 0] = 10 * math.cos(2.0 + 0.3)
    want[2, 0] = 10 * (math.cos(3.0) - 0.3 * math.sin(0.3))  # ArcFace's fallback past pi - m
    torch.testing.assert_close(got, want)
    am = AAMSoftmax(2, 3, margin=0.3, scale=10.0, kind="am").train()
    with torch.no_grad():
        am.weight.copy_(head.weight)
    want_am = plain.clone()
    want_am[:, 0] = 10 * (cos - 0.3)
    torch.testing.assert_close(am(x, y), want_am)
    # Gradients stay finite when an embedding sits exactly on its class centre (theta = 0).
    e = torch.tensor([[2.0, 0.0]], requires_grad=True)
    torch.nn.functional.cross_entropy(head(e, torch.tensor([0])), torch.tensor([0])).backward()
    assert torch.isfinite(e.grad).all()
    with pytest.raises(ConfigError):
        AAMSoftmax(2, 3, kind="sphere")
    with pytest.raises(ShapeError):
        head(x, torch.tensor([0, 1]))
