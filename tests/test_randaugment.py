"""Per-sample RandAugment: every op against a per-pixel reference on single images, per-sample
independence, and determinism for a fixed generator."""

import math

import pytest
import torch

from polymodal.augment import AUGMENTATIONS, Pipeline
from polymodal.augment.randaugment import (
    GEOMETRIC,
    OPS,
    apply_op,
    geometry_source,
    geometry_table,
    randaugment,
)
from polymodal.errors import ConfigError, ShapeError

LEVEL, SIGN, CENTRE = 0.7, -1.0, (0.3, 0.6)


def _q(v: float) -> int:
    return round(min(max(v, 0.0), 1.0) * 255)


def _blend(deg, img, f):
    return [
        [
            [min(max(d + f * (v - d), 0.0), 1.0) for v, d in zip(r, dr, strict=True)]
            for r, dr in zip(ch, dch, strict=True)
        ]
        for ch, dch in zip(img, deg, strict=True)
    ]


def _gray(img):
    if len(img) == 3:
        return [
            [0.299 * a + 0.587 * b + 0.114 * c for a, b, c in zip(*rows, strict=True)]
            for rows in zip(*img, strict=True)
        ]
    return [[sum(v) / len(img) for v in zip(*rows, strict=True)] for rows in zip(*img, strict=True)]


