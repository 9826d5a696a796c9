"""Pure signal processing in torch (log-mel; later MFCC and sinc filters), batched on the input's device.

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


@functools.lru_cache(maxsize=32)
def _cached_dct(n_mels: int, n_mfcc: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    n = torch.arange(n_mels, dtype=torch.float64)[:, None]  # input (mel band) index
    k = torch.arange(n_mfcc, dtype=torch.float64)[None, :]  # output (cepstral) index
    basis = torch.cos(math.pi / n_mels * (n + 0.5) * k) * math.sqrt(2.0 / n_mels)
    basis[:, 0] *= 1.0 / math.sqrt(2.0)  # the "ortho" scaling of the k = 0 row
    return basis.to(device=device, dtype=dtype)


def dct_matrix(
    n_mels: int,
    n_mfcc: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Orthonormal DCT-II basis, shape (n_mels, n_mfcc): ``coeffs = basis.T @ log_mel``.

    Column k is ``sqrt(2 / N) * cos(pi / N * (n + 1/2) * k)``, with column 0 scaled by ``1 / sqrt(2)``,
    i.e. scipy/librosa ``dct(type=2, norm="ortho")`` and torchaudio ``create_dct(norm="ortho")``; with
    ``n_mfcc == n_mels`` it is an orthogonal matrix. Cached per (params, device, dtype); read-only.
    """
    if not 1 <= n_mfcc <= n_mels:
        raise ValueError(f"need 1 <= n_mfcc <= n_mels, got n_mfcc={n_mfcc}, n_mels={n_mels}")
    dev = torch.device("cpu") if device is None else torch.device(device)
    return _cached_dct(int(n_mels), int(n_mfcc), dev, dtype)


def mfcc(
    x: Tensor,
    n_mfcc: int = 13,
    *,
    from_log_mel: bool = False,
    sample_rate: int = 8000,
    n_fft: int = 256,
    hop_length: int = 80,
    n_mels: int = 40,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> Tensor:
    """MFCCs (B, n_mfcc, frames) (or (n_mfcc, frames)): the orthonormal DCT-II of the log-mel.

    ``x`` is a waveform batch (B, T) / (T,) passed through `log_mel_spectrogram` with the keyword
    options, or, with ``from_log_mel=True``, an existing log-mel (..., n_mels, frames). As in Davis &
    Mermelstein (1980), the DCT decorrelates the overlapping mel bands. The log is natural (librosa and
    torchaudio use 10 * log10 dB, which scales every coefficient by 10 / ln 10; no liftering).
    """
    if from_log_mel:
        if x.dim() < 2:
            raise ValueError(f"expected a log-mel (..., n_mels, frames), got shape {tuple(x.shape)}")
        log_mel = x if x.is_floating_point() else x.float()
    else:
        log_mel = log_mel_spectrogram(x, sample_rate, n_fft, hop_length, n_mels, f_min, f_max)
    basis = dct_matrix(log_mel.shape[-2], n_mfcc, device=log_mel.device, dtype=log_mel.dtype)
    return torch.matmul(basis.T, log_mel)
