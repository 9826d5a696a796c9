"""`logmel_stats`: an utterance as the mean and standard deviation of its log-mel frames (no weights).

The speaker-recognition baseline: with a linear head on top (``model.head.kind: linear``) the model is
a multinomial logistic regression on per-utterance log-mel statistics. Statistics cover the frames
whose window centre lies within the clip (the last few windows read padding as silence); a
BatchNorm without affine parameters standardises each statistic with the training split's running
moments (a fixed affine map at evaluation, so the model stays a logistic regression).
"""

from __future__ import annotations

from torch import Tensor, nn

from polymodal.errors import ShapeError
from polymodal.models.base import Encoder
from polymodal.models.registry import ENCODERS
from polymodal.models.sincnet import _check_lengths
from polymodal.models.xvector import stats_pool
from polymodal.signal import log_mel_spectrogram


@ENCODERS.register("logmel_stats")
class LogMelStats(Encoder):
    """Waveforms (B, T) -> [mean, std] of the log-mel over valid frames (B, 2 n_mels), standardised."""

    def __init__(
        self, sample_rate: int = 8000, n_mels: int = 40, n_fft: int = 256, hop_length: int = 80
    ) -> None:
        super().__init__()
        self.sample_rate, self.n_mels, self.n_fft, self.hop_length = sample_rate, n_mels, n_fft, hop_length
        self.out_dim = 2 * n_mels
        self.norm = nn.BatchNorm1d(self.out_dim, affine=False)
        self.stage_names = ("stats", "out")

    def forward_stages(self, x: Tensor, lengths: Tensor | None = None) -> dict[str, Tensor]:
        if x.ndim != 2:
            raise ShapeError(f"logmel_stats expects waveforms (B, T), got {tuple(x.shape)}")
        n = _check_lengths("logmel_stats", x, lengths, x.shape[-1])
        feats = log_mel_spectrogram(x.float(), self.sample_rate, self.n_fft, self.hop_length, self.n_mels)
        frames = (1 + (n - 1) // self.hop_length).clamp(max=feats.shape[-1])
        stats = stats_pool(feats, frames)
        return {"stats": stats, "out": self.norm(stats)}