def _equalize_channel(ch):
    """PIL ImageOps.equalize on one band, transcribed."""
    q = [[_q(v) for v in row] for row in ch]
    h = [0] * 256
    for row in q:
        for v in row:
            h[v] += 1
    histo = [c for c in h if c]
    if len(histo) <= 1:
        return ch
    step = (sum(histo) - histo[-1]) // 255
    if not step:
        return ch
    lut, n = [], step // 2
    for i in range(256):
        lut.append(min(n // step, 255))
        n += h[i]
    return [[lut[v] / 255 for v in row] for row in q]


def _warp(img, src_of, fill=0.0):
    """PIL nearest neighbour: output pixel centre (x + ½, y + ½) takes the pixel its source falls in."""
    c, h, w = len(img), len(img[0]), len(img[0][0])
    out = [[[fill] * w for _ in range(h)] for _ in range(c)]
    for y in range(h):
        for x in range(w):
            sx, sy = src_of(x + 0.5, y + 0.5)
            ix, iy = math.floor(sx), math.floor(sy)
            if 0 <= ix < w and 0 <= iy < h:
                for k in range(c):
                    out[k][y][x] = img[k][iy][ix]
    return out


def reference(name, img):
    """The op on one image as nested lists, written independently of the batched code."""
    c, h, w = len(img), len(img[0]), len(img[0][0])
    s, f = LEVEL * SIGN, 0.1 + 1.8 * LEVEL
    m = round(LEVEL * 10)
    if name == "invert":
        return [[[1 - v for v in r] for r in ch] for ch in img]
    if name == "autocontrast":
        out = []
        for ch in img:
            lo, hi = min(map(min, ch)), max(map(max, ch))
            out.append([[(v - lo) / (hi - lo) for v in r] for r in ch])
        return out
    if name == "equalize":
        return [_equalize_channel(ch) for ch in img]
    if name == "posterize":
        mask = (0xFF << (8 - (4 - int(m * 4 / 10)))) & 0xFF
        return [[[(_q(v) & mask) / 255 for v in r] for r in ch] for ch in img]
    if name == "solarize":
        t = 256 - int(m * 256 / 10)
        return [[[1 - v if _q(v) >= t else v for v in r] for r in ch] for ch in img]
    if name == "brightness":
        return _blend([[[0.0] * w for _ in range(h)] for _ in range(c)], img, f)
    if name == "color":
        g = _gray(img)
        return _blend([g] * c, img, f)
    if name == "contrast":
        mean = sum(map(sum, _gray(img))) / (h * w)
        return _blend([[[mean] * w for _ in range(h)] for _ in range(c)], img, f)
    if name == "sharpness":
        deg = [[r[:] for r in ch] for ch in img]
        for k in range(c):
            for y in range(1, h - 1):
                for x in range(1, w - 1):
                    tot = sum(img[k][y + dy][x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
                    deg[k][y][x] = (tot + 4 * img[k][y][x]) / 13
        return _blend(deg, img, f)
    if name == "cutout":
        size = 2 * math.floor(LEVEL * 10 / 32 * min(h, w) + 0.5)  # 2m at 32 px, as the official code
        y0, x0 = math.floor(CENTRE[0] * h) - size // 2, math.floor(CENTRE[1] * w) - size // 2
        return [
            [
                [0.5 if y0 <= y < y0 + size and x0 <= x < x0 + size else v for x, v in enumerate(r)]
                for y, r in enumerate(ch)
            ]
            for ch in img
        ]
    if name == "shear_x":  # PIL AFFINE (1, s, 0, 0, 1, 0): about the top-left corner
        return _warp(img, lambda x, y: (x + 0.3 * s * y, y))
    if name == "shear_y":
        return _warp(img, lambda x, y: (x, y + 0.3 * s * x))
    if name == "translate_x":  # whole pixels, out(x) = in(x + t)
        return _warp(img, lambda x, y: (x + SIGN * math.floor(LEVEL * 10 / 32 * w + 0.5), y))
    if name == "translate_y":
        return _warp(img, lambda x, y: (x, y + SIGN * math.floor(LEVEL * 10 / 32 * h + 0.5)))
    if name == "rotate":  # PIL rotate(deg): counter-clockwise about (w/2, h/2)
        t, cx, cy = s * 30 * math.pi / 180, w / 2, h / 2
        return _warp(
            img,
            lambda x, y: (
                cx + math.cos(t) * (x - cx) - math.sin(t) * (y - cy),
                cy + math.sin(t) * (x - cx) + math.cos(t) * (y - cy),
            ),
        )
    raise AssertionError(name)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name", OPS)
def test_each_op_matches_single_image_reference(name, channels):
    g = torch.Generator().manual_seed(OPS.index(name))
    img = torch.rand(1, channels, 24, 20, generator=g)  # > 255 pixels, else PIL's equalize step is 0
    img[0, 0, :3] = 0.0  # some black rows so posterize/solarize/equalize see varied levels
    out = apply_op(name, img, torch.tensor([LEVEL]), torch.tensor([SIGN]), torch.tensor([CENTRE]))
    ref = torch.tensor(reference(name, img[0].tolist()), dtype=torch.float32)
    assert out.shape == img.shape
    close = torch.isclose(out[0], ref, atol=1e-5)
    if name in ("rotate", "shear_x", "shear_y"):  # float32 vs float64 may round a tie differently
        assert close.float().mean() > 0.98, name
    else:
        assert close.all(), (name, (out[0] - ref).abs().max())
    if name not in ("invert", "autocontrast", "brightness", "contrast"):
        assert not torch.equal(out, img) or name == "color" and channels == 1


def test_ops_are_per_sample_and_no_op_at_zero_shift():
    x = torch.rand(4, 3, 8, 8)
    levels = torch.tensor([0.0, 0.3, 0.6, 0.9])
    out = apply_op("solarize", x, levels)
    for i in range(4):
        assert torch.equal(out[i : i + 1], apply_op("solarize", x[i : i + 1], levels[i : i + 1]))
    assert torch.equal(apply_op("translate_x", x, torch.zeros(4)), x)


def test_per_sample_independence_and_diversity():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 16, 16, generator=g)
    out1, _ = randaugment(x, generator=torch.Generator().manual_seed(5), n=2, cutout=4)
    x2 = x.clone()
    x2[1:] = torch.rand(31, 3, 16, 16, generator=g)
    out2, _ = randaugment(x2, generator=torch.Generator().manual_seed(5), n=2, cutout=4)
    assert torch.equal(out1[0], out2[0])  # row 0 depends only on its own input and draws
    same = x[:1].expand(64, -1, -1, -1).contiguous()
    out, _ = randaugment(same, generator=torch.Generator().manual_seed(1), n=2)
    distinct = {tuple(o.flatten()[::7].tolist()) for o in out}
    assert len(distinct) > 20  # different ops and magnitudes per sample, not one op per batch


def test_fixed_generator_gives_identical_output_and_uint8_is_converted():
    x = (torch.rand(16, 1, 28, 28) * 255).to(torch.uint8)
    a, _ = randaugment(x, generator=torch.Generator().manual_seed(3), n=3, magnitude=9, cutout=8)
    b, _ = randaugment(x, generator=torch.Generator().manual_seed(3), n=3, magnitude=9, cutout=8)
    c, _ = randaugment(x, generator=torch.Generator().manual_seed(4), n=3, magnitude=9, cutout=8)
    assert a.dtype == torch.float32 and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_registered_with_the_op_contract():
    assert "randaugment" in AUGMENTATIONS
    pipe = Pipeline([{"op": "randaugment", "n": 1, "magnitude": 5, "cutout": 6}])
    y, lengths = pipe(torch.rand(4, 1, 28, 28), torch.Generator().manual_seed(0))
    assert y.shape == (4, 1, 28, 28) and lengths is None
    with pytest.raises(ConfigError, match="no parameter 'm'; allowed: n, magnitude, p, cutout, fill"):
        Pipeline([{"op": "randaugment", "m": 5}])
    with pytest.raises(ConfigError, match="magnitude must be in 0..10"):
        pipe = Pipeline([{"op": "randaugment", "magnitude": 11}])
        pipe(torch.rand(2, 1, 8, 8), torch.Generator())


def test_apply_op_converts_uint8_and_refuses_other_inputs_in_one_line():
    x = (torch.rand(2, 3, 8, 8) * 255).to(torch.uint8)
    out = apply_op("invert", x, 0.5)
    assert out.dtype == torch.float32 and torch.equal(out, 1 - x.float() / 255)  # not 255 - x wrapped
    with pytest.raises(
        ConfigError, match=r"^apply_op\('invert'\): expected float images in \[0, 1\] or uint8"
    ):
        apply_op("invert", x.long(), 0.5)
    with pytest.raises(ShapeError, match=r"expected an image batch \(B, C, H, W\), got shape \(3, 8, 8\)"):
        apply_op("invert", x[0].float(), 0.5)
    with pytest.raises(ShapeError, match=r"level and sign must be \(2,\)"):
        apply_op("rotate", x, torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ConfigError, match="unknown op 'blur'; available: invert, cutout"):
        apply_op("blur", x, 0.5)
    with pytest.raises(ShapeError, match="randaugment: expected an image batch"):
        randaugment(torch.rand(8, 8), generator=None)
    y = x.float() / 255
    before = y.clone()
    for name in OPS:  # ops may work in place on their scratch copy, never on the caller's tensor
        apply_op(name, y, 0.7)
    assert torch.equal(y, before)


@pytest.mark.parametrize("shape", [(20, 24), (28, 28), (32, 32)])
def test_cached_geometry_table_is_the_direct_source_map(shape):
    h, w = shape
    table = geometry_table(h, w, torch.device("cpu"))
    level = torch.arange(11, dtype=torch.float64) / 10
    for k, name in enumerate(GEOMETRIC):
        for j, s in enumerate((-1.0, 1.0)):
            assert torch.equal(table[k, j], geometry_source(name, level, torch.full((11,), s), h, w))


def test_fused_geometry_in_randaugment_matches_apply_op():
    """With p = 1 and a fixed magnitude, every output row is one op of apply_op at that magnitude."""
    x = torch.rand(48, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    out, _ = randaugment(x, generator=torch.Generator().manual_seed(0), n=1, magnitude=6, p=1.0, fill=0.25)
    lv = torch.full((48,), 0.6, dtype=torch.float64)
    names = [
        (name, s) for name in OPS if name != "cutout" for s in ((-1.0, 1.0) if name in GEOMETRIC else (1.0,))
    ]
    candidates = torch.stack([apply_op(name, x, lv, torch.full((48,), s), fill=0.25) for name, s in names])
    match = (candidates - out).abs().flatten(2).amax(2) < 1e-6  # (candidates, 48)
    cutout_rows = ((out == 0.5) | (out == x)).flatten(1).all(1)
    assert (match.any(0) | cutout_rows).all()
    geometric = match[[i for i, (name, _) in enumerate(names) if name in GEOMETRIC]].any(0)
    assert match.any(0).sum() > 30 and geometric.sum() > 8  # the fused gather ran on many rows


def test_cached_and_direct_geometry_paths_agree(monkeypatch):
    import polymodal.augment.randaugment as ra

    x = torch.rand(96, 3, 16, 12, generator=torch.Generator().manual_seed(4))
    cached, _ = randaugment(x, generator=torch.Generator().manual_seed(9), n=2, fill=0.3)
    monkeypatch.setattr(ra, "TABLE_MAX_PIXELS", 0)  # per-op geometry_source instead of the table
    direct, _ = randaugment(x, generator=torch.Generator().manual_seed(9), n=2, fill=0.3)
    assert torch.equal(cached, direct)
