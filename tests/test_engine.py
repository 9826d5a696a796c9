"""The engine: run files, exact resume after SIGKILL, NaN stop, EMA, bf16, eval, schedules."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from polymodal.cli import main
from polymodal.config import build_config
from polymodal.engine.checkpoint import load_checkpoint
from polymodal.engine.schedule import lr_factor
from polymodal.engine.trainer import train
from polymodal.errors import TrainingDiverged
from polymodal.ssl import METHODS, Terms, make_teacher


def tiny(data_root: Path, **over) -> dict:
    raw = {
        "seed": 1,
        "method": "uda",
        "data": {
            "name": "mnist",
            "root": str(data_root),
            "labels_per_class": 2,
            "batch_size": 8,
            "unlabeled_ratio": 2,
            "eval_batch_size": 5000,
        },
        "augment": {
            "image": {
                "weak": [{"op": "crop", "pad": 2}],
                "strong": [{"op": "affine", "degrees": 15}, {"op": "cutout", "size": 8}],
            }
        },
        "model": {"encoders": {"image": {"name": "cnn28", "width": 4, "out_dim": 16}}},
        "train": {
            "steps": 40,
            "lr": 0.05,
            "eval_every": 20,
            "checkpoint_every": 10,
            "log_every": 5,
            "device": "cpu",
            "deterministic": True,
            "threads": 1,
        },
    }
    for key, value in over.items():
        node = raw
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return raw


def test_run_directory_files(data_root, tmp_path):
    summary = train(build_config(tiny(data_root)), tmp_path, quiet=True)
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt", "split.json"):
        assert (tmp_path / name).is_file(), name
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["steps"] == 40
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert [r["step"] for r in records if "test" in r] == [20, 40]
    assert {"sup", "unsup", "tsa_kept", "lr", "steps_per_s"} <= set(records[0])
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["labeled_examples"] == 20 and 0 <= summary["test_error"] <= 1
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 40


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint.pt")["model"]


def test_resume_after_sigkill_matches_uninterrupted_run(data_root, tmp_path):
    raw = tiny(data_root, **{"train.steps": 200, "train.eval_every": 100, "train.log_every": 20})
    full = train(build_config(raw), tmp_path / "full", quiet=True)

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "polymodal.cli", "train", str(cfg_file), "--out", str(killed), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "summary.json").exists()
    step = load_checkpoint(killed / "checkpoint.pt")["step"]
    assert 0 < step < 200

    assert main(["train", "--resume", str(killed), "--quiet"]) == 0
    resumed = json.loads((killed / "summary.json").read_text())
    assert resumed["test"] == full["test"]
    a, b = _final_weights(tmp_path / "full"), _final_weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)

    def losses(run):
        return [
            r["loss"]
            for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "loss" in r
        ]  # noqa: E731

    assert losses(killed) == losses(tmp_path / "full")


def test_nan_loss_stops_with_clear_message_and_keeps_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    real = METHODS.get("supervised")

    def poisoned(model, labeled, unlabeled, views, progress, options, generator):
        losses, logs, feats = real.objective(model, labeled, unlabeled, views, progress, options, generator)
        return Terms({t: v * float("nan") if progress >= 0.5 else v for t, v in losses.items()}, logs, feats)

    monkeypatch.setitem(METHODS._items, "supervised", dataclasses.replace(real, objective=poisoned))
    raw = tiny(
        data_root,
        method="supervised",
        **{"train.steps": 20, "train.checkpoint_every": 5, "train.log_every": 3, "train.eval_every": 100},
    )
    with pytest.raises(TrainingDiverged, match=r"loss became NaN/inf at step 10; stopped at step 12"):
        train(build_config(raw), tmp_path, quiet=True)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "summary.json").exists()


def test_ema_bf16_and_eval_command(data_root, tmp_path, capsys):
    raw = tiny(
        data_root, method="supervised", **{"train.ema": 0.9, "train.precision": "bf16", "train.steps": 10}
    )
    summary = train(build_config(raw), tmp_path, quiet=True)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"}
    assert set(ema) == set(state["model"])
    assert any(not torch.equal(ema[k], state["model"][k]) for k in ema)  # an average, not a copy
    assert main(["eval", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"error {100 * summary['test_error']:6.2f}%" in out  # eval reproduces the EMA model's result


def test_lr_schedules():
    cfg = build_config({"train": {"steps": 110, "warmup_steps": 10, "schedule": "cosine"}}).train
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.5)
    assert lr_factor(110, cfg) == pytest.approx(0.0, abs=1e-12)
    lin = build_config({"train": {"steps": 100, "schedule": "linear"}}).train
    assert lr_factor(25, lin) == pytest.approx(0.75)


def test_evaluation_ema_uses_the_teacher_warm_up(data_root, tmp_path, monkeypatch):
    """`train.ema` is built like the Mean Teacher one (α_n = min(α, 1 − 1/(n+1)), tested in
    test_ssl_baselines), so a short run does not evaluate weights still near the random init."""
    import polymodal.engine.run as engine_run

    decays: list[float] = []

    def spy(model, decay):
        decays.append(decay)
        return make_teacher(model, decay)

    monkeypatch.setattr(engine_run, "make_teacher", spy)
    raw = tiny(data_root, method="supervised", **{"train.ema": 0.95, "train.steps": 3})
    train(build_config(raw), tmp_path, quiet=True)
    assert decays == [0.95]
