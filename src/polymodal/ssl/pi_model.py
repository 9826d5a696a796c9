"""Π-model (Laine & Aila, ICLR 2017, arXiv:1610.02242; Sajjadi et al., NeurIPS 2016).

Two stochastic passes over the same unlabeled example (independent draws of the strong augmentation
and of dropout) should agree: ℓ_u = mean (softmax(z₁) − sg(softmax(z₂)))², with the weight ramped up
from 0. The stop-gradient on one branch follows the reference re-implementations (Oliver et al.
2018; google-research/fixmatch).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from polymodal.batch import Batch
from polymodal.options import Options
from polymodal.ssl.common import linear_rampup, mse_probs
from polymodal.ssl.method import (
    Terms,
    ViewFn,
    joint_forward,
    register_method,
    supervised_terms,
)


class PiModelOptions(Options):
    weight: float = Field(10.0, ge=0.0)  # max weight of the squared error between two views
    rampup: float = Field(0.4, ge=0.0, le=1.0)


@register_method("pi_model", options=PiModelOptions)
def pi_model(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    c: PiModelOptions,
    generator: torch.Generator,
) -> Terms:
    assert unlabeled is not None
    lab = views(labeled, "weak", generator)
    one, two = views(unlabeled, "strong", generator), views(unlabeled, "strong", generator)
    out, (lab_out, one_out, two_out) = joint_forward(model, [lab, one, two])
    sup, _ = supervised_terms(lab_out, labeled)
    unsup = {t: mse_probs(one_out[t], two_out[t].float().softmax(-1)) for t in sup}
    w = c.weight * linear_rampup(progress, c.rampup)
    losses = {t: sup[t] + w * unsup[t] for t in sup}
    return Terms(
        losses, {"sup": sum(sup.values()).detach(), "unsup": sum(unsup.values()).detach()}, out.features
    )
