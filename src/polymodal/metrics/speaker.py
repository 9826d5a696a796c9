"""Speaker-verification metrics and scoring (numpy only): EER, minDCF, DET curve, cosine scoring,
length and score normalisation, trial lists.

A trial is accepted when ``score >= threshold``. Every rate is computed from ONE sort of the scores
(O(N log N)). The operating points are taken only between distinct score values: tied scores are all
accepted or all rejected together, so the curve never depends on how a sort happened to order ties.
The candidate thresholds are the distinct scores (ascending; the first accepts everything) and
``+inf`` (rejects everything).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from polymodal.errors import ConfigError, DataError, ShapeError


def _trials(scores: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ShapeError(f"scores and labels must be 1-D of one length, got {s.shape} and {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise DataError("trial labels must be 0/1 (or bool): 1 for a target trial, 0 for a non-target")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise DataError(f"need both target and non-target trials, got {int(y.sum())} of {y.size} targets")
    if not np.isfinite(s).all():
        raise DataError("trial scores must be finite (got NaN or inf)")
    return s, y


def det_curve(scores: object, labels: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p_miss, p_fa, thresholds) at every distinct threshold, thresholds ascending (last: +inf).

    ``p_miss`` (targets rejected) is non-decreasing and ``p_fa`` (non-targets accepted) non-increasing
    along the thresholds; the first point accepts every trial (0, 1), the last rejects every one (1, 0).
    """
    s, y = _trials(scores, labels)
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first index of each distinct value
    cut = np.r_[starts, s.size]  # trials before a cut are rejected
    targets_below = np.r_[0, np.cumsum(y)][cut]
    nontargets_below = cut - targets_below
    n_target = int(y.sum())
    n_nontarget = y.size - n_target
    p_miss = targets_below / n_target
    p_fa = (n_nontarget - nontargets_below) / n_nontarget
    return p_miss, p_fa, np.r_[s[starts], np.inf]


def eer(scores: object, labels: object) -> tuple[float, float]:
    """Equal error rate and its threshold: where P_miss and P_fa cross.

    Convention: take the first operating point ``i`` with ``P_miss >= P_fa``; if they are equal there,
    that is the EER; otherwise the curve crosses between points ``i - 1`` and ``i`` and the EER is where
    the straight line between those two (P_fa, P_miss) points meets P_miss = P_fa (the value of the
    usual ``brentq`` on an interpolated ROC curve, and the error rate a random mix of the two
    thresholds achieves). The threshold returned is point ``i``'s, the lowest with P_miss >= P_fa.
    """
    p_miss, p_fa, thresholds = det_curve(scores, labels)
    diff = p_miss - p_fa  # non-decreasing from -1 to +1
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0:
        return float(p_miss[i]), float(thresholds[i])
    alpha = -diff[i - 1] / (diff[i] - diff[i - 1])  # i >= 1: diff[0] = -1
    value = p_miss[i - 1] + alpha * (p_miss[i] - p_miss[i - 1])
    return float(value), float(thresholds[i])


