"""Aligned-MTL, independent component alignment (Senushkin et al., CVPR 2023, "Independent
Component Alignment for Multi-Task Learning", arXiv:2305.19000).

The gradient matrix J (rows g_t) is replaced by the closest (Procrustes) matrix whose rows are
orthogonal with equal norms, which makes its condition number 1: with the eigendecomposition
``G = J Jᵀ = V Λ Vᵀ`` the aligned rows are ``Ĵ = Bᵀ J`` with ``B = σ V Λ^{-1/2} Vᵀ``, so
``Ĵ Ĵᵀ = σ² I``. ``σ`` is the smallest singular value √λ_min (``scale_mode: min``, the paper's
default), the median one (``median``) or √mean(λ) (``rmse``). The update is the sum of the aligned
rows, ``Σ_t ĝ_t = Σ_t w_t g_t`` with ``w = B 1``: task weights from the T×T Gram matrix alone.
As in the official code, eigenvalues below ``λ_max · T · eps`` are dropped (rank-deficient G keeps
its range), and the sum (not torchjd's mean, T times smaller) is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from polymodal.errors import ConfigError
from polymodal.mtl.base import BALANCERS, GradientBalancer, host_gram

SCALE_MODES = ("min", "median", "rmse")


def balance_matrix(gram: np.ndarray, scale_mode: str = "min", eps: float = 1.2e-7) -> np.ndarray:
    """``B = σ V_r Λ_r^{-1/2} V_rᵀ`` over the eigenvalues above ``λ_max·T·eps`` (float64, T×T)."""
    lam, vec = np.linalg.eigh(gram)
    keep = lam > max(float(lam.max()), 0.0) * len(gram) * eps
    if not keep.any():
        return np.eye(len(gram))
    lam, vec = lam[keep], vec[:, keep]
    lower_median = np.sort(lam)[(len(lam) - 1) // 2]  # torch.median's convention
    scale = {"min": lam.min(), "median": lower_median, "rmse": lam.mean()}[scale_mode]
    return np.sqrt(scale) * (vec / np.sqrt(lam)) @ vec.T


@BALANCERS.register("aligned_mtl")
class AlignedMTL(GradientBalancer):
    def __init__(
        self, tasks: Sequence[str], seed: int = 0, recompute_every: int = 1, scale_mode: str = "min"
    ) -> None:
        super().__init__(tasks, seed, recompute_every)
        if scale_mode not in SCALE_MODES:
            raise ConfigError(f"multitask.scale_mode='{scale_mode}': allowed: {', '.join(SCALE_MODES)}")
        self.scale_mode = scale_mode

    def weights(self, gram: Tensor, step: int) -> Tensor:
        eps = torch.finfo(gram.dtype).eps  # the precision the Gram matrix was computed in
        b = balance_matrix(host_gram(gram), self.scale_mode, eps)
        return torch.as_tensor(b.sum(1), device=gram.device)
