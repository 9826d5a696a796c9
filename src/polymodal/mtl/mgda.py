"""MGDA with the MGDA-UB shortcut (Sener & Koltun, NeurIPS 2018, "Multi-Task Learning as
Multi-Objective Optimization", arXiv:1810.04650).

The weights are the min-norm point of the convex hull of the task gradients,
``α = argmin_{α∈Δ} ‖Σ α_t g_t‖²``, found by the paper's Frank-Wolfe solver with exact line search
(exact closed form for two tasks). MGDA-UB (``ub: true``) takes the gradients w.r.t. the shared
representation Z instead of the shared parameters: an upper bound that costs one batched backward
through the heads only. As in the official code, ``normalize: l2`` rescales gradients to unit norm
before solving, and the weights multiply the raw losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from polymodal.errors import ConfigError
from polymodal.mtl.base import BALANCERS, GradientBalancer, Params, host_gram, task_gradients


def min_norm_weights(gram: np.ndarray, iters: int = 250, tol: float = 1e-7) -> np.ndarray:
    """argmin over the simplex of ``αᵀ gram α`` (Frank-Wolfe; exact for T ≤ 2)."""
    t = len(gram)
    if t == 1:
        return np.ones(1)
    if t == 2:
        denom = gram[0, 0] + gram[1, 1] - 2 * gram[0, 1]
        gamma = 0.5 if denom <= 1e-20 else float(np.clip((gram[1, 1] - gram[0, 1]) / denom, 0, 1))
        return np.array([gamma, 1 - gamma])
    w = np.full(t, 1 / t)
    for _ in range(iters):
        i = int(np.argmin(gram @ w))
        vv, vi, ii = w @ gram @ w, w @ gram[:, i], gram[i, i]
        denom = vv + ii - 2 * vi
        gamma = 0.0 if denom <= 1e-20 else float(np.clip((vv - vi) / denom, 0, 1))
        new = (1 - gamma) * w
        new[i] += gamma
        if np.abs(new - w).sum() < tol:
            return new
        w = new
    return w


@BALANCERS.register("mgda")
class MGDA(GradientBalancer):
    def __init__(
        self,
        tasks: Sequence[str],
        seed: int = 0,
        recompute_every: int = 1,
        ub: bool = True,
        normalize: str = "none",
    ) -> None:
        super().__init__(tasks, seed, recompute_every)
        if normalize not in ("none", "l2"):
            raise ConfigError(f"multitask.normalize='{normalize}': allowed: none, l2")
        self.ub, self.normalize = ub, normalize
        self.needs_features = ub

    def gram_source(self, losses: Tensor, shared: Params, features: Tensor | None) -> Tensor | None:
        if not self.ub:
            return None
        if features is None:
            raise ConfigError("multitask mgda with ub=true needs the model's shared features; none given")
        return task_gradients(losses, [features])

    def weights(self, gram: Tensor, step: int) -> Tensor:
        g = host_gram(gram)
        if self.normalize == "l2":
            n = np.sqrt(np.clip(np.diag(g), 1e-20, None))
            g = g / np.outer(n, n)
        return torch.as_tensor(min_norm_weights(g), device=gram.device)
