"""Encoders (one per file) and the model that puts heads on them.

`ENCODERS` is the one registry of modality encoders (as timm's `create_model`). An encoder is an
``nn.Module`` with ``out_dim: int`` and ``forward(x, lengths=None) -> (B, out_dim)``; it also exposes
its hidden stages by name through ``forward_stages(x, lengths=None) -> dict[str, Tensor]`` (ordered,
the last entry is the output), so fusion can read any stage.
"""

from __future__ import annotations

from torch import nn

from polymodal.registry import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder")
