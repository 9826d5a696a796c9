"""Every per-sample RandAugment op against Pillow, called the way the official UDA code calls it.

Reference: google-research/uda, ``image/randaugment/augmentation_transforms.py`` (the AutoAugment
transforms that ``policies.randaug_policies`` draws from). There an image goes through ``pil_wrap``
(``Image.fromarray(uint8 levels).convert('RGBA')``), each op is one PIL call at an integer magnitude
``m`` of 10 (``int_parameter``/``float_parameter``: ``int(m·max/10)``, ``m·max/10``), the sign of a
geometric op is a coin flip (fixed here, both ways), and ``pil_unwrap`` reads the RGB bands back,
setting pixels whose alpha is 0 (outside the source image, or cut out) to the normalised zero, the
mean. ``official_call`` restates those calls; ``fill`` (0.5, level 128) stands for that mean.

Images: 16 real MNIST test digits (1×28×28, fed to PIL as grey RGB; every PIL band must match the one
channel) and 16 deterministic colour 32×32 images (MNIST digits composited in a tint over smooth
seeded colour backgrounds: half with Gaussian noise of σ = 6 levels, so that a channel's top level
holds ≤ 4 pixels, half flat and partly saturated).

Agreement is in 0..255 levels, ours rounded to the nearest level: ``TOLERANCE`` per op (1 level for
the five enhance-like ops, exact for the rest). The enhance ops keep a float blend where PIL
truncates to uint8 and rounds its grey / mean degenerate. Geometry compares the source pixel itself:
ours uses Pillow's 16.16 fixed-point arithmetic, so exact ties (a source coordinate on a pixel edge:
shear m = 4 at row 12, on both image sizes) fall the same way and no pixel is exempt: a tie that
fell differently would count as a mismatch. There are none (``test_exact_ties_fall_as_in_pil``).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from polymodal.augment.randaugment import GEOMETRIC, OPS, apply_op, translate_pixels
from polymodal.data.mnist import read_idx

MAGNITUDES = (0, 1, 3, 4, 5, 7, 9, 10)
TOLERANCE = {"autocontrast": 1, "brightness": 1, "color": 1, "contrast": 1, "sharpness": 1}
"""Largest allowed |ours − PIL| in levels; every op not listed must match exactly. PIL truncates its
blend (and autocontrast's LUT) to uint8 where ours is rounded, and its grey / mean / SMOOTH degenerate
is rounded (≤ ½ level, times |1 − factor| ≤ 0.9): ours − PIL is then 0 or 1."""
FILL = 0.5
ENHANCE = {
    "color": ImageEnhance.Color,
    "contrast": ImageEnhance.Contrast,
    "brightness": ImageEnhance.Brightness,
    "sharpness": ImageEnhance.Sharpness,
}


def rgb_op(fn):
    """The official wrapping of an ImageOps call: RGBA -> RGB -> op -> RGBA (alpha back to 255)."""
    return lambda im, *args: fn(im.convert("RGB"), *args).convert("RGBA")


def official_call(name: str, im: Image.Image, m: int, sign: int = 1, loc: tuple[int, int] = (0, 0)):
    """One op on an RGBA image as augmentation_transforms.py calls PIL, magnitude ``m`` in 0..10.

    ``sign`` is the official coin flip (−1: the negated branch). Translate and cutout sizes follow the
    official ``int(10m/10)`` / ``int(20m/10)`` at 32 px and our documented scaling to other sides.
    ``loc`` = (row, column) of the cutout centre, the official ``create_cutout_mask`` draw.
    """
    w, h = im.size
    if name == "invert":
        return rgb_op(ImageOps.invert)(im)
    if name == "autocontrast":
        return rgb_op(ImageOps.autocontrast)(im)
    if name == "equalize":
        return rgb_op(ImageOps.equalize)(im)
    if name == "posterize":
        bits = 4 - int(m * 4 / 10)
        if bits == 0:  # m = 10, beyond the policy's 1..9: Pillow ≥ 11 refuses 0 bits; older ones gave 0
            return rgb_op(lambda rgb: rgb.point(lambda v: 0))(im)
        return rgb_op(ImageOps.posterize)(im, bits)
    if name == "solarize":
        return rgb_op(ImageOps.solarize)(im, 256 - int(m * 256 / 10))
    if name in ENHANCE:
        return ENHANCE[name](im).enhance(float(m) * 1.8 / 10 + 0.1)
    if name == "rotate":
        return im.rotate(sign * int(m * 30 / 10))
    if name in ("shear_x", "shear_y"):
        s = sign * float(m) * 0.3 / 10
        matrix = (1, s, 0, 0, 1, 0) if name == "shear_x" else (1, 0, 0, s, 1, 0)
        return im.transform((w, h), Image.Transform.AFFINE, matrix)
    if name in ("translate_x", "translate_y"):
        t = sign * shift(m, w if name == "translate_x" else h)
        matrix = (1, 0, t, 0, 1, 0) if name == "translate_x" else (1, 0, 0, 0, 1, t)
        return im.transform((w, h), Image.Transform.AFFINE, matrix)
    if name == "cutout":
        size = 2 * shift(m, min(w, h))  # int(20m/10) = 2m at 32 px
        if size <= 0:
            return im
        im = im.copy()
        # create_cutout_mask's square; the official loop writes pixels[i, j] with i over its "height"
        # range, i.e. PIL's x: so its height_loc is our column.
        lo = (max(0, loc[1] - size // 2), max(0, loc[0] - size // 2))
        hi = (min(w, loc[1] + size // 2), min(h, loc[0] + size // 2))
        px = im.load()
        for i in range(lo[0], hi[0]):
            for j in range(lo[1], hi[1]):
                px[i, j] = (125, 122, 113, 0)
        return im
    raise AssertionError(name)


def shift(m: int, side: int) -> int:
    """Whole pixels at magnitude m: the official int(10m/10) at 32 px, scaled as the randaugment
    docstring says for other sides (plain Python: the benchmark times it inside the PIL loop)."""
    return math.floor(m / 10 * (10 / 32) * side + 0.5 + 1e-6)


def wrap(levels: np.ndarray) -> Image.Image:
    """pil_wrap with mean 0, std 1: (C, H, W) uint8 levels (C = 1 or 3) -> RGBA."""
    rgb = np.repeat(levels, 3, 0) if levels.shape[0] == 1 else levels
    return Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0))).convert("RGBA")


def unwrap(im: Image.Image, fill_level: int = round(255 * FILL)) -> np.ndarray:
    """pil_unwrap: RGB levels (3, H, W) as int, alpha-0 pixels set to the fill."""
    a = np.asarray(im).astype(np.int64)
    rgb = a[..., :3].copy()
    rgb[a[..., 3] == 0] = fill_level
    return rgb.transpose(2, 0, 1)


@pytest.fixture(scope="module")
def digits(data_root) -> np.ndarray:
    """The first 64 MNIST test digits, uint8 (64, 28, 28)."""
    return read_idx(data_root / "mnist" / "t10k-images-idx3-ubyte.gz", 2051)[:64].copy()


def colour_images(digits: np.ndarray, n: int = 16, seed: int = 0) -> np.ndarray:
    """(n, 3, 32, 32) uint8: a tinted MNIST digit over a smooth seeded colour background.

    Even images get noise of σ = 6 levels (a channel's top level then holds a few pixels: the equalize case
    that tells // 255 from // 256); odd ones are flat and partly saturated (many pixels at 0 / 255).
    """
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    out = np.empty((n, 3, 32, 32), np.uint8)
    for i in range(n):
        c = g.uniform(0, 255, (4, 3, 1, 1))  # corner colours, bilinear in between
        bg = c[0] * (1 - xx) * (1 - yy) + c[1] * xx * (1 - yy) + c[2] * (1 - xx) * yy + c[3] * xx * yy
        freq, phase = g.uniform(0.5, 2.0, 2), g.uniform(0, 2 * np.pi, (3, 1, 1))
        bg = bg + 40 * np.sin(2 * np.pi * (freq[0] * xx + freq[1] * yy) + phase)
        alpha = np.pad(digits[(7 * i) % len(digits)], 2) / 255.0
        tint = g.uniform(0, 255, (3, 1, 1)) if i % 2 == 0 else g.choice([0.0, 255.0], (3, 1, 1))
        img = bg * (1 - alpha) + tint * alpha
        img = img + g.normal(0, 6, img.shape) if i % 2 == 0 else 1.3 * img - 30
        out[i] = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def image_sets(digits) -> dict[str, np.ndarray]:
    return {"mnist": digits[:16, None], "colour": colour_images(digits)}


def compare(name: str, levels: np.ndarray, m: int, sign: int) -> tuple[int, float]:
    """(max |ours − PIL| in levels, fraction of values that differ) over a batch of uint8 images."""
    b, c, h, w = levels.shape
    g = torch.Generator().manual_seed(m)
    centre = torch.rand(b, 2, generator=g)
    x = torch.from_numpy(np.ascontiguousarray(levels)).float() / 255
    out = apply_op(
        name, x, torch.full((b,), m / 10, dtype=torch.float64), torch.full((b,), float(sign)), centre, FILL
    )
    ours = (out * 255).round().long().numpy()
    loc = (centre * torch.tensor([h, w])).floor().long().tolist()
    ref = np.stack(
        [unwrap(official_call(name, wrap(img), m, sign, tuple(loc[i]))) for i, img in enumerate(levels)]
    )
    diff = np.abs(ref - ours)  # ours (b, 1, H, W) broadcasts against all three PIL bands of a grey image
    return int(diff.max()), float((diff > 0).mean())


def cases(name: str):
    """(magnitude, sign) pairs compared for an op: both coin-flip branches for the geometric ones."""
    return [(m, sign) for m in MAGNITUDES for sign in ((1, -1) if name in GEOMETRIC else (1,))]


def agreement(name: str, image_sets) -> dict[tuple[str, int, int], tuple[int, float]]:
    """(image set, magnitude, sign) -> (max level difference, fraction of values differing)."""
    return {
        (kind, m, sign): compare(name, levels, m, sign)
        for kind, levels in image_sets.items()
        for m, sign in cases(name)
    }


def test_colour_images_exercise_the_colour_ops(image_sets):
    imgs = image_sets["colour"].reshape(16, 3, -1).astype(np.int64)
    top = imgs.max(2, keepdims=True)
    top_count = (imgs == top).sum(2)
    assert (top_count <= 4).sum() >= 12  # channels where PIL's // 255 and a // 256 step disagree
    assert ((1024 - top_count) // 255 != (1024 - top_count) // 256).any()
    assert (np.ptp(imgs, 1) > 60).mean() > 0.5  # channels really differ: colour, not grey
    assert (top_count > 50).any() and (imgs.min(2) == 0).any()  # saturated regions too


@pytest.mark.parametrize("name", OPS)
def test_op_matches_official_pil_call(name, image_sets):
    tol = TOLERANCE.get(name, 0)
    bad = {k: v for k, v in agreement(name, image_sets).items() if v[0] > tol}
    assert not bad, f"{name}: (images, magnitude, sign) -> (max level diff, fraction differing): {bad}"


def test_exact_ties_fall_as_in_pil():
    """Shear m = 4 (s = ±0.12): at row 12 the exact source x + ½ ± 0.12·12.5 = x + 2 (x − 1) lies on a
    pixel edge. For s = +0.12 Pillow's fixed point (FIX(0.12) = 7864 < 7864.32) reads x + 1, not x + 2."""
    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (3, 32, 1))  # column j holds 8·j
    for sign, shift_read in ((1, 1), (-1, -1)):
        x = torch.from_numpy(ramp[None]).float() / 255
        row = (apply_op("shear_x", x, 0.4, torch.tensor([float(sign)]))[0, 0, 12] * 255).round().long()
        pil = unwrap(official_call("shear_x", wrap(ramp), 4, sign), fill_level=0)[0, 12]
        assert row.tolist() == pil.tolist()
        cols = torch.arange(32) + shift_read
        inside = (cols >= 0) & (cols < 32)
        assert torch.equal(row[inside], 8 * cols[inside]) and (row[~inside] == 0).all()


@pytest.mark.parametrize("side", [16, 20, 28, 32, 33, 64, 224])
def test_translate_shift_is_whole_pixels_scaled_to_the_side(side):
    ours = translate_pixels(torch.arange(11, dtype=torch.float64) / 10, side).tolist()
    ours32 = translate_pixels(torch.arange(11, dtype=torch.float32) / 10, side).tolist()
    assert ours == ours32 == [shift(m, side) for m in range(11)]
    if side == 32:
        assert ours == [int(m * 10 / 10) for m in range(11)]  # the official int_parameter(m, 10)
    if side == 28:
        assert ours == [0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9]  # 3.5 -> 4: halves round up, m = 1 moves


def test_geometry_moves_pixels_from_magnitude_1():
    """Shear about the top-left corner moves pixels even at magnitude 1 (about the centre nothing moves)."""
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in GEOMETRIC:
        assert not torch.equal(apply_op(name, x, torch.tensor([0.1], dtype=torch.float64)), x), name


if __name__ == "__main__":  # the agreement table: python tests/test_randaugment_pil.py
    from pathlib import Path

    root = Path(os.environ.get("POLYMODAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    digits = read_idx(root / "mnist" / "t10k-images-idx3-ubyte.gz", 2051)
    sets = {"mnist": digits[:16, None], "colour": colour_images(digits[:64].copy())}
    print("op | images | " + " | ".join(f"m={m}" for m in MAGNITUDES))
    for name in OPS:
        res = agreement(name, sets)
        for kind in sets:
            cells = [max(res[kind, m, sg][0] for sg in (1, -1) if (kind, m, sg) in res) for m in MAGNITUDES]
            print(f"{name} | {kind} | " + " | ".join(map(str, cells)))
