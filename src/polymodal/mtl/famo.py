"""FAMO, fast adaptive multitask optimization (Liu et al., NeurIPS 2023, arXiv:2306.03792).

A loss-space method with O(1) memory and no per-task gradients: the update is the gradient of
``Σ_t z_t log L_t / c`` with ``z = softmax(ξ)`` and ``c = Σ_t z_t / L_t`` held constant, i.e. the
loss weights ``w_t = (z_t / L_t) / Σ_j (z_j / L_j)`` (one backward). The logits ξ learn which task
lags: after a step, with ``δ_t = log L_t(before) − log L_t(after)``, ξ moves by one Adam step
(``w_lr``, weight decay ``gamma``) along ``∂z/∂ξᵀ δ``, so a task whose loss fell least gains weight.
The official code re-evaluates the losses on the same batch after the optimizer step (an extra
forward); here the next step's losses are used (no extra forward, a new batch), so the logits are
updated at the start of each step from the change of log losses since the previous one. The logits,
the Adam moments and the previous log losses are buffers: they are in the state_dict, so resume is
exact, and the step reads nothing back from the device. ``max_norm > 0`` clips the shared gradient
as the official code's default of 1.0 does (LibMTL 1.1.5 does not clip, hence the default 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polymodal.errors import ConfigError
from polymodal.mtl.base import BALANCERS, LossWeighting, Params

BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as in the official code


@BALANCERS.register("famo")
class FAMO(LossWeighting):
    needs_all_tasks = True

    def __init__(
        self,
        tasks: Sequence[str],
        seed: int = 0,
        w_lr: float = 0.025,
        gamma: float = 1e-3,
        max_norm: float = 0.0,
    ) -> None:
        super().__init__(tasks, seed)
        if w_lr <= 0 or gamma < 0 or max_norm < 0:
            raise ConfigError(
                f"multitask famo: w_lr={w_lr} must be > 0, gamma={gamma} and max_norm={max_norm} >= 0"
            )
        self.w_lr, self.gamma, self.max_norm = w_lr, gamma, max_norm
        t = len(self.tasks)
        self.register_buffer("logits", torch.zeros(t))  # ξ
        self.register_buffer("exp_avg", torch.zeros(t))  # Adam's first and second moments
        self.register_buffer("exp_avg_sq", torch.zeros(t))
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("prev_log", torch.zeros(t))  # log L_t of the previous step
        self.register_buffer("has_prev", torch.zeros((), dtype=torch.bool))

    def update_logits(self, delta: Tensor, active: Tensor) -> None:
        """One Adam step (L2 weight decay ``gamma``) on ξ with gradient ``∂z/∂ξᵀ δ``, where ``active``.

        ``active`` is a bool tensor: the step is selected with ``torch.where`` rather than an ``if``, so
        the training step never reads a tensor back on the host.
        """
        z = torch.softmax(self.logits, 0)
        grad = z * (delta - (z * delta).sum()) + self.gamma * self.logits
        steps = self.adam_steps + active.long()
        k = steps.clamp_min(1).to(self.logits)
        m = BETAS[0] * self.exp_avg + (1 - BETAS[0]) * grad
        v = BETAS[1] * self.exp_avg_sq + (1 - BETAS[1]) * grad * grad
        xi = self.logits - self.w_lr / (1 - BETAS[0] ** k) * m / ((v / (1 - BETAS[1] ** k)).sqrt() + ADAM_EPS)
        for buf, value in ((self.exp_avg, m), (self.exp_avg_sq, v), (self.logits, xi)):
            buf.copy_(torch.where(active, value, buf))
        self.adam_steps.copy_(steps)

    def loss_weights(self, vec: Tensor, step: int) -> Tensor:
        shifted = self.reduce(vec.detach()).to(self.logits).clamp_min(0) + 1e-8  # L_t − min L_t (0) + 1e-8
        self.update_logits(self.prev_log - shifted.log(), self.has_prev)  # no step before a previous loss
        inv = torch.softmax(self.logits, 0) / shifted
        return inv / inv.sum()

    def observe(self, vec: Tensor, step: int) -> None:
        self.prev_log.copy_((vec.detach().to(self.logits).clamp_min(0) + 1e-8).log())
        self.has_prev.fill_(True)

    def backward(
        self,
        losses: dict[str, Tensor],
        shared: Params,
        step: int,
        heads: Params = (),
        features: Tensor | None = None,
    ) -> Tensor:
        total = super().backward(losses, shared, step, heads, features)
        if self.max_norm > 0 and shared:
            torch.nn.utils.clip_grad_norm_([p for p in shared if p.grad is not None], self.max_norm)
        return total
