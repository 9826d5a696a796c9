"""Hard parameter sharing: modality encoders feed a shared feature, one linear head per task.

The trunk here concatenates the encoders' outputs (a missing modality contributes zeros, read from
``batch.modality_mask``). Fusion graphs replace this trunk; heads and the batch contract stay.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.errors import ShapeError
from polymodal.models.missing import drop_modalities
from polymodal.models.output import ModelOutput, TaskModel


class MultiHeadModel(TaskModel):
    def __init__(
        self,
        encoders: dict[str, nn.Module],
        tasks: dict[str, int],
        dropout: float = 0.0,
        modality_dropout: float = 0.0,
        modality_dropout_mode: str = "independent",
    ):
        super().__init__()
        # hide whole modalities in training (models.missing.drop_modalities)
        self.modality_dropout, self.modality_dropout_mode = modality_dropout, modality_dropout_mode
        self.encoders = nn.ModuleDict(encoders)
        self.feature_dim = sum(int(e.out_dim) for e in encoders.values())
        self.heads = nn.ModuleDict(
            {t: nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, k)) for t, k in tasks.items()}
        )

    def head_modules(self) -> list[nn.Module]:
        return [self.heads]

    def features(self, batch: Batch) -> Tensor:
        feats = []
        mask = batch.modality_mask
        if self.training and self.modality_dropout > 0:
            present = {m: mask[m] for m in self.encoders if m in mask}
            mask = drop_modalities(present, self.modality_dropout, self.modality_dropout_mode)
        for modality, encoder in self.encoders.items():
            if modality not in batch.inputs:
                raise ShapeError(
                    f"the model has an encoder for '{modality}' but the batch only has {sorted(batch.inputs)}"
                )
            f = encoder(batch.inputs[modality], batch.lengths.get(modality))
            present = mask[modality].to(f.dtype)[:, None]
            feats.append(f * present)
        return feats[0] if len(feats) == 1 else torch.cat(feats, dim=-1)

    def forward(self, batch: Batch) -> ModelOutput:
        h = self.features(batch)
        return ModelOutput({task: head(h) for task, head in self.heads.items()}, h)
