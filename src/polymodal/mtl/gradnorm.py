"""GradNorm (Chen et al., ICML 2018, arXiv:1711.02257).

Learned task weights ``w_t`` (renormalised to sum to T) are pushed so that each task's weighted
gradient norm at the last shared layer W, ``G_t = ‖∇_W w_t L_t‖ = w_t ‖∇_W L_t‖``, approaches the
target ``Ḡ · r_t^α`` where ``r_t = (L_t / L_t(0)) / mean_j(L_j / L_j(0))`` is the task's relative
inverse training rate. The target is a constant (the paper's choice), so the GradNorm loss
``Σ_t |G_t − target_t|`` has the closed-form gradient ``sign(G_t − target_t)·‖∇_W L_t‖`` w.r.t.
``w_t``; it is written into ``w.grad`` and the optimizer steps ``w`` with the model. The model gets
the gradient of ``Σ_t w_t L_t``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polymodal.errors import ConfigError
from polymodal.mtl.base import BALANCERS, Balancer, Params, task_gradients


@BALANCERS.register("gradnorm")
class GradNorm(Balancer):
    needs_all_tasks = True

    def __init__(self, tasks: Sequence[str], seed: int = 0, alpha: float = 1.5) -> None:
        super().__init__(tasks, seed)
        if alpha < 0:
            raise ConfigError(f"multitask.alpha={alpha}: GradNorm's asymmetry must be >= 0")
        self.alpha = alpha
        self.weight = nn.Parameter(torch.ones(len(self.tasks)))
        self.register_buffer("initial", torch.zeros(len(self.tasks)))  # L_t(0); zeros: not seen yet

    def weight_grad(self, norms: Tensor, vec: Tensor) -> Tensor:
        """d/dw of Σ_t |w_t n_t − Ḡ r_t^α| with the target held constant; ``norms`` = ‖∇_W L_t‖."""
        g = self.weight.detach() * norms
        ratio = vec.detach().to(g) / self.initial.to(g)
        target = g.mean() * (ratio / ratio.mean()) ** self.alpha
        return torch.sign(g - target) * norms

    def backward(
        self,
        losses: dict[str, Tensor],
        shared: Params,
        step: int,
        heads: Params = (),
        features: Tensor | None = None,
    ) -> Tensor:
        last = [p for p in shared if p.ndim >= 2]
        if not last:
            raise ConfigError("multitask.weighting=gradnorm needs shared parameters (a trunk layer)")
        vec = self.stack(losses)
        seen = self.reduce(vec.detach())  # data-parallel: the global batch's losses
        with torch.no_grad():  # renormalise after the previous optimizer step: Σ w = T
            self.weight.mul_(len(self.tasks) / self.weight.sum().clamp_min(1e-12))
            if bool((self.initial == 0).all()):
                self.initial.copy_(seen.clamp_min(1e-12))
        # ‖∇_W L_t‖ in the weights' dtype: float64 shared parameters give float64 gradients
        norms = self.reduce(task_gradients(vec, last[-1:])).norm(dim=1).to(self.weight.dtype)
        self.weight.grad = self.weight_grad(norms, seen)
        total = (self.weight.detach() * vec).sum()
        torch.autograd.backward(total, inputs=[*shared, *[h for h in heads if h.requires_grad]])
        return total.detach()
