"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017, arXiv:1703.01780).

The teacher is the exponential moving average of the student's weights, θ' ← α θ' + (1 − α) θ after
every step (the engine keeps it, see `polymodal.ssl.teacher`); the student's prediction on one
augmented view is pulled towards the teacher's on another: ℓ_u = mean (softmax(z_s) − softmax(z_t))².
"""

from __future__ import annotations

import torch
from torch import nn

from polymodal.batch import Batch, cat_batches
from polymodal.config import Config
from polymodal.ssl.common import linear_rampup, mse_probs
from polymodal.ssl.objectives import METHODS, Logs, Losses, ViewFn, supervised_terms


@METHODS.register("mean_teacher")
def mean_teacher(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    cfg: Config,
    generator: torch.Generator,
    teacher: nn.Module | None = None,
) -> tuple[Losses, Logs]:
    assert unlabeled is not None and teacher is not None, "the engine passes teacher= (see teacher_decay)"
    c = cfg.mean_teacher
    lab = views(labeled, "weak", generator)
    student_view, teacher_view = views(unlabeled, "strong", generator), views(unlabeled, "strong", generator)
    with torch.no_grad():
        target = {t: z.float().softmax(-1) for t, z in teacher(teacher_view).items()}
    logits = model(cat_batches([lab.unlabeled(), student_view]))
    n = lab.size
    sup, _ = supervised_terms({t: z[:n] for t, z in logits.items()}, labeled, lambda k: None)
    unsup = {t: mse_probs(logits[t][n:], target[t]) for t in sup}
    w = c.weight * linear_rampup(progress, c.rampup)
    losses = {t: sup[t] + w * unsup[t] for t in sup}
    return losses, {"sup": sum(sup.values()).detach(), "unsup": sum(unsup.values()).detach()}


mean_teacher.teacher_decay = lambda cfg: cfg.mean_teacher.ema  # type: ignore[attr-defined]
