"""`tabular_mlp`: an MLP for fixed-size feature vectors (B, in_dim), each hidden layer a named stage.

LayerNorm rather than BatchNorm: tabular batches can be tiny and rows must not depend on each other.
"""

from __future__ import annotations

from torch import Tensor, nn

from polymodal.errors import ShapeError
from polymodal.models.base import Encoder
from polymodal.models.registry import ENCODERS


@ENCODERS.register("tabular_mlp")
class TabularMLP(Encoder):
    def __init__(
        self,
        in_dim: int,
        hidden: list[int] | tuple[int, ...] = (128, 128),
        out_dim: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        hidden = tuple(hidden)
        dims = (in_dim, *hidden)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU(), nn.Dropout(dropout))
            for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.head = nn.Sequential(nn.Linear(dims[-1], out_dim), nn.ReLU())
        self.stage_names = (*(f"layer{i}" for i in range(1, len(hidden) + 1)), "out")

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Named hidden layers in order; ``lengths`` is ignored (rows have no padding)."""
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ShapeError(f"tabular_mlp expects features (B, {self.in_dim}), got {tuple(x.shape)}")
        stages, h = {}, x.float()
        for i, layer in enumerate(self.layers, start=1):
            h = stages[f"layer{i}"] = layer(h)
        stages["out"] = self.head(h)
        return stages
