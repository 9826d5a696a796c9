"""PCGrad, gradient surgery (Yu et al., NeurIPS 2020, arXiv:2001.06782).

For each task i, in a random order over the other tasks j: if ``g_i·g_j < 0`` project g_i onto the
normal plane of g_j, ``g_i ← g_i − (g_i·g_j / ‖g_j‖²) g_j`` (against the original g_j, as in the
official code); the update is the sum of the projected gradients. Every projected gradient stays a
linear combination of the originals, so the method runs on the T×T Gram matrix: coefficient rows
``C`` with ``g_i^PC = C_i · G`` and weights ``w = Σ_i C_i``. ``torch.where`` instead of ``if`` keeps
it free of device syncs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polymodal.mtl.base import BALANCERS, GradientBalancer


@BALANCERS.register("pcgrad")
class PCGrad(GradientBalancer):
    def weights(self, gram: Tensor, step: int) -> Tensor:
        t = gram.shape[0]
        gen = self.generator(step)
        coef = torch.eye(t, dtype=gram.dtype, device=gram.device)
        sq = gram.diagonal().clamp_min(1e-20)
        for i in range(t):
            for j in torch.randperm(t, generator=gen).tolist():
                if j == i:
                    continue
                dot = coef[i] @ gram[:, j]  # g_i^PC · g_j
                coef[i, j] = coef[i, j] - torch.clamp(dot, max=0.0) / sq[j]
        return coef.sum(0)
