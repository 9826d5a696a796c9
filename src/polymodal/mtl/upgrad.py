"""UPGrad, unconflicting projection of gradients (Quinton & Rey 2024, "Jacobian Descent for
Multi-Objective Optimization", arXiv:2406.16232; the torchjd aggregator).

Each task gradient ``g_i`` is projected onto the dual cone of all of them, ``{x : g_t·x ≥ 0 ∀t}``
(a direction that conflicts with no task), and the projections are averaged. By the paper's
Proposition 1 the projection of ``Jᵀu`` is ``Jᵀv`` with ``v = argmin_{v ≥ u} vᵀ G v`` (G = J Jᵀ),
so with ``u = e_i / T`` for row i the update is ``Σ_t w_t g_t``, ``w = Σ_i v⁽ⁱ⁾``: T small QPs on
the T×T Gram matrix. Each is solved exactly by the Lawson-Hanson active-set method on
``z = v − u ≥ 0`` (finite, no tolerance to tune, rank-deficient G is fine). As in torchjd, G is
first divided by its trace (replaced by 0 when the trace is below ``norm_eps``, so tiny gradients
fall back to the mean) and ``reg_eps·I`` is added; ``reg_eps: 0`` gives the exact projection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from polymodal.errors import ConfigError
from polymodal.mtl.base import BALANCERS, GradientBalancer, host_gram


def project_weights(u: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """``v = argmin_{v ≥ u} vᵀ gram v``: the weights of the projection of ``Jᵀu`` onto the dual cone."""
    t = len(u)
    q = -gram @ u  # min ½zᵀGz − qᵀz over z ≥ 0; its gradient is G(u + z)
    z, free = np.zeros(t), np.zeros(t, dtype=bool)
    tol = 1e-14 * max(float(np.abs(gram).max()), 1e-300)
    for _ in range(3 * t + 3):  # Lawson-Hanson: every outer pass frees one more variable
        grad = gram @ (u + z)
        cand = np.where(free, np.inf, grad)
        j = int(np.argmin(cand))
        if cand[j] >= -tol:
            break  # KKT: G v ≥ 0 on the active bounds, v_i = u_i there
        free[j] = True
        for _ in range(t + 1):  # inner loop: step towards the free-set minimiser, drop what hits 0
            idx = np.flatnonzero(free)
            s = np.zeros(t)
            s[idx] = np.linalg.lstsq(gram[np.ix_(idx, idx)], q[idx], rcond=None)[0]
            if s[idx].min() > 0:
                z = s
                break
            neg = idx[s[idx] <= 0]
            ratio = z[neg] / (z[neg] - s[neg])
            z = z + float(ratio.min()) * (s - z)
            z[neg[int(np.argmin(ratio))]] = 0.0
            free &= z > 0
            z[~free] = 0.0
    return u + z


def upgrad_weights(gram: np.ndarray, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> np.ndarray:
    """UPGrad's task weights for the Gram matrix ``gram`` (float64, T×T), torchjd's normalisation."""
    t = len(gram)
    trace = float(np.trace(gram))
    g = gram / trace if trace > norm_eps and trace > 0 else np.zeros_like(gram)
    g = g + reg_eps * np.eye(t)
    return sum(project_weights(np.eye(t)[i] / t, g) for i in range(t))


@BALANCERS.register("upgrad")
class UPGrad(GradientBalancer):
    def __init__(
        self,
        tasks: Sequence[str],
        seed: int = 0,
        recompute_every: int = 1,
        norm_eps: float = 1e-4,
        reg_eps: float = 1e-4,
    ) -> None:
        super().__init__(tasks, seed, recompute_every)
        if norm_eps < 0 or reg_eps < 0:
            raise ConfigError(f"multitask upgrad: norm_eps={norm_eps} and reg_eps={reg_eps} must be >= 0")
        self.norm_eps, self.reg_eps = norm_eps, reg_eps

    def weights(self, gram: Tensor, step: int) -> Tensor:
        w = upgrad_weights(host_gram(gram), self.norm_eps, self.reg_eps)
        return torch.as_tensor(w, device=gram.device)
