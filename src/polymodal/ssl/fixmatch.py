"""FixMatch (Sohn et al., NeurIPS 2020, arXiv:2001.07685).

Hard pseudo-labels from the weakly augmented view of each unlabeled example, kept only where the
model's confidence on that weak view reaches τ, train the prediction on the strongly augmented view:
ℓ_u = mean_b 1[max p(y|weak_b) ≥ τ] · CE(argmax p(y|weak_b), p(y|strong_b)). The mean runs over all
unlabeled examples, masked ones included, and one forward pass covers labeled, weak and strong rows
(as the official code does, so batch norm sees them together).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from polymodal.batch import Batch
from polymodal.options import Options
from polymodal.ssl.method import (
    Terms,
    ViewFn,
    confident_hard_label_ce,
    joint_forward,
    register_method,
    supervised_terms,
)


class FixMatchOptions(Options):
    threshold: float = Field(0.95, ge=0.0, lt=1.0)  # τ on the weak view's confidence
    weight: float = Field(1.0, ge=0.0)  # λ_u


@register_method("fixmatch", options=FixMatchOptions)
def fixmatch(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    f: FixMatchOptions,
    generator: torch.Generator,
) -> Terms:
    assert unlabeled is not None
    lab = views(labeled, "weak", generator)
    weak, strong = views(unlabeled, "weak", generator), views(unlabeled, "strong", generator)
    out, (lab_out, weak_out, strong_out) = joint_forward(model, [lab, weak, strong])
    sup, _ = supervised_terms(lab_out, labeled)
    unsup, kept = {}, []
    for t in sup:
        unsup[t], mask = confident_hard_label_ce(weak_out[t], strong_out[t], f.threshold)
        kept.append(mask.float().mean())
    losses = {t: sup[t] + f.weight * unsup[t] for t in sup}
    logs = {
        "sup": sum(sup.values()).detach(),
        "unsup": sum(unsup.values()).detach(),
        "mask": torch.stack(kept).mean(),
    }
    return Terms(losses, logs, out.features)
