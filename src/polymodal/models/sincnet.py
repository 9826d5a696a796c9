"""`sincnet`: SincNet (Ravanelli & Bengio 2018, arXiv:1808.00158) over raw, right-padded waveforms.

The first layer is a bank of band-pass filters, each a difference of two windowed sinc low-passes,
whose only parameters are a low cut-off and a band width in Hz (2 numbers per filter instead of a
free kernel): the layer is interpretable, converges faster and generalises better on few data. The
semantics follow the official ``SincConv_fast`` (github:mravanelli/SincNet, ``dnn_models.py``) and the
TIMIT config: 80 sinc filters, |.|, max-pool 3, layer norm, leaky ReLU (slope 0.2), then two (60 x 5
conv, max-pool 3, layer norm, leaky ReLU) blocks, all unpadded ("valid") as in the official code.

Padded batches: every conv and pool is unpadded, so an output frame depends only on the samples under
it, and valid lengths are tracked exactly through each layer (a frame is valid when every sample it
reads is). The statistics of each layer norm use valid frames only, padded frames are re-zeroed after
every block and the final mean covers valid frames only, so padding never changes an example's output
(layer norm has no batch statistics, so this holds in train mode too; dropout aside). A clip shorter
than `SincFrontEnd.min_samples` is treated as zero-extended (silence) up to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.batch import valid_mask
from polymodal.errors import ConfigError, ShapeError
from polymodal.models.base import Encoder
from polymodal.models.registry import ENCODERS

DEFAULT_KERNEL_MS = 251 / 16.0
"""The official 251 taps at 16 kHz (15.6875 ms); at other rates the kernel keeps this duration."""

LEAKY_SLOPE = 0.2  # the official ``act_fun("leaky_relu")``
NORM_EPS = 1e-6  # the official LayerNorm: (x - mean) / (std + eps)


def sinc_kernel_size(sample_rate: int, kernel_size: int | None = None, kernel_ms: float | None = None) -> int:
    """Odd sinc-filter length in taps: ``kernel_size`` taps, or ``kernel_ms`` (default 251 taps at 16 kHz)
    at ``sample_rate``; an even length is bumped by one so the filter is exactly symmetric (as the
    official code does), e.g. 251 at 16 kHz, 127 at 8 kHz."""
    if kernel_size is not None and kernel_ms is not None:
        raise ConfigError("give the sinc kernel in samples (kernel_size) or in ms (kernel_ms), not both")
    if kernel_size is None:
        ms = DEFAULT_KERNEL_MS if kernel_ms is None else float(kernel_ms)
        if ms <= 0:
            raise ConfigError(f"sinc kernel_ms must be > 0, got {ms}")
        kernel_size = int(math.floor(ms * sample_rate / 1000.0 + 0.5))
    kernel_size = int(kernel_size)
    if kernel_size < 1:
        raise ConfigError(f"sinc kernel_size must be >= 1, got {kernel_size}")
    return kernel_size + 1 if kernel_size % 2 == 0 else kernel_size


def _to_mel(hz: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _to_hz(mel: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


class SincConv(nn.Module):
    """Learnable band-pass sinc filters on one-channel waveforms (B, 1, T) -> (B, out_channels, T').

    Each filter's band is ``low = min_low_hz + |low_hz_|`` and ``high = clamp(low + min_band_hz +
    |band_hz_|, min_low_hz, sr/2)``; at initialisation the bands tile [30 Hz, sr/2 - (min_low_hz +
    min_band_hz)] uniformly on the mel scale. One deviation from the official code: ``low`` is also
    capped at ``sr/2 - min_band_hz``, since otherwise a low cut-off pushed past that point gives a band
    narrower than ``min_band_hz`` (or negative, and a division by zero). Only the left half of each
    (symmetric) kernel is computed, then mirrored around its centre tap, which is normalised to 1. The
    window is a standard symmetric Hamming window (the official code samples its half-window on a
    slightly stretched grid: it differs by < 1.1e-4 at 127 taps, < 3e-5 at 251).
    """

    def __init__(
        self,
        out_channels: int = 80,
        kernel_size: int | None = None,
        sample_rate: int = 16000,
        *,
        kernel_ms: float | None = None,
        stride: int = 1,
        min_low_hz: float = 50.0,
        min_band_hz: float = 50.0,
        init_low_hz: float = 30.0,
    ) -> None:
        super().__init__()
        if out_channels < 1 or stride < 1 or sample_rate <= 0:
            raise ConfigError(
                f"sinc conv needs out_channels, stride >= 1 and sample_rate > 0, got {out_channels}, "
                f"{stride}, {sample_rate}"
            )
        if min_low_hz < 0 or min_band_hz <= 0:
            raise ConfigError(f"need min_low_hz >= 0 and min_band_hz > 0, got {min_low_hz}, {min_band_hz}")
        init_high_hz = sample_rate / 2.0 - (min_low_hz + min_band_hz)
        if not 0 <= init_low_hz < init_high_hz:
            raise ConfigError(
                f"sample_rate {sample_rate} leaves no band above {init_low_hz} Hz once min_low_hz "
                f"+ min_band_hz = {min_low_hz + min_band_hz} Hz are reserved below Nyquist"
            )
        self.out_channels = out_channels
        self.kernel_size = sinc_kernel_size(sample_rate, kernel_size, kernel_ms)
        self.sample_rate = sample_rate
        self.stride = stride
        self.min_low_hz = float(min_low_hz)
        self.min_band_hz = float(min_band_hz)

        edges = torch.tensor([init_low_hz, init_high_hz], dtype=torch.float64)
        hz = _to_hz(torch.linspace(*_to_mel(edges).tolist(), out_channels + 1, dtype=torch.float64))
        self.low_hz_ = nn.Parameter(hz[:-1].float().view(-1, 1))
        self.band_hz_ = nn.Parameter(hz.diff().float().view(-1, 1))

        half = (self.kernel_size - 1) // 2
        window = torch.hamming_window(self.kernel_size, periodic=False, dtype=torch.float64)
        self.register_buffer("t_", torch.arange(-half, 0, dtype=torch.float32).view(1, -1), persistent=False)
        self.register_buffer("window_", window[:half].float().view(1, -1), persistent=False)

    def bands(self) -> tuple[Tensor, Tensor]:
        """(low, high) cut-offs in Hz, each (out_channels,)."""
        nyquist = self.sample_rate / 2.0
        low = (self.min_low_hz + self.low_hz_.abs()).clamp(max=nyquist - self.min_band_hz)
        high = (low + self.min_band_hz + self.band_hz_.abs()).clamp(self.min_low_hz, nyquist)
        return low[:, 0], high[:, 0]

    def filters(self) -> Tensor:
        """The current kernels (out_channels, 1, kernel_size), centre tap 1."""
        low, high = self.bands()
        f_low = (low / self.sample_rate)[:, None]  # cycles per sample
        f_high = (high / self.sample_rate)[:, None]
        two_pi_t = 2.0 * math.pi * self.t_
        # 2 f_h sinc(2 pi f_h t) - 2 f_l sinc(2 pi f_l t), expanded (Eq. 4 of the paper); t < 0 here.
        left = (torch.sin(two_pi_t * f_high) - torch.sin(two_pi_t * f_low)) / (math.pi * self.t_)
        centre = 2.0 * (f_high - f_low)  # the limit at t = 0
        kernel = torch.cat([left * self.window_, centre, (left * self.window_).flip(1)], dim=1) / centre
        return kernel.view(self.out_channels, 1, self.kernel_size)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output steps of inputs with ``lengths`` (>= kernel_size) valid samples."""
        return (lengths - self.kernel_size) // self.stride + 1

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1] != 1:
            raise ShapeError(f"sinc conv expects waveforms (B, 1, T), got {tuple(x.shape)}")
        return F.conv1d(x, self.filters().to(x.dtype), stride=self.stride)


