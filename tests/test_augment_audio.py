"""Audio ops: padded batches with lengths, checked against per-example references."""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.augment import AUGMENTATIONS, AugmentOp, Pipeline

LENGTHS = [400, 257, 40, 1, 0]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def padded_waves(lengths: list[int], t: int = 400, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random waveforms, zero past each length, plus the int64 lengths."""
    x = torch.randn(len(lengths), t, generator=gen(seed))
    lens = torch.tensor(lengths, dtype=torch.long)
    x = x * (torch.arange(t) < lens[:, None])
    return x, lens


def op(name: str) -> AugmentOp:
    return AUGMENTATIONS.get(name)


@pytest.mark.parametrize("name", ["time_shift", "gain", "noise"])
def test_waveform_ops_keep_shape_padding_and_lengths(name: str) -> None:
    x, lens = padded_waves(LENGTHS * 4)
    out, out_lens = op(name)(x, generator=gen(0), lengths=lens)
    assert out.shape == x.shape and out.dtype == x.dtype and out_lens is lens
    pad = torch.arange(x.shape[1]) >= lens[:, None]
    assert (out[pad] == 0).all()
    again, _ = op(name)(x, generator=gen(0), lengths=lens)
    assert torch.equal(out, again)
    other, _ = op(name)(x, generator=gen(1), lengths=lens)
    assert not torch.equal(out, other)
    full, none_lens = op(name)(x, generator=gen(0), lengths=None)
    assert full.shape == x.shape and none_lens is None


@pytest.mark.parametrize("max_shift", [0.1, 0.5])
def test_time_shift_is_a_cyclic_shift_of_each_valid_region(max_shift: float) -> None:
    x, lens = padded_waves(LENGTHS * 8)
    out, _ = op("time_shift")(x, generator=gen(3), lengths=lens, max_shift=max_shift)
    shifts = []
    for b, n in enumerate(lens.tolist()):  # reference: which roll of the valid region is it?
        m = int(math.floor(n * max_shift))
        valid = x[b, :n]
        found = [s for s in range(-m, m + 1) if torch.equal(out[b, :n], torch.roll(valid, s))]
        assert found, f"example {b} (length {n}) is not a roll within +-{m}"
        assert (out[b, n:] == 0).all()
        if n == 400:
            shifts.append(found[0])
    assert len(set(shifts)) > 3 and max(abs(s) for s in shifts) > 0.5 * 400 * max_shift


def test_time_shift_zero_is_identity() -> None:
    x, lens = padded_waves(LENGTHS)
    out, _ = op("time_shift")(x, generator=gen(0), lengths=lens, max_shift=0.0)
    assert torch.equal(out, x)


def test_gain_scales_each_clip_by_one_factor_in_range() -> None:
    x, lens = padded_waves([400] * 64)
    out, _ = op("gain")(x, generator=gen(0), lengths=lens, min_db=-6.0, max_db=3.0)
    ratio = out.norm(dim=1) / x.norm(dim=1)
    assert (ratio >= 10 ** (-6 / 20) - 1e-6).all() and (ratio <= 10 ** (3 / 20) + 1e-6).all()
    torch.testing.assert_close(out, x * ratio[:, None])  # one factor per clip
    assert ratio.min() < 0.6 and ratio.max() > 1.3  # the whole range is used
    assert len(ratio.unique()) == 64


def test_noise_snr_is_in_range_on_valid_samples() -> None:
    t = 16000
    lengths = [16000, 12000, 8000, 4000] * 8
    x, lens = padded_waves(lengths, t=t, seed=4)
    x = x * torch.linspace(0.05, 2.0, len(lengths))[:, None]  # clips of very different loudness
    out, _ = op("noise")(x, generator=gen(5), lengths=lens, min_snr_db=10.0, max_snr_db=20.0)
    snrs = []
    for b, n in enumerate(lengths):
        sig, noi = x[b, :n], out[b, :n] - x[b, :n]
        snrs.append(10 * math.log10(sig.square().mean().item() / noi.square().mean().item()))
        assert (out[b, n:] == 0).all()
    assert min(snrs) > 10.0 - 0.5 and max(snrs) < 20.0 + 0.5
    assert max(snrs) - min(snrs) > 5.0  # drawn per clip, not one SNR for the batch


def test_noise_on_silence_stays_silent() -> None:
    out, _ = op("noise")(torch.zeros(2, 100), generator=gen(0), lengths=None)
    assert torch.equal(out, torch.zeros(2, 100))


def test_spec_augment_masks_only_valid_frames_within_bounds() -> None:
    b, nf, nt = 64, 20, 50
    frame_lens = torch.tensor([50, 30, 7, 1, 0, 12, 25, 49] * 8)
    x = torch.ones(b, nf, nt)
    params = {"freq_masks": 2, "freq_width": 5, "time_masks": 3, "time_width": 8, "fill": 0.0}
    out, out_lens = op("spec_augment")(x, generator=gen(0), lengths=frame_lens, **params)
    assert out.shape == x.shape and out_lens is frame_lens
    masked = out == 0
    assert torch.equal(out[~masked], x[~masked])
    for i, n in enumerate(frame_lens.tolist()):
        m = masked[i]
        assert not m[:, n:].any(), "padding frames were masked"
        full_rows = m[:, :n].all(1) if n else torch.zeros(nf, dtype=torch.bool)
        full_cols = m.all(0)[:n]
        if not full_cols.all():  # otherwise every row looks fully masked
            assert int(full_rows.sum()) <= 2 * 5
        assert int(full_cols.sum()) <= 3 * 8
        assert int(m.sum()) <= 2 * 5 * n + 3 * 8 * nf
        assert torch.equal(m[:, :n], full_rows[:, None] | full_cols[None, :])  # bands only
    assert masked.any(2).any(1).float().mean() > 0.5


@pytest.mark.parametrize(("axis", "params"), [(1, {"freq_masks": 1}), (2, {"time_masks": 1})])
def test_spec_augment_single_mask_is_one_contiguous_band(axis: int, params: dict) -> None:
    x = torch.ones(64, 16, 30)
    p = {"freq_masks": 0, "time_masks": 0, "freq_width": 6, "time_width": 6, **params}
    out, _ = op("spec_augment")(x, generator=gen(2), lengths=None, **p)
    band = (out == 0).all(3 - axis)  # rows (axis 1) or columns (axis 2) that are fully masked
    assert torch.equal((out == 0).any(3 - axis), band)
    widths = band.sum(1)
    assert widths.max() <= 6 and len(widths.unique()) > 3
    for row in band:
        idx = row.nonzero().flatten()
        assert len(idx) == 0 or len(idx) == idx.max() - idx.min() + 1


def test_spec_augment_without_masks_is_identity() -> None:
    x = torch.randn(4, 8, 10, generator=gen(0))
    out, _ = op("spec_augment")(x, generator=gen(0), freq_masks=0, time_masks=0)
    assert torch.equal(out, x)


def test_logmel_shape_frame_lengths_and_constant_padding() -> None:
    x, lens = padded_waves([8000, 4000, 79, 0], t=8000)
    feats, frame_lens = op("logmel")(x, generator=gen(0), lengths=lens)
    assert feats.shape == (4, 40, 1 + 8000 // 80)
    assert frame_lens.tolist() == [101, 51, 1, 1]
    floor = math.log(1e-6)
    for b, n in enumerate(frame_lens.tolist()):
        assert (feats[b, :, n:] == floor).all()
        assert (feats[b, :, :n] > floor).any() or lens[b] == 0
    wide, none_lens = op("logmel")(x[:1], generator=None, n_mels=64, hop_length=160)
    assert wide.shape == (1, 64, 51) and none_lens is None


def test_audio_pipeline_wave_to_augmented_features() -> None:
    x, lens = padded_waves([8000, 3000], t=8000)
    pipe = Pipeline(
        [
            {"op": "gain"},
            {"op": "time_shift", "max_shift": 0.2},
            {"op": "noise"},
            {"op": "logmel", "n_mels": 32},
            {"op": "spec_augment", "freq_width": 4, "fill": -1.0},
        ]
    )
    feats, frame_lens = pipe(x, gen(0), lens)
    assert feats.shape == (2, 32, 101) and frame_lens.tolist() == [101, 38]
    assert (feats[1, :, 38:] == math.log(1e-6)).all()
