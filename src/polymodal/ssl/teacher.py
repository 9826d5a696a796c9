"""The EMA teacher the engine keeps for methods that ask for one (Mean Teacher, ICT).

A method asks by carrying ``teacher_decay(cfg) -> α``; the engine then builds ``make_teacher(model,
α)``, passes ``teacher=<its module>`` to the method each step, updates it after each optimizer step
and checkpoints it. The first update copies the student; after n updates the decay is
α_n = min(α, 1 − 1/(n + 1)), the warm-up of the official Mean Teacher code, so early teachers are
plain averages of recent students rather than stuck near the random initial weights. The engine's
evaluation EMA (``train.ema``) is built the same way: without the warm-up, a 1.5k-step run with
α = 0.999 would evaluate weights that are still 22 % (0.999^1500) the random initialization.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel


def make_teacher(model: nn.Module, decay: float) -> AveragedModel:
    def update(ema: list[Tensor], current: list[Tensor], n: Tensor | int) -> None:
        a = min(decay, 1.0 - 1.0 / (int(n) + 1))
        if torch.is_floating_point(ema[0]):
            torch._foreach_lerp_(ema, current, 1.0 - a)
        else:  # integer buffers (batch-norm counters) follow the student
            for e, c in zip(ema, current, strict=True):
                e.copy_(c)

    teacher = AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
