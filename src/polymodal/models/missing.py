"""Missing modalities: dropout of whole modalities in training, and evaluation with one removed.

Modality dropout (as in ModDrop, Neverova et al. 2015) hides whole modalities of training examples,
so the model learns to predict from whatever is there. Two schemes: ``independent`` hides each
modality of each example with probability p (a row that would lose every modality keeps its original
mask: there must be something to predict from), so with two modalities each is seen alone in at most
25% of rows; ``one`` picks a row with probability p and hides exactly ONE of its present modalities,
chosen uniformly, so each of two modalities is seen alone in p/2 of rows. ``one`` with a large p is
the lever when one modality dominates the shared loss and the other branch stays under-trained
(docs/fusion.md). Both draw from torch's global RNG, which the engine reseeds every step, so a resumed
run drops exactly the same modalities.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from polymodal.batch import Batch


def drop_modalities(mask: dict[str, Tensor], p: float, mode: str = "independent") -> dict[str, Tensor]:
    """New presence masks after dropout; a row keeps at least one of the modalities it had."""
    names = list(mask)
    old = torch.stack([mask[m] for m in names], dim=1)  # (B, M) bool
    if mode == "one":  # w.p. p, hide one present modality (uniformly) of rows that have two or more
        chosen = (torch.rand(old.shape[0], device=old.device) < p) & (old.sum(1) >= 2)
        pick = torch.rand(old.shape, device=old.device).masked_fill(~old, -1.0).argmax(1)
        hit = torch.nn.functional.one_hot(pick, len(names)).bool() & chosen[:, None]
        return {m: (old & ~hit)[:, i] for i, m in enumerate(names)}
    if mode != "independent":
        raise ValueError(f"modality dropout mode '{mode}' is unknown; allowed: independent, one")
    keep = old & (torch.rand(old.shape, device=old.device) >= p)
    keep = torch.where(keep.any(dim=1, keepdim=True), keep, old)
    return {m: keep[:, i] for i, m in enumerate(names)}


def without(batch: Batch, modality: str) -> Batch:
    """The batch with ``modality`` absent: inputs zeroed, mask False (lengths kept for shapes)."""
    inputs = {**batch.inputs, modality: torch.zeros_like(batch.inputs[modality])}
    mask = {**batch.modality_mask, modality: torch.zeros_like(batch.modality_mask[modality])}
    return Batch(inputs, batch.targets, batch.target_mask, mask, batch.lengths)


class Without(nn.Module):
    """Wraps a model so every batch it sees lacks ``modality`` (to reuse any evaluation loop)."""

    def __init__(self, model: nn.Module, modality: str) -> None:
        super().__init__()
        self.model, self.modality = model, modality

    def forward(self, batch: Batch) -> Any:
        return self.model(without(batch, self.modality))
