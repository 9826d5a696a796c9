"""The `Encoder` contract every modality encoder subclasses.

An encoder maps one modality's batch to ``(B, out_dim)`` features and exposes its hidden stages by
name (in order, the last one is ``out``), which is what intermediate fusion reads. Subclasses
implement ``forward_stages`` only; ``forward`` is its last stage. Register the class itself with
``@ENCODERS.register(name)``: its constructor's keywords are the config options.
"""

from __future__ import annotations

from torch import Tensor, nn


class Encoder(nn.Module):
    out_dim: int
    stage_names: tuple[str, ...]

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Named hidden stages, ordered; ``lengths`` (B,) counts valid steps of padded inputs."""
        raise NotImplementedError

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.forward_stages(x, lengths)["out"]
