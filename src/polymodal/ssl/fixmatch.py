"""FixMatch (Sohn et al., NeurIPS 2020, arXiv:2001.07685).

Hard pseudo-labels from the weakly augmented view of each unlabeled example, kept only where the
model's confidence on that weak view reaches τ, train the prediction on the strongly augmented view:
ℓ_u = mean_b 1[max p(y|weak_b) ≥ τ] · CE(argmax p(y|weak_b), p(y|strong_b)). The mean runs over all
unlabeled examples, masked ones included, and one forward pass covers labeled, weak and strong rows
(as the official code does, so batch norm sees them together).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.batch import Batch, cat_batches
from polymodal.config import Config
from polymodal.ssl.objectives import METHODS, Logs, Losses, ViewFn, supervised_terms


def fixmatch_consistency(
    weak_logits: Tensor, strong_logits: Tensor, threshold: float
) -> tuple[Tensor, Tensor]:
    """(loss, mask): CE to the weak view's hard label where its confidence ≥ τ; no gradient via weak."""
    probs = weak_logits.detach().float().softmax(-1)
    confidence, hard = probs.max(-1)
    mask = confidence >= threshold
    ce = F.cross_entropy(strong_logits.float(), hard, reduction="none")
    return (ce * mask.float()).mean(), mask


@METHODS.register("fixmatch")
def fixmatch(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    cfg: Config,
    generator: torch.Generator,
) -> tuple[Losses, Logs]:
    assert unlabeled is not None
    f = cfg.fixmatch
    lab = views(labeled, "weak", generator)
    weak, strong = views(unlabeled, "weak", generator), views(unlabeled, "strong", generator)
    logits = model(cat_batches([lab.unlabeled(), weak, strong]))
    n, m = lab.size, weak.size
    sup, _ = supervised_terms({t: z[:n] for t, z in logits.items()}, labeled, lambda k: None)
    unsup, kept = {}, []
    for t in sup:
        unsup[t], mask = fixmatch_consistency(logits[t][n : n + m], logits[t][n + m :], f.threshold)
        kept.append(mask.float().mean())
    losses = {t: sup[t] + f.weight * unsup[t] for t in sup}
    logs = {
        "sup": sum(sup.values()).detach(),
        "unsup": sum(unsup.values()).detach(),
        "mask": torch.stack(kept).mean(),
    }
    return losses, logs
