"""Image ops: contract (shape, dtype, determinism, per-sample draws) and exact behaviour."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polymodal.augment import AUGMENTATIONS, Pipeline
from polymodal.errors import ConfigError

IMAGE_OPS = ["crop", "flip", "cutout", "affine"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 8, c: int = 3, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=gen(seed))


def apply(name: str, x: torch.Tensor, seed: int = 0, **params: object) -> torch.Tensor:
    out, lengths = AUGMENTATIONS.get(name)(x, generator=gen(seed), lengths=None, **params)
    assert lengths is None
    return out


@pytest.mark.parametrize("name", IMAGE_OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_lengths_kept(name: str, dtype: torch.dtype) -> None:
    x = images().to(dtype)
    lengths = torch.arange(8)
    out, out_lengths = AUGMENTATIONS.get(name)(x, generator=gen(0), lengths=lengths)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert out_lengths is lengths


@pytest.mark.parametrize("name", IMAGE_OPS)
def test_deterministic_per_seed(name: str) -> None:
    x = images(b=16)
    torch.testing.assert_close(apply(name, x, seed=3), apply(name, x, seed=3), rtol=0, atol=0)
    assert not torch.equal(apply(name, x, seed=3), apply(name, x, seed=4))


@pytest.mark.parametrize(("name", "min_distinct"), [("crop", 10), ("cutout", 20), ("affine", 60)])
def test_draws_are_per_sample(name: str, min_distinct: int) -> None:
    x = images(b=1, c=1, h=16, w=16).expand(64, -1, -1, -1).contiguous()
    out = apply(name, x, seed=1)
    assert len(torch.unique(out.flatten(1), dim=0)) >= min_distinct


def test_flip_per_sample_and_extremes() -> None:
    x = images(b=64)
    out = apply("flip", x, seed=0, p=0.5)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped ^ kept).all() and 10 < int(flipped.sum()) < 54
    torch.testing.assert_close(apply("flip", x, p=1.0), torch.flip(x, [-1]), rtol=0, atol=0)
    torch.testing.assert_close(apply("flip", x, p=0.0), x, rtol=0, atol=0)


@pytest.mark.parametrize("pad", [1, 2, 4])
def test_crop_is_an_integer_shift_of_the_padded_image(pad: int) -> None:
    x = images(b=64, c=2, h=9, w=7)
    h, w = x.shape[-2:]
    out = apply("crop", x, seed=5, pad=pad)
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = set()
    for b in range(x.shape[0]):  # reference: find the one window of the padded image it equals
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[b], padded[b, :, dy : dy + h, dx : dx + w])
        ]
        assert len(matches) == 1, f"sample {b} is not a single shift: {matches}"
        offsets.add(matches[0])
    assert len(offsets) >= min(10, (2 * pad + 1) ** 2 - 2)  # shifts vary across the batch
    assert {dy for dy, _ in offsets} >= {0, 2 * pad}  # both extremes of the range are reached


def test_crop_pad_zero_is_identity() -> None:
    x = images()
    torch.testing.assert_close(apply("crop", x, pad=0), x, rtol=0, atol=0)


@pytest.mark.parametrize("size", [1, 3, 4])
def test_cutout_fills_one_square(size: int) -> None:
    h, w = 16, 14
    x = torch.zeros(200, 2, h, w)
    out = apply("cutout", x, seed=2, size=size, fill=0.5)
    assert set(out.unique().tolist()) <= {0.0, 0.5}
    hole = out == 0.5
    assert torch.equal(hole[:, 0], hole[:, 1])  # the same hole in every channel
    unclipped = 0
    for b in range(out.shape[0]):
        rows = hole[b, 0].any(1).nonzero().flatten()
        cols = hole[b, 0].any(0).nonzero().flatten()
        assert 1 <= len(rows) <= size and 1 <= len(cols) <= size
        # a full rectangle: every pixel in the row/col span is filled, nothing outside it
        span = torch.zeros(h, w, dtype=torch.bool)
        span[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        assert torch.equal(hole[b, 0], span)
        assert len(rows) == rows.max() - rows.min() + 1
        if len(rows) < size or len(cols) < size:  # clipped: must touch a border
            assert rows.min() == 0 or rows.max() == h - 1 or cols.min() == 0 or cols.max() == w - 1
        else:
            unclipped += 1
    assert unclipped > 100


def test_cutout_keeps_pixels_outside_the_hole() -> None:
    x = images(b=32)
    out = apply("cutout", x, size=5, fill=0.25)
    changed = out != x
    assert torch.equal(out[changed], torch.full_like(out[changed], 0.25))
    assert (changed.flatten(1).sum(1) <= 5 * 5 * 3).all()


@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (3, 3, 12, 20)])
def test_affine_with_zero_ranges_is_identity(shape: tuple[int, int, int, int]) -> None:
    x = torch.rand(shape, generator=gen(0))
    out = apply("affine", x, degrees=0.0, translate=0.0, scale=0.0, shear=0.0)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-5)


def test_affine_moves_pixels_and_stays_in_range() -> None:
    x = images(b=16, h=20, w=20)
    out = apply("affine", x, degrees=30.0, translate=0.2, scale=0.2, shear=10.0)
    assert (out - x).abs().amax(dim=(1, 2, 3)).min() > 1e-3
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6


def _moments(img: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mass, centre of mass (y, x) and variances (y, x) of (B, 1, H, W) images, per sample."""
    h, w = img.shape[-2:]
    m = img[:, 0]
    ys = torch.arange(h, dtype=img.dtype)[None, :, None]
    xs = torch.arange(w, dtype=img.dtype)[None, None, :]
    mass = m.sum((1, 2))
    cy, cx = (m * ys).sum((1, 2)) / mass, (m * xs).sum((1, 2)) / mass
    vy = (m * (ys - cy[:, None, None]) ** 2).sum((1, 2)) / mass
    vx = (m * (xs - cx[:, None, None]) ** 2).sum((1, 2)) / mass
    return mass, cy, cx, vy, vx


