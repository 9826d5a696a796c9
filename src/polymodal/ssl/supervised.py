"""Supervised-only training: the baseline every semi-supervised method must beat."""

from __future__ import annotations

import torch
from torch import nn

from polymodal.batch import Batch
from polymodal.options import NoOptions
from polymodal.ssl.method import Terms, ViewFn, register_method, supervised_terms


@register_method("supervised", unlabeled=False)
def supervised(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    options: NoOptions,
    generator: torch.Generator,
) -> Terms:
    """Cross-entropy (plus any fusion auxiliary terms) on weakly augmented labeled data only."""
    out = model(views(labeled, "weak", generator))
    losses, _ = supervised_terms(out, labeled)
    logs = {f"sup_{t}": v.detach() for t, v in losses.items()} if len(losses) > 1 else {}
    return Terms(losses, logs, out.features)