NORMS = ("chunk", "frame")


class MaskedLayerNorm(nn.Module):
    """Layer norm of (B, C, T) with a per-channel affine, over VALID steps only.

    ``over="chunk"`` (the official SincNet): over channels and steps jointly — the official code
    normalises each fixed 200 ms (C, T) crop, with ``(x - mean) / (std + eps)`` (unbiased std); on a
    whole utterance the statistics then depend on how much of it is silence. ``over="frame"``: over
    the channels of each frame, so a frame's output never depends on the rest of the clip and a model
    trained on short crops sees the same features on a full utterance.
    """

    def __init__(self, channels: int, eps: float = NORM_EPS, over: str = "chunk") -> None:
        super().__init__()
        if over not in NORMS:
            raise ConfigError(f"sincnet norm='{over}': allowed: {', '.join(NORMS)}")
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps, self.over = eps, over

    def forward(self, h: Tensor, lengths: Tensor) -> Tensor:
        valid = valid_mask(lengths, h.shape[-1])[:, None]  # (B, 1, T)
        if self.over == "chunk":
            dims, count = (1, 2), (lengths * h.shape[1]).to(h.dtype)[:, None, None]
        else:
            dims, count = (1,), torch.full_like(h[:, :1], h.shape[1])
        mean = torch.where(valid, h, 0.0).sum(dim=dims, keepdim=True) / count
        centred = torch.where(valid, h - mean, 0.0)
        std = (centred.square().sum(dim=dims, keepdim=True) / (count - 1).clamp(min=1)).sqrt()
        out = centred / (std + self.eps) * self.gamma[:, None] + self.beta[:, None]
        return torch.where(valid, out, 0.0)


