"""Training methods as plain loss functions: (model, batches, views, progress) -> (loss, logs).

A method builds the views it needs, runs the model and returns a scalar loss plus detached values
to log. The engine owns everything else (devices, precision, optimizer, checkpoints).
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

Logs = dict[str, Tensor]


class ViewFn(Protocol):
    def __call__(self, batch: Batch, view: str, generator: torch.Generator) -> Batch: ...


Objective = Callable[..., tuple[Tensor, Logs]]
METHODS: Registry[tuple[Tensor, Logs]] = Registry("method")
NEEDS_UNLABELED = {"uda"}


def supervised_terms(logits: dict[str, Tensor], batch: Batch, threshold: Callable[[int], float | None]):
    """Sum over tasks of (TSA-)masked cross-entropy; also the fraction of labeled rows kept."""
    loss, kept = 0.0, []
    for task, z in logits.items():
        ce, keep = tsa_cross_entropy(z, batch.targets[task], threshold(z.shape[-1]), batch.target_mask[task])
        loss = loss + ce
        kept.append(keep.float().mean())
    return loss, torch.stack(kept).mean()


@METHODS.register("supervised")
def supervised(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    cfg: Config,
    generator: torch.Generator,
) -> tuple[Tensor, Logs]:
    """Cross-entropy on weakly augmented labeled data only: the baseline every method must beat."""
    loss, _ = supervised_terms(model(views(labeled, "weak", generator)), labeled, lambda k: None)
    return loss, {"sup": loss.detach()}


@METHODS.register("uda")
def uda(
    model: nn.Module,
    labeled: Batch,
    unlabeled: Batch | None,
    views: ViewFn,
    progress: float,
    cfg: Config,
    generator: torch.Generator,
) -> tuple[Tensor, Logs]:
    """sup (with TSA) + λ · consistency between clean and strongly augmented unlabeled data."""
    assert unlabeled is not None
    u = cfg.uda
    with torch.no_grad():
        clean_logits = model(views(unlabeled, "clean", generator))
    lab = views(labeled, "weak", generator)
    aug = views(unlabeled, "strong", generator)
    logits = model(cat_batches([lab.unlabeled(), aug]))
    n = lab.size
    tsa = None if u.tsa == "none" else u.tsa

    def threshold(k: int) -> float | None:
        return None if tsa is None else tsa_threshold(tsa, progress, k)

    sup, kept = supervised_terms({t: z[:n] for t, z in logits.items()}, labeled, threshold)
    unsup = sum(
        uda_consistency(clean_logits[t], z[n:], u.temperature, u.confidence) for t, z in logits.items()
    )
    loss = sup + u.weight * unsup
    return loss, {"sup": sup.detach(), "unsup": unsup.detach(), "tsa_kept": kept}
