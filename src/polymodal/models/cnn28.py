"""`cnn28`: a small VGG-style CNN for 1x28x28 images (MNIST and friends).

Sized (~160k parameters at the defaults) to reach about 99% on MNIST while training in minutes on
two CPU cores; global average pooling keeps the head tiny and makes it size-agnostic.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from polymodal.errors import ConfigError, ShapeError
from polymodal.models.base import Encoder
from polymodal.models.registry import ENCODERS


def _conv_bn_relu(cin: int, cout: int, norm: str = "batch") -> list[nn.Module]:
    if norm == "none":  # rows independent of each other (e.g. data-parallel checks without SyncBN on CPU)
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
    # No conv bias: the BatchNorm that follows has its own shift.
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


@ENCODERS.register("cnn28")
class CNN28(Encoder):
    """conv-conv-pool (w), conv-conv-pool (2w), conv (4w) + global average pool, Linear+ReLU."""

    stage_names: tuple[str, ...] = ("stage1", "stage2", "stage3", "out")

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        out_dim: int = 128,
        dropout: float = 0.0,
        norm: Literal["batch", "none"] = "batch",
    ) -> None:
        super().__init__()
        if norm not in ("batch", "none"):
            raise ConfigError(f"cnn28 norm={norm!r}: allowed: batch, none")
        w = width
        self.in_channels = in_channels
        self.out_dim = out_dim
        blk = lambda a, b: _conv_bn_relu(a, b, norm)  # noqa: E731
        self.stage1 = nn.Sequential(*blk(in_channels, w), *blk(w, w))
        self.stage2 = nn.Sequential(*blk(w, 2 * w), *blk(2 * w, 2 * w))
        self.stage3 = nn.Sequential(*blk(2 * w, 4 * w))
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, out_dim), nn.ReLU())

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Named hidden stages in order; ``lengths`` is ignored (images have no padding)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"cnn28 expects images (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        # Images arrive in [0, 1]; centring them here keeps the data pipeline model-agnostic.
        s1 = self.pool(self.stage1(x - 0.5))
        s2 = self.pool(self.stage2(s1))
        s3 = self.stage3(s2).mean(dim=(2, 3))
        return {"stage1": s1, "stage2": s2, "stage3": s3, "out": self.head(s3)}
