"""What every loader of a user's own files shares: reading one image or audio file, collecting the
problems found (or raising the first), a progress line for large folders, and seeded splits.

Images are read with Pillow (PNG / JPEG, EXIF orientation applied), converted to grey or RGB and
resized to one common size, as uint8 (C, H, W). Audio goes through `polymodal.data.speakers.read_audio`
(soundfile: WAV, FLAC, any sample rate, resampled with soxr). A file that cannot be read is one line
naming it: raised by a loader, listed by `polymodal data check`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from polymodal.batch import TensorData
from polymodal.data.speakers import AUDIO_EXTENSIONS, read_audio
from polymodal.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
T = TypeVar("T")


class OwnData(NamedTuple):
    """What a loader of the user's files returns; ``data/__init__.py`` makes it a `DataBundle`."""

    train: TensorData
    test: TensorData
    tasks: dict[str, int]
    modalities: dict[str, str]
    meta: dict[str, Any]


class Problems:
    """Problems with the data. ``strict`` (a loader): the first error raises its one-line `DataError`;
    otherwise (``polymodal data check``) every error and warning is kept, to be listed."""

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, message: str) -> None:
        if self.strict:
            raise DataError(message)
        self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def resolve_path(root: Path, path: str | None, dataset: str) -> Path:
    """``data.options.path`` under the data root (an absolute path stays itself)."""
    if not path:
        raise ConfigError(f"data.options.path: dataset '{dataset}' needs the path of your data")
    return root / Path(path).expanduser()


def image_size(size: int | Sequence[int]) -> tuple[int, int]:
    """``image_size`` as (H, W): one int for square images, or [H, W]."""
    hw = [size, size] if isinstance(size, int) else list(size)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise ConfigError(f"data.options.image_size={size!r}: give a positive int or [height, width]")
    return hw[0], hw[1]


def check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise ConfigError(f"data.options.channels={channels!r}: allowed: 1 (grey), 3 (RGB)")
    return channels


def check_fraction(test_fraction: float) -> float:
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"data.options.test_fraction={test_fraction!r}: must be in (0, 1)")
    return test_fraction


def read_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """An image file as uint8 (C, H, W), resized to ``size``; one `DataError` line naming it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("L" if channels == 1 else "RGB")
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            x = np.array(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise DataError(f"cannot read image file '{path}': not an image Pillow knows (corrupt?)") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"cannot read image file '{path}': {first}") from None
    return x[None] if x.ndim == 2 else np.ascontiguousarray(x.transpose(2, 0, 1))


@dataclass(frozen=True)
class Reading:
    """How cells become tensors: the loaders' shared options (``data.options``)."""

    image_size: int | list[int] = 32  # every image is resized to this (int: square, or [H, W])
    channels: int = 3  # 1: grey, 3: RGB
    sample_rate: int = 16000  # audio is resampled to this rate
    resample: bool = True  # False: a file at another rate is an error
    max_seconds: float | None = None  # audio cut to its first max_seconds
    max_len: int = 64  # text: at most this many tokens
    progress_every: int = 1000  # a progress line every this many files (large folders)


def file_reader(kind: str, reading: Reading) -> Callable[[Path], np.ndarray]:
    """``path -> array`` for a file modality (``image`` / ``audio``)."""
    if kind == "image":
        size, channels = image_size(reading.image_size), check_channels(reading.channels)
        return lambda p: read_image(p, size, channels)
    rate, resample, seconds = reading.sample_rate, reading.resample, reading.max_seconds
    limit = None if seconds is None else max(1, int(round(seconds * rate)))
    return lambda p: read_audio(p, rate, resample)[:limit]


def kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_EXTENSIONS else "audio" if suffix in AUDIO_EXTENSIONS else None


class FileProgress:
    """``reading image files: 2000/10000 (410 files/s, ETA 0:00:19)`` on stderr every ``every`` files;
    silent for fewer files than that."""

    def __init__(self, total: int, what: str, every: int) -> None:
        self.total, self.what, self.every = total, what, max(1, every)
        self.t0 = time.perf_counter()

    def step(self, done: int) -> None:
        if self.total < self.every or (done % self.every and done != self.total):
            return
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        eta = int((self.total - done) / rate) if rate > 0 else 0
        print(
            f"reading {self.what} files: {done}/{self.total} ({rate:.0f} files/s, "
            f"ETA {eta // 60}:{eta % 60:02d})",
            file=sys.stderr,
            flush=True,
        )


def read_files(
    paths: Sequence[Path | None],
    read: Callable[[Path], T],
    problems: Problems,
    what: str,
    every: int,
    where: Callable[[int], str] = lambda i: "",
) -> list[T | None]:
    """Read each path (None: an empty cell); a missing or unreadable file is a problem (None kept)."""
    out: list[T | None] = []
    todo = sum(p is not None for p in paths)
    progress, done = FileProgress(todo, what, every), 0
    for i, path in enumerate(paths):
        if path is None:
            out.append(None)
            continue
        value = None
        if not path.is_file():
            problems.error(f"missing {what} file '{path}'{where(i)}")
        else:
            try:
                value = read(path)
            except DataError as e:
                problems.error(f"{e}{where(i)}")
        out.append(value)
        done += 1
        progress.step(done)
    return out


def seeded_test(groups: Sequence[object], test_fraction: float, seed: int) -> np.ndarray:
    """(N,) bool test membership: within each group (a class), a seeded ``test_fraction`` of its rows
    (at least one, when the group has two or more)."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(groups), dtype=bool)
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(str(g), []).append(i)
    for key in sorted(by_group):
        rows = by_group[key]
        if len(rows) < 2:
            continue
        k = min(len(rows) - 1, max(1, int(round(test_fraction * len(rows)))))
        test[rng.permutation(rows)[:k]] = True
    return test


def class_names(values: Sequence[str | None]) -> list[str]:
    """The distinct non-empty labels, in natural order (numbers numerically, else alphabetically)."""
    names = sorted({v for v in values if v is not None})
    try:
        return sorted(names, key=float)
    except ValueError:
        return names
