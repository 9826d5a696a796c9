"""Semi-supervised objectives as plain functions over batches."""

# one file per baseline; importing registers it in METHODS
from polymodal.ssl import fixmatch, ict, mean_teacher, mixmatch, pi_model, pseudo_label, vat  # noqa: F401
from polymodal.ssl.objectives import METHODS, NEEDS_UNLABELED
from polymodal.ssl.teacher import make_teacher
from polymodal.ssl.uda import TSA_SCHEDULES, tsa_cross_entropy, tsa_threshold, uda_consistency

__all__ = [
    "METHODS",
    "NEEDS_UNLABELED",
    "TSA_SCHEDULES",
    "make_teacher",
    "tsa_cross_entropy",
    "tsa_threshold",
    "uda_consistency",
]
