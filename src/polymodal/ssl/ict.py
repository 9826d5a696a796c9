"""Interpolation Consistency Training (Verma et al., IJCAI 2019, arXiv:1903.03825).

The student's prediction at a mixup of two unlabeled examples should equal the same mixup of the
(EMA) teacher's predictions at the two examples: f(λu_j + (1−λ)u_k) ≈ λ f'(u_j) + (1−λ) f'(u_k),
λ ~ Beta(α, α), with a squared-error loss whose weight ramps up. The teacher is the engine's EMA copy
(`polymodal.ssl.teacher`); mixing happens on each modality's first continuous representation.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.options import Options
from polymodal.ssl.common import (
    forward_with,
    linear_rampup,
    mix,
    mixed_lengths,
    mse_probs,
    permutation,
    sample_beta,
)
from polymodal.ssl.method import (
    Terms,
    ViewFn,
    register_method,
    supervised_terms,
)


def ict_targets(teacher_probs: Tensor, lam: Tensor, perm: Tensor) -> Tensor:
    """λ p'(u) + (1 − λ) p'(u[perm]): the mixup of the teacher's predictions."""
    w = lam.to(teacher_probs.dtype)[:, None]
    return w * teacher_probs + (1 - w) * teacher_probs[perm]


class ICTOptions(Options):
    weight: float = Field(50.0, ge=0.0)
    rampup: float = Field(0.4, ge=0.0, le=1.0)
    alpha: float = Field(1.0, gt=0.0)  # λ ~ Beta(α, α)
    ema: float = Field(0.999, ge=0.0, lt=1.0)


@register_method("ict", options=ICTOptions, teacher_decay=lambda o: o.ema)
def ict(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    c: ICTOptions,
    generator: torch.Generator,
    teacher: nn.Module | None = None,
) -> Terms:
    assert unlabeled is not None and teacher is not None, "the engine passes teacher= (see teacher_decay)"
    lab_out = model(views(labeled, "weak", generator))
    sup, _ = supervised_terms(lab_out, labeled)
    unl = views(unlabeled, "weak", generator)
    with torch.no_grad():
        probs = {t: z.float().softmax(-1) for t, z in teacher(unl).items() if t in sup}
    lam = sample_beta(c.alpha, 1, generator, unl.device).expand(unl.size)  # one λ per batch, as the paper
    perm = permutation(unl.size, generator, unl.device)
    logits = forward_with(model, unl, mix(lam, perm), mixed_lengths(unl, perm))
    unsup = {t: mse_probs(logits[t], ict_targets(probs[t], lam, perm)) for t in sup}
    w = c.weight * linear_rampup(progress, c.rampup)
    losses = {t: sup[t] + w * unsup[t] for t in sup}
    logs = {"sup": sum(sup.values()).detach(), "unsup": sum(unsup.values()).detach()}
    return Terms(losses, logs, lab_out.features)  # MGDA-UB: the forward the supervised loss came from
