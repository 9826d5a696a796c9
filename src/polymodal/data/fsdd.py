"""Free Spoken Digit Dataset: 8 kHz mono 16-bit wavs, digit and speaker labels.

Official split (FSDD README): recordings with index 0-4 are the test set, 5-49 the training set.
Waveforms are read with the standard library's ``wave`` module (PCM only, which is all FSDD has),
scaled to [-1, 1], and right-padded with their lengths.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch

from polymodal.batch import TensorData
from polymodal.data.files import read_sums, verify
from polymodal.errors import DataError

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
SUMS_SHA256 = "e10de2dbe6c230b43b241d09fd68ebbc9f09ce33c159a78acf984792d8427ebe"
SAMPLE_RATE = 8000


def read_wav(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A mono 16-bit PCM wav as float32 in [-1, 1]; one clear error for anything else."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != sample_rate:
                raise DataError(
                    f"'{path}': {w.getnchannels()} channel(s), {8 * w.getsampwidth()}-bit, "
                    f"{w.getframerate()} Hz; expected mono 16-bit {sample_rate} Hz"
                )
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError, OSError) as e:
        raise DataError(f"corrupt wav '{path}': {e}") from None
    if len(frames) == 0:
        raise DataError(f"empty wav '{path}'")
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def load_fsdd(folder: Path, split: str, verify_sums: bool = True) -> TensorData:
    """One split: inputs {'audio': (N, T) float32 padded}, lengths, targets digit and speaker."""
    rec = folder / "recordings"
    if not rec.is_dir():
        raise DataError(f"FSDD folder '{folder}' has no recordings/ subfolder")
    if verify_sums:
        from polymodal.data.files import sha256

        if sha256(folder / "SHA256SUMS") != SUMS_SHA256:
            raise DataError(f"'{folder}/SHA256SUMS' is not the FSDD v1.0.10 checksum list")
        sums = {k: v for k, v in read_sums(folder).items() if k.startswith("recordings/")}
    want_test = split == "test"
    waves, digits, speakers = [], [], []
    for digit in range(10):
        for s, speaker in enumerate(SPEAKERS):
            for index in range(50):
                if (index < 5) != want_test:
                    continue
                name = f"recordings/{digit}_{speaker}_{index}.wav"
                if verify_sums:
                    verify(folder, {name: sums[name]})
                waves.append(read_wav(folder / name))
                digits.append(digit)
                speakers.append(s)
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.int64)
    audio = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        audio[i, : len(w)] = torch.from_numpy(w)
    targets = {"digit": torch.tensor(digits), "speaker": torch.tensor(speakers)}
    return TensorData({"audio": audio}, targets, {"audio": lengths})
