"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017, arXiv:1703.01780).

The teacher is the exponential moving average of the student's weights, θ' ← α θ' + (1 − α) θ after
every step (the engine keeps it, see `polymodal.ssl.teacher`); the student's prediction on one
augmented view is pulled towards the teacher's on another: ℓ_u = mean (softmax(z_s) − softmax(z_t))².
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


class MeanTeacherOptions(Options):
    weight: float = Field(50.0, ge=0.0)
    rampup: float = Field(0.4, ge=0.0, le=1.0)
    ema: float = Field(0.999, ge=0.0, lt=1.0)  # teacher decay α


@register_method("mean_teacher", options=MeanTeacherOptions, teacher_decay=lambda o: o.ema)
def mean_teacher(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    c: MeanTeacherOptions,
    generator: torch.Generator,
    teacher: nn.Module | None = None,
) -> Terms:
    assert unlabeled is not None and teacher is not None, "the engine passes teacher= (see teacher_decay)"
    lab = views(labeled, "weak", generator)
    student_view, teacher_view = views(unlabeled, "strong", generator), views(unlabeled, "strong", generator)
    with torch.no_grad():
        target = {t: z.float().softmax(-1) for t, z in teacher(teacher_view).items()}
    out, (lab_out, student_out) = joint_forward(model, [lab, student_view])
    sup, _ = supervised_terms(lab_out, labeled)
    unsup = {t: mse_probs(student_out[t], target[t]) for t in sup}
    w = c.weight * linear_rampup(progress, c.rampup)
    losses = {t: sup[t] + w * unsup[t] for t in sup}
    return Terms(
        losses, {"sup": sum(sup.values()).detach(), "unsup": sum(unsup.values()).detach()}, out.features
    )
