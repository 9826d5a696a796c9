"""Hard parameter sharing: encoders feed a shared feature, one head per task.

The trunk here concatenates the encoders' outputs (a missing modality contributes zeros, read from
``batch.modality_mask``). Encoders are keyed by name; each reads one modality (``inputs``, default: its
own name), so two encoders may read the same modality. Masks, modality dropout and `Without` act on
modalities, so hiding a modality hides every encoder that reads it. Fusion graphs replace this trunk;
heads and the batch contract stay.

A head is linear (softmax) or a margin softmax (`MarginHead`, AAM / AM over cosines, models/margin.py),
which adds its margin to the target logit in training, on the rows that have a label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.errors import ShapeError
from polymodal.models.margin import AAMSoftmax
from polymodal.models.missing import drop_modalities
from polymodal.models.output import ModelOutput, TaskModel


class MarginHead(nn.Module):
    """Dropout -> `AAMSoftmax`; ``forward(x, targets, mask)`` adds the margin to labeled rows in training."""

    def __init__(self, in_dim: int, classes: int, dropout: float, kind: str, margin: float, scale: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.margin = AAMSoftmax(in_dim, classes, margin, scale, kind)

    def forward(self, x: Tensor, targets: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        x = self.drop(x)
        if targets is None or not self.training:
            return self.margin(x)
        z = self.margin(x, targets.clamp_min(0))
        if mask is None:
            return z
        return torch.where(mask[:, None], z, self.margin.scale * self.margin.cosines(x))


def make_head(in_dim: int, classes: int, dropout: float, spec: Mapping[str, Any] | None = None) -> nn.Module:
    """``spec`` is a `HeadConfig` as a dict (kind linear / aam / am, margin, scale); None: linear."""
    if spec is None or spec.get("kind", "linear") == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, classes))
    return MarginHead(
        in_dim, classes, dropout, spec["kind"], spec.get("margin", 0.2), spec.get("scale", 30.0)
    )


def head_specs(
    tasks: Mapping[str, int], head: Mapping[str, Any] | None
) -> dict[str, Mapping[str, Any] | None]:
    """Each task's head spec: ``head`` for the tasks it names (all when ``tasks`` is None), else linear."""
    if head is None:
        return {t: None for t in tasks}
    chosen = head.get("tasks")
    return {t: head if chosen is None or t in chosen else None for t in tasks}


def apply_head(head: nn.Module, x: Tensor, batch: Batch, task: str, training: bool) -> Tensor:
    """A head's logits; a margin head sees the task's targets (and which rows have one) in training."""
    if isinstance(head, MarginHead) and training and task in batch.targets:
        return head(x, batch.targets[task], batch.target_mask.get(task))
    return head(x)


def visible(
    batch: Batch, inputs: Mapping[str, str], training: bool, p: float, mode: str
) -> dict[str, Tensor]:
    """Presence per modality the encoders read, after modality dropout in training (models.missing)."""
    for key, m in inputs.items():
        if m not in batch.inputs:
            raise ShapeError(
                f"the model has an encoder '{key}' for '{m}' but the batch only has {sorted(batch.inputs)}"
            )
    mask = {m: batch.modality_mask[m] for m in dict.fromkeys(inputs.values())}
    return drop_modalities(mask, p, mode) if training and p > 0 else mask


class MultiHeadModel(TaskModel):
    def __init__(
        self,
        encoders: dict[str, nn.Module],
        tasks: dict[str, int],
        dropout: float = 0.0,
        modality_dropout: float = 0.0,
        modality_dropout_mode: str = "independent",
        inputs: dict[str, str] | None = None,
        head: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        # hide whole modalities in training (models.missing.drop_modalities)
        self.modality_dropout, self.modality_dropout_mode = modality_dropout, modality_dropout_mode
        self.encoders = nn.ModuleDict(encoders)
        self.inputs = {k: (inputs or {}).get(k, k) for k in encoders}  # encoder -> the modality it reads
        self.feature_dim = sum(int(e.out_dim) for e in encoders.values())
        specs = head_specs(tasks, head)
        self.heads = nn.ModuleDict(
            {t: make_head(self.feature_dim, k, dropout, specs[t]) for t, k in tasks.items()}
        )

    def head_modules(self) -> list[nn.Module]:
        return [self.heads]

    def features(self, batch: Batch) -> Tensor:
        feats = []
        mask = visible(batch, self.inputs, self.training, self.modality_dropout, self.modality_dropout_mode)
        for key, encoder in self.encoders.items():
            m = self.inputs[key]
            f = encoder(batch.inputs[m], batch.lengths.get(m))
            feats.append(f * mask[m].to(f.dtype)[:, None])
        return feats[0] if len(feats) == 1 else torch.cat(feats, dim=-1)

    def forward(self, batch: Batch) -> ModelOutput:
        h = self.features(batch)
        logits = {t: apply_head(head, h, batch, t, self.training) for t, head in self.heads.items()}
        return ModelOutput(logits, h)
