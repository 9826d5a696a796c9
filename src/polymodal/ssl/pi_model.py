"""Π-model (Laine & Aila, ICLR 2017, arXiv:1610.02242; Sajjadi et al., NeurIPS 2016).

Two stochastic passes over the same unlabeled example (independent draws of the strong augmentation
and of dropout) should agree: ℓ_u = mean (softmax(z₁) − sg(softmax(z₂)))², with the weight ramped up
from 0. The stop-gradient on one branch follows the reference re-implementations (Oliver et al.
2018; google-research/fixmatch).
"""

from __future__ import annotations

import torch
from torch import nn

from polymodal.batch import Batch, cat_batches
from polymodal.config import Config
from polymodal.ssl.common import linear_rampup, mse_probs
from polymodal.ssl.objectives import METHODS, Logs, Losses, ViewFn, supervised_terms


@METHODS.register("pi_model")
def pi_model(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    cfg: Config,
    generator: torch.Generator,
) -> tuple[Losses, Logs]:
    assert unlabeled is not None
    c = cfg.pi_model
    lab = views(labeled, "weak", generator)
    one, two = views(unlabeled, "strong", generator), views(unlabeled, "strong", generator)
    logits = model(cat_batches([lab.unlabeled(), one, two]))
    n, m = lab.size, one.size
    sup, _ = supervised_terms({t: z[:n] for t, z in logits.items()}, labeled, lambda k: None)
    unsup = {t: mse_probs(logits[t][n : n + m], logits[t][n + m :].float().softmax(-1)) for t in sup}
    w = c.weight * linear_rampup(progress, c.rampup)
    losses = {t: sup[t] + w * unsup[t] for t in sup}
    return losses, {"sup": sum(sup.values()).detach(), "unsup": sum(unsup.values()).detach()}
