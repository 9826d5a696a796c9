"""Any folder in the MNIST IDX format: MNIST, Fashion-MNIST and KMNIST load the same way.

The four ``*.gz`` files are checked against built-in sums for MNIST, else against the folder's
``SHA256SUMS``; the IDX headers are checked too, so a wrong or truncated file names itself.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from polymodal.batch import TensorData
from polymodal.data.files import read_sums, verify
from polymodal.errors import DataError

FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}
MNIST_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one gzipped IDX file (images: magic 2051, labels: magic 2049)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read '{path}' as gzip: {e}") from None
    ndim = magic & 0xFF
    if len(raw) < 4 + 4 * ndim or struct.unpack(">I", raw[:4])[0] != magic:
        raise DataError(f"'{path}' is not an IDX file with magic {magic}")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"'{path}' holds {body.size} bytes but its header says {dims}")
    return body.reshape(dims)


def load_idx_folder(folder: Path, split: str, builtin_sums: dict[str, str] | None = None) -> TensorData:
    """One split as ``TensorData(inputs={'image': uint8 (N,1,28,28)}, targets={'class': int64})``."""
    names = [FILES[(split, "images")], FILES[(split, "labels")]]
    sums = builtin_sums if builtin_sums is not None else read_sums(folder)
    missing = [n for n in names if n not in sums]
    if missing:
        raise DataError(f"'{folder}/SHA256SUMS' lists no checksum for {', '.join(missing)}")
    verify(folder, {n: sums[n] for n in names})
    images = read_idx(folder / names[0], 2051)
    labels = read_idx(folder / names[1], 2049)
    if len(images) != len(labels):
        raise DataError(f"'{folder}': {len(images)} {split} images but {len(labels)} labels")
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return TensorData({"image": x}, {"class": y})