_valid = valid_mask  # (B,) lengths, steps -> (B, steps) bool


def _check_lengths(name: str, x: Tensor, lengths: Tensor | None, steps: int) -> Tensor:
    b = x.shape[0]
    if lengths is None:
        return torch.full((b,), steps, dtype=torch.long, device=x.device)
    if lengths.shape != (b,):
        raise ShapeError(f"{name} expects lengths (B,)=({b},), got {tuple(lengths.shape)}")
    return lengths.to(device=x.device, dtype=torch.long).clamp(1, steps)


class SincFrontEnd(nn.Module):
    """Waveforms (B, T) -> frame-level features (B, conv_widths[-1], frames) with valid frame counts.

    Layers: (optional) waveform standardisation over valid samples (the official input layer norm),
    `SincConv` -> |.| -> max-pool -> `MaskedLayerNorm` -> leaky ReLU, then per conv block: Conv1d ->
    max-pool -> layer norm -> leaky ReLU (dropout after each activation).
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        sinc_filters: int = 80,
        sinc_kernel: int | None = None,
        sinc_kernel_ms: float | None = None,
        sinc_pool: int = 3,
        conv_widths: Sequence[int] = (60, 60),
        conv_kernels: Sequence[int] = (5, 5),
        conv_pools: Sequence[int] = (3, 3),
        min_low_hz: float = 50.0,
        min_band_hz: float = 50.0,
        input_norm: bool = True,
        dropout: float = 0.0,
        norm: str = "chunk",
    ) -> None:
        super().__init__()
        conv_widths, conv_kernels, conv_pools = list(conv_widths), list(conv_kernels), list(conv_pools)
        if not len(conv_widths) == len(conv_kernels) == len(conv_pools):
            raise ConfigError(
                f"sincnet conv_widths, conv_kernels and conv_pools need one entry per block, got "
                f"{len(conv_widths)}, {len(conv_kernels)}, {len(conv_pools)}"
            )
        if min([sinc_pool, *conv_kernels, *conv_pools]) < 1 or min([sinc_filters, *conv_widths]) < 1:
            raise ConfigError("sincnet filters, widths, kernels and pools must all be >= 1")
        self.sinc = SincConv(
            sinc_filters,
            sinc_kernel,
            sample_rate,
            kernel_ms=sinc_kernel_ms,
            min_low_hz=min_low_hz,
            min_band_hz=min_band_hz,
        )
        self.input_norm = input_norm
        self.pools = [sinc_pool, *conv_pools]
        self.kernels = conv_kernels
        self.norms = nn.ModuleList(MaskedLayerNorm(c, over=norm) for c in [sinc_filters, *conv_widths])
        cins = [sinc_filters, *conv_widths][: len(conv_widths)]
        self.convs = nn.ModuleList(
            nn.Conv1d(cin, cout, k) for cin, cout, k in zip(cins, conv_widths, conv_kernels, strict=True)
        )
        self.drop = nn.Dropout(dropout)
        self.out_channels = conv_widths[-1] if conv_widths else sinc_filters
        self.block_names = ("sinc", *(f"conv{i}" for i in range(1, len(conv_widths) + 1)))
        # The shortest clip that yields one frame: invert each layer's length arithmetic.
        m = 1
        for k, p in reversed(list(zip([self.sinc.kernel_size, *conv_kernels], self.pools, strict=True))):
            m = m * p + k - 1
        self.min_samples = m

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output frames of clips with ``lengths`` valid samples (short clips count as min_samples)."""
        n = lengths.clamp(min=self.min_samples)
        n = self.sinc.output_lengths(n) // self.pools[0]
        for k, p in zip(self.kernels, self.pools[1:], strict=True):
            n = (n - k + 1) // p
        return n

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor]:
        """Block outputs by name ("sinc", "conv1", ...; padded frames zeroed) and the valid frames (B,)."""
        if x.ndim != 2:
            raise ShapeError(f"sincnet expects waveforms (B, T), got {tuple(x.shape)}")
        n = _check_lengths("sincnet", x, lengths, x.shape[-1])
        x = torch.where(_valid(n, x.shape[-1]), x if x.is_floating_point() else x.float(), 0.0)
        if self.input_norm:
            count = n.to(x.dtype)[:, None]
            mean = x.sum(-1, keepdim=True) / count
            centred = torch.where(_valid(n, x.shape[-1]), x - mean, 0.0)
            std = (centred.square().sum(-1, keepdim=True) / (count - 1).clamp(min=1)).sqrt()
            x = centred / (std + NORM_EPS)
        if x.shape[-1] < self.min_samples:
            x = F.pad(x, (0, self.min_samples - x.shape[-1]))
        n = n.clamp(min=self.min_samples)

        stages: dict[str, Tensor] = {}
        h = self.sinc(x[:, None]).abs()
        n = self.sinc.output_lengths(n)
        for i, name in enumerate(self.block_names):
            if i > 0:
                h = self.convs[i - 1](h)
                n = n - self.kernels[i - 1] + 1
            h = F.max_pool1d(h, self.pools[i])
            n = n // self.pools[i]
            h = self.drop(F.leaky_relu(self.norms[i](h, n), LEAKY_SLOPE))
            h = h * _valid(n, h.shape[-1])[:, None].to(h.dtype)
            stages[name] = h
        return stages, n


