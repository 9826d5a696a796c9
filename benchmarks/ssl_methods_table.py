"""UDA against the seven baselines, same engine, data, model and budget: MNIST-100 and BANKING77.

MNIST with 10 labels per class (weak view: shift; strong view: RandAugment + cutout) and BANKING77
with 10 labels per intent (strong view: TF-IDF word replacement; ``text_cnn`` encoder). Each method
reads the views it needs from the same config; only ``method`` changes between runs. Reports test
error % (mean ± std over seeds) and wall time per 1k steps, and plots test error vs step for UDA and
supervised-only (benchmarks/results/ssl_learning_curve.png). E.g. on one GPU:

    python benchmarks/ssl_methods_table.py --seeds 0 1 2 --parallel 9 --device cuda
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from common import REPO
from ssl_bench import cell, common_sets, default_out, header, parser, run, write

from polymodal.ssl import METHODS as METHODS_REGISTRY

DATASETS = {  # name -> ({budget: config}, column title)
    "mnist100": (
        {"gpu": "configs/mnist100_fixmatch.yaml", "cpu": "configs/mnist100_cpu.yaml"},
        "MNIST, 10 labels / class",
    ),
    "banking77": (
        {"gpu": "configs/banking77_uda.yaml", "cpu": "configs/banking77_cpu.yaml"},
        "BANKING77, 10 labels / intent",
    ),
}
# every registered method, supervised-only and UDA first (the rows the table compares against)
METHODS = ("supervised", "uda", *(m for m in METHODS_REGISTRY.names() if m not in ("supervised", "uda")))
PUBLISHED = "Published MNIST-100 error % for reference: VAT 1.36, Ladder network 1.06 (different models)."


def curve(run_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], 100 * next(iter(r["test"].values()))["error"]) for r in records if "test" in r]


def plot(curves: dict[str, dict[str, list[list[tuple[int, float]]]]], out: Path) -> list[str]:
    """Mean test error vs step over seeds; returns the plotted numbers as markdown lines."""
    lines = ["", "## Learning curves (test error % vs step, mean over seeds)", ""]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for i, (dataset, by_method) in enumerate(curves.items()):
        for method, seeds in by_method.items():
            steps = [s for s, _ in seeds[0]]
            mean = [statistics.mean(c[k][1] for c in seeds) for k in range(len(steps))]
            lines.append(
                f"- {dataset} {method}: "
                + ", ".join(f"{s}: {e:.2f}" for s, e in zip(steps, mean, strict=True))
            )
            if plt is not None:
                axes[0][i].plot(steps, mean, marker="o", label=method)
        if plt is not None:
            ax = axes[0][i]
            ax.set(title=dataset, xlabel="step", ylabel="test error %", yscale="log")
            ax.grid(alpha=0.3)
            ax.legend()
    if plt is not None:
        fig.tight_layout()
        fig.savefig(out, dpi=120)
        lines.append(f"\n![learning curves]({out.name})")
    return lines


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = p.parse_args()
    runs = Path(args.runs or f"runs/bench_ssl_methods_{args.budget}")
    sets = common_sets(args)
    config = {d: DATASETS[d][0][args.budget] for d in args.datasets}
    jobs = [
        (runs / f"{d}-{m}-seed{s}", str(REPO / config[d]), [*sets, f"method={m}", f"seed={s}"], (d, m))
        for d in args.datasets
        for m in args.methods
        for s in args.seeds
    ]
    results, wall = run([j[:3] for j in jobs], args.parallel)
    cells = {key: cell([results[j[0]] for j in jobs if j[3] == key]) for key in {j[3] for j in jobs}}

    lines = header(
        "Semi-supervised methods, same engine and budget", args, wall, "ssl_methods_table.py", results
    )
    heads = [f"{DATASETS[d][1]} (`{config[d]}`)" for d in args.datasets]
    lines += [
        "| method | " + " | ".join(f"{h}: error % | s / 1k steps" for h in heads) + " |",
        "| --- |" + " --- | --- |" * len(args.datasets),
    ]
    for m in args.methods:
        row = " | ".join(f"{cells[(d, m)]['text']} | {cells[(d, m)]['s_per_1k']:.0f}" for d in args.datasets)
        lines.append(f"| {m} | {row} |")
    steps = {d: cells[(d, args.methods[0])]["steps"] for d in args.datasets}
    lines += ["", "Steps per run: " + ", ".join(f"{d} {s}" for d, s in steps.items()) + ".", ""]
    if "supervised" in args.methods:
        for d in args.datasets:
            sup = cells[(d, "supervised")]["mean"]
            others = [m for m in args.methods if m != "supervised"]
            beat = [m for m in others if cells[(d, m)]["mean"] < sup]
            lost = [f"{m} {cells[(d, m)]['mean']:.2f}%" for m in others if m not in beat]
            lines.append(
                f"- {d}: {len(beat)}/{len(others)} semi-supervised methods beat supervised-only "
                f"({sup:.2f}%)" + (f"; not: {', '.join(lost)}" if lost else "") + "."
            )
    lines += ["", PUBLISHED] if "mnist100" in args.datasets else []
    curves: dict = {}
    for d in args.datasets:
        for m in ("supervised", "uda"):
            if m in args.methods:
                curves.setdefault(d, {})[m] = [curve(j[0]) for j in jobs if j[3] == (d, m)]
    out = Path(args.out) if args.out else default_out("ssl_methods_table.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    if curves:
        lines += plot(curves, out.with_name(out.stem.replace("methods_table", "learning_curve") + ".png"))
    data = {"wall_s": wall, "cells": {f"{d} | {m}": c for (d, m), c in cells.items()}, "curves": curves}
    write(out, lines, data)


if __name__ == "__main__":
    main()
