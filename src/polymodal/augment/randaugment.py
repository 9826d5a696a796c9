"""RandAugment with a different (op, magnitude) per image, batched on the tensor's device.

torchvision's and kornia's RandAugment draw one op for the whole batch; UDA (Xie et al. 2020) and
FixMatch (Sohn et al. 2020) draw one per image. This is the official UDA policy
(google-research/uda, ``image/randaugment/policies.py``, ``randaug_policies``): each image applies
``n`` ops drawn from the 15 below, each with probability ``p`` = 0.5 and an integer magnitude ``m``
uniform in 1..9 out of 10. Each op is the PIL call of ``image/randaugment/augmentation_transforms.py``
on 0..255 levels, reproduced to the level (``tests/test_randaugment_pil.py`` checks every op against
Pillow on real images):

- invert, autocontrast, equalize, posterize (``4 - int(4m/10)`` bits), solarize (threshold
  ``256 - int(256m/10)``): ``ImageOps`` on the RGB image, exact (autocontrast stays float where PIL
  truncates its LUT: ≤ 1 level). equalize is ``ImageOps.equalize`` per channel: step = (pixels −
  count of the highest level present) // 255, the identity LUT when that is 0.
- color, contrast, brightness, sharpness: ``ImageEnhance`` with factor ``0.1 + 1.8m/10``. PIL
  truncates the blend to uint8 and rounds its grey / mean / SMOOTH degenerate; here both stay float,
  so ours − PIL is 0 or 1 level.
- rotate: ``img.rotate(±int(30m/10))`` degrees, counter-clockwise for sign +1, about the image
  centre (w/2, h/2 in pixel-edge coordinates).
- shear_x / shear_y: ``img.transform(size, AFFINE, (1, ±0.3m/10, 0, 0, 1, 0))`` (and the transposed
  matrix): the source of output pixel (x, y) is x + s·y with PIL's origin, the **top-left corner**
  of the image (pixel centres at +0.5), not the centre.
- translate_x / translate_y: ``AFFINE (1, 0, ±t, 0, 1, 0)``: out(x) = in(x + t), content moves
  towards −x for sign +1. The official code shifts ``t = int(10m/10) = m`` **whole pixels** on its
  32-pixel images. For a side S ≠ 32 the shift is scaled to the side and kept whole:
  ``t = ⌊m·(10/32)·S/10 + ½⌋`` pixels (halves round up, so 3.5 → 4 and magnitude 1 still moves one
  pixel at S = 28: 1, 2, 3, 4, 4, 5, 6, 7, 8 px for m = 1..9); at S = 32 this is exactly ``m``.
  ``translate_pixels`` computes it; ``apply_op``'s ``level`` is m/10 (any float in [0, 1]).
- cutout: the official ``create_cutout_mask`` square [loc − s/2, loc + s/2) clipped at the borders,
  ``s = int(20m/10) = 2m`` at S = 32, scaled like translate otherwise (s/2 = the translate shift of
  the shorter side), filled with grey 0.5 (the official code fills with the dataset mean).

Geometry (rotate, shear, translate) computes source pixels with Pillow's own nearest-neighbour
arithmetic, 16.16 fixed point (``libImaging/Geometry.c``, ``affine_fixed``): coefficients
``⌊65536·a + ½⌋``, the source index an integer shift, so ties (a source coordinate exactly on a pixel
edge, e.g. shear m = 4 at row 12) fall the same way as in PIL. Pixels from outside the image get
``fill`` (PIL: transparent, which the official ``pil_unwrap`` turns into 0 after mean/std
normalisation, i.e. the mean; ``fill`` = 0 is black).

Images are float (B, C, H, W) in [0, 1]; uint8 is converted to float / 255 (``apply_op`` too); any
other dtype or rank is refused with a one-line ``ConfigError`` / ``ShapeError``. The loop runs over op
*types*, never over samples: each round draws everything for the whole batch up front, sorts the rows
by the op they drew (one ``argsort``, one host read of the 16 counts) and computes each op only on its
rows (gathered, so a group's rows stay in cache). The five geometric ops of a round share one gather:
for images up to ``TABLE_MAX_PIXELS`` their source maps for the 11 integer magnitudes are cached per
(H, W, device), built by the same ``geometry_source`` that ``apply_op`` uses for any level. A sample's
result depends only on its own input and the generator state.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.augment.registry import AUGMENTATIONS
from polymodal.errors import ConfigError, ShapeError

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
GEOMETRIC = ("shear_x", "translate_x", "translate_y", "shear_y", "rotate")
"""The geometric ops, adjacent in OPS (randaugment applies them together in one gather)."""
SHEAR_MAX, TRANSLATE_MAX, ROTATE_MAX, ENHANCE_MAX, CUTOUT_MAX = 0.3, 10 / 32, 30.0, 1.8, 20 / 32
"""AutoAugment's ranges at magnitude 10 (translate and cutout as fractions of a 32-pixel side)."""

