"""Atomic checkpoints: write to a temporary file in the same folder, fsync, then rename.

A run killed mid-write leaves the previous checkpoint intact. Loading uses ``weights_only=True``,
so a checkpoint can never run code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from polymodal.errors import PolymodalError


def save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PolymodalError(f"no checkpoint at '{path}'")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to a user
        raise PolymodalError(
            f"cannot load checkpoint '{path}': the file is corrupt or truncated ({type(e).__name__}); "
            "an interrupted run keeps its previous checkpoint, so this one was damaged after writing"
        ) from None
