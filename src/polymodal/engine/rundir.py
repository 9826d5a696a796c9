"""A run directory: the one place that knows its file names and how each file is written and read.

| file | written | content |
| --- | --- | --- |
| config.yaml | at start | the resolved config |
| split.json | at start | the labeled indices, seed and budget |
| metrics.jsonl | at log / eval boundaries | one JSON record per line |
| checkpoint.pt | at checkpoint boundaries and the end | everything a resumed run needs |
| summary.json | at the end | final metrics |

Checkpoints and text files are written atomically, so a killed run never leaves a half-written file;
a torn last line of ``metrics.jsonl`` (power loss mid-append) is dropped on resume, and said so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from polymodal.config import Config, build_config, merge, read_yaml, to_dict
from polymodal.engine.checkpoint import load_checkpoint, save_atomic, write_text_atomic
from polymodal.errors import ConfigError, DataError

# keys a resumed run may change: they alter neither the model, the data nor the objective
RESUMABLE = {
    "data": {"root", "eval_batch_size"},
    "train": {"steps", "log_every", "eval_every", "checkpoint_every", "device", "threads"},
}


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.split = self.path / "split.json"
        self.metrics = self.path / "metrics.jsonl"
        self.checkpoint = self.path / "checkpoint.pt"
        self.summary = self.path / "summary.json"

    def __str__(self) -> str:
        return str(self.path)

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, cfg: Config) -> None:
        write_text_atomic(yaml.safe_dump(to_dict(cfg), sort_keys=False), self.config)

    def read_config(self, sets: dict[str, Any] | None = None, resuming: bool = False) -> Config:
        """The saved config with ``sets`` applied; on resume only `RESUMABLE` keys may change."""
        if not self.path.is_dir():
            raise ConfigError(f"run directory '{self.path}' does not exist")
        if not self.config.is_file():
            raise ConfigError(f"'{self.path}' is not a run directory: it has no config.yaml")
        saved = read_yaml(self.config)
        if resuming:
            _check_resumable(sets or {})
        return build_config(merge(saved, sets or {}))

    def reset_metrics(self) -> None:
        self.metrics.unlink(missing_ok=True)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete record; a torn (unparseable) line is skipped."""
        return _parse(self.metrics)[0] if self.metrics.is_file() else []

    def truncate_metrics(self, step: int) -> str | None:
        """On resume, drop what the killed run logged after its last checkpoint (and torn lines)."""
        if not self.metrics.is_file():
            return None
        records, torn = _parse(self.metrics)
        keep = [r for r in records if r.get("step", 0) <= step]
        write_text_atomic("".join(json.dumps(r) + "\n" for r in keep), self.metrics)
        return f"dropped {torn} torn line(s) of '{self.metrics}' (an interrupted write)" if torn else None

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        save_atomic(state, self.checkpoint)

    def load_checkpoint(self) -> dict[str, Any]:
        return load_checkpoint(self.checkpoint)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_text_atomic(json.dumps(summary, indent=2), self.summary)

    def read_summary(self) -> dict[str, Any]:
        try:
            return json.loads(self.summary.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read '{self.summary}': {e}") from None


def _parse(path: Path) -> tuple[list[dict[str, Any]], int]:
    records, torn = [], 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            torn += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            torn += 1
    return records, torn


def _check_resumable(sets: dict[str, Any], at: str = "") -> None:
    for key, value in sets.items():
        dotted = f"{at}{key}"
        section = RESUMABLE.get(key) if not at else None
        if section is not None and isinstance(value, dict):
            bad = sorted(set(value) - section)
            if not bad:
                continue
            dotted = f"{dotted}.{bad[0]}"
        allowed = ", ".join(f"{s}.{k}" for s, keys in RESUMABLE.items() for k in sorted(keys))
        raise ConfigError(
            f"--set {dotted}: cannot change on --resume (the checkpoint was trained with the saved "
            f"value); allowed on resume: {allowed}"
        )
