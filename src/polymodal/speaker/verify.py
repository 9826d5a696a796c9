"""Verification: trial lists, cosine scoring with length and score normalisation, EER and minDCF.

A trial pairs two utterances of the verification set (held-out speakers, or the test split when the
dataset holds none out); target trials share a speaker. Trials are drawn by `make_trials` with a
seed of their own (``speaker.trial_seed``), so every run on one dataset is scored on the same trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polymodal.errors import DataError
from polymodal.metrics import cosine_scores, eer, length_normalise, make_trials, min_dcf, s_norm


def pair_counts(speaker_ids: Sequence[int] | np.ndarray) -> tuple[int, int]:
    """(same-speaker pairs, different-speaker pairs) of a set of utterances."""
    _, counts = np.unique(np.asarray(speaker_ids), return_counts=True)
    n = int(counts.sum())
    same = int((counts * (counts - 1) // 2).sum())
    return same, n * (n - 1) // 2 - same


def build_trials(
    speaker_ids: Sequence[int] | np.ndarray, n_target: int, n_nontarget: int, seed: int
) -> np.ndarray:
    """`make_trials` with the counts capped at the pairs that exist; (n, 3) rows (i, j, is_target)."""
    same, different = pair_counts(speaker_ids)
    if same == 0 or different == 0:
        raise DataError(
            f"verification needs same- and different-speaker pairs; the set has {same} and {different} "
            "(hold out at least 2 speakers with 2 or more utterances each)"
        )
    return make_trials(speaker_ids, min(n_target, same), min(n_nontarget, different), seed)


def trials_text(trials: np.ndarray, names: Sequence[str]) -> str:
    """``RUN/trials.tsv``: one trial per line, enrolment and test utterance names, target or nontarget."""
    lines = ["enrol\ttest\ttarget\tenrol_index\ttest_index"]
    for i, j, t in trials.tolist():
        lines.append(f"{names[i]}\t{names[j]}\t{'target' if t else 'nontarget'}\t{i}\t{j}")
    return "\n".join(lines) + "\n"


def read_trials(path: Path) -> np.ndarray:
    """The (i, j, is_target) rows of a ``trials.tsv``."""
    try:
        rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line]
        return np.array([[int(r[3]), int(r[4]), int(r[2] == "target")] for r in rows], dtype=np.int64)
    except (OSError, IndexError, ValueError) as e:
        raise DataError(f"cannot read trial list '{path}': {e}") from None


def z_norm(scores: np.ndarray, enrol_cohort_scores: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """Zero normalisation: ``(s - mu_e) / sd_e`` with the enrolment side's cohort scores (N, C)."""
    c = np.asarray(enrol_cohort_scores, dtype=np.float64)
    if top_k is not None:
        c = -np.partition(-c, min(top_k, c.shape[1]) - 1, axis=1)[:, :top_k]
    sd = c.std(axis=1)
    if (sd == 0).any():
        raise DataError("z_norm: a trial's cohort scores are all equal (sd = 0)")
    return (np.asarray(scores, dtype=np.float64) - c.mean(axis=1)) / sd


def score_trials(
    emb: np.ndarray,
    trials: np.ndarray,
    cohort: np.ndarray | None = None,
    length_norm: bool = True,
    score_norm: str = "none",
    top_k: int | None = None,
) -> np.ndarray:
    """Cosine scores of the trials, after optional length normalisation (centred on the cohort mean)
    and with optional z-norm / s-norm against the cohort's embeddings."""
    e = np.asarray(emb, dtype=np.float64)
    c = None if cohort is None else np.asarray(cohort, dtype=np.float64)
    if length_norm and c is not None:
        mean = c.mean(axis=0)
        e, c = length_normalise(e, mean), length_normalise(c, mean)
    s = cosine_scores(e[trials[:, 0]], e[trials[:, 1]])
    if score_norm == "none":
        return s
    if c is None:
        raise DataError(f"score normalisation '{score_norm}' needs a cohort")
    against = cosine_scores(e, c, pairwise=True)  # (N, C): each utterance against the cohort
    enrol, test = against[trials[:, 0]], against[trials[:, 1]]
    if score_norm == "znorm":
        return z_norm(s, enrol, top_k)
    return s_norm(s, enrol, test, top_k)


def verification_metrics(scores: np.ndarray, labels: np.ndarray, p_targets: Sequence[float]) -> dict:
    """EER with its threshold; minDCF (C_miss = C_fa = 1) raw and normalised per p_target."""
    value, threshold = eer(scores, labels)
    out: dict = {"eer": value, "eer_threshold": threshold, "min_dcf": {}}
    for p in p_targets:
        raw, norm, thr = min_dcf(scores, labels, p_target=p)
        out["min_dcf"][str(p)] = {"raw": raw, "normalised": norm, "threshold": thr}
    return out
