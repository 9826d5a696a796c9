"""Training methods as plain loss functions, registered with what the engine must know about them.

``objective(model, labeled, unlabeled, views, progress, options, generator[, teacher=]) -> Terms``:
a method builds the views it needs, runs the model and returns one loss per task (what a multi-task
balancer combines), detached values to log, and the features its supervised loss was computed from
(what MGDA-UB differentiates). Tasks are those the labeled batch carries targets for, so a batch
drawn for one task yields one loss. A method receives its own options section, never the whole
config; `register_method` records the options model, whether it reads unlabeled data and whether it
needs an EMA teacher, so one file (and one registration) adds a method everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.batch import Batch, cat_batches
from polymodal.models.output import ModelOutput
from polymodal.options import NoOptions, Options
from polymodal.registry import Registry

Losses = dict[str, Tensor]
Logs = dict[str, Tensor]


class Terms(NamedTuple):
    losses: Losses  # one loss per task, with a graph
    logs: Logs  # detached scalars, averaged between log lines
    features: Tensor | None = None  # the shared features of the forward that made the supervised loss


class ViewFn(Protocol):
    def __call__(self, batch: Batch, view: str, generator: torch.Generator) -> Batch: ...


Objective = Callable[..., Terms]


@dataclass(frozen=True)
class Method:
    objective: Objective
    options: type[Options] = NoOptions  # the config section named after the method
    unlabeled: bool = True  # the engine draws an unlabeled batch each step
    teacher_decay: Callable[[Any], float] | None = None  # options -> α: the engine keeps an EMA teacher


METHODS: Registry[Method] = Registry("method")


def register_method(
    name: str,
    *,
    options: type[Options] = NoOptions,
    unlabeled: bool = True,
    teacher_decay: Callable[[Any], float] | None = None,
) -> Callable[[Objective], Objective]:
    def deco(fn: Objective) -> Objective:
        METHODS.register(name)(Method(fn, options, unlabeled, teacher_decay))
        return fn

    return deco


def joint_forward(model: nn.Module, batches: list[Batch]) -> tuple[ModelOutput, list[ModelOutput]]:
    """One forward over several views' rows together, and the output split back per view.

    Batch norm then sees labeled and unlabeled rows together, as the reference implementations do.
    Targets are dropped (objectives read them from the labeled batch); the whole output is returned
    too, since its features are what the losses depend on.
    """
    out = model(cat_batches([b.unlabeled() for b in batches]))
    return out, out.split([b.size for b in batches])


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


def aux_terms(out: ModelOutput, batch: Batch) -> Losses:
    """aux_weight × Σ over a fusion model's auxiliary heads of their cross-entropy, each on the labeled
    rows where its modality is present (the fused loss alone can leave a weak modality untrained)."""
    terms = {}
    for task, pairs in out.aux.items():
        if task not in batch.targets:
            continue
        y, labeled = batch.targets[task].clamp_min(0), batch.target_mask[task]
        total = torch.zeros((), device=y.device)
        for z, rows in pairs:
            m = (rows & labeled).float()
            total = total + (F.cross_entropy(z.float(), y, reduction="none") * m).sum() / m.sum().clamp_min(1)
        terms[task] = out.aux_weight * total
    return terms


def supervised_terms(
    out: ModelOutput, batch: Batch, threshold: Callable[[int], float | None] = lambda k: None
) -> tuple[Losses, Tensor]:
    """(TSA-)masked cross-entropy per task the batch has targets for, plus the auxiliary heads' terms
    and the model's own extra losses (``out.losses``, shared equally by the tasks, so their sum is added
    once); and the fraction of rows TSA kept. Every method's supervised loss comes from here."""
    losses, kept = {}, []
    for task in batch.targets:
        z = out[task]
        losses[task], keep = tsa_cross_entropy(
            z, batch.targets[task], threshold(z.shape[-1]), batch.target_mask[task]
        )
        kept.append(keep.float().mean())
    aux = aux_terms(out, batch)
    losses = {t: v + aux[t] if t in aux else v for t, v in losses.items()}
    return model_losses(out, losses), torch.stack(kept).mean()


def model_losses(out: ModelOutput, losses: Losses) -> Losses:
    """``losses`` plus the model's own extra training losses (``out.losses``, e.g. a fusion autoencoder's
    reconstruction), shared equally by the tasks so that their sum is added once."""
    if not out.losses or not losses:
        return losses
    extra = sum(out.losses.values()) / len(losses)
    return {t: v + extra for t, v in losses.items()}


def confident_hard_label_ce(target_logits: Tensor, logits: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """(loss, mask): CE(argmax p_target, logits) where max p_target ≥ threshold, averaged over all rows.

    No gradient flows through the target. Pseudo-Label (target = the logits themselves) and FixMatch
    (target = the weak view, logits = the strong view) are both this.
    """
    probs = target_logits.detach().float().softmax(-1)
    confidence, hard = probs.max(-1)
    mask = confidence >= threshold
    ce = F.cross_entropy(logits.float(), hard, reduction="none")
    return (ce * mask.float()).mean(), mask
