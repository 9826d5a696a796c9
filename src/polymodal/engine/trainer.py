"""The training loop. It fits on a screen: sample, make views, loss, step, log, evaluate, save.

Every step's randomness derives from (seed, step) (see `step_generator`), so resuming from a
checkpoint replays exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from polymodal.augment.views import Views
from polymodal.batch import TensorData
from polymodal.config import Config, build_config, to_dict
from polymodal.engine.build import build_data, build_model, build_views
from polymodal.engine.checkpoint import load_checkpoint, save_atomic, write_text_atomic
from polymodal.engine.progress import Progress
from polymodal.engine.runtime import autocast, select_device, set_determinism, step_generator
from polymodal.engine.schedule import build_optimizer, build_scheduler
from polymodal.errors import ConfigError, TrainingDiverged
from polymodal.mtl import multitask_from_config
from polymodal.ssl import METHODS, make_teacher

CHECKPOINT = "checkpoint.pt"


class EpochSampler:
    """Rows for step ``s``: positions s·B … s·B+B−1 of a per-epoch permutation seeded by (seed, epoch)."""

    def __init__(self, n: int, batch: int, seed: int, device: torch.device) -> None:
        self.n, self.batch, self.seed, self.device = n, batch, seed, device
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g).to(self.device)}
        return self._perms[epoch]

    def __call__(self, step: int) -> torch.Tensor:
        pos = torch.arange(step * self.batch, (step + 1) * self.batch)
        epochs, offsets = pos // self.n, pos % self.n
        parts = [self._perm(int(e))[offsets[epochs == e].to(self.device)] for e in torch.unique(epochs)]
        return torch.cat(parts)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: TensorData,
    views: Views,
    batch_size: int,
    device: torch.device,
    precision: str,
) -> dict[str, dict[str, float]]:
    """Accuracy and error per task on the clean view."""
    was_training = model.training
    model.eval()
    correct: dict[str, torch.Tensor] = {}
    g = torch.Generator(device).manual_seed(0)
    for start in range(0, len(data), batch_size):
        batch = views(data.batch(torch.arange(start, min(start + batch_size, len(data)))), "clean", g)
        with autocast(device, precision):
            logits = model(batch)
        for task, z in logits.items():
            hit = (z.argmax(-1) == batch.targets[task]).sum()
            correct[task] = correct.get(task, 0) + hit
    model.train(was_training)
    return {
        t: {"accuracy": c.item() / len(data), "error": 1 - c.item() / len(data)} for t, c in correct.items()
    }


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop what the killed run logged after its last checkpoint."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= step]
        write_text_atomic("".join(ln + "\n" for ln in lines), path)


def read_run_config(run_dir: Path, sets: dict[str, Any] | None = None) -> Config:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"'{run_dir}' is not a run directory: it has no config.yaml")
    from polymodal.config import merge

    return build_config(merge(yaml.safe_load(path.read_text()), sets or {}))


def train(cfg: Config, run_dir: Path, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train as configured, writing config.yaml, metrics.jsonl, checkpoint.pt, summary.json."""
    tc = cfg.train
    run_dir.mkdir(parents=True, exist_ok=True)
    set_determinism(cfg.seed, tc.deterministic, tc.threads)
    device = select_device(tc.device)
    data = build_data(cfg, run_dir, device)
    views = build_views(cfg, data)
    model = build_model(cfg, data, views, device)
    balancer, task_batches = multitask_from_config(cfg, model, data.labeled, device)
    shared = [p for name, p in model.named_parameters() if not name.startswith("heads.")]
    heads = [p for name, p in model.named_parameters() if name.startswith("heads.")]
    opt = build_optimizer(nn.ModuleList([model, balancer]), tc)
    sched = build_scheduler(opt, tc)
    ema = make_teacher(model, tc.ema) if tc.ema is not None else None  # same warm-up as a teacher
    objective = METHODS.get(cfg.method)
    teacher_decay = getattr(objective, "teacher_decay", None)  # Mean Teacher, ICT: an EMA teacher
    teacher = make_teacher(model, teacher_decay(cfg)) if teacher_decay is not None else None
    extra = {"teacher": teacher.module} if teacher is not None else {}
    metrics_path, ckpt_path = run_dir / "metrics.jsonl", run_dir / CHECKPOINT

    start, elapsed = 0, 0.0
    sums: dict[str, torch.Tensor] = {}  # running sums of logged values since the last log line
    if resume:
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        balancer.load_state_dict(state["balancer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if teacher is not None:
            teacher.load_state_dict(state["teacher"])
        start, elapsed = state["step"], state["elapsed"]
        sums = {k: torch.tensor(v, device=device) for k, v in state["log_sums"].items()}
        _truncate_metrics(metrics_path, start)
    else:
        metrics_path.unlink(missing_ok=True)
    write_text_atomic(yaml.safe_dump(to_dict(cfg), sort_keys=False), run_dir / "config.yaml")

    lab_sampler = EpochSampler(len(data.labeled), cfg.data.batch_size, cfg.seed, device)
    unl_sampler = (
        EpochSampler(
            len(data.unlabeled),
            cfg.data.batch_size * cfg.data.unlabeled_ratio,
            cfg.seed + 1,
            device,
        )
        if data.unlabeled is not None
        else None
    )
    progress = Progress(tc.steps, start, name=f"[{cfg.method}] ", quiet=quiet)
    progress.note(
        f"{cfg.data.name}: {len(data.labeled)} labeled, "
        f"{len(data.unlabeled) if data.unlabeled is not None else 0} unlabeled, "
        f"{len(data.test)} test | device {device} {tc.precision} | run dir {run_dir}"
    )
    first_bad = torch.tensor(-1, device=device)
    t0 = time.perf_counter()

    def eval_model() -> nn.Module:
        return ema.module if ema is not None else model

    def check_finite(step: int) -> None:
        if first_bad.item() >= 0:
            raise TrainingDiverged(
                f"loss became NaN/inf at step {first_bad.item()}; stopped at step {step}, last good "
                f"checkpoint kept in '{ckpt_path}'" + ("" if ckpt_path.is_file() else " (none yet)")
            )

    def save(step: int) -> None:
        check_finite(step)
        save_atomic(
            {
                "step": step,
                "elapsed": elapsed + time.perf_counter() - t0,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "balancer": balancer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "teacher": teacher.state_dict() if teacher is not None else None,
                "log_sums": {k: float(v) for k, v in sums.items()},
            },
            ckpt_path,
        )

    for step in range(start, tc.steps):
        g = step_generator(cfg.seed, step, device)
        labeled = task_batches(step) if task_batches else data.labeled.batch(lab_sampler(step))
        unlabeled = data.unlabeled.batch(unl_sampler(step), with_targets=False) if unl_sampler else None
        with autocast(device, tc.precision):
            losses, logs = objective(model, labeled, unlabeled, views, step / tc.steps, cfg, g, **extra)
        opt.zero_grad(set_to_none=True)
        loss = balancer.backward(losses, shared, step, heads=heads, features=model.last_features)
        model.last_features = None
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
        if teacher is not None:
            teacher.update_parameters(model)
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
        for k, v in {"loss": loss, **logs}.items():
            sums[k] = sums.get(k, 0) + v.float()
        done = step + 1
        if done % tc.log_every == 0 or done == tc.steps:
            check_finite(done)
            n = (done - 1) % tc.log_every + 1
            values = {k: (v / n).item() for k, v in sums.items()}
            sums = {}
            progress.log(done, {**values, "lr": sched.get_last_lr()[0]})
            _append_jsonl(
                metrics_path,
                {
                    "step": done,
                    **values,
                    "lr": sched.get_last_lr()[0],
                    "steps_per_s": progress.rate(done),
                },
            )
        if done % tc.eval_every == 0 and done != tc.steps:
            check_finite(done)
            res = evaluate(eval_model(), data.test, views, cfg.data.eval_batch_size, device, tc.precision)
            _append_jsonl(metrics_path, {"step": done, "test": res})
            progress.note(
                f"eval step {done}: "
                + ", ".join(f"{t} error {100 * r['error']:.2f}%" for t, r in res.items())
            )
        if done % tc.checkpoint_every == 0 or done == tc.steps:
            save(done)

    res = evaluate(eval_model(), data.test, views, cfg.data.eval_batch_size, device, tc.precision)
    _append_jsonl(metrics_path, {"step": tc.steps, "test": res})
    seconds = elapsed + time.perf_counter() - t0
    first_task = next(iter(res))
    summary = {
        "method": cfg.method,
        "dataset": cfg.data.name,
        "steps": tc.steps,
        "seed": cfg.seed,
        "labeled_examples": len(data.labeled),
        "test": res,
        "test_error": res[first_task]["error"],
        "seconds": round(seconds, 2),
        "device": str(device),
        "precision": tc.precision,
    }
    write_text_atomic(json.dumps(summary, indent=2), run_dir / "summary.json")
    progress.note(
        f"done in {seconds:.1f}s: "
        + ", ".join(f"{t} test error {100 * r['error']:.2f}%" for t, r in res.items())
    )
    return summary
