"""IMTL-G, impartial gradient balancing (Liu et al., ICLR 2021, "Towards Impartial Multi-task
Learning", openreview IMXY4J4JEYn).

Find the combination ``g = Σ_t α_t g_t`` with ``Σ α_t = 1`` whose projection onto every task's unit
gradient ``u_t = g_t/‖g_t‖`` is equal. Closed form (paper, eq. 8): with rows ``D = [g_1 − g_t]`` and
``U = [u_1 − u_t]`` for t = 2..T, ``α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹`` and ``α_1 = 1 − Σ α_{2:T}``. Every
inner product is read off the Gram matrix, so this runs on the device on a (T−1)×(T−1) system.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polymodal.mtl.base import BALANCERS, GradientBalancer


def imtl_weights(gram: Tensor) -> Tensor:
    t = gram.shape[0]
    if t == 1:
        return torch.ones(1, dtype=gram.dtype, device=gram.device)
    norms = gram.diagonal().clamp_min(1e-20).sqrt()
    proj = gram / norms[None, :]  # proj[i, j] = g_i · u_j
    gu = proj[0, 0] - proj[0, 1:]  # g_1 · (u_1 − u_j)
    du = proj[0, 0] - proj[0, 1:][None, :] - proj[1:, 0][:, None] + proj[1:, 1:]  # (g_1 − g_i)·(u_1 − u_j)
    rest = gu @ torch.linalg.pinv(du)
    return torch.cat([1 - rest.sum().reshape(1), rest])


@BALANCERS.register("imtl_g")
class IMTLG(GradientBalancer):
    def weights(self, gram: Tensor, step: int) -> Tensor:
        return imtl_weights(gram.double()).to(gram.dtype)
