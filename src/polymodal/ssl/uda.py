"""Unsupervised Data Augmentation (Xie et al., NeurIPS 2020, arXiv:1904.12848).

Follows the official code (google-research/uda): Training Signal Annealing on the supervised term,
and on unlabeled data KL(sg(p_τ(y|x)) ‖ p(y|x̂)) where p_τ is the clean prediction sharpened with
temperature τ, masked by the *unsharpened* clean confidence, averaged over all unlabeled examples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.errors import ConfigError

TSA_SCHEDULES = ("linear", "log", "exp")


def tsa_threshold(schedule: str, progress: float, num_classes: int) -> float:
    """η_t = α_t·(1 − 1/K) + 1/K with α_t = t/T (linear), 1 − e^(−5t/T) (log), e^(5(t/T − 1)) (exp).

    ``progress`` is t/T in [0, 1]. Labeled examples whose true-class probability exceeds η_t are
    left out of the supervised loss, so the model cannot overfit the few labels early on.
    """
    if schedule not in TSA_SCHEDULES:
        raise ConfigError(f"unknown TSA schedule '{schedule}'; allowed: {', '.join(TSA_SCHEDULES)}")
    if not 0.0 <= progress <= 1.0:
        raise ConfigError(f"TSA progress must be in [0, 1], got {progress}")
    if num_classes < 2:
        raise ConfigError(f"TSA needs num_classes >= 2, got {num_classes}")
    alpha = {
        "linear": progress,
        "log": 1.0 - math.exp(-5.0 * progress),
        "exp": math.exp(5.0 * (progress - 1.0)),
    }[schedule]
    return alpha * (1.0 - 1.0 / num_classes) + 1.0 / num_classes


def tsa_cross_entropy(
    logits: Tensor, targets: Tensor, threshold: float | None, label_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Cross-entropy averaged over the labeled examples TSA keeps; returns (loss, kept-mask).

    An example is kept when it has a label (``label_mask``) and its true-class probability is at
    most ``threshold`` (None keeps every labeled example). Masks multiply instead of indexing, so
    nothing waits on the device; an all-masked batch gives a zero loss that still has a graph.
    """
    keep = torch.ones_like(targets, dtype=torch.bool) if label_mask is None else label_mask
    targets = targets.clamp_min(0)  # rows without a label may hold -1; they are masked anyway
    logits = logits.float()
    per_example = F.cross_entropy(logits, targets, reduction="none")
    if threshold is not None:
        true_prob = logits.softmax(-1).gather(1, targets[:, None]).squeeze(1)
        keep = keep & (true_prob <= threshold)
    kept = keep.float()
    return (per_example * kept).sum() / kept.sum().clamp_min(1.0), keep


def uda_consistency(
    logits_clean: Tensor,
    logits_aug: Tensor,
    temperature: float = 1.0,
    confidence: float | None = None,
) -> Tensor:
    """mean_i 1[max p(y|x_i) > β] · KL(sg(softmax(z_clean,i / τ)) ‖ softmax(z_aug,i)).

    No gradient reaches ``logits_clean``. ``temperature`` τ < 1 sharpens the target; ``confidence``
    β masks unconfident examples using the unsharpened clean probabilities (None = no mask). The mean
    runs over all unlabeled examples, masked ones included, as in the official code.
    """
    if temperature <= 0:
        raise ConfigError(f"UDA temperature must be > 0, got {temperature}")
    if logits_clean.shape != logits_aug.shape:
        raise ConfigError(
            f"clean logits {tuple(logits_clean.shape)} and augmented logits "
            f"{tuple(logits_aug.shape)} must have the same shape"
        )
    clean = logits_clean.detach().float()
    target_log_prob = F.log_softmax(clean / temperature, dim=-1)
    aug_log_prob = F.log_softmax(logits_aug.float(), dim=-1)
    kl = (target_log_prob.exp() * (target_log_prob - aug_log_prob)).sum(-1)
    if confidence is not None:
        kl = kl * (clean.softmax(-1).max(-1).values > confidence).float()
    return kl.mean()
