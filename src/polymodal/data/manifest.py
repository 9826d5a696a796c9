"""Your own records: a CSV / JSONL table or a multi-modal manifest, as `TensorData` splits.

A manifest has one column per modality and one per task. A modality cell is a file path (``image``,
``audio``; relative to the manifest's folder) or a value (``text``; ``number``: one or more numeric
columns, a float (B, D) ``tabular`` modality). An empty cell is a missing modality (``modality_mask``
False, a zero slot) or a missing label (``target_mask`` False, target -1). Splits come from a
``split`` column (``train`` / ``test``; an empty cell is train) or are drawn with a seed
(``test_fraction`` of each class of the first task). Text becomes token ids with the BANKING77
tokenizer and a vocabulary of the training split; numbers are standardised with the training split's
mean and standard deviation (a missing number in a present row becomes that mean, i.e. 0).

`table` is the same with the modalities named for you: a ``text`` column and the numeric columns.
A plan (`Plan`) is read first — the file and every option checked, a wrong one is one
`ConfigError` line naming it and what exists — then `build` reads the cells: a loader raises the
first problem, ``polymodal data check`` lists them all (`Problems`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.batch import TensorData
from polymodal.data.banking77 import PAD, build_vocab, encode
from polymodal.data.own import (
    OwnData,
    Problems,
    Reading,
    check_fraction,
    class_names,
    file_reader,
    read_files,
    resolve_path,
    seeded_test,
)
from polymodal.errors import ConfigError, DataError

KINDS = {"image": "image", "audio": "audio", "text": "text", "number": "tabular", "tabular": "tabular"}
SPLITS = ("train", "test")


@dataclass
class Table:
    """Rows of cells as text (None: an empty cell), with each row's line for messages."""

    path: Path
    columns: list[str]
    rows: list[dict[str, str | None]]
    lines: list[int] | None = None  # None: rows of a scanned folder (their paths name them)
    base: Path | None = None  # what relative file paths are relative to (default: the table's folder)

    @property
    def folder(self) -> Path:
        return self.base if self.base is not None else self.path.parent

    def column(self, name: str) -> list[str | None]:
        return [r.get(name) for r in self.rows]

    def where(self, i: int, column: str) -> str:
        return "" if self.lines is None else f" ('{self.path}' line {self.lines[i]}, column '{column}')"

    def missing_column(self, at: str, column: object) -> ConfigError:
        return ConfigError(
            f"{at}: column '{column}' is not in '{self.path}'; it has: {', '.join(self.columns)}"
        )


@dataclass(frozen=True)
class ModalitySpec:
    name: str
    kind: str  # image | audio | text | number
    columns: tuple[str, ...]


@dataclass
class Plan:
    """What to read: the table, its modalities and tasks, the split and the reading options."""

    dataset: str
    table: Table
    modalities: list[ModalitySpec]
    tasks: list[str]
    split_column: str | None
    test_fraction: float = 0.2
    seed: int = 0
    reading: Reading = field(default_factory=Reading)
    about: dict[str, Any] = field(default_factory=dict)  # extra meta (the folder layout)


def _cell(value: Any, path: Path, line: int) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, dict | list):
        raise DataError(f"'{path}' line {line}: a cell holds {type(value).__name__}; expected a value")
    text = str(value).strip()
    return text or None


def _read_csv(path: Path) -> Table:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        columns = [c.strip() for c in reader.fieldnames or []]
        if not columns:
            raise DataError(f"'{path}' is empty; expected a header line of column names")
        dup = next((c for c in columns if columns.count(c) > 1), None)
        if dup is not None:
            raise DataError(f"'{path}': column '{dup}' appears twice in the header")
        rows, lines = [], []
        for raw in reader:
            if None in raw:
                raise DataError(f"'{path}' line {reader.line_num}: more cells than the header has columns")
            rows.append(
                {c: _cell(v, path, reader.line_num) for c, v in zip(columns, raw.values(), strict=True)}
            )
            lines.append(reader.line_num)
    return Table(path, columns, rows, lines)


