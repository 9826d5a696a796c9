"""MixMatch (Berthelot et al., NeurIPS 2019, arXiv:1905.02249).

Guess a label for each unlabeled example by averaging the model's predictions over K weak
augmentations and sharpening with temperature T; then mix every labeled and unlabeled row with a
random partner from the whole batch, λ ~ Beta(α, α), λ' = max(λ, 1 − λ) (so each mixed row stays
closer to its own example), inputs and targets alike. Labeled rows get cross-entropy to their mixed
targets, unlabeled rows the squared error, weighted by λ_U (ramped up). λ is drawn per row, as in
the official implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from polymodal.batch import Batch, cat_batches
from polymodal.options import Options
from polymodal.ssl.common import (
    forward_with,
    linear_rampup,
    mix,
    mixed_lengths,
    mse_probs,
    permutation,
    sample_beta,
    sharpen,
    soft_cross_entropy,
)
from polymodal.ssl.method import Terms, ViewFn, model_losses, register_method


def guess_labels(logits_k: list[Tensor], temperature: float) -> Tensor:
    """Sharpen(mean_k softmax(z_k), T), no gradient."""
    mean = torch.stack([z.detach().float().softmax(-1) for z in logits_k]).mean(0)
    return sharpen(mean, temperature)


def mixmatch_lambda(alpha: float, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    lam = sample_beta(alpha, n, generator, device)
    return torch.maximum(lam, 1 - lam)


class MixMatchOptions(Options):
    T: float = Field(0.5, gt=0.0)  # sharpening temperature
    alpha: float = Field(0.75, gt=0.0)  # λ ~ Beta(α, α), λ' = max(λ, 1 − λ)
    K: int = Field(2, ge=1)  # augmentations averaged for the label guess
    weight: float = Field(100.0, ge=0.0)  # λ_U
    rampup: float = Field(0.4, ge=0.0, le=1.0)


@register_method("mixmatch", options=MixMatchOptions)
def mixmatch(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    c: MixMatchOptions,
    generator: torch.Generator,
) -> Terms:
    assert unlabeled is not None
    lab = views(labeled, "weak", generator)
    augs = [views(unlabeled, "weak", generator) for _ in range(c.K)]
    n, m = lab.size, unlabeled.size
    with torch.no_grad():
        guessed = model(cat_batches(augs))
    rows = cat_batches([lab.unlabeled(), *augs])
    lam = mixmatch_lambda(c.alpha, rows.size, generator, rows.device)
    perm = permutation(rows.size, generator, rows.device)
    out = forward_with(model, rows, mix(lam, perm), mixed_lengths(rows, perm))
    sup, unsup = {}, {}
    for t in labeled.targets:
        k = out[t].shape[-1]
        q = guess_labels(list(guessed[t].float().split(m)), c.T)
        y = F.one_hot(labeled.targets[t].clamp_min(0), k).float()
        targets = torch.cat([y, q.repeat(c.K, 1)])
        w = lam[:, None]
        mixed = w * targets + (1 - w) * targets[perm]
        labeled_rows = labeled.target_mask[t]
        sup[t] = soft_cross_entropy(out[t][:n], mixed[:n], labeled_rows)
        for z, present in out.aux.get(t, []):  # fusion auxiliary heads learn the same mixed targets
            sup[t] = sup[t] + out.aux_weight * soft_cross_entropy(
                z[:n], mixed[:n], labeled_rows & present[:n]
            )
        unsup[t] = mse_probs(out[t][n:], mixed[n:])
    w_u = c.weight * linear_rampup(progress, c.rampup)
    losses = model_losses(out, {t: sup[t] + w_u * unsup[t] for t in sup})  # + e.g. reconstruction
    logs = {"sup": sum(sup.values()).detach(), "unsup": sum(unsup.values()).detach()}
    return Terms(losses, logs, out.features)
