"""Margin-based softmax heads for speaker (or face) embeddings.

``AAMSoftmax`` scores an embedding by the scaled cosine to one learnt, unit-norm centre per class. In
training the target class's logit is penalised by a margin, which forces classes apart on the
hypersphere and is what makes cosine scoring of the embeddings work for unseen speakers:

* ``kind="aam"``, additive angular margin (ArcFace, Deng et al. 2019): ``s * cos(theta + m)``;
* ``kind="am"``, additive (cosine) margin (CosFace, Wang et al. 2018; AM-softmax): ``s * (cos(theta) - m)``.

For ``theta + m > pi`` ArcFace's ``cos(theta + m)`` would start increasing again, so (as the official
ArcFace code) the target logit continues as ``cos(theta) - m * sin(m)`` there, monotone in ``theta``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.errors import ConfigError, ShapeError

KINDS = ("aam", "am")


class AAMSoftmax(nn.Module):
    """(B, in_dim) embeddings -> (B, classes) logits; feed them to ``F.cross_entropy``.

    The margin is applied to the target entries only when ``targets`` (B,) is given and the module is
    in training mode; otherwise the logits are the plain scaled cosines ``scale * cos(theta)``.
    """

    def __init__(
        self, in_dim: int, classes: int, margin: float = 0.2, scale: float = 30.0, kind: str = "aam"
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"margin head kind must be one of {', '.join(KINDS)}, got '{kind}'")
        if margin < 0 or scale <= 0 or in_dim < 1 or classes < 1:
            raise ConfigError(
                f"margin head needs margin >= 0, scale > 0, in_dim, classes >= 1; got margin={margin}, "
                f"scale={scale}, in_dim={in_dim}, classes={classes}"
            )
        self.in_dim, self.classes = in_dim, classes
        self.margin, self.scale, self.kind = float(margin), float(scale), kind
        self.weight = nn.Parameter(torch.empty(classes, in_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosines(self, x: Tensor) -> Tensor:
        """(B, classes) cosines between the embeddings and the class centres."""
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ShapeError(f"margin head expects embeddings (B, {self.in_dim}), got {tuple(x.shape)}")
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, x: Tensor, targets: Tensor | None = None) -> Tensor:
        cos = self.cosines(x)
        if targets is None or not self.training:
            return self.scale * cos
        if targets.shape != (x.shape[0],):
            raise ShapeError(f"margin head expects targets (B,)=({x.shape[0]},), got {tuple(targets.shape)}")
        target_cos = cos.gather(1, targets[:, None].long())
        m = self.margin
        if self.kind == "am":
            penalised = target_cos - m
        else:
            sin = (1.0 - target_cos.square()).clamp(min=1e-12).sqrt()
            shifted = target_cos * math.cos(m) - sin * math.sin(m)  # cos(theta + m)
            # theta + m > pi  <=>  cos(theta) < cos(pi - m)
            penalised = torch.where(target_cos > math.cos(math.pi - m), shifted, target_cos - m * math.sin(m))
        return self.scale * cos.scatter(1, targets[:, None].long(), penalised)
