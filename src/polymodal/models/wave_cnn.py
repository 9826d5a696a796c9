"""`wave_cnn`: a 1-D CNN over raw, right-padded waveforms (B, T) with valid lengths.

Strided convolutions learn their own filterbank (as SoundNet / M5, Dai et al. 2017), so no log-mel
step is needed. As in `audio_cnn`, padded samples are re-zeroed after every block and the final
average pool covers valid positions only, so (in eval mode) padding never changes an output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.batch import valid_mask
from polymodal.errors import ShapeError
from polymodal.models.base import Encoder
from polymodal.models.registry import ENCODERS


@ENCODERS.register("wave_cnn")
class WaveCNN(Encoder):
    """Stride-4 front end, then (conv, pool 4) blocks of widths w, 2w, 4w; masked mean pool; Linear+ReLU."""

    stage_names: tuple[str, ...] = ("stage1", "stage2", "stage3", "pool", "out")

    def __init__(self, width: int = 16, out_dim: int = 128, kernel: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.kernel = kernel
        w = (1, width, 2 * width, 4 * width)
        self.front = nn.Sequential(
            nn.Conv1d(1, w[1], kernel, stride=4, bias=False), nn.BatchNorm1d(w[1]), nn.ReLU()
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm1d(cout), nn.ReLU())
            for cin, cout in zip(w[1:-1], w[2:], strict=True)
        )
        self.pool = nn.MaxPool1d(4, ceil_mode=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(w[-1], out_dim), nn.ReLU())

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Named stages in order; ``lengths`` (B,) counts valid samples (None: all)."""
        if x.ndim != 2:
            raise ShapeError(f"wave_cnn expects waveforms (B, T), got {tuple(x.shape)}")
        b, t = x.shape
        n = torch.full((b,), t, device=x.device) if lengths is None else lengths.to(x.device).clamp(1, t)
        if t < self.kernel:
            x = nn.functional.pad(x, (0, self.kernel - t))
        h = self.front(x[:, None])
        n = ((n - self.kernel).clamp(min=0) // 4 + 1).clamp(max=h.shape[-1])
        stages: dict[str, Tensor] = {}
        for i, block in enumerate([nn.Identity(), *self.blocks], start=1):
            h = block(h)
            h = h * valid_mask(n, h.shape[-1])[:, None].to(h.dtype)
            h = self.pool(h)
            n = (n + 3) // 4
            stages[f"stage{i}"] = h
        valid = valid_mask(n, h.shape[-1]).to(h.dtype)
        stages["pool"] = (h * valid[:, None]).sum(-1) / n.to(h.dtype)[:, None]
        stages["out"] = self.head(stages["pool"])
        return stages