def _read_jsonl(path: Path) -> Table:
    columns: dict[str, None] = {}
    rows, lines = [], []
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise DataError(f"'{path}' line {n}: not valid JSON ({e})") from None
            if not isinstance(rec, dict):
                raise DataError(f"'{path}' line {n}: expected a JSON object, got {type(rec).__name__}")
            columns.update(dict.fromkeys(str(k) for k in rec))
            rows.append({str(k): _cell(v, path, n) for k, v in rec.items()})
            lines.append(n)
    return Table(path, list(columns), rows, lines)


def read_table(path: Path) -> Table:
    """A .csv / .tsv / .jsonl file as a `Table`; one `DataError` line for a missing or malformed file."""
    if not path.is_file():
        raise DataError(f"table '{path}' does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".ndjson"):
        raise DataError(f"'{path}': expected a .csv, .tsv or .jsonl file")
    try:
        table = _read_jsonl(path) if suffix in (".jsonl", ".ndjson") else _read_csv(path)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read table '{path}': {str(e).splitlines()[0]}") from None
    if not table.rows:
        raise DataError(f"'{path}' has no rows")
    return table


def parse_modalities(spec: object, table: Table) -> list[ModalitySpec]:
    """``{name: kind}`` or ``{name: {kind, column | columns}}`` checked against the table's columns."""
    if not spec or not isinstance(spec, Mapping):
        raise ConfigError(
            "data.options.modalities: give each modality's kind, e.g. {photo: image, note: text, "
            "age: number}; "
            f"'{table.path}' has columns: {', '.join(table.columns)}"
        )
    out = []
    for name, v in spec.items():
        at = f"data.options.modalities.{name}"
        if isinstance(v, Mapping):
            bad = sorted(set(v) - {"kind", "column", "columns"})
            if bad:
                raise ConfigError(f"{at}.{bad[0]}: unknown key; allowed: kind, column, columns")
            kind, cols = v.get("kind"), v["columns"] if "columns" in v else [v.get("column", name)]
        else:
            kind, cols = v, [name]
        if kind not in KINDS:
            raise ConfigError(f"{at}={kind!r}: unknown kind; allowed: image, audio, text, number")
        kind = "number" if kind == "tabular" else str(kind)
        if isinstance(cols, str) or not cols or (kind != "number" and len(cols) != 1):
            raise ConfigError(
                f"{at}: a {kind} modality reads {'one column' if kind != 'number' else 'a list'}"
            )
        missing = next((c for c in cols if c not in table.columns), None)
        if missing is not None:
            raise table.missing_column(at, missing)
        out.append(ModalitySpec(str(name), kind, tuple(str(c) for c in cols)))
    return out


def task_columns(tasks: Sequence[str] | None, table: Table, used: set[str]) -> list[str]:
    """The label columns: ``tasks`` (each must exist), else the ``label`` column."""
    if tasks is None:
        if "label" not in table.columns:
            free = [c for c in table.columns if c not in used]
            raise ConfigError(
                f"data.options.tasks: give the label column(s); '{table.path}' has no 'label' column "
                f"(other columns: {', '.join(free) or 'none'})"
            )
        tasks = ["label"]
    if isinstance(tasks, str) or not tasks:
        raise ConfigError(f"data.options.tasks={tasks!r}: give a list of label columns, e.g. [label]")
    for t in tasks:
        if t not in table.columns:
            raise table.missing_column("data.options.tasks", t)
        if t in used:
            raise ConfigError(f"data.options.tasks: column '{t}' is also read as a modality")
    return list(tasks)


def _split_column(split_column: str | None, table: Table, used: set[str]) -> str | None:
    if split_column is not None and split_column not in table.columns:
        raise table.missing_column("data.options.split_column", split_column)
    col = split_column or ("split" if "split" in table.columns else None)
    if col is not None and col in used:
        raise ConfigError(f"data.options.split_column: column '{col}' is also a modality or a task")
    return col


def manifest_plan(
    root: Path,
    path: str | None = None,
    modalities: dict[str, Any] | None = None,
    tasks: list[str] | None = None,
    split_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    image_size: int | list[int] = 32,
    channels: int = 3,
    sample_rate: int = 16000,
    resample: bool = True,
    max_seconds: float | None = None,
    max_len: int = 64,
    progress_every: int = 1000,
) -> Plan:
    """The ``manifest`` dataset's options, checked against the file (see the module docstring)."""
    table = read_table(resolve_path(root, path, "manifest"))
    mods = parse_modalities(modalities, table)
    used = {c for m in mods for c in m.columns}
    names = task_columns(tasks, table, used)
    col = _split_column(split_column, table, used | set(names))
    reading = Reading(image_size, channels, sample_rate, resample, max_seconds, max_len, progress_every)
    return Plan("manifest", table, mods, names, col, check_fraction(test_fraction), seed, reading)


def table_plan(
    root: Path,
    path: str | None = None,
    text: str | None = None,
    numbers: list[str] | None = None,
    tasks: list[str] | None = None,
    split_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_len: int = 64,
) -> Plan:
    """The ``table`` dataset: modality ``text`` from the ``text`` column (default: the column named
    text, if any) and ``tabular`` from the ``numbers`` columns (default: every other column, but the
    tasks and the split, whose cells are all numbers)."""
    table = read_table(resolve_path(root, path, "table"))
    if text is not None and text not in table.columns:
        raise table.missing_column("data.options.text", text)
    text = text if text is not None else ("text" if "text" in table.columns else None)
    names = task_columns(tasks, table, {text} if text else set())
    col = _split_column(split_column, table, set(names) | ({text} if text else set()))
    unused: list[str] = []
    if numbers is None:  # every other column whose cells are all numbers
        rest = [c for c in table.columns if c not in {text, col, *names}]
        numbers = [c for c in rest if _numeric(table.column(c))]
        unused = [c for c in rest if c not in numbers]
    missing = next((c for c in numbers if c not in table.columns), None)
    if missing is not None:
        raise table.missing_column("data.options.numbers", missing)
    mods = [ModalitySpec("text", "text", (text,))] if text else []
    mods += [ModalitySpec("tabular", "number", tuple(numbers))] if numbers else []
    if not mods:
        raise ConfigError(f"'{table.path}': no text or number columns to learn from besides the tasks")
    plan = Plan(
        "table", table, mods, names, col, check_fraction(test_fraction), seed, Reading(max_len=max_len)
    )
    plan.about = {"unused_columns": unused} if unused else {}
    return plan


def _numeric(cells: list[str | None]) -> bool:
    try:
        return any(c is not None for c in cells) and all(c is None or math.isfinite(float(c)) for c in cells)
    except ValueError:
        return False


def assign_split(plan: Plan, problems: Problems) -> np.ndarray:
    """(N,) bool, True for test rows: the split column, else a seeded fraction of each class."""
    table, col = plan.table, plan.split_column
    if col is None:
        return seeded_test(table.column(plan.tasks[0]), plan.test_fraction, plan.seed)
    test = np.zeros(len(table.rows), dtype=bool)
    for i, v in enumerate(table.column(col)):
        if v is not None and v.lower() not in SPLITS:
            problems.error(
                f"split '{v}' is not one of: train, test (an empty cell is train){table.where(i, col)}"
            )
        test[i] = v is not None and v.lower() == "test"
    return test


@dataclass
class Encoded:
    x: torch.Tensor | None  # None when only checking
    present: np.ndarray  # (N,) bool
    lengths: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)  # meta of this modality


