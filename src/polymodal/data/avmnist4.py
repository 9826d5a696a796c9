"""AV-MNIST4: AV-MNIST's image and audio plus two more modalities, for fusion search with many modalities.

* ``image``, ``audio``, ``digit``: AV-MNIST's own arrays, read from its build (not copied: the build
  records the sha256 of AV-MNIST's ``SHA256SUMS`` and loading checks it still matches);
* ``image2`` — redundant: the *same* MNIST digit, degraded differently: a random ``occlude`` x
  ``occlude`` square blanked (its position drawn per image) and Gaussian pixel noise of standard
  deviation ``noise`` (in [0, 1] units), where the AV-MNIST image is a PCA-blurred version;
* ``distractor`` — carries nothing about the label: ``shuffled`` (default) is a clean MNIST digit of
  another row of the same split (the image's labels shuffled: a real digit, the wrong one),
  ``noise`` is uniform noise.

The MNIST rows behind AV-MNIST's images are recovered from its recorded seed and sizes (the same
draws its builder made) and checked against its stored digits. Files are ``.npy`` with their sha256
in ``SHA256SUMS`` and every option in ``meta.json``; building twice gives identical bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from polymodal.batch import TensorData
from polymodal.data.files import cache_dir, dataset_dir, read_sums, sha256, verify
from polymodal.data.mnist import MNIST_SHA256, load_idx_folder
from polymodal.errors import ConfigError, DataError

VERSION = 1
DEFAULTS: dict[str, float | int | str] = {"seed": 0, "occlude": 14, "noise": 0.3, "distractor": "shuffled"}
NEW = ("image2", "distractor")
FILES = [f"{split}_{kind}.npy" for split in ("train", "test") for kind in NEW]


def avmnist_folder(root: Path) -> Path:
    """Where AV-MNIST is built: under the data root if there, else the build cache."""
    return root / "avmnist" if (root / "avmnist" / "SHA256SUMS").is_file() else cache_dir("avmnist")


def _mnist_rows(meta: dict, root: Path) -> dict[str, np.ndarray]:
    """The clean MNIST images AV-MNIST's builder picked (its first two draws from its seed)."""
    rng = np.random.default_rng(int(meta["seed"]))
    out = {}
    for split in ("train", "test"):
        mnist = load_idx_folder(dataset_dir(root, "mnist", "mnist"), split, MNIST_SHA256)
        pick = np.sort(rng.permutation(len(mnist))[: int(meta[f"n_{split}"])])
        out[split] = mnist.inputs["image"].numpy()[pick]
        out[f"{split}_digit"] = mnist.targets["class"].numpy()[pick]
    return out


def _degrade(images: np.ndarray, side: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    x = images.astype(np.float64) / 255.0
    n, h, w = len(x), x.shape[-2], x.shape[-1]
    top, left = rng.integers(0, h - side + 1, n), rng.integers(0, w - side + 1, n)
    rows, cols = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    hole = (rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
    hole = hole & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side)
    x[:, 0][hole] = 0.0
    x = x + noise * rng.standard_normal(x.shape)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def build_avmnist4(root: Path, out: Path | None = None, **options: float | int | str) -> Path:
    """Build AV-MNIST4 into ``out`` (default ``cache_dir('avmnist4')``), building AV-MNIST first if needed."""
    from polymodal.data.avmnist import build_avmnist, load_avmnist

    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"avmnist4 has no option '{unknown[0]}'; allowed: {', '.join(DEFAULTS)}")
    opts = {**DEFAULTS, **options}
    if opts["distractor"] not in ("shuffled", "noise"):
        raise ConfigError(f"avmnist4 distractor={opts['distractor']!r}: allowed: shuffled, noise")
    if not 0 <= int(opts["occlude"]) <= 28:
        raise ConfigError(f"avmnist4 occlude={opts['occlude']}: allowed: 0..28")
    source = avmnist_folder(root)
    if not (source / "SHA256SUMS").is_file():
        build_avmnist(root, source)
    train, test, meta = load_avmnist(source, root)
    clean = _mnist_rows(meta, root)
    rng = np.random.default_rng(int(opts["seed"]))
    out = Path(out) if out is not None else cache_dir("avmnist4")
    out.mkdir(parents=True, exist_ok=True)
    for split, data in (("train", train), ("test", test)):
        if not np.array_equal(clean[f"{split}_digit"], data.targets["digit"].numpy()):
            raise DataError(f"AV-MNIST in '{source}' does not match MNIST's rows for its seed; rebuild it")
        image2 = _degrade(clean[split], int(opts["occlude"]), float(opts["noise"]), rng)
        if opts["distractor"] == "shuffled":
            distractor = clean[split][rng.permutation(len(clean[split]))]
        else:
            distractor = rng.integers(0, 256, clean[split].shape, dtype=np.uint8)
        np.save(out / f"{split}_image2.npy", image2, allow_pickle=False)
        np.save(out / f"{split}_distractor.npy", distractor, allow_pickle=False)
    info = {"version": VERSION, **opts, "avmnist": meta, "avmnist_sums": sha256(source / "SHA256SUMS")}
    (out / "meta.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    (out / "SHA256SUMS").write_text("".join(f"{sha256(out / n)}  {n}\n" for n in [*FILES, "meta.json"]))
    return out


def load_avmnist4(root: Path) -> tuple[TensorData, TensorData, dict]:
    """Verified splits with inputs image, audio, image2, distractor and AV-MNIST's targets."""
    from polymodal.data.avmnist import load_avmnist

    folder = root / "avmnist4" if (root / "avmnist4" / "SHA256SUMS").is_file() else cache_dir("avmnist4")
    if not (folder / "SHA256SUMS").is_file():
        raise DataError(f"AV-MNIST4 is not built in '{folder}'; run `polymodal data build avmnist4`")
    verify(folder, read_sums(folder))
    meta = json.loads((folder / "meta.json").read_text())
    source = avmnist_folder(root)
    train, test, _ = load_avmnist(source, root)
    if sha256(source / "SHA256SUMS") != meta["avmnist_sums"]:
        raise DataError(
            f"AV-MNIST in '{source}' changed since AV-MNIST4 was built; run `polymodal data build avmnist4`"
        )
    splits = []
    for split, data in (("train", train), ("test", test)):
        x = dict(data.inputs)
        x.update({k: torch.from_numpy(np.load(folder / f"{split}_{k}.npy")) for k in NEW})
        splits.append(TensorData(x, data.targets))
    return splits[0], splits[1], meta
