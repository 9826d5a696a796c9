"""CAGrad, conflict-averse gradient descent (Liu et al., NeurIPS 2021, arXiv:2110.14048).

With ``g0`` the mean gradient and ``φ = c²‖g0‖²``, find simplex weights ``w`` minimising
``F(w) = g_w·g0 + √φ·‖g_w‖`` (``g_w = Σ w_t g_t``), then update with
``(g0 + √φ/‖g_w‖ · g_w) / (1 + c²)`` (the official code's rescale=1). Everything is a function of
the Gram matrix: the T-dimensional problem is solved on the host (a T×T matrix, never a gradient) by
projected gradient descent, and the result is returned as task weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from polymodal.errors import ConfigError
from polymodal.mtl.base import BALANCERS, GradientBalancer, host_gram


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    k = np.nonzero(u * np.arange(1, len(v) + 1) > css - 1)[0][-1]
    return np.maximum(v - (css[k] - 1) / (k + 1), 0)


def cagrad_objective(w: np.ndarray, gram: np.ndarray, c: float) -> float:
    t = len(w)
    gw_g0 = w @ gram @ np.full(t, 1 / t)
    g0_norm = np.sqrt(max(np.full(t, 1 / t) @ gram @ np.full(t, 1 / t), 0))
    return float(gw_g0 + c * g0_norm * np.sqrt(max(w @ gram @ w, 1e-20)))


def cagrad_weights(gram: np.ndarray, c: float, iters: int = 200) -> np.ndarray:
    """Task weights of CAGrad's update for the Gram matrix ``gram`` (float64, T×T)."""
    t = len(gram)
    mean = np.full(t, 1 / t)
    scale = np.trace(gram) / t + 1e-20
    g = gram / scale  # scale-free problem: the weights do not depend on the gradients' size
    g0_norm = np.sqrt(max(mean @ g @ mean, 0))
    w = mean.copy()
    lr = 1.0 / (np.linalg.norm(g, 2) + 1e-12)
    for _ in range(iters):
        gw_norm = np.sqrt(max(w @ g @ w, 1e-20))
        grad = g @ mean + c * g0_norm * (g @ w) / gw_norm
        w = project_simplex(w - lr * grad)
    gw_norm = np.sqrt(max(w @ g @ w, 1e-20))
    return (mean + c * g0_norm / gw_norm * w) / (1 + c**2)


@BALANCERS.register("cagrad")
class CAGrad(GradientBalancer):
    def __init__(self, tasks: Sequence[str], seed: int = 0, recompute_every: int = 1, c: float = 0.4):
        super().__init__(tasks, seed, recompute_every)
        if c < 0:
            raise ConfigError(f"multitask.c={c}: CAGrad's conflict radius must be >= 0")
        self.c = c

    def weights(self, gram: Tensor, step: int) -> Tensor:
        return torch.as_tensor(cagrad_weights(host_gram(gram), self.c), device=gram.device)
