"""MGDA with the MGDA-UB shortcut (Sener & Koltun, NeurIPS 2018, "Multi-Task Learning as
Multi-Objective Optimization", arXiv:1810.04650).

The weights are the min-norm point of the convex hull of the task gradients,
``α = argmin_{α∈Δ} ‖Σ α_t g_t‖²``. The paper solves it with Frank-Wolfe, which stalls far from the
optimum on ill-conditioned T ≥ 3 problems; T is small, so it is solved exactly instead with Wolfe's
active-set min-norm-point algorithm (Wolfe 1976, "Finding the nearest point in a polytope"), which
needs only the Gram matrix: keep a corral S of affinely independent gradients, move to the affine
minimiser of S, drop the gradients whose weight reaches 0, and add the gradient most opposed to the
current point until none is (``g_j·p ≥ ‖p‖²`` for all j: the KKT conditions). Duplicate or
rank-deficient gradients never enter the corral twice, so every solve is well posed. MGDA-UB
(``ub: true``) takes the gradients w.r.t. the shared representation Z instead of the shared
parameters: an upper bound that costs one batched backward through the heads only. As in the
official code, ``normalize: l2`` rescales gradients to unit norm before solving, and the weights
multiply the raw losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from polymodal.errors import ConfigError
from polymodal.mtl.base import BALANCERS, GradientBalancer, Params, host_gram, task_gradients


def _affine_minimiser(gram: np.ndarray, s: list[int]) -> np.ndarray:
    """Weights (summing to 1) of the min-norm point of the affine hull of the gradients ``s``."""
    k = len(s)  # Jacobi-scaled bordered system: badly scaled rows keep their precision
    diag = np.diag(gram)[s]
    d = np.append(np.where(diag > 0, 1 / np.sqrt(np.maximum(diag, 1e-300)), 1.0), 1.0)
    kkt = np.zeros((k + 1, k + 1))
    kkt[:k, :k], kkt[:k, k], kkt[k, :k] = gram[np.ix_(s, s)], 1.0, 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    return d[:k] * np.linalg.lstsq(kkt * np.outer(d, d), rhs * d, rcond=None)[0][:k]


def min_norm_weights(gram: np.ndarray) -> np.ndarray:
    """argmin over the simplex of ``αᵀ gram α``, exact (closed form for T = 2, Wolfe for T ≥ 3)."""
    t = len(gram)
    if t == 1:
        return np.ones(1)
    if t == 2:
        denom = gram[0, 0] + gram[1, 1] - 2 * gram[0, 1]
        gamma = 0.5 if denom <= 1e-20 else float(np.clip((gram[1, 1] - gram[0, 1]) / denom, 0, 1))
        return np.array([gamma, 1 - gamma])
    g = gram / max(float(np.max(np.diag(gram))), 1e-300)  # scale-free: the weights do not change
    s, x = [int(np.argmin(np.diag(g)))], np.zeros(t)
    x[s[0]] = 1.0
    for _ in range(50 * t):  # major cycles; Wolfe's algorithm terminates finitely
        gx = g @ x
        j = int(np.argmin(gx))
        if j in s or gx[j] >= x @ gx - 1e-13 * (1 + x @ gx):
            break  # KKT: no gradient makes an obtuse angle with the current point
        s.append(j)
        for _ in range(t + 1):  # minor cycles: each drops at least one gradient from the corral
            y = _affine_minimiser(g, s)
            if y.min() > 1e-15:
                x = np.zeros(t)
                x[s] = y
                break
            xs = x[s]
            neg = y <= 1e-15
            ratio = xs[neg] / (xs[neg] - y[neg])
            theta = float(ratio.min())
            xs = xs + theta * (y - xs)
            xs[np.flatnonzero(neg)[int(np.argmin(ratio))]] = 0.0
            s = [i for i, v in zip(s, xs, strict=True) if v > 1e-15]
            x = np.zeros(t)
            x[s] = xs[xs > 1e-15] / xs[xs > 1e-15].sum()
    return x


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
