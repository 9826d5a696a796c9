"""Pseudo-Label (Lee, ICML 2013 Workshop on Challenges in Representation Learning).

The model's own argmax on unlabeled data is used as if it were a true label. As in the realistic
re-evaluation of Oliver et al. (NeurIPS 2018), only predictions whose confidence exceeds a threshold
become targets, and the weight of the term ramps up from 0 so early random guesses do not stick.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.batch import Batch, cat_batches
from polymodal.config import Config
from polymodal.ssl.common import linear_rampup
from polymodal.ssl.objectives import METHODS, Logs, Losses, ViewFn, supervised_terms


def pseudo_label_loss(logits: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """(loss, mask): CE(argmax p, p) on rows with max p > threshold, averaged over all rows."""
    probs = logits.detach().float().softmax(-1)
    confidence, target = probs.max(-1)
    mask = confidence > threshold
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return (ce * mask.float()).mean(), mask


@METHODS.register("pseudo_label")
def pseudo_label(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    cfg: Config,
    generator: torch.Generator,
) -> tuple[Losses, Logs]:
    assert unlabeled is not None
    c = cfg.pseudo_label
    lab, unl = views(labeled, "weak", generator), views(unlabeled, "weak", generator)
    logits = model(cat_batches([lab.unlabeled(), unl]))
    n = lab.size
    sup, _ = supervised_terms({t: z[:n] for t, z in logits.items()}, labeled, lambda k: None)
    w = c.weight * linear_rampup(progress, c.rampup)
    unsup, kept = {}, []
    for t in sup:
        unsup[t], mask = pseudo_label_loss(logits[t][n:], c.threshold)
        kept.append(mask.float().mean())
    losses = {t: sup[t] + w * unsup[t] for t in sup}
    logs = {
        "sup": sum(sup.values()).detach(),
        "unsup": sum(unsup.values()).detach(),
        "mask": torch.stack(kept).mean(),
    }
    return losses, logs
