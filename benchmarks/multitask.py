"""Multi-task benchmark: single-task baselines, every weighting / gradient method, method one vs two.

1. MultiMNIST, every image labeled for both digits (``configs/multitask_multimnist_equal.yaml``):
   single-task models for ``left`` and ``right``, then each method; per-task test accuracy and
   Δm% = mean_t (acc_t − acc_t^single) / acc_t^single × 100 (Maninis et al. 2019).
2. Time per step and peak memory of each method relative to equal weights (``mtl_step_time.py``), on
   the MultiMNIST model, and PCGrad / CAGrad on the FSDD digit + speaker model with 2 and 4 tasks.
3. Method one (a batch from every task per step) vs method two (one task per step, drawn
   proportional to its pool) on the one-label-per-example variants of MultiMNIST and FSDD, equal
   weights, the same number of labeled rows seen: accuracy, and the spread of the training loss
   curve. Plot: per-task test accuracy vs labeled rows seen.

Writes benchmarks/results/multitask.md (+ .json, .png). Finished runs are reused (summary.json).

    nice -n 10 python benchmarks/multitask.py --data-root ../shared/data --parallel 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, machine, mean_std, run_all

from polymodal.mtl import BALANCERS

MM = "configs/multitask_multimnist_equal.yaml"
FSDD = "configs/multitask_fsdd_equal.yaml"
# every registered weighting, equal weights (the baseline of Δm) first
METHODS = ["equal", *(m for m in BALANCERS.names() if m != "equal")]
ONE_LABEL = {  # dataset -> (config, overrides, steps of method one, per-task batch, eval every)
    "multimnist": (MM, [], 1000, 64, 100),
    "fsdd": (FSDD, [], 150, 16, 25),
}


def records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def loss_spread(run: Path, tasks_per_step: int) -> float:
    """Std of the mean per-task training loss around its 10-point moving average, second half of training."""
    loss = [r["loss"] / tasks_per_step for r in records(run) if "loss" in r]
    half = loss[len(loss) // 2 :]
    k = 5
    dev = [half[i] - statistics.mean(half[max(0, i - k) : i + k + 1]) for i in range(len(half))]
    return statistics.pstdev(dev)


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def ms(values: list[float]) -> str:
    return mean_std(values) if values else "—"


def acc(summary: dict, task: str) -> float:
    return 100 * summary["test"][task]["accuracy"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--runs", default="runs/bench_multitask")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/multitask.md"))
    p.add_argument("--smoke", action="store_true", help="a few steps of everything (checks the script)")
    p.add_argument("--steps", type=int, default=800, help="steps of the equal-weights acceptance runs")
    p.add_argument(
        "--sweep-steps", type=int, default=300, help="steps of the method sweep and one-label runs"
    )
    p.add_argument("--skip", nargs="*", default=[], help="run names not to start (e.g. running elsewhere)")
    p.add_argument("--report-only", action="store_true", help="write the report from the runs that exist")
    args = p.parse_args()
    if args.smoke:
        for k, (cfg, extra, _, batch, _) in list(ONE_LABEL.items()):
            ONE_LABEL[k] = (cfg, extra, 4, batch, 2)
    else:
        cfg, extra, _, batch, every = ONE_LABEL["multimnist"]
        ONE_LABEL["multimnist"] = (cfg, extra, args.sweep_steps, batch, 50)
    runs = Path(args.runs)
    common = ["train.device=cpu", "train.threads=1"]
    smoke = ["train.eval_every=2"] if args.smoke else []
    args.steps = 4 if args.smoke else args.steps
    args.sweep_steps = 4 if args.smoke else args.sweep_steps
    if args.data_root:
        common.append(f"data.root={Path(args.data_root).resolve()}")
    t0 = time.time()

    # Jobs in priority order (a cut-short benchmark still reports what finished, with its seed count):
    # the acceptance runs (equal weights, --steps), then per seed the method sweep (--sweep-steps):
    # single-task baselines, equal, method one/two on MultiMNIST, the other methods, FSDD one/two.
    def method(m: str, seed: int, steps: int, prefix: str = "") -> tuple[Path, str, list[str]]:
        sets = [*common, *smoke, f"train.steps={steps}", f"multitask.weighting={m}", f"seed={seed}"]
        return (runs / f"{prefix}{m}-s{seed}", str(REPO / MM), sets)

    def single(task: str, seed: int, steps: int, prefix: str = "") -> tuple[Path, str, list[str]]:
        sets = [*common, *smoke, f"train.steps={steps}", f"data.tasks=[{task}]", f"seed={seed}"]
        return (runs / f"{prefix}single-{task}-s{seed}", str(REPO / MM), sets)

    def one_label(name: str, seed: int) -> list[tuple[Path, str, list[str]]]:
        cfg, extra, steps, batch, every = ONE_LABEL[name]
        base = [
            *common,
            *extra,
            "data.one_label_per_example=true",
            f"data.batch_size={batch}",
            f"seed={seed}",
        ]
        base += [f"train.eval_every={every}", "train.log_every=10", f"train.checkpoint_every={2 * steps}"]
        one = [*base, "multitask.update=task_batches", f"train.steps={steps}"]
        two = [*base, "multitask.update=one_task", f"train.steps={2 * steps}"]
        return [
            (runs / f"{name}-one-s{seed}", str(REPO / cfg), one),
            (runs / f"{name}-two-s{seed}", str(REPO / cfg), two),
        ]

    sw = args.sweep_steps
    jobs = [method("equal", seed, args.steps) for seed in args.seeds]
    for seed in args.seeds:
        jobs += [
            single("left", seed, sw, "sweep-"),
            single("right", seed, sw, "sweep-"),
            method("equal", seed, sw, "sweep-"),
        ]
        jobs += one_label("multimnist", seed)
        jobs += [method(m, seed, sw, "sweep-") for m in METHODS[1:]]
        jobs += one_label("fsdd", seed)
    extra_runs = [
        single(t, seed, args.steps) for seed in args.seeds for t in ("left", "right")
    ]  # report if present
    if not args.report_only:
        run_all(
            [j for j in jobs if not (j[0] / "summary.json").is_file() and j[0].name not in args.skip],
            args.parallel,
        )
    jobs += extra_runs
    results = {
        run: json.loads((run / "summary.json").read_text())
        for run, _, _ in jobs
        if (run / "summary.json").is_file()
    }
    train_wall = time.time() - t0
    if results:  # the trainings' span, read off the run files (an interrupted benchmark reuses runs)
        starts = [(run / "config.yaml").stat().st_mtime for run in results]
        ends = [(run / "summary.json").stat().st_mtime for run in results]
        train_wall = max(ends) - min(starts)

    # 2. step time and memory (after the trainings, so they do not compete with them)
    t1 = time.time()
    timing = ["--rounds", "1", "--steps", "1"] if args.smoke else []

    timed: list[str] = []

    def time_steps(name: str, config: str, *opts: str) -> Path:
        out = runs / f"{name}.json"
        if out.is_file() or args.report_only:
            return out
        timed.append(name)
        cmd = [sys.executable, str(REPO / "benchmarks/mtl_step_time.py"), "--threads", "2", "--config"]
        root = [a for c in common if c.startswith("data.root=") for a in ("--set", c)]  # as the trainings
        subprocess.run([*cmd, str(REPO / config), *opts, *root, *timing, "--json", str(out)], check=True)
        return out

    step_json = time_steps(
        "step_time", MM, "--methods", *METHODS, "--memory", "--rounds", "5", "--steps", "10"
    )
    pc = ("--methods", "equal", "pcgrad", "cagrad", "--tasks", "2", "4", "--rounds", "7", "--steps", "8")
    fsdd_json = time_steps("step_time_fsdd", FSDD, *pc)
    fsdd_k_json = time_steps("step_time_fsdd_k4", FSDD, *pc, "--recompute-every", "4")
    step = load(step_json).get("2", {})
    fsdd, fsdd_k = load(fsdd_json), load(fsdd_k_json)
    time_wall = time.time() - t1

    def seeds_of(prefix: str) -> list[dict]:
        return [results[runs / f"{prefix}-s{s}"] for s in args.seeds if runs / f"{prefix}-s{s}" in results]

    single = {
        t: statistics.mean([acc(r, t) for r in seeds_of(f"sweep-single-{t}")] or [float("nan")])
        for t in ("left", "right")
    }
    lines = [
        "# Multi-task learning: MultiMNIST and FSDD",
        "",
        f"- Machine: {machine()}; the CPUs were shared with other jobs (`nice -n 10`).",
        f"- Command: `nice -n 10 python benchmarks/multitask.py {' '.join(sys.argv[1:])}`",
        f"- Seeds {args.seeds}; {args.parallel} training runs at a time, 1 thread each; "
        "step timing with 2 threads.",
        f"- Wall time: trainings {train_wall / 60:.1f} min (first run started to last run finished; "
        "finished runs are reused), step timing "
        + (
            f"{time_wall / 60:.1f} min." if timed else f"reused from an earlier run ({runs}/step_time*.json)."
        ),
        "",
        "## 1. MultiMNIST, every image labeled for both tasks",
        "",
        f"`{MM}` (LeNet-style trunk, {args.sweep_steps} steps of batch 128, SGD: a short budget, so "
        "methods are compared where they differ most); "
        "single-task rows train one head with the same budget. Accuracy % mean ± std over seeds. "
        "Δm% = mean over tasks of (acc − single-task acc) / single-task acc × 100. Time per step and "
        "peak memory (growth of max RSS over the timed steps) relative to equal weights; n/m = not "
        "measurable: on CPU the RSS peak of loading the data exceeds every step, so the growth is 0.",
        "",
        "| method | seeds | left acc % | right acc % | Δm % | time / step (× equal) | "
        "peak memory (× equal) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in ("left", "right"):
        a = [acc(r, t) for r in seeds_of(f"sweep-single-{t}")]
        cells = [ms(a) if t == "left" else "", ms(a) if t == "right" else ""]
        lines.append(f"| single-task {t} | {len(a)} | {cells[0]} | {cells[1]} | 0 | | |")
    table = {}
    for m in METHODS:
        rs = seeds_of(f"sweep-{m}")
        la, ra = [acc(r, "left") for r in rs], [acc(r, "right") for r in rs]
        dm = [
            50 * ((x - single["left"]) / single["left"] + (y - single["right"]) / single["right"])
            for x, y in zip(la, ra, strict=True)
            if single["left"] == single["left"] and single["right"] == single["right"]  # not NaN
        ]
        table[m] = {"left": la, "right": ra, "delta_m": dm, **step.get(m, {})}
        st = step.get(m)
        mem = f"{st['mb_ratio']:.2f} ({st['mb']:.0f} MB)" if st and step["equal"].get("mb", 0) > 0 else "n/m"
        cost = f"{st['ratio']:.2f} ({st['ms']:.0f} ms) | {mem}" if st else "— | —"
        lines.append(f"| {m} | {len(rs)} | {ms(la)} | {ms(ra)} | {ms(dm)} | {cost} |")
    done = [m for m in METHODS if table[m]["delta_m"]]
    best = max(done, key=lambda m: statistics.mean(table[m]["delta_m"])) if done else None
    acc_runs = seeds_of("equal")
    eq = {t: [acc(r, t) for r in acc_runs] for t in ("left", "right")}
    st_runs = {t: [acc(r, t) for r in seeds_of(f"single-{t}")] for t in ("left", "right")}
    ok = bool(acc_runs) and min(statistics.mean(v) for v in eq.values()) >= 95
    lines += [
        "",
        (f"Best Δm in this sweep: {best} ({statistics.mean(table[best]['delta_m']):+.2f}%)." if best else ""),
        "",
        f"### Acceptance: equal weights, {args.steps} steps of batch 128 ({len(acc_runs)} seeds)",
        "",
        f"Equal weights: left {ms(eq['left'])}%, right {ms(eq['right'])}% (per seed: "
        + "; ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(eq["left"], eq["right"], strict=True))
        + f"). ≥ 95% on both: {'met' if ok else 'NOT met'} (published ~96.5 / ~95.0). Single-task models "
        f"with the same budget: left {ms(st_runs['left'])}% ({len(st_runs['left'])} seeds), right "
        f"{ms(st_runs['right'])}% ({len(st_runs['right'])} seeds).",
        "",
        "## 2. PCGrad and CAGrad step time on the FSDD digit + speaker model (2 threads)",
        "",
        f"`{FSDD}`; 4 tasks add digit parity and digit < 5 heads. Median over interleaved rounds. "
        "k = multitask.recompute_every (weights recomputed every k steps, reused in between).",
        "",
        "| tasks | equal ms/step | PCGrad × equal (k=1) | CAGrad × equal (k=1) | PCGrad × (k=4) | "
        "CAGrad × (k=4) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t in ("2", "4"):
        if t not in fsdd or t not in fsdd_k:
            lines.append(f"| {t} | not measured | | | | |")
            continue
        a, b = fsdd[t], fsdd_k[t]
        lines.append(
            f"| {t} | {a['equal']['ms']:.0f} | {a['pcgrad']['ratio']:.2f} | {a['cagrad']['ratio']:.2f} | "
            f"{b['pcgrad']['ratio']:.2f} | {b['cagrad']['ratio']:.2f} |"
        )
    lines += [
        "",
        "## 3. One label per example: method one vs method two (equal weights)",
        "",
        "Each training example keeps one task's label (`data.one_label_per_example: true`). Method one: "
        "each step a batch from every task's pool (B per task), one update. Method two: each step one task "
        "drawn proportional to its pool, a batch of B, only its loss; twice the steps, so both see the "
        "same labeled rows. Loss spread: std of the mean per-task training loss (logged every 10 steps) "
        "around its 10-point moving average over the second half of training.",
        "",
        "| data | method | steps × rows | task accuracies % | Δm % vs all-label single-task | loss spread | "
        "final-acc std over seeds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    curves = {}
    for name, (_, _, steps, batch, _) in ONE_LABEL.items():
        for label, tag, n_steps, rows in (("one", "one", steps, 2 * batch), ("two", "two", 2 * steps, batch)):
            rs = seeds_of(f"{name}-{tag}")
            if not rs:
                lines.append(f"| {name} | {label} | not run | | | | |")
                continue
            tasks = list(rs[0]["test"])
            accs = {t: [acc(r, t) for r in rs] for t in tasks}
            have = [s for s in args.seeds if runs / f"{name}-{tag}-s{s}" in results]
            spread = [loss_spread(runs / f"{name}-{tag}-s{s}", 2 if tag == "one" else 1) for s in have]
            dm = ""
            if name == "multimnist" and all(single[t] == single[t] for t in tasks):
                dm = mean_std(
                    [50 * sum((accs[t][i] - single[t]) / single[t] for t in tasks) for i in range(len(rs))]
                )
            seed_std = statistics.mean(statistics.stdev(v) for v in accs.values()) if len(rs) > 1 else 0.0
            lines.append(
                f"| {name} | {label} ({len(rs)} seeds) | {n_steps} × {rows} | "
                + ", ".join(f"{t} {mean_std(v)}" for t, v in accs.items())
                + f" | {dm} | {mean_std(spread)} | {seed_std:.2f} |"
            )
            curves[f"{name}-{tag}"] = {
                t: [
                    (r["step"] * rows, 100 * r["test"][t]["accuracy"])
                    for r in records(runs / f"{name}-{tag}-s{have[0]}")
                    if "test" in r
                ]
                for t in tasks
            }
    lines += ["", "![per-task accuracy vs rows seen](multitask.png)", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(
        json.dumps(
            {"methods": table, "fsdd_step_time": fsdd, "fsdd_step_time_k4": fsdd_k, "curves": curves},
            indent=1,
        )
    )
    plot(curves, out.with_suffix(".png"))
    print("\n".join(lines))


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, name in zip(axes, ONE_LABEL, strict=True):
        for tag, style in (("one", "-"), ("two", "--")):
            for t, pts in curves.get(f"{name}-{tag}", {}).items():
                ax.plot([x for x, _ in pts], [y for _, y in pts], style, label=f"method {tag}: {t}")
        ax.set_title(f"{name}, one label per example (seed 0)")
        ax.set_xlabel("labeled rows seen")
        ax.set_ylabel("test accuracy %")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
