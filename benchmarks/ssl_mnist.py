"""MNIST with 100 labels (10 per class): supervised-only vs UDA, several seeds.

The rest of the 60k training set is unlabeled; the 10k test set is only used for evaluation.
Writes benchmarks/results/ssl_mnist.md (and .json). Target: UDA mean test error <= 3% and at most
half the supervised error. Example:

    python benchmarks/ssl_mnist.py --data-root ../shared/data --seeds 0 1 2 --parallel 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import REPO, machine, mean_std, run_all

CONFIG = "configs/mnist100_uda.yaml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="override train.steps of the config")
    p.add_argument("--device", default="auto")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (several fit on one GPU)")
    p.add_argument("--runs", default="runs/bench_ssl_mnist")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/ssl_mnist.md"))
    args = p.parse_args()

    common = [f"train.device={args.device}"]
    if args.data_root:
        common.append(f"data.root={Path(args.data_root).resolve()}")
    if args.steps:
        common.append(f"train.steps={args.steps}")
    jobs = [
        (
            Path(args.runs) / f"{method}-seed{seed}",
            str(REPO / CONFIG),
            [*common, f"method={method}", f"seed={seed}"],
        )
        for method in ("uda", "supervised")
        for seed in args.seeds
    ]
    t0 = time.time()
    results = run_all(jobs, args.parallel)
    wall = time.time() - t0

    rows, data = [], {}
    for method in ("supervised", "uda"):
        runs = [results[run] for run, _, sets in jobs if f"method={method}" in sets]
        errors = [100 * r["test_error"] for r in runs]
        data[method] = {
            "errors": errors,
            "mean": statistics.mean(errors),
            "steps": runs[0]["steps"],
            "seconds": [r["seconds"] for r in runs],
            "labels": runs[0]["labeled_examples"],
        }
        rows.append(
            f"| {method} | {runs[0]['labeled_examples']} | {mean_std(errors)} | "
            f"{', '.join(f'{e:.2f}' for e in errors)} | {runs[0]['steps']} | "
            f"{statistics.mean(r['seconds'] for r in runs):.0f} |"
        )
    ok_abs = data["uda"]["mean"] <= 3.0
    ok_rel = data["uda"]["mean"] <= data["supervised"]["mean"] / 2
    lines = [
        "# MNIST-100: supervised-only vs UDA",
        "",
        f"- Machine: {machine()}",
        f"- Command: `python benchmarks/ssl_mnist.py {' '.join(_argv())}`",
        f"- Config: `{CONFIG}` (method and seed set per run); seeds {args.seeds}; "
        f"{args.parallel} run(s) at a time",
        f"- Wall time, all runs: {wall / 60:.1f} min",
        "",
        "| method | labels | test error % (mean ± std) | per seed | steps | s / run |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Target: UDA mean error ≤ 3% — {'met' if ok_abs else 'MISSED'} "
        f"({data['uda']['mean']:.2f}%); UDA ≤ half the supervised error — "
        f"{'met' if ok_rel else 'MISSED'} ({data['uda']['mean']:.2f}% vs "
        f"{data['supervised']['mean']:.2f}%).",
        "Published MNIST-100 for reference: Ladder network 1.06%, VAT 1.36%.",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps({"machine": machine(), "wall_s": wall, **data}, indent=2))
    print("\n".join(lines))


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
