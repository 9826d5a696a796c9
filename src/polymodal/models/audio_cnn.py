"""`audio_cnn`: a 2-D CNN over padded log-mel features (B, n_mels, frames) with valid lengths.

Padding must not change an example's output, or the prediction would depend on which other clips
share its batch. So normalization statistics use valid frames only, every block re-zeroes padded
frames before the next convolution (zeros are exactly what the conv's own border padding supplies),
max pooling uses ``ceil_mode`` with lengths ``ceil(L / 2)`` (the last valid frame is never dropped),
and the final average pool covers valid frames only. In eval mode the output is then independent of
the padding length; in train mode BatchNorm's batch statistics still see the (zero) padded frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.batch import valid_mask
from polymodal.errors import ShapeError
from polymodal.models.base import Encoder
from polymodal.models.registry import ENCODERS

MIN_FRAMES = 8  # three 2x poolings; shorter inputs are zero-padded up to this
NORM_EPS = 1e-5


def _valid_mask(lengths: Tensor, frames: int) -> Tensor:
    """(B,) lengths -> (B, frames) bool, True at valid frames."""
    return valid_mask(lengths, frames)


@ENCODERS.register("audio_cnn")
class AudioCNN(Encoder):
    """Per-example band normalization, conv blocks (w, 2w, 4w), masked average pool, Linear+ReLU."""

    stage_names: tuple[str, ...] = ("stage1", "stage2", "stage3", "pool", "out")

    def __init__(self, n_mels: int = 40, width: int = 16, out_dim: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.out_dim = out_dim
        widths = (1, width, 2 * width, 4 * width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
            for cin, cout in zip(widths[:-1], widths[1:], strict=True)
        )
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * width, out_dim), nn.ReLU())

    def _lengths(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        b, frames = x.shape[0], x.shape[-1]
        if lengths is None:
            return torch.full((b,), frames, dtype=torch.long, device=x.device)
        if lengths.shape != (b,):
            raise ShapeError(f"audio_cnn expects lengths (B,)=({b},), got {tuple(lengths.shape)}")
        # An empty clip is treated as one (zero) frame so every example has something to pool.
        return lengths.to(device=x.device, dtype=torch.long).clamp(1, frames)

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Named hidden stages in order; ``lengths`` (B,) counts the valid frames (None: all)."""
        if x.ndim != 3 or x.shape[1] != self.n_mels:
            raise ShapeError(f"audio_cnn expects log-mel (B, {self.n_mels}, frames), got {tuple(x.shape)}")
        lengths = self._lengths(x, lengths)
        if x.shape[-1] < MIN_FRAMES:
            x = F.pad(x, (0, MIN_FRAMES - x.shape[-1]))
        # Per-example, per-band standardization over valid frames only (padding excluded).
        valid = _valid_mask(lengths, x.shape[-1])[:, None, :]  # (B, 1, T)
        n = lengths.to(x.dtype)[:, None, None]
        x = torch.where(valid, x, 0.0)
        mean = x.sum(-1, keepdim=True) / n
        centred = torch.where(valid, x - mean, 0.0)
        std = (centred.square().sum(-1, keepdim=True) / n + NORM_EPS).sqrt()
        h = (centred / std)[:, None]  # (B, 1, n_mels, T)

        stages: dict[str, Tensor] = {}
        for i, block in enumerate(self.blocks, start=1):
            h = block(h)
            h = h * _valid_mask(lengths, h.shape[-1])[:, None, None, :].to(h.dtype)
            h = self.pool(h)
            lengths = (lengths + 1) // 2  # ceil, as the ceil_mode pool; stays >= 1
            stages[f"stage{i}"] = h
        valid = _valid_mask(lengths, h.shape[-1])[:, None, None, :].to(h.dtype)
        denom = (lengths.to(h.dtype) * h.shape[2])[:, None]
        stages["pool"] = (h * valid).sum(dim=(2, 3)) / denom
        stages["out"] = self.head(stages["pool"])
        return stages