def _pad(
    values: list[np.ndarray | None], present: np.ndarray, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad variable-length rows; a missing row is zeros of the shortest present length."""
    sizes = [len(v) for v in values if v is not None]
    fill = min(sizes) if sizes else 1
    lengths = torch.tensor([len(v) if v is not None else fill for v in values], dtype=torch.int64)
    x = torch.zeros(len(values), int(lengths.max()), dtype=dtype)
    for i, v in enumerate(values):
        if v is not None:
            x[i, : len(v)] = torch.from_numpy(np.asarray(v))
    return x, lengths


def encode_files(spec: ModalitySpec, plan: Plan, problems: Problems, keep: bool) -> Encoded:
    """An image / audio column: each cell a file path (relative to the table's folder)."""
    table, col = plan.table, spec.columns[0]
    cells = table.column(col)
    paths = [None if v is None else table.folder / Path(v).expanduser() for v in cells]
    read = file_reader(spec.kind, plan.reading)
    values = read_files(
        paths,
        read if keep else lambda p: read(p) is not None,
        problems,
        spec.kind,
        plan.reading.progress_every,
        lambda i: table.where(i, col),
    )
    present = np.array([v is not None for v in values])
    if not keep:
        return Encoded(None, np.array([c is not None for c in cells]))
    if spec.kind == "audio":
        x, lengths = _pad(values, present, torch.float32)
        return Encoded(x, present, lengths)
    shape = next(v.shape for v in values if v is not None) if present.any() else (1, 1, 1)
    x = torch.zeros(len(values), *shape, dtype=torch.uint8)
    for i, v in enumerate(values):
        if v is not None:
            x[i] = torch.from_numpy(v)
    return Encoded(x, present)


def encode_text(spec: ModalitySpec, plan: Plan, vocab: list[str]) -> Encoded:
    """A text column as token ids (B, L) with lengths; a missing cell is one pad token."""
    cells = plan.table.column(spec.columns[0])
    present = np.array([c is not None for c in cells])
    ids, lengths = encode([c or "" for c in cells], vocab, plan.reading.max_len)
    ids[torch.from_numpy(~present)] = PAD
    lengths[torch.from_numpy(~present)] = 1
    return Encoded(ids[:, : int(lengths.max())].contiguous(), present, lengths)


def encode_numbers(spec: ModalitySpec, plan: Plan, test: np.ndarray, problems: Problems) -> Encoded:
    """Numeric columns as float (B, D), standardised with the training rows' mean and deviation."""
    table = plan.table
    m = np.full((len(table.rows), len(spec.columns)), np.nan)
    for j, col in enumerate(spec.columns):
        for i, v in enumerate(table.column(col)):
            if v is None:
                continue
            try:
                m[i, j] = float(v)
            except ValueError:
                problems.error(f"'{v}' is not a number{table.where(i, col)}")
            if math.isinf(m[i, j]):
                problems.error(f"'{v}' is not a finite number{table.where(i, col)}")
                m[i, j] = np.nan
    seen = ~np.isnan(m)
    train = seen & ~test[:, None]
    count = np.maximum(train.sum(0), 1)
    mean = np.where(train, m, 0.0).sum(0) / count
    std = np.sqrt(np.where(train, (m - mean) ** 2, 0.0).sum(0) / count)
    std = np.where(std > 0, std, 1.0)
    x = np.where(seen, (m - mean) / std, 0.0).astype(np.float32)
    info = {"columns": list(spec.columns), "mean": mean.tolist(), "std": std.tolist()}
    info["empty_cells"] = int((~seen).sum())
    return Encoded(torch.from_numpy(x), seen.any(1), None, info)


def encode_targets(
    plan: Plan,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, list[str]]]:
    """(targets, target masks, class names) per task; a missing label is target -1, mask False."""
    targets, masks, classes = {}, {}, {}
    for t in plan.tasks:
        cells = plan.table.column(t)
        classes[t] = class_names(cells)
        index = {c: i for i, c in enumerate(classes[t])}
        y = torch.tensor([index[c] if c is not None else -1 for c in cells], dtype=torch.int64)
        targets[t], masks[t] = y, y >= 0
    return targets, masks, classes


def _vocab(plan: Plan, test: np.ndarray) -> list[str] | None:
    """One vocabulary for every text modality, built on the training rows only."""
    cols = [m.columns[0] for m in plan.modalities if m.kind == "text"]
    if not cols:
        return None
    cells = [plan.table.column(c) for c in cols]
    return build_vocab(
        [c for col in cells for c, t in zip(col, test, strict=True) if c is not None and not t]
    )


def _encode(
    plan: Plan, problems: Problems, keep: bool
) -> tuple[np.ndarray, dict[str, Encoded], dict[str, Any]]:
    """(test rows, each modality encoded, targets / masks / classes / vocab)."""
    test = assign_split(plan, problems)
    targets, masks, classes = encode_targets(plan)
    vocab = _vocab(plan, test)
    enc = {}
    for m in plan.modalities:
        if m.kind in ("image", "audio"):
            enc[m.name] = encode_files(m, plan, problems, keep)
        elif m.kind == "text":
            assert vocab is not None
            enc[m.name] = encode_text(m, plan, vocab)
        else:
            enc[m.name] = encode_numbers(m, plan, test, problems)
    return test, enc, {"targets": targets, "masks": masks, "classes": classes, "vocab": vocab}


def _counts(plan: Plan, test: np.ndarray, enc: dict[str, Encoded], labels: dict[str, Any]) -> dict[str, Any]:
    """Rows, present / missing cells per modality, examples per class and missing labels, by split."""

    def split(sel: np.ndarray) -> dict[str, int]:
        return {"train": int((sel & ~test).sum()), "test": int((sel & test).sum())}

    mods = {}
    for m in plan.modalities:
        e = enc[m.name]
        mods[m.name] = {"kind": m.kind, "columns": list(m.columns), "present": split(e.present)}
        mods[m.name] |= {"missing": split(~e.present)} | {
            k: v for k, v in e.info.items() if k == "empty_cells"
        }
    tasks = {}
    for t in plan.tasks:
        y = labels["targets"][t].numpy()
        per_class = {c: split(y == i) for i, c in enumerate(labels["classes"][t])}
        tasks[t] = {"classes": per_class, "missing": split(y < 0)}
    how = (
        f"column '{plan.split_column}'"
        if plan.split_column
        else f"seeded: {plan.test_fraction:.0%} of each '{plan.tasks[0]}' class, seed {plan.seed}"
    )
    return {"rows": split(np.ones(len(test), dtype=bool)), "split": how, "modalities": mods, "tasks": tasks}


def _validate(counts: dict[str, Any], problems: Problems) -> None:
    """Errors that make training impossible; warnings for what is only odd."""
    if counts["rows"]["train"] == 0:
        problems.error("no training rows (every row is split=test)")
    if counts["rows"]["test"] == 0:
        problems.error(
            "no test rows: mark some rows split=test, or drop the split column to draw test_fraction"
        )
    for m, c in counts["modalities"].items():
        if c["present"]["train"] + c["present"]["test"] == 0:
            problems.error(f"modality '{m}' (column {', '.join(c['columns'])}) is empty in every row")
    for t, c in counts["tasks"].items():
        if not c["classes"] or sum(v["train"] for v in c["classes"].values()) == 0:
            problems.error(f"task '{t}' has no labeled training rows")
        for name, v in c["classes"].items():
            if v["train"] == 0:
                problems.warn(f"class '{name}' of task '{t}' has no training rows (only {v['test']} test)")


def _meta(
    plan: Plan, enc: dict[str, Encoded], labels: dict[str, Any], counts: dict[str, Any]
) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": str(plan.table.path), "classes": labels["classes"], "counts": counts}
    meta |= plan.about
    if any(m.kind == "audio" for m in plan.modalities):
        meta["sample_rate"] = plan.reading.sample_rate
    if labels["vocab"] is not None:
        meta["vocab"], meta["vocab_size"] = labels["vocab"], len(labels["vocab"])
    numbers = [m.name for m in plan.modalities if m.kind == "number"]
    if numbers:
        meta["feature_dims"] = {m: len(enc[m].info["columns"]) for m in numbers}
        meta["standardise"] = {m: {k: enc[m].info[k] for k in ("columns", "mean", "std")} for m in numbers}
    return meta


def inspect_plan(plan: Plan, problems: Problems) -> dict[str, Any]:
    """Read every cell (every file decoded) without keeping the data: the meta with its counts."""
    test, enc, labels = _encode(plan, problems, keep=False)
    counts = _counts(plan, test, enc, labels)
    _validate(counts, problems)
    return _meta(plan, enc, labels, counts)


def build(plan: Plan) -> OwnData:
    """The train / test `TensorData` of a plan; the first problem raises its one-line `DataError`."""
    problems = Problems(strict=True)
    test, enc, labels = _encode(plan, problems, keep=True)
    counts = _counts(plan, test, enc, labels)
    _validate(counts, problems)
    data = TensorData(
        {m: e.x for m, e in enc.items() if e.x is not None},
        labels["targets"],
        {m: e.lengths for m, e in enc.items() if e.lengths is not None},
        labels["masks"],
        {m: torch.from_numpy(e.present.copy()) for m, e in enc.items()},
    )
    rows = lambda sel: torch.from_numpy(np.flatnonzero(sel))  # noqa: E731
    return OwnData(
        data.subset(rows(~test)),
        data.subset(rows(test)),
        {t: len(labels["classes"][t]) for t in plan.tasks},
        {m.name: KINDS[m.kind] for m in plan.modalities},
        _meta(plan, enc, labels, counts),
    )
