"""Log-mel features in pure torch, so audio feature extraction runs batched on the batch's device.

No torchaudio or librosa: one fewer heavy dependency, and the maths is small enough to test against
an independent numpy reference. The filterbank follows librosa's ``htk=True, norm=None`` semantics.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_EPS = 1e-6
"""Added before the log so silence (and padding) maps to a finite floor, log(1e-6)."""


def _hz_to_mel(f: float) -> float:
    return 2595.0 * math.log10(1.0 + f / 700.0)


def _mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=32)
def _cached_filterbank(
    n_freqs: int,
    n_mels: int,
    sample_rate: int,
    f_min: float,
    f_max: float,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    # Built in float64 on the CPU (tiny), then moved once; the cache makes later calls free.
    mel_pts = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    hz_pts = _mel_to_hz(mel_pts)  # (n_mels + 2,)
    fft_freqs = torch.linspace(0.0, sample_rate / 2.0, n_freqs, dtype=torch.float64)
    fdiff = hz_pts[1:] - hz_pts[:-1]  # (n_mels + 1,)
    ramps = hz_pts[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]  # rising edge of each triangle
    upper = ramps[2:] / fdiff[1:, None]  # falling edge
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)  # (n_mels, n_freqs)
    return weights.T.contiguous().to(device=device, dtype=dtype)


def mel_filterbank(
    n_freqs: int,
    n_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """HTK-mel triangular filters, shape (n_freqs, n_mels), unnormalized (peak 1).

    The result is cached per (params, device, dtype); treat it as read-only.
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    dev = torch.device("cpu") if device is None else torch.device(device)
    return _cached_filterbank(int(n_freqs), int(n_mels), int(sample_rate), float(f_min), f_max, dev, dtype)


def log_mel_spectrogram(
    wave: Tensor,
    sample_rate: int = 8000,
    n_fft: int = 256,
    hop_length: int = 80,
    n_mels: int = 40,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> Tensor:
    """Waveforms (B, T) (or (T,)) -> log-mel (B, n_mels, 1 + T // hop_length).

    Centered frames with reflect padding (as torch/librosa defaults), except that inputs too short
    to reflect (T <= n_fft // 2) are zero-padded instead so a tiny clip never crashes.
    """
    squeeze = wave.dim() == 1
    x = wave.unsqueeze(0) if squeeze else wave
    if x.dim() != 2:
        raise ValueError(f"expected a waveform batch (B, T), got shape {tuple(wave.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # stft has no half/int kernels on every device
    pad = n_fft // 2
    mode = "reflect" if x.shape[-1] > pad else "constant"
    # Padding by hand (then center=False) is identical to center=True and lets us pick the mode.
    x = F.pad(x.unsqueeze(1), (pad, pad), mode=mode).squeeze(1)
    window = torch.hann_window(n_fft, periodic=True, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop_length, window=window, center=False, return_complex=True)
    power = spec.real.square() + spec.imag.square()  # (B, n_freqs, frames)
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, f_min, f_max, device=x.device, dtype=x.dtype)
    mel = torch.matmul(fb.T, power)  # (B, n_mels, frames)
    out = torch.log(mel + LOG_EPS)
    return out.squeeze(0) if squeeze else out
