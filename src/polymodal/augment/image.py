"""Batched image augmentations on float (B, C, H, W) tensors in [0, 1].

Each op draws its randomness per sample from the given generator on ``x.device`` and is built from
whole-batch tensor ops (index gathers, arange masks, one ``grid_sample``), so a GPU batch never
leaves the GPU and never pays a Python loop over samples. ``lengths`` passes through untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.augment.registry import AUGMENTATIONS


def _check_image(x: Tensor, op: str) -> None:
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"{op}: expected a float image batch (B, C, H, W), got {x.dtype} {tuple(x.shape)}")


def _uniform(n: int, lo: float, hi: float, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """n draws uniform in [lo, hi), float32 on x's device (float32 so half inputs stay precise)."""
    u = torch.rand(n, generator=generator, device=x.device, dtype=torch.float32)
    return lo + (hi - lo) * u


def _randint(n: int, low: int, high: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """n integers uniform in [low, high] (inclusive), int64 on x's device."""
    u = torch.rand(n, generator=generator, device=x.device, dtype=torch.float32)
    k = torch.floor(u * (high - low + 1)).long().clamp_(max=high - low)
    return low + k


@AUGMENTATIONS.register("crop")
def crop(
    x: Tensor, *, generator: torch.Generator | None, lengths: Tensor | None = None, pad: int = 2
) -> tuple[Tensor, Tensor | None]:
    """Zero-pad by ``pad`` then take a random HxW window: an integer translation in [-pad, pad]."""
    _check_image(x, "crop")
    if pad <= 0:
        return x, lengths
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))  # constant zero padding
    oy = _randint(b, 0, 2 * pad, x, generator)
    ox = _randint(b, 0, 2 * pad, x, generator)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = ox[:, None] + torch.arange(w, device=x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    out = xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
    return out, lengths


@AUGMENTATIONS.register("flip")
def flip(
    x: Tensor, *, generator: torch.Generator | None, lengths: Tensor | None = None, p: float = 0.5
) -> tuple[Tensor, Tensor | None]:
    """Mirror left-right with probability ``p`` per sample (not for digits or text-like images)."""
    _check_image(x, "flip")
    do = _uniform(x.shape[0], 0.0, 1.0, x, generator) < p
    return torch.where(do[:, None, None, None], x.flip(-1), x), lengths


@AUGMENTATIONS.register("cutout")
def cutout(
    x: Tensor,
    *,
    generator: torch.Generator | None,
    lengths: Tensor | None = None,
    size: int = 8,
    fill: float = 0.5,
) -> tuple[Tensor, Tensor | None]:
    """Fill one ``size`` x ``size`` square per sample (centre anywhere, clipped at the borders).

    Grey fill (0.5) as in UDA/FixMatch, so the hole is neither a black nor a white stroke.
    """
    _check_image(x, "cutout")
    if size <= 0:
        return x, lengths
    b, _, h, w = x.shape
    y0 = _randint(b, 0, h - 1, x, generator) - size // 2
    x0 = _randint(b, 0, w - 1, x, generator) - size // 2
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    in_y = (ys >= y0[:, None]) & (ys < y0[:, None] + size)  # (B, H)
    in_x = (xs >= x0[:, None]) & (xs < x0[:, None] + size)  # (B, W)
    hole = in_y[:, :, None] & in_x[:, None, :]  # (B, H, W)
    return torch.where(hole[:, None], torch.full_like(x, fill), x), lengths


@AUGMENTATIONS.register("affine")
def affine(
    x: Tensor,
    *,
    generator: torch.Generator | None,
    lengths: Tensor | None = None,
    degrees: float = 10.0,
    translate: float = 0.1,
    scale: float = 0.1,
    shear: float = 0.0,
) -> tuple[Tensor, Tensor | None]:
    """Small random rotation/translation/scale/shear per sample, one bilinear ``grid_sample``.

    The transform is built in pixel units (so rotations stay rotations on non-square images) and
    inverted, because ``affine_grid`` maps output coordinates to input coordinates.
    """
    _check_image(x, "affine")
    b, _, h, w = x.shape
    angle = _uniform(b, -degrees, degrees, x, generator) * (math.pi / 180.0)
    tx = _uniform(b, -translate, translate, x, generator) * w
    ty = _uniform(b, -translate, translate, x, generator) * h
    s = _uniform(b, 1.0 - scale, 1.0 + scale, x, generator)
    sh = _uniform(b, -shear, shear, x, generator) * (math.pi / 180.0)

    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(sh)
    zeros, ones = torch.zeros_like(s), torch.ones_like(s)
    # Forward map in centred pixel coordinates: rotation @ x-shear @ isotropic scale, then shift.
    fwd = torch.stack(
        [
            torch.stack([s * cos, s * (cos * tan - sin), tx], -1),
            torch.stack([s * sin, s * (sin * tan + cos), ty], -1),
            torch.stack([zeros, zeros, ones], -1),
        ],
        dim=1,
    )  # (B, 3, 3)
    to_pix = torch.diag(torch.tensor([w / 2.0, h / 2.0, 1.0], device=x.device))
    to_norm = torch.diag(torch.tensor([2.0 / w, 2.0 / h, 1.0], device=x.device))
    theta = (to_norm @ torch.linalg.inv(fwd) @ to_pix)[:, :2, :].to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, lengths
