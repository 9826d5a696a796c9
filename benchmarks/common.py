"""Helpers shared by benchmark scripts: run configs in parallel processes, describe the machine."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = f"{os.cpu_count()} CPU cores ({platform.machine()})"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {cpu}, torch {torch.__version__}"
    return f"{cpu}, no GPU, torch {torch.__version__}"


def _run_key(config: str, sets: list[str]) -> list:
    """What makes two runs the same: the config's path and content, and the overrides."""
    return [config, hashlib.sha256(Path(config).read_bytes()).hexdigest(), sets]


def run_all(jobs: list[tuple[Path, str, list[str]]], parallel: int) -> dict[Path, dict]:
    """Run ``polymodal train CONFIG --set ... --out RUN`` for each job, ``parallel`` at a time.

    A run that already finished with the same config (file name and content) and overrides
    (``RUN.cmd`` beside it says which) is reused, so an interrupted benchmark continues where it stopped.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    pending, running, results = [], [], {}
    for run, config, sets in jobs:
        cmd = run.parent / f"{run.name}.cmd"
        same = cmd.is_file() and json.loads(cmd.read_text()) == _run_key(config, sets)
        if same and (run / "summary.json").is_file():
            results[run] = json.loads((run / "summary.json").read_text())
            print(f"reused {run.name}: test error {100 * results[run]['test_error']:.2f}%", flush=True)
        else:
            pending.append((run, config, sets))
    while pending or running:
        while pending and len(running) < parallel:
            run, config, sets = pending.pop(0)
            args = [sys.executable, "-m", "polymodal.cli", "train", config, "--out", str(run), "--quiet"]
            for s in sets:
                args += ["--set", s]
            run.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(run, ignore_errors=True)
            (run.parent / f"{run.name}.cmd").write_text(json.dumps(_run_key(config, sets)))
            log = open(run.parent / f"{run.name}.log", "w")  # noqa: SIM115 - closed when the job ends
            running.append((run, subprocess.Popen(args, env=env, stdout=log, stderr=log), log, time.time()))
            print(f"started {run.name}", flush=True)
        for item in list(running):
            run, proc, log, t0 = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                if proc.returncode != 0:
                    raise SystemExit(f"{run} failed; see {run.parent / (run.name + '.log')}")
                results[run] = json.loads((run / "summary.json").read_text())
                print(
                    f"finished {run.name} in {time.time() - t0:.0f}s: "
                    f"test error {100 * results[run]['test_error']:.2f}%",
                    flush=True,
                )
        time.sleep(0.5)
    return results


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
