"""Pseudo-Label (Lee, ICML 2013 Workshop on Challenges in Representation Learning).

The model's own argmax on unlabeled data is used as if it were a true label. As in the realistic
re-evaluation of Oliver et al. (NeurIPS 2018), only predictions whose confidence exceeds a threshold
become targets, and the weight of the term ramps up from 0 so early random guesses do not stick.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from polymodal.batch import Batch
from polymodal.options import Options
from polymodal.ssl.common import linear_rampup
from polymodal.ssl.method import (
    Terms,
    ViewFn,
    confident_hard_label_ce,
    joint_forward,
    register_method,
    supervised_terms,
)


class PseudoLabelOptions(Options):
    threshold: float = Field(0.95, ge=0.0, lt=1.0)
    weight: float = Field(1.0, ge=0.0)
    rampup: float = Field(0.4, ge=0.0, le=1.0)


@register_method("pseudo_label", options=PseudoLabelOptions)
def pseudo_label(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    c: PseudoLabelOptions,
    generator: torch.Generator,
) -> Terms:
    assert unlabeled is not None
    lab, unl = views(labeled, "weak", generator), views(unlabeled, "weak", generator)
    out, (lab_out, unl_out) = joint_forward(model, [lab, unl])
    sup, _ = supervised_terms(lab_out, labeled)
    w = c.weight * linear_rampup(progress, c.rampup)
    unsup, kept = {}, []
    for t in sup:
        unsup[t], mask = confident_hard_label_ce(unl_out[t], unl_out[t], c.threshold)
        kept.append(mask.float().mean())
    losses = {t: sup[t] + w * unsup[t] for t in sup}
    logs = {
        "sup": sum(sup.values()).detach(),
        "unsup": sum(unsup.values()).detach(),
        "mask": torch.stack(kept).mean(),
    }
    return Terms(losses, logs, out.features)