def _blob(b: int, h: int, w: int, sigma: float) -> torch.Tensor:
    """A round Gaussian blob centred on the image (pixel centres at 0.5 + index)."""
    ys = torch.arange(h, dtype=torch.float64)[:, None] - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float64)[None, :] - (w - 1) / 2
    g = torch.exp(-(ys**2 + xs**2) / (2 * sigma**2))
    return g.expand(b, 1, h, w).contiguous()


def test_affine_translation_is_in_pixels_of_each_axis() -> None:
    h, w, t = 24, 40, 0.1
    x = _blob(64, h, w, 1.5)
    out = apply("affine", x, degrees=0.0, translate=t, scale=0.0, shear=0.0)
    mass, cy, cx, _, _ = _moments(out)
    torch.testing.assert_close(mass, _moments(x)[0], rtol=1e-3, atol=0)
    dy, dx = cy - (h - 1) / 2, cx - (w - 1) / 2
    assert dy.abs().max() <= t * h + 1e-3 and dx.abs().max() <= t * w + 1e-3
    assert dy.abs().max() > 0.7 * t * h and dx.abs().max() > 0.7 * t * w  # range is used


def test_affine_rotation_keeps_round_blobs_round_on_non_square_images() -> None:
    h, w = 16, 40
    x = _blob(16, h, w, 2.0)
    out = apply("affine", x, degrees=45.0, translate=0.0, scale=0.0, shear=0.0)
    mass, cy, cx, vy, vx = _moments(out)
    torch.testing.assert_close(mass, _moments(x)[0], rtol=1e-2, atol=0)
    torch.testing.assert_close(cy, torch.full_like(cy, (h - 1) / 2), rtol=0, atol=1e-3)
    torch.testing.assert_close(cx, torch.full_like(cx, (w - 1) / 2), rtol=0, atol=1e-3)
    torch.testing.assert_close(vy, vx, rtol=0.05, atol=0)


def test_pipeline_chains_ops_and_converts_uint8() -> None:
    x8 = (images(b=4) * 255).round().to(torch.uint8)
    pipe = Pipeline([{"op": "flip", "p": 1.0}, {"op": "crop", "pad": 0}])
    out, lengths = pipe(x8, gen(0))
    assert out.dtype == torch.float32 and lengths is None and len(pipe) == 2
    torch.testing.assert_close(out, x8.float().flip(-1) / 255.0)
    assert "flip" in repr(pipe)
    same, _ = Pipeline([])(images(), gen(0))
    torch.testing.assert_close(same, images())


def test_pipeline_matches_ops_applied_by_hand() -> None:
    x = images()
    out, _ = Pipeline([{"op": "crop", "pad": 3}, {"op": "cutout", "size": 4}])(x, gen(9))
    g = gen(9)
    ref, _ = AUGMENTATIONS.get("crop")(x, generator=g, pad=3)
    ref, _ = AUGMENTATIONS.get("cutout")(ref, generator=g, size=4)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_pipeline_rejects_unknown_op() -> None:
    with pytest.raises(ConfigError, match=r"unknown augmentation 'rotate'.*crop.*cutout"):
        Pipeline([{"op": "rotate"}])


def test_pipeline_rejects_unknown_param() -> None:
    with pytest.raises(ConfigError, match=r"'crop' has no parameter 'padding'; allowed: pad"):
        Pipeline([{"op": "crop", "padding": 2}])
    with pytest.raises(ConfigError, match=r"'cutout'.*'generator'.*size, fill"):
        Pipeline([{"op": "cutout", "generator": None}])


def test_pipeline_rejects_spec_without_op() -> None:
    with pytest.raises(ConfigError, match="'op' key"):
        Pipeline([{"pad": 2}])
