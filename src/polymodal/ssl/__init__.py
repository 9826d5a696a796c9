"""Semi-supervised objectives as plain functions over batches, one file per method (see method.py).

Every module here is imported when the package is, so a new method file registers itself.
"""

from polymodal.registry import import_submodules
from polymodal.ssl.method import METHODS, Method, Terms, register_method, supervised_terms, tsa_cross_entropy
from polymodal.ssl.teacher import make_teacher
from polymodal.ssl.uda import TSA_SCHEDULES, tsa_threshold, uda_consistency

import_submodules(__name__)

__all__ = [
    "METHODS",
    "TSA_SCHEDULES",
    "Method",
    "Terms",
    "make_teacher",
    "register_method",
    "supervised_terms",
    "tsa_cross_entropy",
    "tsa_threshold",
    "uda_consistency",
]
