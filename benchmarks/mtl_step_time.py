"""Time per training step and peak memory of every multi-task method, relative to equal weights.

Runs the engine's own step (`polymodal.engine.run.train_step`) for one model per method, interleaving
methods round by round so load from other processes hits all alike; the median over rounds is reported.
Peak memory: growth of the process's max RSS over the steps, each method in a fresh subprocess (CPU
has no allocator counter like ``torch.cuda.max_memory_allocated``).
``--tasks 4`` adds two synthetic FSDD tasks (digit parity, digit < 5) to the digit + speaker model.

    python benchmarks/mtl_step_time.py --config configs/multitask_fsdd_equal.yaml --tasks 2 4 \
        --methods equal pcgrad cagrad --threads 2 --out benchmarks/results/mtl_step_time.md
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from polymodal.batch import TensorData
from polymodal.config import load_config
from polymodal.engine.build import build_data
from polymodal.engine.run import build_run, train_step
from polymodal.engine.runtime import select_device
from polymodal.mtl import BALANCERS, gradient_methods

METHODS_ALL = ["equal", *(m for m in BALANCERS.names() if m != "equal")]


class Stepper:
    """One method's run, stepped by the engine's own `train_step`."""

    def __init__(self, config: str, method: str, tasks: int, sets: list[str]) -> None:
        sets = [*sets, f"multitask.weighting={method}"]
        if method not in gradient_methods():  # only gradient methods reuse weights every k steps
            sets = [s for s in sets if not s.startswith("multitask.recompute_every")]
        cfg = load_config(config, sets)
        data = build_data(cfg, None, select_device(cfg.train.device))
        if tasks == 4:  # two synthetic tasks read off the digit label
            for split in ("labeled", "test"):
                d = getattr(data, split)
                y = d.targets["digit"]
                extra = {"parity": y % 2, "low": (y < 5).long()}
                setattr(data, split, TensorData(d.inputs, {**d.targets, **extra}, d.lengths))
            data.tasks = {**data.tasks, "parity": 2, "low": 2}
        self.run = build_run(cfg, None, data=data)
        self.step = 0

    def steps(self, n: int) -> float:
        """Seconds per step over ``n`` steps."""
        t0 = time.perf_counter()
        for _ in range(n):
            train_step(self.run, self.step)
            self.step += 1
        return (time.perf_counter() - t0) / n


def peak_memory_mb(config: str, method: str, tasks: int, sets: list[str], steps: int) -> float:
    """Max-RSS growth (MB) over ``steps`` steps, measured in a fresh process."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--config",
            config,
            "--memory-of",
            method,
            "--tasks",
            str(tasks),
            "--steps",
            str(steps),
            *[a for s in sets for a in ("--set", s)],
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def measure(
    config: str, methods: list[str], tasks: int, sets: list[str], rounds: int, steps: int, memory: bool
) -> dict[str, dict[str, float]]:
    steppers = {m: Stepper(config, m, tasks, sets) for m in methods}
    for s in steppers.values():
        s.steps(3)  # warm-up
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        for m, s in steppers.items():
            times[m].append(s.steps(steps))
    res = {m: {"ms": 1000 * statistics.median(t)} for m, t in times.items()}
    if memory:
        for m in methods:
            res[m]["mb"] = peak_memory_mb(config, m, tasks, sets, steps)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/multitask_fsdd_equal.yaml")
    p.add_argument("--methods", nargs="+", default=METHODS_ALL)
    p.add_argument("--tasks", type=int, nargs="+", default=[2], choices=[2, 4])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="steps per method per round")
    p.add_argument("--memory", action="store_true", help="also measure peak memory (a process per method)")
    p.add_argument("--set", action="append", default=[])
    p.add_argument(
        "--recompute-every", type=int, default=1, help="multitask.recompute_every of gradient methods"
    )
    p.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    sets = [f"train.threads={args.threads}", "train.device=cpu", *args.set]
    sets.append(f"multitask.recompute_every={args.recompute_every}")
    if args.memory_of:
        s = Stepper(args.config, args.memory_of, args.tasks[0], sets)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        s.steps(args.steps)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
        return
    out = {}
    for t in args.tasks:
        res = measure(args.config, args.methods, t, sets, args.rounds, args.steps, args.memory)
        base = res["equal"]
        for m, r in res.items():
            r["ratio"] = r["ms"] / base["ms"]
            if "mb" in r:
                r["mb_ratio"] = r["mb"] / max(base["mb"], 1e-9)
            print(
                f"{t} tasks {m:12s} {r['ms']:8.1f} ms/step  x{r['ratio']:.2f}"
                + (f"  {r['mb']:.0f} MB" if "mb" in r else ""),
                flush=True,
            )
        out[str(t)] = res
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
