"""A search directory: the one place that knows its file names and how each is written.

* ``config.yaml`` (at start): the resolved search config;
* ``state.json`` (atomic, before and after every generation): generation, population, history, the
  weight cache's index, the planned generation;
* ``candidates/ID.json`` and ``ID.pt`` (atomic, as each candidate finishes): its record, and its
  trained blocks until its generation commits;
* ``evaluations.jsonl`` (as each candidate finishes): one line per evaluation actually run;
* ``cache/`` (at each generation's end): the weight cache's block files;
* ``report.md``, ``*.png``, ``summary.json``, ``retrain/`` (at the end): the report, plots, the best
  genome and its retrained accuracy.

Randomness is derived, not stored: generation g draws from ``random.Random(f"{seed}:{g}")`` and
candidate c trains with a seed hashed from (seed, c), so the state holds everything a resumed search
needs, and a generation planned before a kill is re-read from ``state.json``, never redrawn.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from polymodal.engine.checkpoint import save_atomic, write_text_atomic
from polymodal.engine.progress import fmt_seconds
from polymodal.errors import ConfigError, PolymodalError
from polymodal.search.config import SearchConfig, validate_search_config

VERSION = 1


class SearchDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.state = self.path / "state.json"
        self.candidates = self.path / "candidates"
        self.cache = self.path / "cache"
        self.evaluations = self.path / "evaluations.jsonl"
        self.report = self.path / "report.md"
        self.summary = self.path / "summary.json"

    def __str__(self) -> str:
        return str(self.path)

    def create(self, cfg: SearchConfig) -> None:
        if self.state.is_file():
            raise PolymodalError(
                f"'{self.path}' already holds a search; continue it with --resume {self.path}"
            )
        self.candidates.mkdir(parents=True, exist_ok=True)
        write_text_atomic(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), self.config)

    def read_config(self) -> SearchConfig:
        if not self.config.is_file():
            raise ConfigError(f"'{self.path}' is not a search directory: it has no config.yaml")
        return validate_search_config(yaml.safe_load(self.config.read_text()))

    def write_state(self, state: dict[str, Any]) -> None:
        write_text_atomic(json.dumps(state), self.state)

    def read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state.read_text())
        except (OSError, ValueError) as e:
            raise PolymodalError(f"cannot read search state '{self.state}': {e}") from None
        if state.get("version") != VERSION:
            raise PolymodalError(
                f"'{self.state}' is version {state.get('version')}; this polymodal reads {VERSION}"
            )
        return state

    def write_result(self, record: dict[str, Any], blocks: dict[str, Any]) -> None:
        """Blocks first, then the record: a record on disk means the candidate is finished."""
        self.candidates.mkdir(parents=True, exist_ok=True)
        save_atomic(blocks, self.candidates / f"{record['id']}.pt")
        write_text_atomic(json.dumps(record), self.candidates / f"{record['id']}.json")
        with open(self.evaluations, "a") as f:
            f.write(json.dumps({"id": record["id"], "seconds": record.get("seconds")}) + "\n")

    def read_result(self, cid: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        rec, blocks = self.candidates / f"{cid}.json", self.candidates / f"{cid}.pt"
        if not (rec.is_file() and blocks.is_file()):
            return None
        try:
            return json.loads(rec.read_text()), torch.load(blocks, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged file: evaluate the candidate again
            return None

    def drop_blocks(self, ids: list[str]) -> None:
        """After a commit the cache holds what it keeps; the candidates' own block files go."""
        for cid in ids:
            (self.candidates / f"{cid}.pt").unlink(missing_ok=True)


def new_state(cfg: SearchConfig) -> dict[str, Any]:
    return {
        "version": VERSION,
        "seed": cfg.seed,
        "generation": 0,  # the next generation to plan
        "population": [],  # ids of the current population (elites + the last generation)
        "history": [],  # every candidate's record, in id order
        "cache": {},  # the weight cache's index
        "pending": None,  # the planned generation not yet committed
        "totals": {"evaluated": 0, "failed": 0, "steps": 0, "seconds": 0.0},
        "started": time.time(),
    }


class SearchProgress:
    """One line per finished candidate: generation, done / failed, best so far, steps, ETA."""

    def __init__(self, cfg: SearchConfig, quiet: bool) -> None:
        self.cfg, self.quiet = cfg, quiet
        self.t0, self.evaluated = time.perf_counter(), 0

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"[search] {text}", file=sys.stderr, flush=True)

    def candidate(
        self, state: dict[str, Any], done: int, total: int, failed: int, best: tuple, steps: int
    ) -> None:
        """``steps``: spent by this generation's finished candidates. ETA: this session's seconds per
        candidate x the candidates left (with a step budget, as many as the steps left allow)."""
        self.evaluated += 1
        g, ga = state["pending"]["generation"], self.cfg.ga
        per = (time.perf_counter() - self.t0) / self.evaluated
        spent = state["totals"]["steps"] + steps
        children = ga.population - (ga.elite if ga.strategy == "ga" else 0)
        later = max(ga.generations - g - 1, 0) * children
        if ga.budget_steps is not None:
            mean = max(steps / max(done, 1), 1.0)
            more = max(ga.budget_steps - spent - (total - done) * mean, 0.0)
            later = min(later, math.ceil(more / (children * mean)) * children)
        fit, cid = best
        of = f"/{ga.generations}" if ga.budget_steps is None else f" (budget {ga.budget_steps:,} steps)"
        top = f"best {fit:.4f} ({cid})" if cid else "best —"
        eta = fmt_seconds(per * (total - done + later))
        self.note(
            f"gen {g + 1}{of} | {done}/{total} done, {failed} failed | {top} | steps {spent:,} | "
            f"{fmt_seconds(time.perf_counter() - self.t0)} elapsed, ETA {eta}"
        )
