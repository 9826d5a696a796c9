"""Batched audio augmentations on padded waveforms (B, T) and on log-mel features (B, n_mels, N).

Variable-length clips travel as one zero-padded tensor plus ``lengths`` (valid samples or frames
per example; None means all valid). Every op respects those lengths (padding stays padding, signal
statistics come from valid samples only) and is vectorized over the batch, with all randomness
drawn per sample from ``generator`` on ``x.device``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polymodal.augment.registry import AUGMENTATIONS
from polymodal.batch import valid_mask
from polymodal.signal import LOG_EPS, log_mel_spectrogram


def _rand(shape: tuple[int, ...], x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator, device=x.device, dtype=torch.float32)


def _lengths(lengths: Tensor | None, x: Tensor) -> Tensor:
    """Valid lengths along the last axis as int64 on x's device (full length when None)."""
    b, t = x.shape[0], x.shape[-1]
    if lengths is None:
        return torch.full((b,), t, dtype=torch.long, device=x.device)
    if lengths.shape != (b,):
        raise ValueError(f"lengths must have shape ({b},), got {tuple(lengths.shape)}")
    return lengths.to(device=x.device, dtype=torch.long).clamp(0, t)


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    """View a (B,) or (B, T) tensor so it broadcasts against x of shape (B, ..., T)."""
    middle = (1,) * (x.dim() - v.dim())
    return v.reshape(v.shape[:1] + middle + v.shape[1:]) if v.dim() == 2 else v.reshape(-1, *middle)


def _valid_mask(lens: Tensor, x: Tensor) -> Tensor:
    return valid_mask(lens.to(x.device), x.shape[-1])  # (B, T)


@AUGMENTATIONS.register("time_shift")
def time_shift(
    x: Tensor,
    *,
    generator: torch.Generator | None,
    lengths: Tensor | None = None,
    max_shift: float = 0.1,
) -> tuple[Tensor, Tensor | None]:
    """Cyclically roll each clip's valid region by up to ``max_shift`` of its own length.

    Rolling only within [0, length) keeps the padding silent, so a short clip's tail never wraps
    into the padding and the lengths stay true.
    """
    lens = _lengths(lengths, x)
    b, t = x.shape[0], x.shape[-1]
    max_s = torch.floor(lens.float() * max_shift).long()
    k = torch.floor(_rand((b,), x, generator) * (2 * max_s + 1)).long()
    shift = torch.minimum(k, 2 * max_s) - max_s  # uniform integer in [-max_s, max_s]
    idx = torch.arange(t, device=x.device)
    src = torch.remainder(idx - shift[:, None], lens.clamp(min=1)[:, None])  # (B, T)
    out = x.gather(-1, _per_sample(src, x).expand_as(x))
    valid = _per_sample(_valid_mask(lens, x), x)
    return torch.where(valid, out, torch.zeros_like(out)), lengths


@AUGMENTATIONS.register("time_crop")
def time_crop(
    x: Tensor,
    *,
    generator: torch.Generator | None,
    lengths: Tensor | None = None,
    seconds: float = 0.5,
    max_seconds: float | None = None,
    sample_rate: int = 8000,
) -> tuple[Tensor, Tensor | None]:
    """Random fixed-length crops, as speaker systems train (SincNet: 200 ms, x-vectors: 2-4 s).

    Each clip keeps ``seconds`` (or, with ``max_seconds``, a length drawn per clip uniformly in
    [seconds, max_seconds]) of its valid samples from an offset drawn uniformly per clip; a clip
    shorter than its crop is kept whole. ``sample_rate`` is steps per second along the last axis (for
    log-mel frames: frames per second). The output is as wide as the longest possible crop (or the
    input, if narrower) and returns the crops' lengths; nothing waits on the device.
    """
    lo = max(1, int(round(seconds * sample_rate)))
    hi = lo if max_seconds is None else int(round(max_seconds * sample_rate))
    if seconds <= 0 or hi < lo:
        raise ValueError(f"time_crop needs 0 < seconds <= max_seconds, got {seconds}, {max_seconds}")
    lens = _lengths(lengths, x)
    b, t = x.shape[0], x.shape[-1]
    want = lo + torch.floor(_rand((b,), x, generator) * (hi - lo + 1)).long().clamp(max=hi - lo)
    crop = torch.minimum(want, lens)
    room = lens - crop
    offset = torch.minimum(torch.floor(_rand((b,), x, generator) * (room + 1).float()).long(), room)
    width = min(hi, t)
    steps = torch.arange(width, device=x.device)
    src = (offset[:, None] + steps).clamp(max=t - 1)  # (B, width)
    out = x.gather(-1, _per_sample(src, x).expand(*x.shape[:-1], width))
    valid = _per_sample(steps < crop[:, None], out)
    return torch.where(valid, out, torch.zeros_like(out)), crop


