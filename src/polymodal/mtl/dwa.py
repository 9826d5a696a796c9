"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, "End-to-End Multi-Task Learning with
Attention", arXiv:1803.10704, eq. 7).

``w_t = T · softmax_t(r_t / τ)`` with ``r_t = L̄_t(k-1) / L̄_t(k-2)``, the ratio of task t's mean
loss over the last two periods: a task whose loss falls slowly gets more weight. The paper's period
is an epoch; here it is ``period`` steps (epochs differ per task when tasks differ in size). The first
two periods use equal weights. The loss history is module state, so it is checkpointed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polymodal.errors import ConfigError
from polymodal.mtl.base import BALANCERS, LossWeighting


@BALANCERS.register("dwa")
class DynamicWeightAverage(LossWeighting):
    needs_all_tasks = True

    def __init__(self, tasks: Sequence[str], seed: int = 0, temperature: float = 2.0, period: int = 100):
        super().__init__(tasks, seed)
        if temperature <= 0 or period < 1:
            raise ConfigError(f"multitask dwa: temperature={temperature} must be > 0, period={period} >= 1")
        self.temperature, self.period = temperature, period
        t = len(self.tasks)
        self.register_buffer("running", torch.zeros(t))  # loss sum over the current period
        self.register_buffer("history", torch.zeros(2, t))  # mean losses of periods k-2, k-1
        self.register_buffer("periods", torch.zeros((), dtype=torch.int64))  # completed periods

    def weights(self, step: int) -> Tensor:
        if step // self.period < 2:  # completed periods (= the `periods` buffer), known on the host
            return torch.ones(len(self.tasks), device=self.history.device)
        ratio = self.history[1] / self.history[0].clamp_min(1e-12)
        return len(self.tasks) * torch.softmax(ratio / self.temperature, dim=0)

    def observe(self, vec: Tensor, step: int) -> None:
        """Add this step's losses; at a period's end shift its mean into the history."""
        self.running += vec.detach()
        if (step + 1) % self.period == 0:
            self.history.copy_(torch.stack([self.history[1], self.running / self.period]))
            self.running.zero_()
            self.periods += 1

    def loss_weights(self, vec: Tensor, step: int) -> Tensor:
        return self.weights(step)
