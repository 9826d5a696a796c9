"""A trained run's speaker scores under each test condition: the forward passes behind the metrics.

Conditions (``speaker`` config): ``clean`` (full test utterances), ``crop X s`` (each utterance cut to
its centre X seconds: short test chunks) and ``snr X dB`` (white noise added at that SNR, seeded).
Utterances are batched by length (longest first), so a batch pads little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from polymodal.augment.audio import noise
from polymodal.batch import Batch, TensorData
from polymodal.config import SpeakerConfig
from polymodal.engine.evaluate import LoadedRun
from polymodal.engine.runtime import autocast
from polymodal.errors import ConfigError
from polymodal.speaker.identify import gather_windows, sliding_windows, utterance_log_posteriors
from polymodal.speaker.verify import build_trials, score_trials


@dataclass(frozen=True)
class Condition:
    name: str
    crop_s: float | None = None
    snr_db: float | None = None


def conditions(spk: SpeakerConfig) -> list[Condition]:
    return [
        Condition("clean"),
        *(Condition(f"crop {c:g} s", crop_s=c) for c in spk.test_crop_s),
        *(Condition(f"snr {s:g} dB", snr_db=s) for s in spk.test_snr_db),
    ]


@dataclass
class SystemScores:
    """One system under one condition (CPU tensors / arrays)."""

    full: Tensor  # (N, K) log-posteriors of the full (conditioned) test utterances
    chunks: Tensor  # (N, K) summed chunk log-posteriors
    chunk_accuracy: float  # each chunk classified alone
    targets: Tensor  # (N,) speaker classes of the test split
    scores: np.ndarray | None  # verification scores of the trials (None: no verification)


def centre_crop(audio: Tensor, lengths: Tensor, samples: int) -> tuple[Tensor, Tensor]:
    """Each row's centre ``samples`` (a shorter row is kept whole), right-padded."""
    keep = lengths.clamp(max=samples)
    start = (lengths - keep) // 2
    width = min(samples, audio.shape[-1])
    cols = (start[:, None] + torch.arange(width, device=audio.device)).clamp(max=audio.shape[-1] - 1)
    x = audio.gather(1, cols)
    return torch.where(torch.arange(width, device=audio.device) < keep[:, None], x, 0.0), keep


