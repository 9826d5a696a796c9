"""Which rows a step reads: per-epoch permutations seeded by (seed, epoch), so a step's rows follow
from (seed, step) alone and a resumed run draws exactly what an uninterrupted one drew."""

from __future__ import annotations

import torch


class EpochSampler:
    """Rows for step ``s``: positions s·B … s·B+B−1 of a per-epoch permutation seeded by (seed, epoch)."""

    def __init__(self, n: int, batch: int, seed: int, device: torch.device) -> None:
        self.n, self.batch, self.seed, self.device = n, batch, seed, device
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:  # keep the last two: a batch may span an epoch boundary
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            perm = torch.randperm(self.n, generator=g).to(self.device)
            self._perms = {e: v for e, v in self._perms.items() if e == epoch - 1} | {epoch: perm}
        return self._perms[epoch]

    def __call__(self, step: int) -> torch.Tensor:
        """Positions are plain integers, so a step's rows are slices of device permutations: no
        tensor is read back on the host (a batch that crosses an epoch boundary joins two)."""
        start, stop = step * self.batch, (step + 1) * self.batch
        parts = []
        for epoch in range(start // self.n, (stop - 1) // self.n + 1):
            lo, hi = (
                max(start, epoch * self.n) - epoch * self.n,
                min(stop, (epoch + 1) * self.n) - epoch * self.n,
            )
            parts.append(self._perm(epoch)[lo:hi])
        return parts[0] if len(parts) == 1 else torch.cat(parts)
