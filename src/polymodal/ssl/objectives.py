"""Training methods as plain loss functions.

``method(model, labeled, unlabeled, views, progress, cfg, generator) -> (losses, logs)``: a method
builds the views it needs, runs the model and returns one loss per task (what a multi-task balancer
combines) plus detached values to log. Tasks are those the labeled batch carries targets for, so a
batch drawn for one task yields one loss. The engine owns everything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn

from polymodal.batch import Batch, cat_batches
from polymodal.config import Config
from polymodal.registry import Registry
from polymodal.ssl.uda import tsa_cross_entropy, tsa_threshold, uda_consistency

Losses = dict[str, Tensor]
Logs = dict[str, Tensor]


class ViewFn(Protocol):
    def __call__(self, batch: Batch, view: str, generator: torch.Generator) -> Batch: ...


Objective = Callable[..., tuple[Losses, Logs]]
METHODS: Registry[tuple[Losses, Logs]] = Registry("method")
NEEDS_UNLABELED = {"uda", "pi_model", "mean_teacher", "vat", "pseudo_label", "ict", "mixmatch", "fixmatch"}


def supervised_terms(
    logits: dict[str, Tensor], batch: Batch, threshold: Callable[[int], float | None]
) -> tuple[Losses, Tensor]:
    """(TSA-)masked cross-entropy per task the batch has targets for; and the fraction of rows kept."""
    losses, kept = {}, []
    for task in batch.targets:
        z = logits[task]
        losses[task], keep = tsa_cross_entropy(
            z, batch.targets[task], threshold(z.shape[-1]), batch.target_mask[task]
        )
        kept.append(keep.float().mean())
    return losses, torch.stack(kept).mean()


@METHODS.register("supervised")
def supervised(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    cfg: Config,
    generator: torch.Generator,
) -> tuple[Losses, Logs]:
    """Cross-entropy on weakly augmented labeled data only: the baseline every method must beat."""
    losses, _ = supervised_terms(model(views(labeled, "weak", generator)), labeled, lambda k: None)
    aux = getattr(model, "aux_losses", None) or {}  # FusionModel's per-modality heads (model.aux_loss)
    losses = {t: v + aux[t] if t in aux else v for t, v in losses.items()}
    return losses, {f"sup_{t}": v.detach() for t, v in losses.items()} if len(losses) > 1 else {}


@METHODS.register("uda")
def uda(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    cfg: Config,
    generator: torch.Generator,
) -> tuple[Losses, Logs]:
    """Per task: sup (with TSA) + λ · consistency between clean and strongly augmented unlabeled data."""
    assert unlabeled is not None
    u = cfg.uda
    with torch.no_grad():
        clean_logits = model(views(unlabeled, "clean", generator))
    lab = views(labeled, "weak", generator)
    aug = views(unlabeled, "strong", generator)
    logits = model(cat_batches([lab.unlabeled(), aug]))
    n = lab.size

    def threshold(k: int) -> float | None:
        return None if u.tsa == "none" else tsa_threshold(u.tsa, progress, k)

    sup, kept = supervised_terms({t: z[:n] for t, z in logits.items()}, labeled, threshold)
    unsup = {t: uda_consistency(clean_logits[t], logits[t][n:], u.temperature, u.confidence) for t in sup}
    losses = {t: sup[t] + u.weight * unsup[t] for t in sup}
    logs = {
        "sup": sum(sup.values()).detach(),
        "unsup": sum(unsup.values()).detach(),
        "tsa_kept": kept,
    }
    return losses, logs