@AUGMENTATIONS.register("gain")
def gain(
    x: Tensor,
    *,
    generator: torch.Generator | None,
    lengths: Tensor | None = None,
    min_db: float = -6.0,
    max_db: float = 6.0,
) -> tuple[Tensor, Tensor | None]:
    """Scale each clip by a gain uniform in [min_db, max_db] dB (loudness invariance)."""
    db = min_db + (max_db - min_db) * _rand((x.shape[0],), x, generator)
    factor = torch.pow(10.0, db / 20.0).to(x.dtype)
    return x * _per_sample(factor, x), lengths


@AUGMENTATIONS.register("noise")
def noise(
    x: Tensor,
    *,
    generator: torch.Generator | None,
    lengths: Tensor | None = None,
    min_snr_db: float = 10.0,
    max_snr_db: float = 30.0,
) -> tuple[Tensor, Tensor | None]:
    """Add white Gaussian noise at a per-clip SNR uniform in [min_snr_db, max_snr_db].

    Signal power is measured over valid samples only, so padding neither dilutes the power of a
    short clip nor receives noise.
    """
    lens = _lengths(lengths, x)
    valid = _per_sample(_valid_mask(lens, x), x).expand_as(x)
    per_step = x[0].numel() // max(x.shape[-1], 1)  # channels per time step
    count = (lens * per_step).clamp(min=1).to(torch.float32)
    power = torch.where(valid, x, torch.zeros_like(x)).float().square()
    power = power.reshape(x.shape[0], -1).sum(1) / count
    snr_db = min_snr_db + (max_snr_db - min_snr_db) * _rand((x.shape[0],), x, generator)
    std = torch.sqrt(power / torch.pow(10.0, snr_db / 10.0)).to(x.dtype)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    out = x + torch.where(valid, eps, torch.zeros_like(eps)) * _per_sample(std, x)
    return out, lengths


def _band_mask(starts: Tensor, widths: Tensor, size: int, x: Tensor) -> Tensor:
    """(B, M) starts/widths -> (B, size) bool, True inside any of the M bands."""
    idx = torch.arange(size, device=x.device)
    inside = (idx >= starts[..., None]) & (idx < (starts + widths)[..., None])  # (B, M, size)
    return inside.any(1)


@AUGMENTATIONS.register("spec_augment")
def spec_augment(
    x: Tensor,
    *,
    generator: torch.Generator | None,
    lengths: Tensor | None = None,
    freq_masks: int = 2,
    freq_width: int = 8,
    time_masks: int = 2,
    time_width: int = 10,
    fill: float = 0.0,
) -> tuple[Tensor, Tensor | None]:
    """SpecAugment frequency and time masking on (B, n_mels, frames) features.

    Masks fall inside each example's valid frames only (time widths are clipped to its length), so
    padded frames keep their constant value. ``fill`` 0.0 is the mean of normalized features.
    """
    if x.dim() != 3:
        raise ValueError(f"spec_augment: expected (B, n_mels, frames), got {tuple(x.shape)}")
    b, nf, nt = x.shape
    lens = _lengths(lengths, x)
    fw = min(freq_width, nf)
    f_w = torch.floor(_rand((b, freq_masks), x, generator) * (fw + 1)).long().clamp(max=fw)
    f_0 = torch.floor(_rand((b, freq_masks), x, generator) * (nf - f_w + 1)).long()
    f_0 = torch.minimum(f_0, nf - f_w)
    t_w = torch.floor(_rand((b, time_masks), x, generator) * (time_width + 1)).long()
    t_w = torch.minimum(t_w.clamp(max=time_width), lens[:, None])
    room = lens[:, None] - t_w
    t_0 = torch.minimum(torch.floor(_rand((b, time_masks), x, generator) * (room + 1)).long(), room)
    masked = _band_mask(f_0, f_w, nf, x)[:, :, None] | _band_mask(t_0, t_w, nt, x)[:, None, :]
    masked = masked & _valid_mask(lens, x)[:, None, :]
    return torch.where(masked, torch.full_like(x, fill), x), lengths


@AUGMENTATIONS.register("logmel")
def logmel(
    x: Tensor,
    *,
    generator: torch.Generator | None = None,
    lengths: Tensor | None = None,
    sample_rate: int = 8000,
    n_fft: int = 256,
    hop_length: int = 80,
    n_mels: int = 40,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Waveforms (B, T) -> log-mel (B, n_mels, 1 + T // hop) and frame lengths.

    Deterministic (the generator is unused); kept as an op so a pipeline can end in features.
    Frames past each clip's length are set to log(1e-6), so padding is one constant value.
    Normalization is left to the model/caller.
    """
    if x.dim() != 2:
        raise ValueError(f"logmel: expected waveforms (B, T), got {tuple(x.shape)}")
    feats = log_mel_spectrogram(x, sample_rate, n_fft, hop_length, n_mels, f_min, f_max)
    if lengths is None:
        return feats, None
    frame_lens = 1 + _lengths(lengths, x) // hop_length
    valid = _valid_mask(frame_lens, feats)[:, None, :]
    feats = torch.where(valid, feats, torch.full_like(feats, math.log(LOG_EPS)))
    return feats, frame_lens
