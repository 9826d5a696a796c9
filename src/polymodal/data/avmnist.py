"""AV-MNIST: each MNIST image paired with a spoken recording (FSDD) of the same digit.

Both modalities are degraded on purpose so that neither alone is near-perfect (fusion choices could
not be told apart otherwise), following CentralNet / MFAS (Vielzeuf et al. 2018, Pérez-Rúa et al.
2019):

* image: only the leading principal components (fitted on the training images) are kept, dropping
  ``pca_remove`` of the pixel energy (MFAS removed 75%: blurry "ghost" digits);
* audio: white noise at ``snr_db`` dB relative to each clip's own power, then a fixed-size log-mel
  (clips centre-cropped / zero-padded to ``seconds``), so training never touches raw waveforms.

Pairing is seeded and keeps FSDD's split: test images only meet test recordings (index 0-4). The
MNIST subset (``n_train`` / ``n_test`` images, drawn with the seed) keeps CPU training fast. Two tasks:
``digit`` (10 classes) and ``speaker`` (the FSDD speaker of the paired clip, 6 classes), so one dataset
has two modalities and two tasks. Files are ``.npy`` (byte-stable: building twice with the same options
gives identical bytes) listed with their sha256 in ``SHA256SUMS``; ``meta.json`` records every option
and the build ``version``. A cache built by an older version is rebuilt (same options) when the source
datasets are at hand, else loading says, in one line, to rebuild it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from polymodal.batch import TensorData
from polymodal.data.files import cache_dir, dataset_dir, read_sums, sha256, verify
from polymodal.data.fsdd import SAMPLE_RATE, SPEAKERS, load_fsdd
from polymodal.data.mnist import MNIST_SHA256, load_idx_folder
from polymodal.errors import ConfigError, DataError
from polymodal.signal import log_mel_spectrogram

VERSION = 2  # 2: adds the speaker arrays (the image, audio and digit bytes are those of version 1)
TASKS = {"digit": 10, "speaker": len(SPEAKERS)}
DEFAULTS: dict[str, float | int] = {
    "seed": 0,
    "n_train": 20000,
    "n_test": 5000,
    "pca_remove": 0.7,
    "snr_db": -3.0,
    "n_mels": 20,
    "hop_length": 200,
    "seconds": 1.0,
}
KINDS = ("image", "audio", *TASKS)
FILES = [f"{split}_{kind}.npy" for split in ("train", "test") for kind in KINDS]


def _pca_degrade(train: np.ndarray, test: np.ndarray, remove: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep only the leading principal components (fitted on training images) that hold
    ``1 - remove`` of the centred energy: the blurry "ghost" digits of CentralNet / MFAS."""
    x = train.reshape(len(train), -1).astype(np.float64) / 255.0
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    energy = np.cumsum(s**2) / np.sum(s**2)
    k = int(np.searchsorted(energy, 1.0 - remove) + 1) if remove > 0 else len(s)
    v = vt[:k]

    def apply(images: np.ndarray) -> np.ndarray:
        y = images.reshape(len(images), -1).astype(np.float64) / 255.0 - mean
        return (y @ v.T) @ v + mean

    # Stretched to [0, 1] with fixed (training) bounds and stored as uint8, like MNIST itself.
    a, b = apply(train), apply(test)
    lo, hi = np.percentile(a, 0.5), np.percentile(a, 99.5)
    to_u8 = lambda y: np.round(np.clip((y - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)  # noqa: E731
    return to_u8(a).reshape(train.shape), to_u8(b).reshape(test.shape), k


def _pair(digits: np.ndarray, audio_digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each image digit, a random recording index of the same digit."""
    out = np.empty(len(digits), dtype=np.int64)
    for d in range(10):
        rows = np.nonzero(digits == d)[0]
        pool = np.nonzero(audio_digits == d)[0]
        out[rows] = pool[rng.integers(0, len(pool), len(rows))]
    return out


def _noisy_log_mel(
    audio: TensorData, index: np.ndarray, opts: dict, gen: torch.Generator, chunk: int = 2048
) -> np.ndarray:
    width = int(round(opts["seconds"] * SAMPLE_RATE))
    waves, lengths = audio.inputs["audio"], audio.lengths["audio"]
    out = []
    for start in range(0, len(index), chunk):
        rows = torch.from_numpy(index[start : start + chunk])
        clip = torch.zeros(len(rows), width)
        for i, r in enumerate(rows.tolist()):
            n = int(lengths[r])
            off = max(0, (n - width) // 2)  # centre-crop long clips, zero-pad short ones
            w = waves[r, off : off + min(n, width)]
            clip[i, : len(w)] = w
        n_valid = lengths[rows].clamp(max=width).to(torch.float32)
        power = clip.square().sum(-1) / n_valid
        sigma = (power / 10 ** (opts["snr_db"] / 10)).sqrt()
        noisy = clip + sigma[:, None] * torch.randn(clip.shape, generator=gen)
        mel = log_mel_spectrogram(
            noisy, SAMPLE_RATE, n_fft=256, hop_length=int(opts["hop_length"]), n_mels=int(opts["n_mels"])
        )
        out.append(mel.numpy().astype(np.float16))
    return np.concatenate(out)


def build_avmnist(root: Path, out: Path | None = None, **options: float | int) -> Path:
    """Build (or rebuild) AV-MNIST into ``out`` (default ``cache_dir('avmnist')``); returns the folder."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"avmnist has no option '{unknown[0]}'; allowed: {', '.join(DEFAULTS)}")
    opts = {**DEFAULTS, **options}
    if not 0 <= float(opts["pca_remove"]) < 1:
        raise ConfigError(f"avmnist pca_remove={opts['pca_remove']}: allowed: 0 <= value < 1")
    out = Path(out) if out is not None else cache_dir("avmnist")
    out.mkdir(parents=True, exist_ok=True)
    seed = int(opts["seed"])
    rng = np.random.default_rng(seed)
    mnist = {
        s: load_idx_folder(dataset_dir(root, "mnist", "mnist"), s, MNIST_SHA256) for s in ("train", "test")
    }
    fsdd = {s: load_fsdd(dataset_dir(root, "fsdd", "fsdd"), s) for s in ("train", "test")}
    picks, images = {}, {}
    for split, n in (("train", int(opts["n_train"])), ("test", int(opts["n_test"]))):
        total = len(mnist[split])
        if not 0 < n <= total:
            raise ConfigError(f"avmnist n_{split}={n}: allowed: 1..{total}")
        picks[split] = np.sort(rng.permutation(total)[:n])
        images[split] = mnist[split].inputs["image"].numpy()[picks[split]]
    images["train"], images["test"], k = _pca_degrade(
        images["train"], images["test"], float(opts["pca_remove"])
    )
    gen = torch.Generator().manual_seed(seed)
    arrays = {}
    for split in ("train", "test"):
        digits = mnist[split].targets["class"].numpy()[picks[split]]
        index = _pair(digits, fsdd[split].targets["digit"].numpy(), rng)
        arrays[f"{split}_image"] = images[split]
        arrays[f"{split}_audio"] = _noisy_log_mel(fsdd[split], index, opts, gen)
        arrays[f"{split}_digit"] = digits.astype(np.int64)
        arrays[f"{split}_speaker"] = fsdd[split].targets["speaker"].numpy()[index].astype(np.int64)
    for name, arr in arrays.items():
        _atomic(out / f"{name}.npy", lambda f, arr=arr: np.save(f, arr, allow_pickle=False))
    meta = {"version": VERSION, **opts, "pca_components_kept": k, "sample_rate": SAMPLE_RATE}
    text = json.dumps(meta, indent=1, sort_keys=True) + "\n"
    _atomic(out / "meta.json", lambda f: f.write(text.encode()))
    sums = "".join(f"{sha256(out / n)}  {n}\n" for n in [*FILES, "meta.json"])
    _atomic(out / "SHA256SUMS", lambda f: f.write(sums.encode()))  # last: a reader sees a whole build
    return out


def _atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path`` (a reader of a shared
    cache never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def built_version(folder: Path) -> int | None:
    """The build version recorded in ``folder`` (None: nothing built there)."""
    if not (folder / "meta.json").is_file():
        return None
    return int(json.loads((folder / "meta.json").read_text()).get("version", 1))


def load_avmnist(folder: Path, root: Path | None = None) -> tuple[TensorData, TensorData, dict]:
    """Verified splits: inputs image uint8 (N,1,28,28) and audio float32 log-mel (N, n_mels, frames),
    targets digit and speaker. A build of an older version is rebuilt in place with its recorded options
    when ``root`` holds MNIST and FSDD; otherwise it is one `DataError` line saying to rebuild."""
    if not (folder / "SHA256SUMS").is_file():
        raise DataError(f"AV-MNIST is not built in '{folder}'; run `polymodal data build avmnist`")
    version = built_version(folder)
    if version != VERSION:
        old = json.loads((folder / "meta.json").read_text()) if version is not None else {}
        if root is None or not all((root / s).is_dir() for s in ("mnist", "fsdd")):
            raise DataError(
                f"AV-MNIST in '{folder}' was built by version {version} and this polymodal reads version "
                f"{VERSION} (it adds the speaker task); rebuild it: polymodal data build avmnist"
            )
        build_avmnist(root, folder, **{k: v for k, v in old.items() if k in DEFAULTS})
    sums = read_sums(folder)
    verify(folder, sums)
    meta = json.loads((folder / "meta.json").read_text())
    splits = []
    for split in ("train", "test"):
        image, audio, *labels = (np.load(folder / f"{split}_{k}.npy") for k in KINDS)
        x = {"image": torch.from_numpy(image), "audio": torch.from_numpy(audio.astype(np.float32))}
        splits.append(TensorData(x, {t: torch.from_numpy(y) for t, y in zip(TASKS, labels, strict=True)}))
    return splits[0], splits[1], meta
