"""`xvector`: x-vector speaker embeddings (Snyder et al. 2018, ICASSP, "X-vectors: robust DNN embeddings
for speaker recognition"), and `sinc_xvector`, the same TDNN over a SincNet front end.

Five TDNN frame layers (1-D convs; Kaldi context [-2, 2], {-2, 0, 2}, {-3, 0, 3}, {0}, {0}: kernels 5,
3, 3, 1, 1, dilations 1, 2, 3, 1, 1; widths 512, 512, 512, 512, 1500), each affine -> ReLU -> BatchNorm
as Kaldi's ``relu-batchnorm-layer``; statistics pooling (mean and standard deviation over the frames)
turns a variable-length utterance into one vector; segment6 (Linear to ``embed_dim``) gives the
embedding, read BEFORE its ReLU and BatchNorm as in the paper; segment7 (Linear, ReLU, BatchNorm) is
the ``out`` stage, which a speaker classifier reads during training.

Padded batches: the frame layers use "same" zero padding and re-zero padded frames after every layer
(zeros are exactly what the conv's border padding supplies), and statistics pooling covers valid frames
only, so in eval mode right padding never changes an embedding (in train mode BatchNorm's batch
statistics still see padded frames). Features are mean-normalised over valid frames (Kaldi's CMN), so a
zero border frame is an average one. `sinc_xvector` follows Tripathi, Singh & Susan (2020), "Speaker
Recognition using SincNet and X-Vector Fusion": SincNet's learnt band-pass front end replaces the
filterbank features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.errors import ConfigError, ShapeError
from polymodal.models.base import Encoder
from polymodal.models.registry import ENCODERS
from polymodal.models.sincnet import SincFrontEnd, _check_lengths, _valid
from polymodal.signal import log_mel_spectrogram, mfcc

VAR_FLOOR = 1e-10  # Kaldi's StatisticsPoolingComponent variance floor
FEATURES = ("logmel", "mfcc", "none")


def stats_pool(h: Tensor, lengths: Tensor | None = None, var_floor: float = VAR_FLOOR) -> Tensor:
    """(B, C, T) frames -> (B, 2C): [mean, std] over the first ``lengths[b]`` (valid) frames only.

    The standard deviation is the population one, ``sqrt(max(var, var_floor))``; lengths are clamped to
    [1, T] (None: all frames valid).
    """
    if h.ndim != 3:
        raise ShapeError(f"stats_pool expects frames (B, C, T), got {tuple(h.shape)}")
    n = _check_lengths("stats_pool", h, lengths, h.shape[-1])
    valid = _valid(n, h.shape[-1])[:, None]  # (B, 1, T)
    count = n.to(h.dtype)[:, None]
    mean = torch.where(valid, h, 0.0).sum(-1) / count
    var = torch.where(valid, h - mean[..., None], 0.0).square().sum(-1) / count
    return torch.cat([mean, var.clamp(min=var_floor).sqrt()], dim=-1)


class TDNNStack(nn.Module):
    """Frame layers -> statistics pooling -> segment6 (embedding) -> segment7: the x-vector network.

    ``forward(h, lengths)`` takes features (B, in_dim, frames) and valid frame counts and returns the
    stages "frame1" ... "frameN" (padded frames zeroed), "stats", "embedding", "out".
    """

    def __init__(
        self,
        in_dim: int,
        widths: Sequence[int] = (512, 512, 512, 512, 1500),
        kernels: Sequence[int] = (5, 3, 3, 1, 1),
        dilations: Sequence[int] = (1, 2, 3, 1, 1),
        embed_dim: int = 512,
        out_dim: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths, kernels, dilations = list(widths), list(kernels), list(dilations)
        if not len(widths) == len(kernels) == len(dilations) or not widths:
            raise ConfigError(
                f"x-vector widths, kernels and dilations need one entry per frame layer, got "
                f"{len(widths)}, {len(kernels)}, {len(dilations)}"
            )
        if min(widths + dilations) < 1 or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ConfigError(
                f"x-vector widths and dilations must be >= 1 and kernels odd, got widths={widths}, "
                f"dilations={dilations}, kernels={kernels}"
            )
        self.in_dim = in_dim
        self.frames = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(cin, cout, k, dilation=d, padding=d * (k - 1) // 2),
                nn.ReLU(),
                nn.BatchNorm1d(cout),
                nn.Dropout(dropout),
            )
            for cin, cout, k, d in zip([in_dim, *widths[:-1]], widths, kernels, dilations, strict=True)
        )
        self.segment6 = nn.Linear(2 * widths[-1], embed_dim)
        self.post6 = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(embed_dim), nn.Dropout(dropout))
        self.segment7 = nn.Sequential(nn.Linear(embed_dim, out_dim), nn.ReLU(), nn.BatchNorm1d(out_dim))
        self.stage_names = (*(f"frame{i}" for i in range(1, len(widths) + 1)), "stats", "embedding", "out")

    def forward(self, h: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        if h.ndim != 3 or h.shape[1] != self.in_dim:
            raise ShapeError(f"x-vector TDNN expects (B, {self.in_dim}, frames), got {tuple(h.shape)}")
        valid = _valid(lengths, h.shape[-1])[:, None].to(h.dtype)
        h = h * valid
        stages: dict[str, Tensor] = {}
        for i, layer in enumerate(self.frames, start=1):
            h = stages[f"frame{i}"] = layer(h) * valid
        stages["stats"] = stats_pool(h, lengths)
        stages["embedding"] = self.segment6(stages["stats"])
        stages["out"] = self.segment7(self.post6(stages["embedding"]))
        return stages


def _mean_normalise(feats: Tensor, lengths: Tensor) -> Tensor:
    """Per-utterance cepstral mean normalisation over valid frames; padded frames become 0."""
    valid = _valid(lengths, feats.shape[-1])[:, None]
    mean = torch.where(valid, feats, 0.0).sum(-1, keepdim=True) / lengths.to(feats.dtype)[:, None, None]
    return torch.where(valid, feats - mean, 0.0)


@ENCODERS.register("xvector")
class XVector(Encoder):
    """x-vector on waveforms (B, T) with ``features`` "logmel" / "mfcc" computed inside, or on
    precomputed features (B, n_feats, frames) with ``features="none"``; ``lengths`` counts valid
    samples or frames respectively.

    Defaults follow the paper: 24 log-mel filterbanks, 25 ms frames (``n_fft`` rounded up to a power of
    two) every 10 ms; "mfcc" keeps ``n_mfcc`` (default: all ``n_mels``) DCT coefficients as Kaldi's
    high-resolution MFCCs do. Frames computed from a waveform count as valid only while their whole
    window lies within the valid samples (the last ~``n_fft / 2 / hop`` frames of a clip are dropped),
    so the features of the valid frames never see the padding.
    """

    def __init__(
        self,
        features: str = "logmel",
        n_feats: int | None = None,
        sample_rate: int = 8000,
        n_mels: int = 24,
        n_mfcc: int | None = None,
        n_fft: int | None = None,
        hop_length: int | None = None,
        cmn: bool = True,
        widths: Sequence[int] = (512, 512, 512, 512, 1500),
        kernels: Sequence[int] = (5, 3, 3, 1, 1),
        dilations: Sequence[int] = (1, 2, 3, 1, 1),
        embed_dim: int = 512,
        out_dim: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if features not in FEATURES:
            raise ConfigError(f"xvector features must be one of {', '.join(FEATURES)}, got '{features}'")
        if features == "none":
            if n_feats is None or n_feats < 1:
                raise ConfigError("xvector with features 'none' needs n_feats (the feature dimension)")
            in_dim = n_feats
        else:
            n_mfcc = n_mels if n_mfcc is None else n_mfcc
            if not 1 <= n_mfcc <= n_mels:
                raise ConfigError(
                    f"xvector needs 1 <= n_mfcc <= n_mels, got n_mfcc={n_mfcc}, n_mels={n_mels}"
                )
            in_dim = n_mels if features == "logmel" else n_mfcc
            if n_feats is not None and n_feats != in_dim:
                raise ConfigError(f"xvector n_feats={n_feats} disagrees with its {features} size {in_dim}")
        self.features = features
        self.sample_rate = sample_rate
        self.n_mels, self.n_mfcc = n_mels, n_mfcc
        self.hop_length = hop_length if hop_length is not None else max(1, round(0.010 * sample_rate))
        self.n_fft = n_fft if n_fft is not None else 2 ** math.ceil(math.log2(0.025 * sample_rate))
        self.cmn = cmn
        self.tdnn = TDNNStack(in_dim, widths, kernels, dilations, embed_dim, out_dim, dropout)
        self.out_dim = out_dim
        self.embed_dim = embed_dim
        self.stage_names = self.tdnn.stage_names

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid feature frames of waveforms with ``lengths`` valid samples (at least 1)."""
        return ((lengths - self.n_fft // 2) // self.hop_length + 1).clamp(min=1)

    def featurise(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Input -> (features (B, in_dim, frames) with padded frames zeroed, valid frames (B,))."""
        if self.features == "none":
            if x.ndim != 3 or x.shape[1] != self.tdnn.in_dim:
                raise ShapeError(
                    f"xvector expects features (B, {self.tdnn.in_dim}, frames), got {tuple(x.shape)}"
                )
            n = _check_lengths("xvector", x, lengths, x.shape[-1])
            feats = x if x.is_floating_point() else x.float()
        else:
            if x.ndim != 2:
                raise ShapeError(f"xvector ({self.features}) expects waveforms (B, T), got {tuple(x.shape)}")
            samples = _check_lengths("xvector", x, lengths, x.shape[-1])
            x = torch.where(_valid(samples, x.shape[-1]), x if x.is_floating_point() else x.float(), 0.0)
            if x.shape[-1] < self.n_fft:  # always reflect-pad the (shared) left border the same way
                x = F.pad(x, (0, self.n_fft - x.shape[-1]))
            feats = log_mel_spectrogram(x, self.sample_rate, self.n_fft, self.hop_length, self.n_mels)
            if self.features == "mfcc":
                feats = mfcc(feats, self.n_mfcc, from_log_mel=True)
            n = self.frame_lengths(samples).clamp(max=feats.shape[-1])
        if self.cmn:
            return _mean_normalise(feats, n), n
        return torch.where(_valid(n, feats.shape[-1])[:, None], feats, 0.0), n

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        """Named stages in order ("frame1".."frame5", "stats", "embedding", "out")."""
        return self.tdnn(*self.featurise(x, lengths))


@ENCODERS.register("sinc_xvector")
class SincXVector(Encoder):
    """x-vector TDNN over SincNet's frame-level features: waveforms (B, T), ``lengths`` valid samples.

    Stages: SincNet's blocks ("sinc", "conv1", ...) then the TDNN's ("frame1", ..., "stats",
    "embedding", "out"). The options are `SincFrontEnd`'s and `TDNNStack`'s.
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
        widths: Sequence[int] = (512, 512, 512, 512, 1500),
        kernels: Sequence[int] = (5, 3, 3, 1, 1),
        dilations: Sequence[int] = (1, 2, 3, 1, 1),
        embed_dim: int = 512,
        out_dim: int = 512,
        dropout: float = 0.0,
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
        )
        self.tdnn = TDNNStack(
            self.front.out_channels, widths, kernels, dilations, embed_dim, out_dim, dropout
        )
        self.out_dim = out_dim
        self.embed_dim = embed_dim
        self.stage_names = (*self.front.block_names, *self.tdnn.stage_names)

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        stages, n = self.front(x, lengths)
        return {**stages, **self.tdnn(stages[self.front.block_names[-1]], n)}
