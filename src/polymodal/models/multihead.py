"""Hard parameter sharing: modality encoders feed a shared feature, one linear head per task.

The trunk here concatenates the encoders' outputs (a missing modality contributes zeros, read from
``batch.modality_mask``). Fusion graphs replace this trunk; heads and the batch contract stay.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.errors import ShapeError


class MultiHeadModel(nn.Module):
    def __init__(
        self,
        encoders: dict[str, nn.Module],
        tasks: dict[str, int],
        dropout: float = 0.0,
        modality_dropout: float = 0.0,
    ):
        super().__init__()
        self.modality_dropout = modality_dropout  # hide whole modalities in training (fusion.missing)
        self.encoders = nn.ModuleDict(encoders)
        self.feature_dim = sum(int(e.out_dim) for e in encoders.values())
        self.heads = nn.ModuleDict(
            {t: nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, k)) for t, k in tasks.items()}
        )

    def features(self, batch: Batch) -> Tensor:
        feats = []
        mask = batch.modality_mask
        if self.training and self.modality_dropout > 0:
            from polymodal.fusion.missing import drop_modalities

            mode = getattr(self, "modality_dropout_mode", "independent")
            present = {m: mask[m] for m in self.encoders if m in mask}
            mask = drop_modalities(present, self.modality_dropout, mode)
        for modality, encoder in self.encoders.items():
            if modality not in batch.inputs:
                raise ShapeError(
                    f"the model has an encoder for '{modality}' but the batch only has {sorted(batch.inputs)}"
                )
            f = encoder(batch.inputs[modality], batch.lengths.get(modality))
            present = mask[modality].to(f.dtype)[:, None]
            feats.append(f * present)
        return feats[0] if len(feats) == 1 else torch.cat(feats, dim=-1)

    keep_features = False  # set by the engine when a balancer needs Z (MGDA-UB): kept as last_features
    last_features: Tensor | None = None

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        h = self.features(batch)
        if self.keep_features and torch.is_grad_enabled():
            self.last_features = h
        return {task: head(h) for task, head in self.heads.items()}
