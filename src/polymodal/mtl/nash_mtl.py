"""Nash-MTL, multi-task learning as a bargaining game (Navon et al., ICML 2022, arXiv:2202.01017).

The update ``Δθ = Σ_t α_t g_t`` is the Nash bargaining solution: each task's utility is ``g_t·Δθ``
and the solution maximises ``Σ_t log(g_t·Δθ)`` in a ball, which the paper reduces to ``α > 0`` with
``(G Gᵀ α)_t = 1/α_t``: already task weights on the T×T Gram matrix. The official code
approaches it with a sequence of convex approximations in cvxpy (20 at most, stopped at a loose
tolerance); here it is solved exactly instead. The system is the stationarity condition of the
strictly convex, self-concordant ``f(α) = ½ αᵀ G Gᵀ α − Σ_t log α_t``, minimised by damped Newton
(each step stays positive; quadratic convergence near the solution). With ``α_t = β_t/‖g_t‖`` the
system becomes ``(C β)_t = 1/β_t`` on the cosine matrix C, so badly scaled gradients cost nothing.
A zero gradient gets weight 0; when no solution exists (a nonnegative combination of gradients is 0,
e.g. ``g_1 = −g_2``) a ridge ``1e-8·I`` on C makes it solvable. At the solution ``‖Σ α_t g_t‖² =
Σ_t α_t (GGᵀα)_t = T``; as in the official code the update is then scaled to norm ``max_norm`` when
longer (0: off) — here by scaling the weights, which is the same as clipping the shared gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from polymodal.errors import ConfigError
from polymodal.mtl.base import BALANCERS, GradientBalancer, host_gram


def _newton(cos: np.ndarray, iters: int = 100) -> np.ndarray | None:
    """β > 0 with ``(cos β)_t = 1/β_t``, or None when Newton diverges (there is no solution)."""

    def f(b: np.ndarray) -> float:
        return float(0.5 * b @ cos @ b - np.log(b).sum())

    beta = np.ones(len(cos))
    for _ in range(iters):
        grad = cos @ beta - 1 / beta
        try:
            step = np.linalg.solve(cos + np.diag(1 / beta**2), grad)
        except np.linalg.LinAlgError:
            return None
        dec = float(np.sqrt(max(grad @ step, 0.0)))  # Newton decrement
        if dec < 0.25:  # quadratic phase: full steps stay positive and converge quadratically
            beta = beta - step
            if dec < 1e-5:
                return beta if np.abs(beta * (cos @ beta) - 1).max() < 1e-6 else None
            continue
        t, safe = 1.0, 1 / (1 + dec)  # the damped step 1/(1+λ) is positive and decreases f
        shrink = step > 0
        if shrink.any():
            t = min(t, 0.99 * float((beta[shrink] / step[shrink]).min()))
        while t > safe and f(beta - t * step) > f(beta) - 0.25 * t * dec**2:
            t *= 0.5
        beta = beta - max(t, safe) * step
        if beta.max() > 1e8:  # diverging: f is unbounded below
            return None
    return None


def nash_weights(gram: np.ndarray) -> np.ndarray:
    """α > 0 with ``(gram α)_t = 1/α_t`` (float64, T×T); tasks with a zero gradient get 0."""
    norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
    live = norms > 1e-15 * max(float(norms.max()), 1e-300)
    alpha = np.zeros(len(gram))
    if not live.any():
        return alpha
    n = norms[live]
    cos = gram[np.ix_(live, live)] / np.outer(n, n)
    beta = _newton(cos)
    if beta is None:
        beta = _newton(cos + 1e-8 * np.eye(len(cos)))
    if beta is None:  # unreachable in practice: fall back to the unit-gradient sum
        beta = np.ones(len(cos))
    alpha[live] = beta / n
    return alpha


@BALANCERS.register("nash_mtl")
class NashMTL(GradientBalancer):
    def __init__(
        self, tasks: Sequence[str], seed: int = 0, recompute_every: int = 1, max_norm: float = 1.0
    ) -> None:
        super().__init__(tasks, seed, recompute_every)
        if max_norm < 0:
            raise ConfigError(f"multitask.max_norm={max_norm}: must be >= 0 (0: no clipping)")
        self.max_norm = max_norm

    def weights(self, gram: Tensor, step: int) -> Tensor:
        g = host_gram(gram)
        alpha = nash_weights(g)
        norm = float(np.sqrt(max(alpha @ g @ alpha, 0.0)))
        if self.max_norm > 0 and norm > self.max_norm:
            alpha = alpha * (self.max_norm / norm)
        return torch.as_tensor(alpha, device=gram.device)
