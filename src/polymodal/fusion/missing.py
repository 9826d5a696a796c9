"""Missing modalities: dropout of whole modalities in training, and evaluation with one removed.

Modality dropout (as in ModDrop, Neverova et al. 2015) hides each modality of each example with
probability p, so the model learns to predict from whatever is there. It draws from torch's global
RNG, which the engine reseeds every step, so a resumed run drops exactly the same modalities. A row
that would lose every modality keeps its original mask (there must be something to predict from).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from polymodal.batch import Batch


def drop_modalities(mask: dict[str, Tensor], p: float) -> dict[str, Tensor]:
    names = list(mask)
    old = torch.stack([mask[m] for m in names], dim=1)  # (B, M) bool
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


def evaluate_run_missing(run_dir: Any, data_root: str | None = None) -> dict[str, Any]:
    """A run's test results with all modalities, then without each one (multi-modal runs only)."""
    from polymodal.engine.evaluate import load_run
    from polymodal.engine.trainer import evaluate

    cfg, data, views, model, device = load_run(run_dir, data_root)

    def run(m: nn.Module) -> dict[str, Any]:
        return evaluate(m, data.test, views, cfg.data.eval_batch_size, device, cfg.train.precision)

    out = {"all": run(model)}
    if len(cfg.model.encoders) > 1:
        for m in cfg.model.encoders:
            out[f"without_{m}"] = run(Without(model, m))
    return out