OpFn = Callable[[Tensor, Tensor, Tensor, Tensor, float], Tensor]
"""op(x (b,C,H,W), level (b,) float64 in [0, 1], sign (b,) ±1, centre (b, 2) in [0, 1), fill) -> result.

An op may overwrite ``x`` and return it: ``x`` is always a scratch copy (``apply_op`` passes a clone,
``randaugment`` the rows it gathered)."""


def _factor(level: Tensor, x: Tensor) -> Tensor:
    """ImageEnhance factor 0.1 + 1.8·level, shaped (b, 1, 1, 1) in x's dtype."""
    return (0.1 + ENHANCE_MAX * level).to(x.dtype).view(-1, 1, 1, 1)


def _blend_(x: Tensor, degenerate: Tensor, level: Tensor) -> Tensor:
    """PIL ImageEnhance in place: degenerate + f·(x − degenerate) = x + (1 − f)·(degenerate − x), clipped."""
    return x.lerp_(degenerate, (0.9 - ENHANCE_MAX * level).to(x.dtype).view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def _gray(x: Tensor) -> Tensor:
    """ITU-R 601-2 luma (PIL's convert('L')), shape (b, 1, H, W); a 1-channel image is its own luma."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    return (x[:, :1] * 0.299).add_(x[:, 1:2], alpha=0.587).add_(x[:, 2:], alpha=0.114)


def _levels(x: Tensor) -> Tensor:
    """Float [0, 1] -> the nearest of the 256 levels, as a float 0..255."""
    return x.clamp(0.0, 1.0).mul_(255.0).round_()


def _coef_dtype(x: Tensor) -> torch.dtype:
    return torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64


def translate_pixels(level: Tensor, side: int) -> Tensor:
    """Whole-pixel shift at ``level`` (m/10) for a side of ``side`` px: ⌊level·(10/32)·side + ½⌋,
    = m at 32 px as in the official code (int_parameter(m, 10)). A 1e-6 slack keeps float32 halves up."""
    return torch.floor(level.double() * (TRANSLATE_MAX * side) + 0.5 + 1e-6).long()


def _fix(v: Tensor) -> Tensor:
    """Pillow's 16.16 fixed point, FIX(v) = ⌊65536·v + ½⌋, shaped (b, 1, 1)."""
    return torch.floor(v * 65536.0 + 0.5).long()[:, None, None]


def geometry_source(name: str, level: Tensor, sign: Tensor, h: int, w: int) -> Tensor:
    """(b, H·W) int64: for each output pixel of a geometric op, the flat index of its source pixel in
    the image padded by a one-pixel ``fill`` border ((H+2)·(W+2) layout); outside sources hit the border.

    Sources are PIL's: ``Image.transform(size, AFFINE, (a, b, c, d, e, f), NEAREST)`` reads the pixel
    holding (a·(x+½) + b·(y+½) + c, d·(x+½) + e·(y+½) + f), computed in Pillow's 16.16 fixed point
    (``affine_fixed`` in libImaging/Geometry.c), so the integers, ties included, are PIL's:
    shear (1, s, 0, 0, 1, 0) with s = ±0.3·level, translate (1, 0, t, 0, 1, 0) with t whole pixels,
    rotate as ``Image.rotate`` builds its matrix (cos/sin rounded to 15 decimals, centre (w/2, h/2)).
    ``level`` and ``sign`` are (b,) on the target device (float64, or float32 on MPS).
    """
    dev = level.device
    xs = torch.arange(w, device=dev)[None, None, :]
    ys = torch.arange(h, device=dev)[None, :, None]
    sign = sign.to(level.dtype)
    if name in ("translate_x", "translate_y"):
        t = (translate_pixels(level, w if name == "translate_x" else h) * sign.long())[:, None, None]
        sx, sy = (xs + t, ys) if name == "translate_x" else (xs, ys + t)
    elif name in ("shear_x", "shear_y"):
        # FIX(1) = 65536: the source column (row) is x + ((FIX(½ + s·½) + FIX(s)·y) >> 16), per row
        s = sign * (level * 10.0 * SHEAR_MAX / 10.0)  # float_parameter(m, 0.3) at level m/10
        start, slope = _fix(0.5 + s * 0.5), _fix(s)
        if name == "shear_x":
            sx, sy = xs + ((start + slope * ys) >> 16), ys
        else:
            sx, sy = xs, ys + ((start + slope * xs) >> 16)
    elif name == "rotate":
        angle = -(sign * level * ROTATE_MAX * (math.pi / 180.0))  # Image.rotate: -math.radians(deg)
        a, b = torch.round(torch.cos(angle), decimals=15), torch.round(torch.sin(angle), decimals=15)
        cx, cy = w / 2, h / 2
        c = a * -cx + b * -cy + 0.0 + cx
        f = -b * -cx + a * -cy + 0.0 + cy
        sx = (_fix(c + a * 0.5 + b * 0.5) + _fix(b) * ys + _fix(a) * xs) >> 16  # matrix (a, b, c, -b, a, f)
        sy = (_fix(f + -b * 0.5 + a * 0.5) + _fix(-b) * xs + _fix(a) * ys) >> 16
    else:
        raise ConfigError(f"geometry_source: {name!r} is not one of {', '.join(GEOMETRIC)}")
    flat = (sy.clamp(-1, h) * (w + 2) + (w + 3)) + sx.clamp(-1, w)  # (sy + 1)·(w + 2) + (sx + 1)
    return flat.expand(level.shape[0], h, w).reshape(-1, h * w)


def _gather_padded(x: Tensor, source: Tensor, fill: float) -> Tensor:
    """out[i, c].flat[p] = pad(x[i, c], fill).flat[source[i, p]]: one gather, no masks."""
    b, c, h, w = x.shape
    src = F.pad(x, (1, 1, 1, 1), value=fill).reshape(b, c, (h + 2) * (w + 2))
    return src.gather(2, source[:, None].expand(b, c, h * w)).reshape(b, c, h, w)


def _geometric(name: str) -> OpFn:
    def op(x: Tensor, level: Tensor, sign: Tensor, centre: Tensor, fill: float) -> Tensor:
        lv = level.to(x.device, _coef_dtype(x))
        return _gather_padded(x, geometry_source(name, lv, sign.to(x.device), *x.shape[-2:]), fill)

    return op


TABLE_MAX_PIXELS = 64 * 64
"""Images up to this size get cached source maps for the 11 integer magnitudes (≈ 3.6 MB at 64×64)."""


@functools.lru_cache(maxsize=8)
def geometry_table(h: int, w: int, device: torch.device) -> Tensor:
    """(5, 2, 11, H·W) int64 ``geometry_source`` maps: op (GEOMETRIC order), sign (−1, +1), m 0..10."""
    dt = torch.float32 if device.type == "mps" else torch.float64
    level = torch.arange(11, device=device, dtype=dt) / 10.0
    return torch.stack(
        [
            torch.stack([geometry_source(g, level, torch.full_like(level, s), h, w) for s in (-1.0, 1.0)])
            for g in GEOMETRIC
        ]
    )


def _equalize(x: Tensor, level: Tensor, sign: Tensor, centre: Tensor, fill: float) -> Tensor:
    """PIL ImageOps.equalize per image and channel, from a 256-bin histogram per (image, channel).

    Like PIL the result is on the 256 levels; a channel whose step is 0 gets the identity LUT.
    """
    b, c, h, w = x.shape
    q = _levels(x).long().reshape(b * c, h * w)
    hist = torch.zeros(b * c, 256, device=x.device, dtype=torch.long).scatter_add_(1, q, torch.ones_like(q))
    ramp = torch.arange(256, device=x.device)
    top = ((hist > 0) * ramp).amax(1, keepdim=True)  # the highest level present: PIL drops its count
    step = (h * w - hist.gather(1, top)) // 255
    before = hist.cumsum(1) - hist  # pixels strictly below each level
    # ⌊(step // 2 + before) / step⌋ in floating point: exact for integers far below 2^24 / 255
    dt = _coef_dtype(x)
    lut = ((step // 2 + before).to(dt) / step.clamp(min=1).to(dt)).floor_().clamp_(max=255.0)
    lut = torch.where(step > 0, lut, ramp.to(dt)).div_(255.0).to(x.dtype)
    return lut.gather(1, q).reshape(b, c, h, w)


def _autocontrast(x: Tensor, *_: object) -> Tensor:
    """PIL ImageOps.autocontrast per channel: the darkest level -> 0, the lightest -> 1 (in place)."""
    lo, hi = torch.aminmax(x.flatten(2), dim=2)
    span = hi - lo
    scale = torch.where(span > 0, 1.0 / span, 1.0)  # a flat channel is left as it is
    return x.mul_(scale[..., None, None]).sub_((torch.where(span > 0, lo, 0.0) * scale)[..., None, None])


def _posterize(x: Tensor, level: Tensor, *_: object) -> Tensor:
    """Keep the top 4 - int(4·level) bits of each level q = ⌊255·x + ½⌋: ⌊q / 2^k⌋·2^k, k = 8 − bits,
    i.e. ⌊x·255/2^k + ½/2^k⌋ (in place)."""
    bits = 4 - torch.floor(level * 4 + 1e-6)  # magnitude m: 4 - int(m·4/10) bits kept
    quantum = torch.exp2(8 - bits).to(x.dtype).view(-1, 1, 1, 1)
    return x.clamp_(0.0, 1.0).mul_(255.0 / quantum).add_(0.5 / quantum).floor_().mul_(quantum / 255.0)


def _solarize(x: Tensor, level: Tensor, *_: object) -> Tensor:
    """Invert the pixels whose level is ≥ t = 256 - int(256·level), i.e. 255·x ≥ t − ½: |x − [x ≥ θ]|."""
    threshold = ((255.5 - torch.floor(level * 256 + 1e-6)) / 255.0).to(x.dtype).view(-1, 1, 1, 1)
    return x.sub_(torch.ge(x, threshold).to(x.dtype)).abs_()


def _sharpness(x: Tensor, level: Tensor, *_: object) -> Tensor:
    """PIL's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]]/13 inside, border pixels unchanged:
    x + (1 − f)·(smooth − x) = x + (1 − f)/13 · (3×3 box sum − 9x)."""
    if min(x.shape[-2:]) < 3:
        return x
    inner = x[..., 1:-1, 1:-1]
    rows = x[..., :, :-2] + x[..., :, 1:-1] + x[..., :, 2:]  # separable 3×3 box sum
    box = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
    k = ((0.9 - ENHANCE_MAX * level) / 13.0).to(x.dtype).view(-1, 1, 1, 1)  # (1 − f) / 13
    inner.add_(box.sub_(inner, alpha=9.0).mul_(k)).clamp_(0.0, 1.0)  # in place: x's border stays
    return x


def _contrast(x: Tensor, level: Tensor, *_: object) -> Tensor:
    return _blend_(x, _gray(x).mean((1, 2, 3), keepdim=True), level)


def _cutout(x: Tensor, level: Tensor, sign: Tensor, centre: Tensor, fill: float) -> Tensor:
    """The op's square has side 2·translate_pixels(level, shorter side) (= 2m at 32 px, official)."""
    return cutout_square(x, 2 * translate_pixels(level, min(x.shape[-2:])).to(x.device), centre)


def _square_mask(x: Tensor, size: Tensor, centre: Tensor) -> Tensor:
    """(b, 1, H, W) in x's dtype, 1 on the ``size``×``size`` square whose top-left corner is
    ⌊centre·(H, W)⌋ − size // 2 (clipped at the borders), 0 elsewhere."""
    h, w = x.shape[-2:]
    y0 = torch.floor(centre[:, 0] * h).long() - size // 2
    x0 = torch.floor(centre[:, 1] * w).long() - size // 2
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_y = ((ys >= y0[:, None]) & (ys < (y0 + size)[:, None])).to(x.dtype)
    in_x = ((xs >= x0[:, None]) & (xs < (x0 + size)[:, None])).to(x.dtype)
    return (in_y[:, :, None] * in_x[:, None, :])[:, None]


def cutout_square(x: Tensor, size: Tensor, centre: Tensor, fill: float = 0.5) -> Tensor:
    """Grey ``size``×``size`` square per image at ``centre`` (fractions of H, W), clipped at borders."""
    return torch.lerp(x, x.new_full((1, 1, 1, 1), fill), _square_mask(x, size, centre))


OP_FNS: dict[str, OpFn] = {
    "invert": lambda x, *_: 1.0 - x,
    "cutout": _cutout,
    "sharpness": _sharpness,
    "autocontrast": _autocontrast,
    "posterize": _posterize,
    **{g: _geometric(g) for g in GEOMETRIC},
    "equalize": _equalize,
    "contrast": _contrast,
    "color": lambda x, lv, *_: _blend_(x, _gray(x), lv),
    "solarize": _solarize,
    "brightness": lambda x, lv, *_: x.mul_(_factor(lv, x)).clamp_(0.0, 1.0),
}
assert set(OP_FNS) == set(OPS)
_G0 = OPS.index(GEOMETRIC[0])
assert OPS[_G0 : _G0 + len(GEOMETRIC)] == GEOMETRIC


def _as_images(x: Tensor, who: str) -> Tensor:
    """uint8 -> float / 255; anything but a float or uint8 (B, C, H, W) batch is refused in one line."""
    if x.dim() != 4:
        raise ShapeError(f"{who}: expected an image batch (B, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise ConfigError(f"{who}: expected float images in [0, 1] or uint8 levels, got {x.dtype}")
    return x


def apply_op(
    name: str,
    x: Tensor,
    level: Tensor | float,
    sign: Tensor | None = None,
    centre: Tensor | None = None,
    fill: float = 0.0,
) -> Tensor:
    """Apply one named op to every image of ``x`` with per-image ``level`` in [0, 1] (= magnitude / 10).

    ``x`` is float in [0, 1] or uint8 (converted to float / 255; the result is float). ``sign`` (±1,
    default +1) picks the official code's un-negated branch for +1; ``centre`` places cutout.
    """
    if name not in OP_FNS:
        raise ConfigError(f"apply_op: unknown op {name!r}; available: {', '.join(OPS)}")
    x = _as_images(x, f"apply_op({name!r})")
    b = x.shape[0]
    level = torch.as_tensor(level, device=x.device).to(_coef_dtype(x))
    level = level.expand(b) if level.dim() == 0 else level
    sign = torch.ones(b, device=x.device) if sign is None else torch.as_tensor(sign, device=x.device)
    centre = torch.full((b, 2), 0.5, device=x.device) if centre is None else centre.to(x.device)
    if level.shape != (b,) or sign.shape != (b,) or centre.shape != (b, 2):
        raise ShapeError(
            f"apply_op({name!r}): level and sign must be ({b},) and centre ({b}, 2) for {b} images, got "
            f"{tuple(level.shape)}, {tuple(sign.shape)}, {tuple(centre.shape)}"
        )
    return OP_FNS[name](x.clone(), level, sign, centre, fill)  # ops may write their input


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
    owned = x.dtype == torch.uint8  # a converted batch is ours to write in place
    x = _as_images(x, "randaugment")
    if magnitude is not None and not 0 <= magnitude <= 10:
        raise ConfigError(f"randaugment: magnitude must be in 0..10 or None, got {magnitude}")
    b, dev = x.shape[0], x.device
    h, w = x.shape[-2:]
    table = geometry_table(h, w, dev) if h * w <= TABLE_MAX_PIXELS else None
    g0, g1 = _G0, _G0 + len(GEOMETRIC)
    for _ in range(n):
        # per image: op, apply?, magnitude, sign, cutout-op centre (y, x)
        u = torch.rand((6, b), generator=generator, device=dev)
        op = torch.floor(u[0] * len(OPS)).long().clamp_(max=len(OPS) - 1)
        key = torch.where(u[1] < p, op, len(OPS))  # rows that skip this round sort last
        m = 1 + torch.floor(u[2] * 9).clamp_(max=8) if magnitude is None else torch.full_like(u[2], magnitude)
        u[3] = torch.where(u[3] < 0.5, -1.0, 1.0)
        key, order = torch.sort(key, stable=True)
        m, u = m[order].long(), u[:, order]  # sorted by op: each op slices its rows
        sign, centre, level = u[3], u[4:].T, m.to(_coef_dtype(x)) / 10.0
        counts = torch.bincount(key, minlength=len(OPS) + 1).tolist()
        starts = [0, *itertools.accumulate(counts)]
        if starts[len(OPS)] == 0:
            continue
        if not owned:
            x, owned = x.clone(), True  # written in place below: never the caller's tensor
        for k in range(len(OPS)):
            if counts[k] == 0 or (table is not None and g0 <= k < g1):
                continue
            r = slice(starts[k], starts[k + 1])
            idx = order[r]  # small groups: each op's rows stay in cache
            x.index_copy_(0, idx, OP_FNS[OPS[k]](x.index_select(0, idx), level[r], sign[r], centre[r], fill))
        if table is not None and starts[g1] > starts[g0]:  # all geometric rows: one gather
            r = slice(starts[g0], starts[g1])
            source = table[key[r] - g0, (sign[r] > 0).long(), m[r]]
            idx = order[r]
            x.index_copy_(0, idx, _gather_padded(x.index_select(0, idx), source, fill))
    if cutout > 0:
        u = torch.rand((b, 2), generator=generator, device=dev)
        hole = _square_mask(x, torch.full((b,), cutout, device=dev, dtype=torch.long), u)
        grey = x.new_full((1, 1, 1, 1), 0.5).expand_as(x)
        x = x.lerp_(grey, hole) if owned else x.lerp(grey, hole)
        owned = True
    x = x if owned else x.clone()
    return x, lengths
