"""MultiMNIST as built by Sener & Koltun (NeurIPS 2018, arXiv:1810.04650, section 6.1).

Each example overlays two MNIST digits of the same split on a 36×36 canvas: one at the top-left
(rows/cols 0-27, task ``left``) and a second, seeded partner at the bottom-right (rows/cols 6-33,
task ``right``), overlapping pixels taking the maximum; the canvas is resized to 28×28 (nearest
neighbour, as in the authors' loader). Built once from the MNIST files into a cache folder with a
SHA256SUMS manifest (``polymodal data build multimnist``); the same seed gives the same bytes, and
loading verifies the sums.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from polymodal.batch import TensorData
from polymodal.data.files import cache_dir, dataset_dir, read_sums, sha256, verify
from polymodal.data.mnist import MNIST_SHA256, load_idx_folder

SPLITS = ("train", "test")


def overlay(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """(N,1,28,28) uint8 pairs -> (N,1,28,28) uint8 MultiMNIST images."""
    canvas = torch.zeros(len(left), 1, 36, 36, dtype=torch.uint8)
    canvas[:, :, 0:28, 0:28] = left
    canvas[:, :, 6:34, 6:34] = torch.maximum(canvas[:, :, 6:34, 6:34], right)
    return F.interpolate(canvas.float(), size=(28, 28), mode="nearest").round().to(torch.uint8)


def build_multimnist(root: Path, seed: int = 0, out: str | Path | None = None) -> Path:
    """Write train/test images and labels as .npy plus SHA256SUMS into ``out`` (default: the cache)."""
    folder = Path(out) if out is not None else cache_dir("multimnist")
    folder.mkdir(parents=True, exist_ok=True)
    mnist = dataset_dir(root, "mnist", "mnist")
    files = {}
    for i, split in enumerate(SPLITS):
        data = load_idx_folder(mnist, split, MNIST_SHA256)
        x, y = data.inputs["image"], data.targets["class"]
        partner = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 7919 + i))
        images = overlay(x, x[partner]).numpy()
        labels = torch.stack([y, y[partner]], dim=1).to(torch.uint8).numpy()
        for kind, arr in (("images", images), ("labels", labels)):
            name = f"{split}-{kind}.npy"
            with open(_tmp(folder / name), "wb") as f:
                np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
            files[name] = _publish(folder / name)
    _tmp(folder / "meta.json").write_text(
        json.dumps({"seed": seed, "source": "mnist"}, sort_keys=True) + "\n"
    )
    files["meta.json"] = _publish(folder / "meta.json")
    _tmp(folder / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, d in sorted(files.items())))
    _publish(folder / "SHA256SUMS")  # last: its presence means the build is complete
    return folder


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _publish(path: Path) -> str:
    """Rename the temporary file into place (atomic), so concurrent builders never see a partial file."""
    digest = sha256(_tmp(path))
    os.replace(_tmp(path), path)
    return digest


def load_multimnist(root: Path, folder: Path | None = None) -> tuple[TensorData, TensorData]:
    """Train and test splits (building into the cache on first use); tasks ``left`` and ``right``."""
    folder = folder if folder is not None else cache_dir("multimnist")
    if not (folder / "SHA256SUMS").is_file():
        build_multimnist(root, out=folder)
    verify(folder, read_sums(folder))
    out = []
    for split in SPLITS:
        x = torch.from_numpy(np.load(folder / f"{split}-images.npy", allow_pickle=False))
        y = torch.from_numpy(np.load(folder / f"{split}-labels.npy", allow_pickle=False).astype(np.int64))
        out.append(TensorData({"image": x}, {"left": y[:, 0].clone(), "right": y[:, 1].clone()}))
    return out[0], out[1]