@ENCODERS.register("sincnet")
class SincNet(Encoder):
    """SincNet front end, mean over valid frames, Linear + leaky ReLU to ``out_dim``.

    Stages: "sinc", "conv1", ... (one per conv block), "frames" (the last block, (B, C, frames), what
    a TDNN can read), "pool" (B, C), "out" (B, out_dim). The official model flattens a fixed 200 ms
    crop into an MLP; a masked mean makes the embedding length-independent instead.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        sinc_filters: int = 80,
        sinc_kernel: int | None = None,
        sinc_kernel_ms: float | None = None,
        sinc_pool: int = 3,
        conv_widths: Sequence[int] = (60, 60),
        conv_kernels: Sequence[int] = (5, 5),
        conv_pools: Sequence[int] = (3, 3),
        out_dim: int = 256,
        min_low_hz: float = 50.0,
        min_band_hz: float = 50.0,
        input_norm: bool = True,
        dropout: float = 0.0,
        norm: str = "chunk",
    ) -> None:
        super().__init__()
        self.front = SincFrontEnd(
            sample_rate=sample_rate,
            sinc_filters=sinc_filters,
            sinc_kernel=sinc_kernel,
            sinc_kernel_ms=sinc_kernel_ms,
            sinc_pool=sinc_pool,
            conv_widths=conv_widths,
            conv_kernels=conv_kernels,
            conv_pools=conv_pools,
            min_low_hz=min_low_hz,
            min_band_hz=min_band_hz,
            input_norm=input_norm,
            dropout=dropout,
            norm=norm,
        )
        self.out_dim = out_dim
        self.stage_names = (*self.front.block_names, "frames", "pool", "out")
        self.head = nn.Sequential(nn.Linear(self.front.out_channels, out_dim), nn.LeakyReLU(LEAKY_SLOPE))

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Named stages in order; ``x`` (B, T) waveforms, ``lengths`` (B,) valid samples (None: all)."""
        stages, n = self.front(x, lengths)
        h = stages["frames"] = stages[self.front.block_names[-1]]
        stages["pool"] = h.sum(-1) / n.to(h.dtype)[:, None]  # padded frames are already zero
        stages["out"] = self.head(stages["pool"])
        return stages
