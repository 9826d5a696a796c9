"""RandAugment with a different (op, magnitude) per image, batched on the tensor's device.

torchvision's and kornia's RandAugment draw one op for the whole batch; UDA (Xie et al. 2020) and
FixMatch (Sohn et al. 2020) draw one per image. This is the official UDA policy
(google-research/uda, ``image/randaugment/policies.py``): each image applies ``n`` ops drawn from the
15 below, each with probability ``p`` = 0.5 and a magnitude uniform in 1..9 out of 10, with the
ranges of AutoAugment's ``augmentation_transforms.py`` (shear 0.3, translate 10/32 of the side,
rotate 30°, enhance factors 0.1..1.9, posterize to 4 - ⌊4m/10⌋ bits, solarize at 256 - ⌊256m/10⌋).

Images are float (B, C, H, W) in [0, 1] (uint8 is converted). The loop runs over op *types* (15),
never over samples: each op is applied to the rows that drew it. Every draw is made for the whole
batch up front, so a sample's result depends only on its own input and the generator state.
Geometry uses nearest-neighbour sampling around the image centre (PIL's default resampling).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.augment.registry import AUGMENTATIONS
from polymodal.errors import ConfigError

OPS = (
    "invert",
    "cutout",
    "sharpness",
    "autocontrast",
    "posterize",
    "shear_x",
    "translate_x",
    "translate_y",
    "shear_y",
    "rotate",
    "equalize",
    "contrast",
    "color",
    "solarize",
    "brightness",
)
SHEAR_MAX, TRANSLATE_MAX, ROTATE_MAX, ENHANCE_MAX, CUTOUT_MAX = 0.3, 10 / 32, 30.0, 1.8, 20 / 32
"""AutoAugment's ranges at magnitude 10 (translate and cutout as fractions of a 32-pixel side)."""

OpFn = Callable[[Tensor, Tensor, Tensor, Tensor, float], Tensor]
"""op(x (b,C,H,W), level (b,) in [0, 1], sign (b,) ±1, centre (b, 2) uniform in [0, 1), fill)."""


def _v(t: Tensor) -> Tensor:
    return t[:, None, None, None]


def _blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL ImageEnhance: degenerate + factor · (x − degenerate), clipped to [0, 1]."""
    return (degenerate + _v(factor) * (x - degenerate)).clamp(0.0, 1.0)


def _gray(x: Tensor) -> Tensor:
    """ITU-R 601-2 luma (PIL's convert('L')), shape (b, 1, H, W); a 1-channel image is its own luma."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
    return (x * w[None, :, None, None]).sum(1, keepdim=True)


def _quantize(x: Tensor) -> Tensor:
    """Float [0, 1] -> integer levels 0..255 (int64)."""
    return (x.clamp(0.0, 1.0) * 255.0).round().long()


def _warp(x: Tensor, m: Tensor, fill: float) -> Tensor:
    """out[y, x] = in[round(M · (x, y, 1))] in centred pixel coordinates; outside: ``fill``."""
    b, c, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, device=x.device, dtype=torch.float32) - (w - 1) / 2
    m = m.float()[:, :, :, None, None]  # (b, 2, 3, 1, 1): broadcast over (H, W)
    px, py = xs[None, None, :], ys[None, :, None]
    sx = torch.round(m[:, 0, 0] * px + m[:, 0, 1] * py + m[:, 0, 2] + (w - 1) / 2).long().flatten(1)
    sy = torch.round(m[:, 1, 0] * px + m[:, 1, 1] * py + m[:, 1, 2] + (h - 1) / 2).long().flatten(1)
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    flat = (sy.clamp(0, h - 1) * w + sx.clamp(0, w - 1))[:, None, :].expand(b, c, h * w)
    out = x.reshape(b, c, h * w).gather(2, flat)
    out = torch.where(inside[:, None, :], out, torch.full_like(out, fill))
    return out.reshape(b, c, h, w)


def _affine(rows: Callable[[Tensor], tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]]) -> OpFn:
    def op(x: Tensor, level: Tensor, sign: Tensor, centre: Tensor, fill: float) -> Tensor:
        a, b_, c, d, e, f = rows(level * sign)
        m = torch.stack([torch.stack([a, b_, c], -1), torch.stack([d, e, f], -1)], 1)
        return _warp(x, m, fill)

    return op