def min_dcf(
    scores: object, labels: object, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> tuple[float, float, float]:
    """Minimum detection cost over all thresholds: (raw, normalised, threshold).

    ``DCF = c_miss * P_miss * p_target + c_fa * P_fa * (1 - p_target)``; the normalised value divides by
    ``min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the better trivial system (accept or
    reject everything), as in the NIST SRE evaluation plans. Ties of the minimum go to the lowest
    threshold.
    """
    if not 0.0 < p_target < 1.0 or c_miss <= 0 or c_fa <= 0:
        raise ConfigError(
            f"min_dcf needs 0 < p_target < 1 and positive costs, got p_target={p_target}, "
            f"c_miss={c_miss}, c_fa={c_fa}"
        )
    p_miss, p_fa, thresholds = det_curve(scores, labels)
    dcf = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    i = int(np.argmin(dcf))
    raw = float(dcf[i])
    return raw, raw / min(c_miss * p_target, c_fa * (1.0 - p_target)), float(thresholds[i])


def length_normalise(emb: object, mean: object | None = None, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm, after subtracting ``mean`` if given (Garcia-Romero & Espy-Wilson
    2011: length normalisation makes embeddings closer to Gaussian, and cosine scoring a dot product)."""
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2:
        raise ShapeError(f"length_normalise expects embeddings (N, D), got {x.shape}")
    if mean is not None:
        x = x - np.asarray(mean, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def cosine_scores(emb_a: object, emb_b: object, *, pairwise: bool = False) -> np.ndarray:
    """Cosine similarity of row i of ``emb_a`` with row i of ``emb_b`` (N,), or with every row of
    ``emb_b`` when ``pairwise`` ((N, M), e.g. against a cohort)."""
    a, b = length_normalise(emb_a), length_normalise(emb_b)
    if a.shape[1] != b.shape[1] or (not pairwise and a.shape != b.shape):
        raise ShapeError(f"cosine_scores: embeddings {a.shape} and {b.shape} do not pair up")
    return a @ b.T if pairwise else np.einsum("nd,nd->n", a, b)


def s_norm(
    scores: object, enrol_cohort_scores: object, test_cohort_scores: object, top_k: int | None = None
) -> np.ndarray:
    """Symmetric score normalisation: ``((s - mu_e) / sd_e + (s - mu_t) / sd_t) / 2``.

    ``enrol_cohort_scores`` (N, C) scores each trial's enrolment side against a cohort of impostor
    embeddings, ``test_cohort_scores`` (N, C') its test side; mu and sd (population) are per trial and
    side. With ``top_k`` only each side's k highest cohort scores are used (adaptive s-norm, Matejka
    et al. 2017); plain s-norm is Kenny 2010. A constant cohort (sd = 0) is a `DataError`.
    """
    s = np.asarray(scores, dtype=np.float64)
    sides = []
    for name, cohort in (("enrol", enrol_cohort_scores), ("test", test_cohort_scores)):
        c = np.asarray(cohort, dtype=np.float64)
        if s.ndim != 1 or c.ndim != 2 or c.shape[0] != s.shape[0] or c.shape[1] < 2:
            raise ShapeError(
                f"s_norm expects scores (N,) and {name} cohort scores (N, >= 2), got {s.shape}, {c.shape}"
            )
        if top_k is not None:
            if not top_k >= 2:
                raise ConfigError(f"s_norm top_k must be >= 2, got {top_k}")
            c = -np.partition(-c, min(top_k, c.shape[1]) - 1, axis=1)[:, :top_k]
        mu, sd = c.mean(axis=1), c.std(axis=1)
        if (sd == 0).any():
            raise DataError(f"s_norm: a trial's {name} cohort scores are all equal (sd = 0)")
        sides.append((s - mu) / sd)
    return 0.5 * (sides[0] + sides[1])


def _unrank(
    ranks: np.ndarray, counts: np.ndarray, first_partner: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rank r of the pairs (p, q), p ascending, q in [first_partner[p], first_partner[p] + counts[p])."""
    before = np.r_[0, np.cumsum(counts)]
    p = np.searchsorted(before, ranks, side="right") - 1
    return p, first_partner[p] + (ranks - before[p])


def make_trials(
    speaker_ids: Sequence[object] | np.ndarray, n_target: int, n_nontarget: int, seed: int = 0
) -> np.ndarray:
    """(n_target + n_nontarget, 3) int64 rows ``(i, j, is_target)``, ``i < j`` indices into
    ``speaker_ids``, sorted by (i, j): distinct unordered pairs, drawn uniformly without replacement
    from the same-speaker and the different-speaker pairs. The same seed gives the same trials.

    Pairs are unranked arithmetically (no list of all N^2 pairs is built). Asking for more pairs of a
    kind than exist is a `ConfigError` naming how many do.
    """
    ids = np.asarray(speaker_ids)
    if ids.ndim != 1:
        raise ShapeError(f"make_trials expects one speaker id per utterance (N,), got {ids.shape}")
    if n_target < 0 or n_nontarget < 0:
        raise ConfigError(f"make_trials counts must be >= 0, got {n_target}, {n_nontarget}")
    _, codes = np.unique(ids, return_inverse=True)
    order = np.argsort(codes, kind="stable")  # utterances grouped by speaker
    sorted_codes = codes[order]
    n = ids.size
    pos = np.arange(n)
    group_end = np.searchsorted(sorted_codes, sorted_codes, side="right")  # end of each one's group
    rng = np.random.default_rng(seed)
    rows = []
    kinds = (
        ("target", n_target, group_end - pos - 1, pos + 1, 1),
        ("non-target", n_nontarget, n - group_end, group_end, 0),
    )
    for kind, wanted, counts, first, flag in kinds:
        total = int(counts.sum())
        if wanted > total:
            raise ConfigError(
                f"make_trials: {wanted} {kind} trials requested, only {total} distinct pairs exist"
            )
        ranks = rng.choice(total, size=wanted, replace=False) if wanted else np.zeros(0, dtype=np.int64)
        p, q = _unrank(np.asarray(ranks, dtype=np.int64), counts, first)
        a, b = order[p], order[q]
        rows.append(np.stack([np.minimum(a, b), np.maximum(a, b), np.full(wanted, flag)], axis=1))
    out = np.concatenate(rows).astype(np.int64)
    return out[np.lexsort((out[:, 1], out[:, 0]))]
