"""`polymodal data check PATH`: validate your own data before training on it.

Every cell is read (every file decoded) as the loader would, without keeping the data; the report
gives the rows per split, present / missing cells per modality, examples per class and missing labels
per task, then every problem, each naming its file (and line and column, for a table). Errors are what
would stop the loader (a missing or unreadable file, a value that is not a number, a bad split); the
command exits 2 when there is any.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymodal.data import DATASETS
from polymodal.data.manifest import Plan, inspect_plan
from polymodal.data.own import Problems, image_size
from polymodal.errors import ConfigError, DataError

MAX_CLASSES = 40  # classes listed per task; the rest are counted
MAX_ERRORS = 50  # errors listed; the rest are counted


@dataclass
class CheckResult:
    dataset: str
    plan: Plan
    meta: dict[str, Any]
    problems: Problems

    @property
    def ok(self) -> bool:
        return not self.problems.errors


def target(path: str | Path, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The dataset a PATH is: a folder -> ``folder``; a table file -> ``manifest`` when the options name
    ``modalities``, else ``table``."""
    p = Path(path).expanduser()
    if p.is_dir():
        return "folder", {**options, "path": str(p.resolve())}
    if p.is_file():
        return ("manifest" if "modalities" in options else "table"), {**options, "path": str(p.resolve())}
    raise DataError(f"'{path}' does not exist (give a folder, a .csv / .jsonl file or a config .yaml)")


def check_dataset(name: str, root: Path, options: dict[str, Any]) -> CheckResult:
    """Read dataset ``name`` (one of your own: folder, table, manifest) with ``options``, collecting
    every problem; option and column errors still raise their one line."""
    loader = DATASETS.get(name)
    plan_fn = getattr(loader, "__wrapped__", None)
    if plan_fn is None:
        raise ConfigError(
            f"data check reads your own data (datasets folder, table, manifest); '{name}' is verified "
            "against its checksums when it loads"
        )
    allowed = [p for p in inspect.signature(plan_fn).parameters if p != "root"]
    bad = next((k for k in options if k not in allowed), None)
    if bad is not None:
        raise ConfigError(
            f"data.options.{bad}: dataset '{name}' has no such option; allowed: {', '.join(allowed)}"
        )
    problems = Problems(strict=False)
    plan = plan_fn(root, **options)
    return CheckResult(name, plan, inspect_plan(plan, problems), problems)


def _shape(kind: str, plan: Plan, meta: dict[str, Any], name: str) -> str:
    r = plan.reading
    if kind == "image":
        h, w = image_size(r.image_size)
        return f"uint8 ({r.channels}, {h}, {w})"
    if kind == "audio":
        cut = f", first {r.max_seconds:g} s" if r.max_seconds else ""
        return f"waveform at {r.sample_rate} Hz{cut}"
    if kind == "text":
        return f"token ids (<= {r.max_len}), vocabulary {meta.get('vocab_size', '?')}"
    return f"float ({meta.get('feature_dims', {}).get(name, '?')},) standardised -> tabular_mlp"


def _modality_lines(res: CheckResult) -> list[str]:
    mods = res.meta["counts"]["modalities"]
    lines = [
        f"  {'modality':12s} {'kind':7s} {'present tr/te':>14s} {'missing tr/te':>14s}  column(s); tensor"
    ]
    for m, c in mods.items():
        p, q = c["present"], c["missing"]
        cols = ", ".join(c["columns"])
        empty = f" ({c['empty_cells']} empty cells)" if c.get("empty_cells") else ""
        lines.append(
            f"  {m:12s} {c['kind']:7s} {p['train']:>7d}/{p['test']:<6d} {q['train']:>7d}/{q['test']:<6d}"
            f"  {cols}{empty}; {_shape(c['kind'], res.plan, res.meta, m)}"
        )
    return lines


def _task_lines(res: CheckResult) -> list[str]:
    lines = []
    for t, c in res.meta["counts"]["tasks"].items():
        miss = c["missing"]
        lines.append(
            f"task '{t}': {len(c['classes'])} classes; "
            f"missing labels: {miss['train']} train, {miss['test']} test"
        )
        lines.append(f"  {'class':24s} {'train':>7s} {'test':>7s}")
        items = list(c["classes"].items())
        for name, v in items[:MAX_CLASSES]:
            lines.append(f"  {name[:24]:24s} {v['train']:>7d} {v['test']:>7d}")
        if len(items) > MAX_CLASSES:
            lines.append(f"  … {len(items) - MAX_CLASSES} more classes")
    return lines


def format_check(res: CheckResult) -> list[str]:
    """The report `polymodal data check` prints."""
    meta, counts = res.meta, res.meta["counts"]
    rows = counts["rows"]
    layout = f"; layout {meta['layout']}" if meta.get("layout") else ""
    lines = [
        f"{res.dataset} '{meta['source']}': {rows['train'] + rows['test']} rows — {rows['train']} train, "
        f"{rows['test']} test (split: {counts['split']}{layout})",
        *_modality_lines(res),
        *_task_lines(res),
    ]
    warnings = list(res.problems.warnings)
    if meta.get("unused_columns"):
        unused = ", ".join(meta["unused_columns"])
        warnings.append(f"column(s) not used (not numbers; name them as text or tasks): {unused}")
    if meta.get("skipped_files"):
        warnings.append(f"{meta['skipped_files']} other file(s) skipped, e.g. '{meta['skipped_example']}'")
    if warnings:
        lines += [f"warnings ({len(warnings)}):", *(f"  {w}" for w in warnings)]
    errors = res.problems.errors
    if errors:
        lines += [f"errors ({len(errors)}):", *(f"  {e}" for e in errors[:MAX_ERRORS])]
        if len(errors) > MAX_ERRORS:
            lines.append(f"  … {len(errors) - MAX_ERRORS} more errors")
    lines.append("OK: the data loads" if res.ok else f"{len(errors)} error(s): fix them before training")
    return lines
