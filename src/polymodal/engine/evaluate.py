"""Evaluation: accuracy per task on the clean view, with every modality and without each one, from a
live model or from a run directory alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polymodal.augment.views import Views
from polymodal.batch import TensorData
from polymodal.config import Config
from polymodal.engine.build import RunData, build_data, build_model, build_views
from polymodal.engine.distributed import Dist
from polymodal.engine.rundir import RunDir
from polymodal.engine.runtime import autocast, select_device
from polymodal.models.missing import Without

Results = dict[str, dict[str, float]]  # task -> {accuracy, error}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: TensorData,
    views: Views,
    batch_size: int,
    device: torch.device,
    precision: str,
    dist: Dist | None = None,
) -> Results:
    """Accuracy and error per task on the clean view, over the rows that have the task's label
    (data-parallel: each rank its share, summed)."""
    was_training = model.training
    model.eval()
    correct: dict[str, torch.Tensor] = {}
    g = torch.Generator(device).manual_seed(0)
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    mine = torch.arange(len(data))[rank::world]
    for start in range(0, len(mine), batch_size):
        raw = data.batch(mine[start : start + batch_size])
        batch = views(raw if raw.device == device else raw.to(device), "clean", g)
        with autocast(device, precision):
            logits = model(batch)
        for task, z in logits.items():
            hit = ((z.argmax(-1) == batch.targets[task]) & batch.target_mask[task]).sum()  # labeled rows
            correct[task] = correct.get(task, 0) + hit
    model.train(was_training)
    if dist is not None and dist.enabled:
        correct = {t: dist.sum(torch.as_tensor(c, device=device)) for t, c in correct.items()}
    n = {t: max(1, int(data.target_mask[t].sum())) if t in data.target_mask else len(data) for t in correct}
    return {t: {"accuracy": c.item() / n[t], "error": 1 - c.item() / n[t]} for t, c in correct.items()}


def evaluate_missing(
    model: nn.Module, data: TensorData, views: Views, cfg: Config, device: torch.device
) -> dict[str, Results]:
    """``{"all": …}`` and, for multi-modal models, ``{"without_<m>": …}`` for each modality removed."""

    def run(m: nn.Module) -> Results:
        return evaluate(m, data, views, cfg.data.eval_batch_size, device, cfg.train.precision)

    out = {"all": run(model)}
    if len(cfg.model.modalities()) > 1:  # per modality: two encoders reading one are removed together
        for m in cfg.model.modalities():
            out[f"without_{m}"] = run(Without(model, m))
    return out


@dataclass
class LoadedRun:
    cfg: Config
    data: RunData
    views: Views
    model: nn.Module
    device: torch.device


def load_run(run_dir: str | Path, data_root: str | None = None) -> LoadedRun:
    """A run's config, data, views and model with its checkpoint (EMA weights if it kept them)."""
    rd = RunDir(run_dir)
    cfg = rd.read_config({"data": {"root": data_root}} if data_root else None)
    state = rd.load_checkpoint()
    device = select_device(cfg.train.device)
    data = build_data(cfg, rd.path, device)
    views = build_views(cfg, data)
    model = build_model(cfg, data, views, device)
    if state.get("ema") is not None:
        ema_state = {k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"}
        model.load_state_dict(ema_state)
    else:
        model.load_state_dict(state["model"])
    return LoadedRun(cfg, data, views, model, device)


def evaluate_run(run_dir: str | Path, data_root: str | None = None) -> dict[str, Any]:
    """A run's test results with all modalities, then without each one (multi-modal runs only)."""
    run = load_run(run_dir, data_root)
    return evaluate_missing(run.model, run.data.test, run.views, run.cfg, run.device)
