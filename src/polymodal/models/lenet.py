"""`lenet`: a LeNet-5 style CNN for 28×28 images, the trunk size Sener & Koltun (2018) used on MultiMNIST.

conv5 (c1) → pool → conv5 (c2) → pool → Linear+ReLU, with BatchNorm after each conv so it trains in a
few epochs. About 0.5 MFLOP per image at the defaults: small enough to train many seeds on a CPU.
"""

from __future__ import annotations

from torch import Tensor, nn

from polymodal.errors import ShapeError
from polymodal.models.base import Encoder
from polymodal.models.registry import ENCODERS


@ENCODERS.register("lenet")
class LeNet(Encoder):
    stage_names: tuple[str, ...] = ("stage1", "stage2", "out")

    def __init__(self, in_channels: int = 1, c1: int = 10, c2: int = 20, out_dim: int = 50) -> None:
        super().__init__()
        self.in_channels, self.out_dim = in_channels, out_dim
        block = lambda a, b: [nn.Conv2d(a, b, 5, bias=False), nn.BatchNorm2d(b), nn.MaxPool2d(2), nn.ReLU()]  # noqa: E731
        self.stage1 = nn.Sequential(*block(in_channels, c1))
        self.stage2 = nn.Sequential(*block(c1, c2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * c2, out_dim), nn.ReLU())

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Named stages in order; ``lengths`` is ignored (images have no padding)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (28, 28):
            raise ShapeError(f"lenet expects images (B, {self.in_channels}, 28, 28), got {tuple(x.shape)}")
        s1 = self.stage1(x - 0.5)  # images arrive in [0, 1]
        s2 = self.stage2(s1)
        return {"stage1": s1, "stage2": s2, "out": self.head(s2)}
