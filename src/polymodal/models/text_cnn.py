"""`text_cnn`: token ids (B, L) with lengths -> embedding, two 1-D conv blocks, masked max+mean pool.

A small CNN text encoder (Kim, 2014, with a second conv layer) that trains in minutes on CPU. As in
`audio_cnn`, padding never changes an example's output: padded positions are zeroed after every
block (the same zeros a 'same' convolution pads with) and both pools read valid positions only.
The embedding is the first continuous representation, which VAT, ICT and MixMatch perturb or mix.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.batch import valid_mask
from polymodal.errors import ShapeError
from polymodal.models.base import Encoder
from polymodal.models.registry import ENCODERS


@ENCODERS.register("text_cnn")
class TextCNN(Encoder):
    stage_names: tuple[str, ...] = ("embed", "conv1", "conv2", "pool", "out")

    def __init__(
        self,
        vocab_size: int = 30000,  # filled in from the dataset (`DataBundle.meta`) when a config omits it
        embed_dim: int = 64,
        width: int = 128,
        kernel: int = 3,
        out_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ShapeError(f"text_cnn needs vocab_size >= 2, got {vocab_size}")
        self.vocab_size, self.out_dim = vocab_size, out_dim
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.conv1 = nn.Conv1d(embed_dim, width, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(width, width, kernel, padding=kernel // 2)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(2 * width, out_dim), nn.ReLU())

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Named stages in order; ``lengths`` (B,) counts valid tokens (None: all positions valid)."""
        if x.ndim != 2 or x.is_floating_point():
            raise ShapeError(f"text_cnn expects token ids (B, L), got {x.dtype} {tuple(x.shape)}")
        b, width = x.shape
        if lengths is None:
            lengths = torch.full((b,), width, device=x.device)
        elif lengths.shape != (b,):
            raise ShapeError(f"text_cnn expects lengths (B,)=({b},), got {tuple(lengths.shape)}")
        n = lengths.to(x.device).clamp(1, width)
        valid = valid_mask(n, width)[:, None, :]  # (B, 1, L)
        e = self.embed(x.clamp(0, self.vocab_size - 1)).transpose(1, 2)  # (B, E, L)
        h1 = torch.relu(self.conv1(self.drop(e * valid))) * valid
        h2 = torch.relu(self.conv2(self.drop(h1))) * valid
        top = torch.where(valid, h2, torch.finfo(h2.dtype).min).amax(-1)
        mean = h2.sum(-1) / n[:, None].to(h2.dtype)
        pool = torch.cat([top, mean], -1)
        return {"embed": e, "conv1": h1, "conv2": h2, "pool": pool, "out": self.head(self.drop(pool))}
