"""Data-parallel training with torchrun on CPU (2 gloo processes) against one process.

The model has no batch norm (`cnn28 norm: none`: CPU has no SyncBatchNorm), no dropout and no random
augmentation, so one process over the global batch and two over half each compute the same mean
gradient; the runs must end with the same weights and test metrics (fp32, deterministic, up to
summation order), with equal weights and with PCGrad (whose task gradients are averaged before it
solves). A job killed after a checkpoint resumes under torchrun to the same end, and only rank 0
writes the run directory.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from polymodal.data.multimnist import build_multimnist
from polymodal.engine.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
STEPS = 8


@pytest.fixture(scope="module")
def env(tmp_path_factory, data_root) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("POLYMODAL_CACHE")
    os.environ["POLYMODAL_CACHE"] = str(cache)
    build_multimnist(data_root)
    if old is None:
        os.environ.pop("POLYMODAL_CACHE")
    else:
        os.environ["POLYMODAL_CACHE"] = old
    return {
        **os.environ,
        "POLYMODAL_CACHE": str(cache),
        "POLYMODAL_DATA": str(data_root),
        "OMP_NUM_THREADS": "1",
    }


def args(out: Path, weighting: str, steps: int = STEPS) -> list[str]:
    cfg = {
        "seed": 0,
        "method": "supervised",
        "data": {"name": "multimnist", "batch_size": 16, "eval_batch_size": 500},
        "model": {"encoders": {"image": {"name": "cnn28", "width": 4, "out_dim": 16, "norm": "none"}}},
        "train": {
            "steps": steps,
            "lr": 0.05,
            "eval_every": 4,
            "checkpoint_every": 4,
            "log_every": 2,
            "device": "cpu",
            "deterministic": True,
            "threads": 1,
        },
        "multitask": {"weighting": weighting},
    }
    path = out.parent / f"{out.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return ["train", str(path), "--out", str(out), "--quiet"]


def torchrun(argv: list[str], env: dict, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "polymodal", *argv]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def single(argv: list[str], env: dict) -> None:
    out = subprocess.run([sys.executable, "-m", "polymodal", *argv], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def same_weights(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    for k in sa["model"]:
        assert torch.allclose(sa["model"][k], sb["model"][k], atol=1e-5, rtol=1e-4), k


@pytest.mark.parametrize("weighting", ["equal", "pcgrad"])
def test_two_processes_match_one_process_of_the_same_global_batch(tmp_path, env, weighting):
    single(args(tmp_path / "one", weighting), env)
    p = torchrun(args(tmp_path / "two", weighting), env)
    log, _ = p.communicate(timeout=300)
    assert p.returncode == 0, log
    same_weights(tmp_path / "one", tmp_path / "two")
    import json

    one = json.loads((tmp_path / "one/summary.json").read_text())["test"]
    two = json.loads((tmp_path / "two/summary.json").read_text())["test"]
    assert one.keys() == two.keys()
    for task in one:
        assert abs(one[task]["accuracy"] - two[task]["accuracy"]) <= 2 / 500, (one, two)
    # only rank 0 wrote: one set of files, nothing else beside them
    names = sorted(f.name for f in (tmp_path / "two").iterdir())
    assert names == ["checkpoint.pt", "config.yaml", "metrics.jsonl", "summary.json"], names


def test_a_killed_torchrun_job_resumes_to_the_same_end(tmp_path, env):
    full, cut = tmp_path / "full", tmp_path / "cut"
    long = [*args(full, "equal", steps=200), "--set", "train.eval_every=100"]
    p = torchrun(long, env)
    assert p.wait(timeout=300) == 0, p.stdout.read()
    p = torchrun(
        [*args(cut, "equal", steps=200), "--set", "train.eval_every=100"], env, start_new_session=True
    )
    deadline = time.time() + 240
    while not (cut / "checkpoint.pt").is_file() and time.time() < deadline and p.poll() is None:
        time.sleep(0.005)
    os.killpg(p.pid, signal.SIGKILL)  # the agent and both workers, mid-run
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the job ended before it could be killed"
    assert not (cut / "summary.json").exists()
    assert 0 < load_checkpoint(cut / "checkpoint.pt")["step"] < 200
    r = torchrun(["train", "--resume", str(cut), "--quiet"], env)
    log, _ = r.communicate(timeout=300)
    assert r.returncode == 0, log
    same_weights(full, cut)


def test_nproc_runs_the_command_under_torchrun(tmp_path, env):
    out = subprocess.run(
        [sys.executable, "-m", "polymodal", *args(tmp_path / "run", "equal", steps=2), "--nproc", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "run/summary.json").is_file()
