"""Speaker corpora: any folder of audio in an FSDD-style or a VoxCeleb / LibriSpeech-style layout.

Layouts (detected from the file names, `scan_folder`):

* ``fsdd``: ``{label}_{speaker}_{index}.{wav,flac}`` directly in the folder or in its ``recordings/``;
* ``speaker_dirs``: ``{speaker}/[{session}/]{utterance}.{wav,flac}`` (VoxCeleb, LibriSpeech).

Audio is read with soundfile (wav, flac, ...; several channels are averaged to mono) and resampled
with soxr to the configured rate; a file that cannot be read, a folder of neither layout, or a sample
rate that differs while resampling is off, is one `DataError` line naming the file. A folder with a
``SHA256SUMS`` has every file it uses verified first.

Splits (`SpeakerSplit`): training speakers' utterances go to train or test (closed-set
identification); held-out speakers (never trained on) form the verification set, carried in the
bundle's meta as ``meta["verification"]`` (a `TensorData` whose ``speaker`` target counts held-out
speakers from 0) with their names, so evaluation can build trials on unseen speakers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polymodal.batch import TensorData
from polymodal.data.files import read_sums, sha256, verify
from polymodal.errors import DataError

AUDIO_EXTENSIONS = (".wav", ".flac")
FSDD_NAME = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>[^_]+)_(?P<index>\d+)$")
SYNTH_SUMS_SHA256 = "6d3f2d68d6fc6fa5924efffa3c9b450cfe4e150f059292756cb2b2f2e2112997"
LAYOUT_HELP = (
    "expected '{label}_{speaker}_{index}.wav|flac' files (FSDD style, in the folder or its recordings/) "
    "or '{speaker}/[{session}/]{utterance}.wav|flac' (VoxCeleb / LibriSpeech style)"
)


@dataclass(frozen=True)
class Utterance:
    path: Path
    name: str  # the path relative to the corpus folder, without the extension
    speaker: str
    label: str | None = None  # fsdd layout: what is said (the digit)
    index: int | None = None  # fsdd layout: the take


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def scan_folder(folder: Path) -> tuple[str, list[Utterance]]:
    """(layout, utterances sorted by name) of a speaker folder; one line if it is neither layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"speaker folder '{folder}' is not a directory")
    base = folder / "recordings" if (folder / "recordings").is_dir() else folder
    files = _audio_files(base)
    if not files:
        raise DataError(f"no .wav or .flac files under '{base}'; {LAYOUT_HELP}")
    rel = [f.relative_to(base) for f in files]
    if all(len(r.parts) == 1 for r in rel):
        utts = []
        for f, r in zip(files, rel, strict=True):
            m = FSDD_NAME.match(r.stem)
            if m is None:
                raise DataError(f"unknown layout in '{base}': '{r}' does not fit; {LAYOUT_HELP}")
            utts.append(Utterance(f, str(r.with_suffix("")), m["speaker"], m["label"], int(m["index"])))
        return "fsdd", utts
    odd = next((r for r in rel if len(r.parts) not in (2, 3)), None)
    if odd is not None:
        raise DataError(f"unknown layout in '{base}': '{odd}' does not fit; {LAYOUT_HELP}")
    utts = [Utterance(f, str(r.with_suffix("")), r.parts[0]) for f, r in zip(files, rel, strict=True)]
    return "speaker_dirs", utts


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling of a mono float32 signal (soxr, high quality)."""
    if rate_in == rate_out:
        return x
    import soxr

    return soxr.resample(x, rate_in, rate_out, quality="HQ").astype(np.float32)


def read_audio(path: Path, sample_rate: int | None = None, resample_audio: bool = True) -> np.ndarray:
    """A file as mono float32 in [-1, 1] at ``sample_rate`` (None: its own rate); one line on failure."""
    import soundfile as sf

    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"cannot read audio file '{path}': {first}") from None
    if x.shape[0] == 0:
        raise DataError(f"audio file '{path}' has no samples")
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if sample_rate is not None and rate != sample_rate:
        if not resample_audio:
            raise DataError(
                f"audio file '{path}' is {rate} Hz but the dataset is configured for {sample_rate} Hz "
                "and resampling is off (set data.options.resample: true)"
            )
        x = resample(x, rate, sample_rate)
    return np.ascontiguousarray(x, dtype=np.float32)


def verify_listed(folder: Path, utts: Sequence[Utterance], sums: dict[str, str] | None = None) -> None:
    """Check each utterance's file against the folder's SHA256SUMS (every file must be listed)."""
    sums = read_sums(folder) if sums is None else sums
    for u in utts:
        rel = u.path.relative_to(folder).as_posix()
        if rel not in sums:
            raise DataError(f"'{u.path}' is not listed in '{folder / 'SHA256SUMS'}'")
        verify(folder, {rel: sums[rel]})


def to_tensor_data(waves: Sequence[np.ndarray], speaker_ids: Sequence[int]) -> TensorData:
    """Right-padded audio (N, T) with lengths and the ``speaker`` target."""
    if not waves:
        raise DataError("a speaker split has no utterances")
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.int64)
    audio = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        audio[i, : len(w)] = torch.from_numpy(w)
    return TensorData({"audio": audio}, {"speaker": torch.tensor(list(speaker_ids))}, {"audio": lengths})


@dataclass
class SpeakerSplit:
    """Which utterances train, test (closed-set, training speakers) and verify (held-out speakers)."""

    speakers: list[str]  # training speakers, in class-index order
    train: list[Utterance]
    test: list[Utterance]
    heldout: list[str]
    verification: list[Utterance]


def split_by(
    utts: Sequence[Utterance],
    speakers: Sequence[str],
    heldout: Sequence[str],
    is_test: Callable[[Utterance], bool],
) -> SpeakerSplit:
    known = set(speakers) | set(heldout)
    stray = next((u for u in utts if u.speaker not in known), None)
    if stray is not None:
        raise DataError(f"'{stray.path}': speaker '{stray.speaker}' is not one of the corpus's speakers")
    train = [u for u in utts if u.speaker in speakers and not is_test(u)]
    test = [u for u in utts if u.speaker in speakers and is_test(u)]
    ver = [u for u in utts if u.speaker in heldout]
    return SpeakerSplit(list(speakers), train, test, list(heldout), ver)


def load_split(
    split: SpeakerSplit, sample_rate: int, resample_audio: bool = True, max_seconds: float | None = None
) -> tuple[TensorData, TensorData, dict[str, object]]:
    """Read every utterance of a split: (train, test, meta) with the verification set in meta."""
    limit = None if max_seconds is None else max(1, int(round(max_seconds * sample_rate)))

    def read(us: list[Utterance], ids: list[str]) -> TensorData:
        index = {s: i for i, s in enumerate(ids)}
        waves = [read_audio(u.path, sample_rate, resample_audio)[:limit] for u in us]
        return to_tensor_data(waves, [index[u.speaker] for u in us])

    meta: dict[str, object] = {
        "sample_rate": sample_rate,
        "speakers": split.speakers,
        "train_names": [u.name for u in split.train],
        "test_names": [u.name for u in split.test],
    }
    if split.verification:
        meta["verification"] = read(split.verification, split.heldout)
        meta["verification_names"] = [u.name for u in split.verification]
        meta["verification_speakers"] = split.heldout
    return read(split.train, split.speakers), read(split.test, split.speakers), meta


def _fsdd_utts(folder: Path, sums_sha256: str, what: str, verify_sums: bool) -> list[Utterance]:
    layout, utts = scan_folder(folder)
    if layout != "fsdd":
        raise DataError(f"'{folder}' is not in the FSDD layout ({what})")
    if verify_sums:
        if not (folder / "SHA256SUMS").is_file() or sha256(folder / "SHA256SUMS") != sums_sha256:
            raise DataError(f"'{folder}/SHA256SUMS' is missing or not the {what} checksum list")
        verify_listed(folder, utts)
    return utts


def load_fsdd_text_independent(
    folder: Path, sample_rate: int = 8000, resample_audio: bool = True, verify_sums: bool = True
) -> tuple[TensorData, TensorData, dict[str, object]]:
    """FSDD, text-independent: train on digits 0-4, test on digits 5-9 (every take), 6 speakers."""
    from polymodal.data.fsdd import SPEAKERS, SUMS_SHA256

    utts = _fsdd_utts(folder, SUMS_SHA256, "FSDD v1.0.10", verify_sums)
    split = split_by(utts, SPEAKERS, [], lambda u: int(u.label or 0) >= 5)
    train, test, meta = load_split(split, sample_rate, resample_audio)
    meta["protocol"] = "FSDD text-independent: train digits 0-4, test digits 5-9, 6 speakers (closed set)"
    return train, test, meta


def load_synth_speakers(
    folder: Path,
    sample_rate: int = 8000,
    resample_audio: bool = True,
    heldout_speakers: int = 10,
    test_takes: int = 2,
    verify_sums: bool = True,
) -> tuple[TensorData, TensorData, dict[str, object]]:
    """synth_speakers (synthetic espeak-ng voices): the first 40 - ``heldout_speakers`` speakers (sorted)
    train, takes < ``test_takes`` of each digit are their test split, the last ``heldout_speakers`` are
    held out for verification."""
    utts = _fsdd_utts(folder, SYNTH_SUMS_SHA256, "synth_speakers", verify_sums)
    speakers = sorted({u.speaker for u in utts})
    if not 0 <= heldout_speakers < len(speakers):
        raise DataError(f"synth_speakers has {len(speakers)} speakers; cannot hold out {heldout_speakers}")
    n_train = len(speakers) - heldout_speakers
    split = split_by(utts, speakers[:n_train], speakers[n_train:], lambda u: (u.index or 0) < test_takes)
    train, test, meta = load_split(split, sample_rate, resample_audio)
    meta["protocol"] = (
        f"synth_speakers (synthetic): {n_train} training speakers (takes >= {test_takes} train, the rest "
        f"test), {heldout_speakers} held out for verification"
    )
    return train, test, meta


def load_speaker_folder(
    folder: Path,
    sample_rate: int = 16000,
    resample_audio: bool = True,
    test_fraction: float = 0.2,
    heldout_speakers: int | list[str] = 0,
    seed: int = 0,
    max_seconds: float | None = None,
) -> tuple[TensorData, TensorData, dict[str, object]]:
    """A user's folder: ``heldout_speakers`` (a count drawn with ``seed``, or names) go to verification;
    of every other speaker, a seeded ``test_fraction`` of utterances (at least one, when it has two)
    is the test split. Files are verified against the folder's SHA256SUMS when it has one."""
    layout, utts = scan_folder(folder)
    if (folder / "SHA256SUMS").is_file():
        verify_listed(folder, utts)
    speakers = sorted({u.speaker for u in utts})
    rng = np.random.default_rng(seed)
    if isinstance(heldout_speakers, int):
        if not 0 <= heldout_speakers < len(speakers):
            raise DataError(f"'{folder}' has {len(speakers)} speakers; cannot hold out {heldout_speakers}")
        heldout = sorted(rng.permutation(speakers)[:heldout_speakers].tolist())
    else:
        heldout = sorted(heldout_speakers)
        missing = sorted(set(heldout) - set(speakers))
        if missing:
            raise DataError(f"held-out speaker '{missing[0]}' has no utterances in '{folder}'")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    test: set[str] = set()
    for s in speakers:
        names = [u.name for u in utts if u.speaker == s]
        if s in heldout or len(names) < 2:
            continue
        k = min(len(names) - 1, max(1, int(round(test_fraction * len(names)))))
        test.update(rng.permutation(names)[:k].tolist())
    training = [s for s in speakers if s not in heldout]
    split = split_by(utts, training, heldout, lambda u: u.name in test)
    train, test_data, meta = load_split(split, sample_rate, resample_audio, max_seconds)
    meta["layout"] = layout
    meta["protocol"] = (
        f"speaker folder '{folder}' ({layout} layout): {len(training)} training speakers "
        f"({test_fraction:.0%} of each one's utterances test), {len(heldout)} held out for verification"
    )
    return train, test_data, meta


def read_folder(
    folder: Path, sample_rate: int, resample_audio: bool = True
) -> tuple[list[str], list[str] | None, TensorData]:
    """Every audio file of a folder, for embedding: (names, speakers or None, audio as `TensorData`).

    A recognised layout gives each file's speaker; any other flat folder of audio still loads, with
    the speakers unknown.
    """
    try:
        _, utts = scan_folder(folder)
        speakers: list[str] | None = [u.speaker for u in utts]
    except DataError:
        files = _audio_files(Path(folder)) if Path(folder).is_dir() else []
        if not files:
            raise
        utts = [Utterance(f, str(f.relative_to(folder).with_suffix("")), "") for f in files]
        speakers = None
    waves = [read_audio(u.path, sample_rate, resample_audio) for u in utts]
    data = to_tensor_data(waves, [0] * len(waves))
    return [u.name for u in utts], speakers, TensorData(data.inputs, {}, data.lengths)
