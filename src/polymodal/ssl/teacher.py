"""The EMA teacher the engine keeps for methods that ask for one (Mean Teacher, ICT).

A method asks by registering ``teacher_decay=lambda options: α``; the engine then builds
``make_teacher(model, α)``, passes ``teacher=<its module>`` to the method each step, updates it after
each optimizer step and checkpoints it. The first update copies the student; after n updates the decay is
α_n = min(α, 1 − 1/(n + 1)), the warm-up of the official Mean Teacher code, so early teachers are
plain averages of recent students rather than stuck near the random initial weights. The engine's
evaluation EMA (``train.ema``) is built the same way: without the warm-up, a 1.5k-step run with
α = 0.999 would evaluate weights that are still 22 % (0.999^1500) the random initialization.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA(nn.Module):
    """An exponential moving average of a model's parameters and float buffers (integer buffers, such
    as batch-norm counters, follow the student).

    One ``torch._foreach_lerp_`` per update over lists built once, and the update count is kept on the
    host as well as in the ``n_averaged`` buffer, so an update never waits for the device. The state
    dict has the keys of ``torch.optim.swa_utils.AveragedModel`` (``n_averaged``, ``module.*``), so
    checkpoints of either load the same way.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long))
        self._n = 0
        self._lists: tuple[int, Any] | None = None  # (id of the student, its tensor lists), built once

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple]]:
        mine = [*self.module.parameters(), *self.module.buffers()]
        theirs = [*model.parameters(), *model.buffers()]
        floats = [(a, b.detach()) for a, b in zip(mine, theirs, strict=True) if a.is_floating_point()]
        ints = [(a, b) for a, b in zip(mine, theirs, strict=True) if not a.is_floating_point()]
        return [a for a, _ in floats], [b for _, b in floats], ints

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self._lists is None or self._lists[0] != id(model):
            self._lists = (id(model), self._pairs(model))
        ema, current, ints = self._lists[1]
        if self._n == 0:  # the first update copies the student
            torch._foreach_copy_(ema, current)
        else:
            a = min(self.decay, 1.0 - 1.0 / (self._n + 1))
            torch._foreach_lerp_(ema, current, 1.0 - a)
        for e, c in ints:
            e.copy_(c)
        self._n += 1
        self.n_averaged.fill_(self._n)

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:
        out = super().load_state_dict(state, strict=strict, assign=assign)
        self._n = int(self.n_averaged)  # once, at resume
        return out

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def make_teacher(model: nn.Module, decay: float) -> EMA:
    return EMA(model, decay)
