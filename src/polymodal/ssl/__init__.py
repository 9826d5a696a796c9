"""Semi-supervised objectives as plain functions over batches."""

from polymodal.ssl.objectives import METHODS, NEEDS_UNLABELED
from polymodal.ssl.uda import TSA_SCHEDULES, tsa_cross_entropy, tsa_threshold, uda_consistency

__all__ = [
    "METHODS",
    "NEEDS_UNLABELED",
    "TSA_SCHEDULES",
    "tsa_cross_entropy",
    "tsa_threshold",
    "uda_consistency",
]
