"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018, arXiv:1705.07115).

Each task has a learned log-variance ``s_t = log σ_t²``; the objective is
``Σ_t exp(-s_t)·L_t + s_t / 2``: a noisy task gets a large σ and a small weight, and the ``s_t / 2``
term stops σ from growing without bound. The ``s_t`` are parameters the optimizer updates with the
model.

**Convention.** This is the paper's *classification* form (its eq. 10: ``L/σ² + log σ``) for every
task. The reference implementations (LibMTL 1.1.5's ``UW``, the Nash-MTL repository's baseline)
use the *regression* form (``L/(2σ²) + log σ``), i.e. ``L_t / (2·exp(s_t)) + s_t / 2``. The two differ
only by a factor 2 on the loss term: at ``s = 0`` the weight is 1 here and ½ there, and the
stationary ``s_t`` is ``log 2L_t`` here and ``log L_t`` there, but the stationary weight on ``L_t``
is ``1 / (2L_t)`` in both.
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
