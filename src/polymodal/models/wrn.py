"""Wide-ResNet (Zagoruyko & Komodakis 2016, "Wide Residual Networks", arXiv:1605.07146).

WRN-28-2 (~1.47M parameters) is the shared backbone of the SSL benchmarks (MixMatch, UDA,
FixMatch), so results here compare with theirs. We follow the FixMatch reference implementation
(google-research/fixmatch, ``libml/models.py``, class ``ResNet``): pre-activation basic blocks,
leaky ReLU 0.1, BatchNorm momentum 0.001 (TF's 0.999), He-normal fan-out init, the shortcut taken
after the pre-activation only in the very first block, and a final BN + activation before global
average pooling. Differences: convs have no bias (BN follows each one), ``dropout`` sits between
the two convs as in the WRN paper, and inputs in [0, 1] are only mapped to [-1, 1] (the reference
also standardizes with dataset statistics, which an encoder cannot know).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.errors import ConfigError, ShapeError
from polymodal.models.base import Encoder
from polymodal.models.registry import ENCODERS

BN_MOMENTUM = 0.001
LEAKY_SLOPE = 0.1


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


class _Block(nn.Module):
    """Pre-activation basic block: BN-act-conv3x3-BN-act-(dropout)-conv3x3 plus shortcut."""

    def __init__(
        self, cin: int, cout: int, stride: int, activate_before_residual: bool, dropout: float
    ) -> None:
        super().__init__()
        self.bn1, self.bn2 = _bn(cin), _bn(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if cin != cout or stride != 1 else None
        )
        self.activate_before_residual = activate_before_residual
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        a = F.leaky_relu(self.bn1(x), LEAKY_SLOPE)
        h = F.leaky_relu(self.bn2(self.conv1(a)), LEAKY_SLOPE)
        h = self.conv2(F.dropout(h, self.dropout, self.training))
        skip = a if self.activate_before_residual else x
        return h + (skip if self.shortcut is None else self.shortcut(skip))


@ENCODERS.register("wrn")
class WideResNet(Encoder):
    """WRN-depth-widen: stem conv (16), three groups of (depth - 4) / 6 blocks (16k, 32k, 64k)."""

    stage_names: tuple[str, ...] = ("stem", "block1", "block2", "block3", "pool", "out")

    def __init__(self, depth: int = 28, widen: int = 2, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
            raise ConfigError(
                f"wrn depth must be an integer >= 10 with (depth - 4) % 6 == 0 "
                f"(e.g. 16, 22, 28, 40), got {depth!r}"
            )
        if not isinstance(widen, int) or widen < 1:
            raise ConfigError(f"wrn widen must be a positive integer, got {widen!r}")
        n = (depth - 4) // 6
        channels = (16, 16 * widen, 32 * widen, 64 * widen)
        self.in_channels = in_channels
        self.out_dim = channels[-1]
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False)
        self.groups = nn.ModuleList()
        for g, stride in enumerate((1, 2, 2)):
            cin, cout = channels[g], channels[g + 1]
            blocks = [_Block(cin, cout, stride, g == 0, dropout)]
            blocks += [_Block(cout, cout, 1, False, dropout) for _ in range(n - 1)]
            self.groups.append(nn.Sequential(*blocks))
        self.bn = _bn(channels[-1])
        self._init_weights()

    def _init_weights(self) -> None:
        # He-normal with fan_out, as the reference (stddev = rsqrt(0.5 * k * k * filters)).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Named hidden stages in order; ``lengths`` is ignored (images have no padding)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"wrn expects images (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        stages = {"stem": self.stem(x * 2.0 - 1.0)}  # [0, 1] -> [-1, 1], as the reference
        h = stages["stem"]
        for i, group in enumerate(self.groups, start=1):
            h = stages[f"block{i}"] = group(h)
        pooled = F.leaky_relu(self.bn(h), LEAKY_SLOPE).mean(dim=(2, 3))
        stages["pool"] = pooled
        stages["out"] = pooled  # no extra linear: heads sit on the pooled features
        return stages


@ENCODERS.register("wrn28_2")
class WRN28x2(WideResNet):
    """WRN-28-2, the network of the FixMatch / UDA CIFAR-10 tables."""

    def __init__(self, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__(depth=28, widen=2, in_channels=in_channels, dropout=dropout)
