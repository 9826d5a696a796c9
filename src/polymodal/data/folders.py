"""Your own folder of images or audio, one class per folder, as a one-modality manifest.

Layouts (read from the paths):

* ``ROOT/{class}/**/*.png|jpg|jpeg`` or ``*.wav|flac``: the task (``task``, default ``class``) is the
  folder name; a seeded ``test_fraction`` of each class is the test split;
* ``ROOT/train/{class}/…`` and ``ROOT/test/{class}/…``: the split is the top folder;
* audio only, FSDD-style names in ROOT or ROOT/recordings: ``{label}_{speaker}_{index}.wav|flac``,
  tasks ``class`` (the label) and ``speaker``.

The modality is named after its kind (``image`` or ``audio``); hidden files and files of the other
kinds are skipped (and counted). The files become the rows of a `Table`, read like a manifest's.
"""

from __future__ import annotations

from pathlib import Path

from polymodal.data.manifest import ModalitySpec, Plan, Table
from polymodal.data.own import (
    IMAGE_EXTENSIONS,
    Reading,
    check_fraction,
    kind_of,
    resolve_path,
)
from polymodal.data.speakers import AUDIO_EXTENSIONS, FSDD_NAME
from polymodal.errors import ConfigError, DataError

EXTENSIONS = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS}


def _files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _kind(folder: Path, files: list[Path], kind: str | None) -> str:
    if kind is not None:
        if kind not in EXTENSIONS:
            raise ConfigError(f"data.options.kind={kind!r}: allowed: image, audio")
        return kind
    found = sorted({k for k in map(kind_of, files) if k is not None})
    if not found:
        raise DataError(f"no image (.png, .jpg, .jpeg) or audio (.wav, .flac) files under '{folder}'")
    if len(found) > 1:
        raise ConfigError(
            f"data.options.kind: '{folder}' holds both image and audio files; set kind: image or kind: audio"
        )
    return found[0]


def _flat_rows(base: Path, media: list[Path], kind: str, task: str) -> list[dict[str, str | None]]:
    """FSDD-style audio names: ``{label}_{speaker}_{index}``."""
    if kind == "image":
        raise DataError(
            f"'{media[0]}' is not inside a class folder; expected '{base}/{{class}}/*.png|jpg|jpeg'"
        )
    if task == "speaker":
        raise ConfigError("data.options.task: 'speaker' is the second task of FSDD-style names; pick another")
    rows = []
    for f in media:
        m = FSDD_NAME.match(f.stem)
        if m is None:
            raise DataError(
                f"'{f}' does not fit '{{label}}_{{speaker}}_{{index}}.wav|flac' (FSDD style) and is not "
                f"inside a class folder '{base}/{{class}}/'"
            )
        rows.append({"file": f.relative_to(base).as_posix(), task: m["label"], "speaker": m["speaker"]})
    return rows


def _class_rows(folder: Path, media: list[Path], task: str) -> tuple[list[dict[str, str | None]], bool]:
    """``{class}/…`` or ``{train,test}/{class}/…`` rows, and whether the split is the top folder."""
    rel = [f.relative_to(folder) for f in media]
    split = {r.parts[0] for r in rel} <= {"train", "test"} and all(len(r.parts) >= 3 for r in rel)
    rows = []
    for f, r in zip(media, rel, strict=True):
        if len(r.parts) < 2:
            raise DataError(f"'{f}' is not inside a class folder; expected '{folder}/{{class}}/{r.name}'")
        row: dict[str, str | None] = {"file": r.as_posix(), task: r.parts[1] if split else r.parts[0]}
        if split:
            row["split"] = r.parts[0]
        rows.append(row)
    return rows, split


def folder_plan(
    root: Path,
    path: str | None = None,
    kind: str | None = None,
    task: str = "class",
    image_size: int | list[int] = 32,
    channels: int = 3,
    sample_rate: int = 16000,
    resample: bool = True,
    max_seconds: float | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    progress_every: int = 1000,
) -> Plan:
    """The ``folder`` dataset: ``kind`` (image | audio; default: what the folder holds)."""
    folder = resolve_path(root, path, "folder")
    if not folder.is_dir():
        raise DataError(f"folder '{folder}' is not a directory")
    files = _files(folder)
    kind = _kind(folder, files, kind)
    media = [f for f in files if kind_of(f) == kind]
    if not media:
        raise DataError(f"no {kind} files ({', '.join(EXTENSIONS[kind])}) under '{folder}'")
    base = folder / "recordings" if (folder / "recordings").is_dir() else folder
    flat = all(f.parent == base for f in media)
    split = False
    if flat:
        rows, layout, tasks = _flat_rows(base, media, kind, task), "fsdd names", [task, "speaker"]
    else:
        rows, split = _class_rows(folder, media, task)
        layout, tasks = ("train/test/{class} folders" if split else "{class} folders"), [task]
    columns = ["file", *tasks, *(["split"] if split else [])]
    reading = Reading(image_size, channels, sample_rate, resample, max_seconds, 64, progress_every)
    plan = Plan(
        "folder",
        Table(folder, columns, rows, None, base if flat else folder),
        [ModalitySpec(kind, kind, ("file",))],
        tasks,
        "split" if split else None,
        check_fraction(test_fraction),
        seed,
        reading,
    )
    skipped = [f for f in files if kind_of(f) != kind]
    plan.about = {"layout": layout, "skipped_files": len(skipped)}
    if skipped:
        plan.about["skipped_example"] = str(skipped[0])
    return plan