def _one(t: Tensor) -> Tensor:
    return torch.ones_like(t)


def _zero(t: Tensor) -> Tensor:
    return torch.zeros_like(t)


def _rotation(s: Tensor) -> tuple[Tensor, ...]:
    t = s * (ROTATE_MAX * math.pi / 180.0)
    return torch.cos(t), torch.sin(t), _zero(s), -torch.sin(t), torch.cos(t), _zero(s)


def _equalize(x: Tensor, level: Tensor, sign: Tensor, centre: Tensor, fill: float) -> Tensor:
    """PIL ImageOps.equalize per image and channel, from a 256-bin histogram built by scatter_add."""
    b, c, h, w = x.shape
    q = _quantize(x).reshape(b * c, h * w)
    hist = torch.zeros(b * c, 256, device=x.device, dtype=torch.long).scatter_add_(1, q, torch.ones_like(q))
    top = q.max(1).values  # the highest level present: PIL drops its count from the step
    step = (h * w - hist.gather(1, top[:, None]).squeeze(1)) // 256
    before = hist.cumsum(1) - hist  # pixels strictly below each level
    lut = ((step // 2)[:, None] + before) // step.clamp(min=1)[:, None]
    out = lut.clamp(max=255).gather(1, q).to(x.dtype) / 255.0
    out = torch.where((step > 0)[:, None], out, x.reshape(b * c, h * w))
    return out.reshape(b, c, h, w)


def _autocontrast(x: Tensor, *_: object) -> Tensor:
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    scaled = (x - lo) / (hi - lo).clamp(min=1e-12)
    return torch.where(hi > lo, scaled, x)


def _posterize(x: Tensor, level: Tensor, *_: object) -> Tensor:
    bits = 4 - torch.floor(level * 4 + 1e-6).long()  # magnitude m: 4 - int(m·4/10) bits kept
    mask = (0xFF << (8 - bits)) & 0xFF
    return (_quantize(x) & _v(mask)).to(x.dtype) / 255.0


def _solarize(x: Tensor, level: Tensor, *_: object) -> Tensor:
    threshold = 256 - torch.floor(level * 256 + 1e-6)  # in uint8 levels
    return torch.where(_quantize(x) >= _v(threshold), 1.0 - x, x)


def _sharpness(x: Tensor, level: Tensor, *_: object) -> Tensor:
    """PIL's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]]/13 inside, border pixels unchanged."""
    c = x.shape[1]
    k = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    k[1, 1] = 5.0
    k = (k / 13.0).expand(c, 1, 3, 3)
    smooth = x.clone()
    smooth[:, :, 1:-1, 1:-1] = F.conv2d(x, k, groups=c)
    return _blend(smooth, x, 0.1 + ENHANCE_MAX * level)


def _cutout(x: Tensor, level: Tensor, sign: Tensor, centre: Tensor, fill: float) -> Tensor:
    return cutout_square(x, torch.floor(level * CUTOUT_MAX * min(x.shape[-2:])).long(), centre)


def cutout_square(x: Tensor, size: Tensor, centre: Tensor, fill: float = 0.5) -> Tensor:
    """Grey ``size``×``size`` square per image at ``centre`` (fractions of H, W), clipped at borders."""
    h, w = x.shape[-2:]
    y0 = torch.floor(centre[:, 0] * h).long() - size // 2
    x0 = torch.floor(centre[:, 1] * w).long() - size // 2
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_y = (ys >= y0[:, None]) & (ys < (y0 + size)[:, None])
    in_x = (xs >= x0[:, None]) & (xs < (x0 + size)[:, None])
    hole = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    return torch.where(hole, torch.full_like(x, fill), x)


OP_FNS: dict[str, OpFn] = {
    "invert": lambda x, *_: 1.0 - x,
    "cutout": _cutout,
    "sharpness": _sharpness,
    "autocontrast": _autocontrast,
    "posterize": _posterize,
    "shear_x": _affine(lambda s: (_one(s), s * SHEAR_MAX, _zero(s), _zero(s), _one(s), _zero(s))),
    "shear_y": _affine(lambda s: (_one(s), _zero(s), _zero(s), s * SHEAR_MAX, _one(s), _zero(s))),
    "rotate": _affine(_rotation),
    "equalize": _equalize,
    "contrast": lambda x, lv, *_: _blend(_gray(x).mean((1, 2, 3), keepdim=True), x, 0.1 + ENHANCE_MAX * lv),
    "color": lambda x, lv, *_: _blend(_gray(x), x, 0.1 + ENHANCE_MAX * lv),
    "solarize": _solarize,
    "brightness": lambda x, lv, *_: _blend(torch.zeros_like(x), x, 0.1 + ENHANCE_MAX * lv),
}


def _translate(axis: int) -> OpFn:
    """Shift by level·sign·(10/32)·side pixels: out(p) = in(p − t)."""

    def op(x: Tensor, level: Tensor, sign: Tensor, centre: Tensor, fill: float) -> Tensor:
        side = x.shape[-1] if axis == 0 else x.shape[-2]
        t = level * sign * TRANSLATE_MAX * side
        z, o = torch.zeros_like(t), torch.ones_like(t)
        rows = (o, z, -t, z, o, z) if axis == 0 else (o, z, z, z, o, -t)
        m = torch.stack([torch.stack(rows[:3], -1), torch.stack(rows[3:], -1)], 1)
        return _warp(x, m, fill)

    return op


OP_FNS["translate_x"], OP_FNS["translate_y"] = _translate(0), _translate(1)
assert set(OP_FNS) == set(OPS)


def apply_op(
    name: str,
    x: Tensor,
    level: Tensor,
    sign: Tensor | None = None,
    centre: Tensor | None = None,
    fill: float = 0.0,
) -> Tensor:
    """Apply one named op to every image of ``x`` with per-image ``level`` in [0, 1] (= magnitude / 10)."""
    b = x.shape[0]
    sign = torch.ones(b, device=x.device) if sign is None else sign
    centre = torch.full((b, 2), 0.5, device=x.device) if centre is None else centre
    return OP_FNS[name](x, level.to(x.device, torch.float32), sign, centre, fill)


@AUGMENTATIONS.register("randaugment")
def randaugment(
    x: Tensor,
    *,
    generator: torch.Generator | None,
    lengths: Tensor | None = None,
    n: int = 2,
    magnitude: int | None = None,
    p: float = 0.5,
    cutout: int = 0,
    fill: float = 0.0,
) -> tuple[Tensor, Tensor | None]:
    """``n`` ops per image, each applied with probability ``p`` at magnitude ``magnitude``/10
    (None: uniform in 1..9 per image and op, as UDA), then a ``cutout``-pixel grey square (0: none).

    ``fill`` is the value geometry ops leave outside the source image (0: black, right for digits).
    """
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"randaugment: expected an image batch (B, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if magnitude is not None and not 0 <= magnitude <= 10:
        raise ConfigError(f"randaugment: magnitude must be in 0..10 or None, got {magnitude}")
    b, dev = x.shape[0], x.device

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator, device=dev)

    for _ in range(n):
        op = torch.floor(rand(b) * len(OPS)).long().clamp_(max=len(OPS) - 1)
        do = rand(b) < p
        level = (
            (1 + torch.floor(rand(b) * 9).clamp_(max=8)) / 10.0
            if magnitude is None
            else torch.full((b,), magnitude / 10.0, device=dev)
        )
        sign = torch.where(rand(b) < 0.5, -1.0, 1.0)
        centre = rand(b, 2)
        for k, name in enumerate(OPS):
            idx = torch.nonzero(do & (op == k)).flatten()
            if idx.numel() == 0:
                continue
            y = OP_FNS[name](x[idx], level[idx], sign[idx], centre[idx], fill)
            x = x.index_copy(0, idx, y.to(x.dtype))
    if cutout > 0:
        x = cutout_square(x, torch.full((b,), cutout, device=dev, dtype=torch.long), rand(b, 2))
    return x, lengths
