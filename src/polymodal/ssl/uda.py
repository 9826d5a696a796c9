"""Unsupervised Data Augmentation (Xie et al., NeurIPS 2020, arXiv:1904.12848).

Follows the official code (google-research/uda): Training Signal Annealing on the supervised term,
and on unlabeled data KL(sg(p_τ(y|x)) ‖ p(y|x̂)) where p_τ is the clean prediction sharpened with
temperature τ, masked by the *unsharpened* clean confidence, averaged over all unlabeled examples.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.errors import ConfigError
from polymodal.options import Options
from polymodal.ssl.method import Terms, ViewFn, joint_forward, register_method, supervised_terms

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


class UDAOptions(Options):
    weight: float = Field(1.0, ge=0.0)  # λ
    temperature: float = Field(0.4, gt=0.0)  # τ: sharpening of the clean target
    confidence: float | None = Field(0.8, ge=0.0, lt=1.0)  # β; None disables the mask
    tsa: Literal["none", "linear", "log", "exp"] = "linear"


@register_method("uda", options=UDAOptions)
def uda(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    u: UDAOptions,
    generator: torch.Generator,
) -> Terms:
    """Per task: sup (with TSA) + λ · consistency between clean and strongly augmented unlabeled data."""
    assert unlabeled is not None
    with torch.no_grad():
        clean_logits = model(views(unlabeled, "clean", generator))
    lab = views(labeled, "weak", generator)
    aug = views(unlabeled, "strong", generator)
    out, (lab_out, aug_out) = joint_forward(model, [lab, aug])

    def threshold(k: int) -> float | None:
        return None if u.tsa == "none" else tsa_threshold(u.tsa, progress, k)

    sup, kept = supervised_terms(lab_out, labeled, threshold)
    unsup = {t: uda_consistency(clean_logits[t], aug_out[t], u.temperature, u.confidence) for t in sup}
    losses = {t: sup[t] + u.weight * unsup[t] for t in sup}
    logs = {"sup": sum(sup.values()).detach(), "unsup": sum(unsup.values()).detach(), "tsa_kept": kept}
    return Terms(losses, logs, out.features)
