"""Random loss weighting (Lin et al., TMLR 2022, "Reasonable Effectiveness of Random Weighting",
arXiv:2111.10603).

Each step draws ``w = softmax(z)``, ``z ~ N(0, I)``: weights are positive, sum to 1, and change every
step. Drawn from (seed, step), so a resumed run draws the same weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polymodal.mtl.base import BALANCERS, LossWeighting


@BALANCERS.register("rlw")
class RandomLossWeighting(LossWeighting):
    needs_all_tasks = True

    def weights(self, step: int) -> Tensor:
        return torch.softmax(torch.randn(len(self.tasks), generator=self.generator(step)), dim=0)

    def loss_weights(self, vec: Tensor, step: int) -> Tensor:
        return self.weights(step)
