"""Log-mel features against independent numpy references (no librosa in the test either)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polymodal.signal import log_mel_spectrogram, mel_filterbank


def ref_filterbank(n_fft: int, n_mels: int, sr: float, f_min: float, f_max: float) -> np.ndarray:
    """HTK-mel triangles, one band at a time, written from the definition."""

    def hz2mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def mel2hz(m: float) -> float:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    lo_mel, hi_mel = hz2mel(f_min), hz2mel(f_max)
    step = (hi_mel - lo_mel) / (n_mels + 1)
    hz = [mel2hz(lo_mel + i * step) for i in range(n_mels + 2)]
    freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    fb = np.zeros((n_fft // 2 + 1, n_mels))
    for m in range(n_mels):
        lower, centre, upper = hz[m], hz[m + 1], hz[m + 2]
        for k, f in enumerate(freqs):
            if lower < f <= centre:
                fb[k, m] = (f - lower) / (centre - lower)
            elif centre < f < upper:
                fb[k, m] = (upper - f) / (upper - centre)
    return fb


def ref_log_mel(
    wave: np.ndarray, sr: int, n_fft: int, hop: int, n_mels: int, f_min: float, f_max: float
) -> np.ndarray:
    """Frame the reflect-padded signal, periodic Hann, rfft, power, filterbank, log."""
    padded = np.pad(wave, n_fft // 2, mode="reflect")
    n_frames = 1 + (len(padded) - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([padded[i * hop : i * hop + n_fft] * window for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, n_freqs)
    mel = power @ ref_filterbank(n_fft, n_mels, sr, f_min, f_max)  # (frames, n_mels)
    return np.log(mel + 1e-6).T


@pytest.mark.parametrize(
    ("n_fft", "n_mels", "sr", "f_min", "f_max"),
    [(256, 40, 8000, 0.0, None), (512, 64, 16000, 20.0, 7600.0), (400, 80, 16000, 0.0, None)],
)
def test_filterbank_matches_reference(
    n_fft: int, n_mels: int, sr: int, f_min: float, f_max: float | None
) -> None:
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, sr, f_min, f_max, dtype=torch.float64)
    ref = ref_filterbank(n_fft, n_mels, sr, f_min, sr / 2 if f_max is None else f_max)
    assert fb.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(fb.numpy(), ref, rtol=1e-4, atol=1e-6)
    assert fb.max() <= 1.0 + 1e-9 and fb.min() >= 0.0


def test_filterbank_is_cached_per_dtype() -> None:
    a = mel_filterbank(129, 40, 8000, 0.0, None)
    assert mel_filterbank(129, 40, 8000, 0.0, None) is a
    b = mel_filterbank(129, 40, 8000, 0.0, None, dtype=torch.float64)
    assert b.dtype == torch.float64 and b is not a


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_mel_matches_reference(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(0)
    sr, n_fft, hop, n_mels = 8000, 256, 80, 40
    waves = rng.standard_normal((2, sr)) * np.array([[0.3], [0.01]])
    out = log_mel_spectrogram(torch.tensor(waves, dtype=dtype), sr, n_fft, hop, n_mels, 0.0, None)
    assert out.shape == (2, n_mels, 1 + sr // hop) and out.dtype == dtype
    for b in range(2):
        ref = ref_log_mel(waves[b], sr, n_fft, hop, n_mels, 0.0, sr / 2)
        np.testing.assert_allclose(out[b].double().numpy(), ref, rtol=1e-4, atol=1e-4)


def test_log_mel_single_waveform() -> None:
    wave = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    out = log_mel_spectrogram(wave, 8000, 256, 80, 40)
    assert out.shape == (40, 1 + 1000 // 80)
    torch.testing.assert_close(out, log_mel_spectrogram(wave[None], 8000, 256, 80, 40)[0])


@pytest.mark.parametrize("length", [1, 10, 128, 129, 200, 255])
def test_short_input_does_not_crash(length: int) -> None:
    wave = torch.randn(3, length, generator=torch.Generator().manual_seed(length))
    out = log_mel_spectrogram(wave, 8000, 256, 80, 40, 0.0, None)
    assert out.shape == (3, 40, 1 + length // 80)
    assert torch.isfinite(out).all()


def test_silence_maps_to_log_floor() -> None:
    out = log_mel_spectrogram(torch.zeros(1, 800), 8000, 256, 80, 40)
    torch.testing.assert_close(out, torch.full_like(out, math.log(1e-6)))
