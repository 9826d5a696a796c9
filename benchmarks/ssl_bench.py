"""Helpers the semi-supervised benchmark tables share: arguments, job lists, aggregation, headers."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from common import REPO, machine, mean_std, run_all


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="override train.steps of every config")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--budget",
        choices=("gpu", "cpu"),
        default="gpu",
        help="which configs: the GPU-sized ones, or smaller models and budgets for 2 CPU cores",
    )
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (several fit on one GPU)")
    p.add_argument("--set", dest="sets", action="append", default=[], help="extra KEY=VALUE for every run")
    p.add_argument("--runs", default=None, help="folder for the run directories")
    p.add_argument("--out", default=None, help="the table (.md); a .json with every number lands beside it")
    return p


def common_sets(args: argparse.Namespace, evals: int = 10) -> list[str]:
    """Overrides every run gets; ``evals`` test evaluations per run feed the learning curves."""
    sets = [f"train.device={args.device}"]
    if args.data_root:
        sets.append(f"data.root={Path(args.data_root).resolve()}")
    if args.steps:
        sets += [f"train.steps={args.steps}", f"train.eval_every={max(args.steps // evals, 1)}"]
        sets += [f"train.checkpoint_every={args.steps}", f"train.log_every={max(args.steps // evals, 1)}"]
    return sets + list(args.sets)


def run(jobs: list[tuple[Path, str, list[str]]], parallel: int) -> tuple[dict[Path, dict], float]:
    t0 = time.time()
    results = run_all(jobs, parallel)
    return results, time.time() - t0


def cell(runs: list[dict]) -> dict:
    """Mean ± std of test error % over seeds, and seconds per 1k steps."""
    errors = [100 * r["test_error"] for r in runs]
    per_k = [1000 * r["seconds"] / r["steps"] for r in runs]
    return {
        "errors": errors,
        "mean": statistics.mean(errors),
        "text": mean_std(errors),
        "s_per_1k": statistics.mean(per_k),
        "steps": runs[0]["steps"],
        "labels": runs[0]["labeled_examples"],
        "device": runs[0]["device"],
    }


def header(title: str, args: argparse.Namespace, wall: float, script: str, results: dict) -> list[str]:
    """The table's preamble; ``results`` are every run's summaries (their own times are summed)."""
    own = sum(r["seconds"] for r in results.values())
    return [
        f"# {title}",
        "",
        f"- Machine: {machine()}",
        f"- Command: `python benchmarks/{script} {' '.join(sys.argv[1:])}`",
        f"- Seeds {args.seeds}; {args.parallel} run(s) at a time on one device (so s / 1k steps includes "
        "sharing it); test error % as mean ± std over seeds",
        f"- Wall time of this invocation: {wall / 60:.1f} min; the runs' own times add up to "
        f"{own / 60:.1f} min (runs an earlier, interrupted invocation finished with the same config are "
        "reused)",
        "",
    ]


def write(out: Path, lines: list[str], data: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"machine": machine(), **data}, indent=2))
    print("\n".join(lines))


def default_out(name: str) -> Path:
    return REPO / "benchmarks" / "results" / name
