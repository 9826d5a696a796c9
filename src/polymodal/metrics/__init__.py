"""Evaluation metrics (numpy only; a foundation module: it imports nothing from polymodal but errors)."""

from polymodal.metrics.speaker import (
    cosine_scores,
    det_curve,
    eer,
    length_normalise,
    make_trials,
    min_dcf,
    s_norm,
)

__all__ = ["cosine_scores", "det_curve", "eer", "length_normalise", "make_trials", "min_dcf", "s_norm"]
