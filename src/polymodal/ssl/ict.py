"""Interpolation Consistency Training (Verma et al., IJCAI 2019, arXiv:1903.03825).

The student's prediction at a mixup of two unlabeled examples should equal the same mixup of the
(EMA) teacher's predictions at the two examples: f(λu_j + (1−λ)u_k) ≈ λ f'(u_j) + (1−λ) f'(u_k),
λ ~ Beta(α, α), with a squared-error loss whose weight ramps up. The teacher is the engine's EMA copy
(`polymodal.ssl.teacher`); mixing happens on each modality's first continuous representation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.config import Config
from polymodal.ssl.common import (
    forward_with,
    linear_rampup,
    mix,
    mixed_lengths,
    mse_probs,
    permutation,
    sample_beta,
)
from polymodal.ssl.objectives import METHODS, Logs, Losses, ViewFn, supervised_terms


def ict_targets(teacher_probs: Tensor, lam: Tensor, perm: Tensor) -> Tensor:
    """λ p'(u) + (1 − λ) p'(u[perm]): the mixup of the teacher's predictions."""
    w = lam.to(teacher_probs.dtype)[:, None]
    return w * teacher_probs + (1 - w) * teacher_probs[perm]


@METHODS.register("ict")
def ict(
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
    c = cfg.ict
    sup, _ = supervised_terms(model(views(labeled, "weak", generator)), labeled, lambda k: None)
    unl = views(unlabeled, "weak", generator)
    with torch.no_grad():
        probs = {t: z.float().softmax(-1) for t, z in teacher(unl).items() if t in sup}
    lam = sample_beta(c.alpha, 1, generator, unl.device).expand(unl.size)  # one λ per batch, as the paper
    perm = permutation(unl.size, generator, unl.device)
    logits = forward_with(model, unl, mix(lam, perm), mixed_lengths(unl, perm))
    unsup = {t: mse_probs(logits[t], ict_targets(probs[t], lam, perm)) for t in sup}
    w = c.weight * linear_rampup(progress, c.rampup)
    losses = {t: sup[t] + w * unsup[t] for t in sup}
    return losses, {"sup": sum(sup.values()).detach(), "unsup": sum(unsup.values()).detach()}


ict.teacher_decay = lambda cfg: cfg.ict.ema  # type: ignore[attr-defined]
