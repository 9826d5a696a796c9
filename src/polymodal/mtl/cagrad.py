"""CAGrad, conflict-averse gradient descent (Liu et al., NeurIPS 2021, arXiv:2110.14048).

With ``g0`` the mean gradient and ``φ = c²‖g0‖²``, find simplex weights ``w`` minimising
``F(w) = g_w·g0 + √φ·‖g_w‖`` (``g_w = Σ w_t g_t``), then update with
``(g0 + √φ/‖g_w‖ · g_w) / (1 + c²)`` (the official code's rescale=1). Everything is a function of
the Gram matrix, so the T-dimensional problem is solved on the host (a T×T matrix, never a gradient)
and the result is returned as task weights.

Why not projected gradient (the official code runs scipy's SLSQP, an earlier version here 200 projected
steps): on ill-conditioned T ≥ 3 problems neither converges. Instead the dual is solved exactly. With
``‖x‖ = min_{τ>0} (‖x‖²/τ + τ)/2``, for fixed τ the inner problem
``min_w g_w·g0 + √φ‖g_w‖²/(2τ)`` is the min-norm point of the shifted hull ``{g_t + (τ/√φ) g0}``,
an MGDA problem on a T×T Gram matrix that ``min_norm_weights`` solves exactly; the outer problem is
convex in τ with optimum ``τ = ‖g_w(τ)‖``, found by safeguarded root finding to machine precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from polymodal.errors import ConfigError
from polymodal.mtl.base import BALANCERS, GradientBalancer, host_gram
from polymodal.mtl.mgda import min_norm_weights


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


def cagrad_dual(gram: np.ndarray, c: float) -> np.ndarray:
    """The simplex weights ``w`` minimising ``F(w)`` (``cagrad_objective``), to machine precision."""
    t = len(gram)
    mean = np.full(t, 1 / t)
    b = gram @ mean  # g_t·g0
    rho = c * np.sqrt(max(mean @ b, 0.0))  # √φ
    if rho <= 0:  # F is linear: the vertex of least g_t·g0
        return np.eye(t)[int(np.argmin(b))]

    def inner(tau: float) -> tuple[np.ndarray, float]:
        a = tau / rho  # Gram matrix of g_t + a·g0
        w = min_norm_weights(gram + a * (b[:, None] + b[None, :]) + a * a * (mean @ b))
        return w, tau - np.sqrt(max(w @ gram @ w, 0.0))  # < 0 left of the optimum, >= 0 right of it

    norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
    hi = float(norms.max())  # ‖g_w‖ <= max_t ‖g_t‖: h(hi) >= 0
    w0 = min_norm_weights(gram)  # ‖g_w(τ)‖ >= ‖g_w0‖ = n0, so h < 0 for τ < n0
    n0 = np.sqrt(max(w0 @ gram @ w0, 0.0))
    lo = n0 / 2 if n0 > 1e-6 * (w0 @ norms) else 1e-6 * hi  # else 0 is in the hull (to precision)
    w_lo, h_lo = inner(lo)
    if h_lo >= 0:  # only when 0 is in the hull: the optimum is g_w = 0, the min-norm point
        return w0
    w_hi, h_hi = inner(hi)
    best = min((abs(h_lo), w_lo), (abs(h_hi), w_hi), key=lambda r: r[0])
    side = 0
    for _ in range(200):  # Illinois regula falsi with bisection fallback
        mid = hi - h_hi * (hi - lo) / (h_hi - h_lo)
        if not lo < mid < hi:
            mid = 0.5 * (lo + hi)
        w, h = inner(mid)
        best = min(best, (abs(h), w), key=lambda r: r[0])  # the evaluated tau closest to a root
        if h < 0:
            lo, h_lo = mid, h
            h_hi, side = (h_hi / 2, -1) if side == -1 else (h_hi, -1)
        else:
            hi, h_hi = mid, h
            h_lo, side = (h_lo / 2, 1) if side == 1 else (h_lo, 1)
        if hi - lo <= 1e-15 * hi or abs(h) <= 1e-15 * hi:
            break
    return best[1]


def cagrad_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """Task weights of CAGrad's update for the Gram matrix ``gram`` (float64, T×T)."""
    t = len(gram)
    mean = np.full(t, 1 / t)
    g = gram / (np.trace(gram) / t + 1e-300)  # scale-free problem: the weights do not depend on it
    rho = c * np.sqrt(max(mean @ g @ mean, 0.0))
    if rho <= 0:  # c = 0 or g0 = 0: plain mean-gradient descent
        return mean / (1 + c**2)
    w = cagrad_dual(g, c)
    gw_norm = np.sqrt(max(w @ g @ w, 0.0))
    if gw_norm <= 1e-6 * (w @ np.sqrt(np.maximum(np.diag(g), 0.0))):
        return mean / (1 + c**2)  # g_w = 0 (to the Gram's precision): the official update is g0
    return (mean + rho / gw_norm * w) / (1 + c**2)


@BALANCERS.register("cagrad")
class CAGrad(GradientBalancer):
    def __init__(self, tasks: Sequence[str], seed: int = 0, recompute_every: int = 1, c: float = 0.4):
        super().__init__(tasks, seed, recompute_every)
        if c < 0:
            raise ConfigError(f"multitask.c={c}: CAGrad's conflict radius must be >= 0")
        self.c = c

    def weights(self, gram: Tensor, step: int) -> Tensor:
        return torch.as_tensor(cagrad_weights(host_gram(gram), self.c), device=gram.device)
