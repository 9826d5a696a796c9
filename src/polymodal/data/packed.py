"""An on-disk, memory-mapped form of any dataset: train on data larger than memory.

``polymodal data pack NAME`` writes a dataset's splits as ``.npy`` arrays (uint8 / int16 / int64 /
float32 as they are) plus ``index.json`` (shapes, dtypes, tasks, modalities, sha256 of every file)
into ``$POLYMODAL_CACHE/packed/NAME``. ``data.placement: mmap`` then loads that folder with
``np.load(mmap_mode="r")``: a batch reads only its rows' pages, and `release_pages` hands the pages
back after every gather (``madvise(MADV_DONTNEED)``: they stay in the page cache, not in the process),
so the process never holds the dataset whole.
"""

from __future__ import annotations

import json
import mmap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.batch import TensorData
from polymodal.data.files import cache_dir, sha256
from polymodal.errors import DataError

FIELDS = ("inputs", "targets", "lengths", "target_mask", "modality_mask")  # TensorData's, in order
_MAPS: list[np.memmap] = []  # every live mapping, so `release_pages` can drop their resident pages


def packed_dir(name: str) -> Path:
    return cache_dir("packed") / name


def pack(bundle: Any, folder: Path) -> Path:
    """Write ``bundle``'s train and test splits to ``folder`` (overwriting), with checksums."""
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {
        "name": bundle.name,
        "tasks": bundle.tasks,
        "modalities": bundle.modalities,
        "meta": {k: v for k, v in bundle.meta.items() if _json_safe(v)},
        "splits": {},
    }
    for split in ("train", "test"):
        data: TensorData = getattr(bundle, split)
        entry: dict[str, Any] = {"rows": len(data)}
        for f in FIELDS:
            entry[f] = {}
            for key, t in getattr(data, f).items():
                file = f"{split}.{f}.{key}.npy"
                np.save(folder / file, t.cpu().numpy(), allow_pickle=False)
                entry[f][key] = {"file": file, "sha256": sha256(folder / file)}
        index["splits"][split] = entry
    (folder / "index.json").write_text(json.dumps(index, indent=1))
    return folder


def load_packed(name: str, folder: Path | None = None) -> tuple[dict[str, Any], TensorData, TensorData]:
    """(index, train, test) with every array memory-mapped read-only; checksums verified."""
    folder = folder or packed_dir(name)
    if not (folder / "index.json").is_file():
        raise DataError(
            f"dataset '{name}' is not packed (no '{folder / 'index.json'}'); run `polymodal data pack {name}`"
        )
    try:
        index = json.loads((folder / "index.json").read_text())
    except ValueError as e:
        raise DataError(f"'{folder / 'index.json'}' is not valid JSON: {e}") from None
    splits = [_split(folder, index["splits"][s]) for s in ("train", "test")]
    return index, splits[0], splits[1]


def _split(folder: Path, entry: dict[str, Any]) -> TensorData:
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for f in FIELDS:
        parts[f] = {}
        for key, e in entry.get(f, {}).items():  # packs written before modality_mask lack it
            path = folder / e["file"]
            if not path.is_file() or sha256(path) != e["sha256"]:
                raise DataError(f"packed file '{path}' is missing or does not match its sha256; pack again")
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            _MAPS.append(arr)
            with warnings.catch_warnings():  # read-only on purpose: a batch copies its rows
                warnings.simplefilter("ignore", UserWarning)
                parts[f][key] = torch.from_numpy(arr)
    return TensorData(*(parts[f] for f in FIELDS))


def release_pages() -> None:
    """Drop the pages of every mapping from this process (they stay cached by the kernel)."""
    for arr in _MAPS:
        m = getattr(arr, "_mmap", None)
        if m is not None and hasattr(mmap, "MADV_DONTNEED"):
            m.madvise(mmap.MADV_DONTNEED)


def _json_safe(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True