class SpeakerScorer:
    """Forward passes of one loaded run: logits of the speaker task and embeddings."""

    def __init__(self, run: LoadedRun, spk: SpeakerConfig | None = None) -> None:
        self.run, self.spk = run, spk or run.cfg.speaker
        bundle = run.data.bundle
        audio = [m for m, kind in bundle.modalities.items() if kind == "audio"]
        if self.spk.task not in run.data.tasks or len(bundle.modalities) != 1 or len(audio) != 1:
            raise ConfigError(
                f"speaker evaluation needs a task '{self.spk.task}' (speaker.task) and one audio modality; "
                f"the run has tasks {list(run.data.tasks)} and modalities {list(bundle.modalities)}"
            )
        self.modality = audio[0]
        if "sample_rate" not in bundle.meta:
            raise ConfigError(f"dataset '{bundle.name}' does not say its sample rate (meta 'sample_rate')")
        self.rate = int(bundle.meta["sample_rate"])  # type: ignore[call-overload]
        self.test = run.data.test
        ver = bundle.meta.get("verification")
        self.heldout = isinstance(ver, TensorData)
        self.ver = ver.to(run.device) if isinstance(ver, TensorData) else None
        ids = (
            self.ver.targets["speaker"] if self.ver is not None else self.test.targets[self.spk.task]
        ).cpu()
        self.ver_ids = ids.numpy()
        self.trials = build_trials(
            self.ver_ids, self.spk.trials_target, self.spk.trials_nontarget, self.spk.trial_seed
        )
        self._cohort: np.ndarray | None = None
        self._check_refs()

    def _check_refs(self) -> None:
        model = self.run.model
        for ref in self.spk.embedding:
            key, _, stage = ref.partition(".")
            encoders = getattr(model, "encoders", {})
            if key not in encoders or stage not in getattr(encoders[key], "stage_names", ()):
                have = [f"{k}.{s}" for k, e in encoders.items() for s in getattr(e, "stage_names", ())]
                raise ConfigError(
                    f"speaker.embedding: '{ref}' is not an encoder stage; available: {', '.join(have)}"
                )

    @torch.no_grad()
    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(logits of the speaker task, embeddings) of a batch of waveforms, clean view, eval mode."""
        model, cfg = self.run.model, self.run.cfg
        model.eval()
        g = torch.Generator(self.run.device).manual_seed(0)
        batch = self.run.views(Batch({self.modality: x}, lengths={self.modality: lengths}), "clean", g)
        with autocast(self.run.device, cfg.train.precision):
            out = model(batch)
            if not self.spk.embedding:
                return out[self.spk.task].float(), out.features.float()
            embs = []
            for ref in self.spk.embedding:
                key, _, stage = ref.partition(".")
                m = model.inputs[key]
                v = model.encoders[key].forward_stages(batch.inputs[m], batch.lengths.get(m))[stage]
                embs.append(v.flatten(2).mean(-1) if v.ndim > 2 else v)
        return out[self.spk.task].float(), torch.cat(embs, dim=-1).float()

    def full(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and embeddings of whole utterances, batched by length, in the input's order."""
        order = torch.argsort(lengths.cpu(), descending=True, stable=True)
        logits, embs = [], []
        for part in order.split(self.spk.batch_size):
            rows = part.to(audio.device)
            lens = lengths[rows]
            z, e = self.forward(audio[rows, : int(lens.max())], lens)
            logits.append(z.cpu()), embs.append(e.cpu())
        inverse = torch.argsort(order)
        return torch.cat(logits)[inverse], torch.cat(embs)[inverse]

    def chunks(self, audio: Tensor, lengths: Tensor, targets: Tensor) -> tuple[Tensor, float]:
        """Summed chunk log-posteriors per utterance, and the accuracy of single chunks."""
        window = max(1, round(self.spk.chunk_s * self.rate))
        shift = max(1, round(self.spk.chunk_shift_s * self.rate))
        utt, start, length = sliding_windows(lengths.cpu().numpy(), window, shift)
        logits = []
        for sl in np.array_split(np.arange(utt.size), max(1, -(-utt.size // self.spk.batch_size))):
            x, lens = gather_windows(audio, utt[sl], start[sl], length[sl])
            logits.append(self.forward(x, lens)[0].cpu())
        z = torch.cat(logits)
        correct = (z.argmax(-1) == targets.cpu()[torch.as_tensor(utt)]).float().mean().item()
        return utterance_log_posteriors(z, utt, len(lengths)), correct

    def condition(self, data: TensorData, cond: Condition) -> tuple[Tensor, Tensor]:
        audio, lengths = data.inputs[self.modality], data.lengths[self.modality]
        if cond.crop_s is not None:
            return centre_crop(audio, lengths, max(1, round(cond.crop_s * self.rate)))
        if cond.snr_db is not None:
            g = torch.Generator(audio.device).manual_seed(
                self.spk.trial_seed * 1000 + int(cond.snr_db * 10) % 1000
            )
            snr = float(cond.snr_db)
            return noise(audio, generator=g, lengths=lengths, min_snr_db=snr, max_snr_db=snr)[0], lengths
        return audio, lengths

    def cohort(self) -> np.ndarray:
        """Embeddings of ``cohort_size`` training utterances (seeded, clean), computed once."""
        if self._cohort is None:
            train = self.run.data.bundle.train
            n = len(train)
            rows = np.sort(
                np.random.default_rng(self.spk.trial_seed).permutation(n)[: min(n, self.spk.cohort_size)]
            )
            sub = train.subset(torch.as_tensor(rows)).to(self.run.device)
            self._cohort = self.full(sub.inputs[self.modality], sub.lengths[self.modality])[1].numpy()
        return self._cohort

    def score(self, emb: np.ndarray, score_norm: str | None = None) -> np.ndarray:
        norm = self.spk.score_norm if score_norm is None else score_norm
        cohort = self.cohort() if self.spk.length_norm or norm != "none" else None
        return score_trials(emb, self.trials, cohort, self.spk.length_norm, norm, self.spk.cohort_top_k)

    def run_condition(self, cond: Condition, score_norm: str | None = None) -> SystemScores:
        targets = self.test.targets[self.spk.task]
        audio, lengths = self.condition(self.test, cond)
        full, emb = self.full(audio, lengths)
        chunks, chunk_acc = self.chunks(audio, lengths, targets)
        if self.ver is not None:
            emb = self.full(*self.condition(self.ver, cond))[1]
        return SystemScores(full, chunks, chunk_acc, targets.cpu(), self.score(emb.numpy(), score_norm))
