"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018, arXiv:1705.07115).

Each task has a learned log-variance ``s_t = log σ_t²``; the classification form of the paper's
objective (its eq. 10) is ``Σ_t exp(-s_t)·L_t + s_t / 2``: a noisy task gets a large σ and a small
weight, and the ``s_t / 2`` term stops σ from growing without bound. The ``s_t`` are parameters the
optimizer updates with the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polymodal.mtl.base import BALANCERS, Balancer, Params


@BALANCERS.register("uncertainty")
class UncertaintyWeighting(Balancer):
    def __init__(self, tasks: Sequence[str], seed: int = 0) -> None:
        super().__init__(tasks, seed)
        self.log_var = nn.Parameter(torch.zeros(len(self.tasks)))

    def combine(self, losses: dict[str, Tensor]) -> Tensor:
        """Σ over the tasks present of exp(-s_t)·L_t + s_t/2 (a one-task batch updates only its s_t)."""
        terms = [
            torch.exp(-self.log_var[i]) * losses[t] + 0.5 * self.log_var[i]
            for i, t in enumerate(self.tasks)
            if t in losses
        ]
        return torch.stack(terms).sum()

    def backward(
        self,
        losses: dict[str, Tensor],
        shared: Params,
        step: int,
        heads: Params = (),
        features: Tensor | None = None,
    ) -> Tensor:
        total = self.combine(losses)
        total.backward()
        return total.detach()
