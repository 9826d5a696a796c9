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
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g).to(self.device)}
        return self._perms[epoch]

    def __call__(self, step: int) -> torch.Tensor:
        pos = torch.arange(step * self.batch, (step + 1) * self.batch)
        epochs, offsets = pos // self.n, pos % self.n
        parts = [self._perm(int(e))[offsets[epochs == e].to(self.device)] for e in torch.unique(epochs)]
        return torch.cat(parts)
