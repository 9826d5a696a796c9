"""Finding the data root and verifying files before anything reads them.

Every loader takes a path. The root comes from ``--data-root`` / ``data.root`` or else the
``POLYMODAL_DATA`` environment variable; each dataset lives in a folder under it. Files are checked
against known sha256 sums (built in for the datasets we ship loaders for, or the folder's own
``SHA256SUMS``) so a truncated download fails loudly with the file's name instead of training on junk.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from polymodal.errors import DataError

ENV_VAR = "POLYMODAL_DATA"
CACHE_VAR = "POLYMODAL_CACHE"


def cache_dir(name: str) -> Path:
    """Writable folder for datasets we build (the data root may be read-only).

    ``$POLYMODAL_CACHE/NAME``, else ``~/.cache/polymodal/NAME``.
    """
    base = os.environ.get(CACHE_VAR) or Path.home() / ".cache" / "polymodal"
    path = Path(base) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """The data root: the argument, else $POLYMODAL_DATA; a clear error if neither exists."""
    if root is None:
        root = os.environ.get(ENV_VAR)
        if not root:
            raise DataError(f"no data root given: pass --data-root / --set data.root=PATH or set {ENV_VAR}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data root '{path}' is not a directory")
    return path


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_sums(folder: Path) -> dict[str, str]:
    """Parse a ``sha256sum`` style SHA256SUMS file: relative path -> hex digest."""
    sums_file = folder / "SHA256SUMS"
    if not sums_file.is_file():
        raise DataError(f"missing checksum list '{sums_file}' (expected `sha256sum` output)")
    sums = {}
    for line in sums_file.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def verify(folder: Path, expected: dict[str, str]) -> None:
    """Check that each file exists and has its sha256; one line names the first bad file."""
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"missing data file '{path}' (expected sha256 {digest[:12]}…)")
        got = sha256(path)
        if got != digest:
            raise DataError(f"corrupt data file '{path}': sha256 {got[:12]}… but expected {digest[:12]}…")


def dataset_dir(root: Path, name: str, folder: str) -> Path:
    path = root / folder
    if not path.is_dir():
        raise DataError(f"dataset '{name}' not found: expected folder '{path}'")
    return path
