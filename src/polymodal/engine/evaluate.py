"""Evaluate a finished (or interrupted) run from its directory alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from polymodal.engine.build import RunData, build_data, build_model, build_views
from polymodal.engine.checkpoint import load_checkpoint
from polymodal.engine.runtime import select_device
from polymodal.engine.trainer import CHECKPOINT, evaluate, read_run_config


def load_run(
    run_dir: Path, data_root: str | None = None
) -> tuple[Any, RunData, Any, nn.Module, torch.device]:
    """A run's config, data, views and model with its checkpoint (EMA weights if it kept them)."""
    cfg = read_run_config(run_dir, {"data": {"root": data_root}} if data_root else None)
    state = load_checkpoint(run_dir / CHECKPOINT)
    device = select_device(cfg.train.device)
    data = build_data(cfg, run_dir, device)
    views = build_views(cfg, data)
    model = build_model(cfg, data, views, device)
    if state.get("ema") is not None:
        ema_state = {k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"}
        model.load_state_dict(ema_state)
    else:
        model.load_state_dict(state["model"])
    return cfg, data, views, model, device


def evaluate_run(run_dir: Path, data_root: str | None = None) -> dict[str, dict[str, float]]:
    cfg, data, views, model, device = load_run(run_dir, data_root)
    return evaluate(model, data.test, views, cfg.data.eval_batch_size, device, cfg.train.precision)
