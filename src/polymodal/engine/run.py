"""A run's live state (`Run`), how it is built and restored (`build_run`), and one step (`train_step`).

Every step's randomness derives from (seed, step) (see `step_generator`), so resuming from a
checkpoint replays exactly what an uninterrupted run would have done. The step makes no host
round-trip: logged values and the first non-finite step accumulate on the device and are read at
log, eval and checkpoint boundaries only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.augment.views import Views
from polymodal.batch import Batch
from polymodal.config import Config
from polymodal.data.packed import release_pages
from polymodal.data.sampling import EpochSampler
from polymodal.engine.build import RunData, build_data, build_model, build_multitask, build_views
from polymodal.engine.distributed import Dist, average_gradients, init_from_env, slice_batch
from polymodal.engine.rundir import RunDir
from polymodal.engine.runtime import autocast, select_device, set_determinism, step_generator
from polymodal.engine.schedule import build_optimizer, build_scheduler
from polymodal.errors import PolymodalError, TrainingDiverged
from polymodal.models.output import TaskModel
from polymodal.mtl import Balancer
from polymodal.options import Options
from polymodal.ssl import METHODS, Method, make_teacher
from polymodal.ssl.teacher import EMA


@dataclass
class Run:
    cfg: Config
    dir: RunDir | None  # None on ranks other than 0: only rank 0 writes
    device: torch.device
    dist: Dist
    data: RunData
    views: Views
    model: TaskModel
    method: Method
    options: Options  # the method's own config section
    balancer: Balancer
    labeled_batch: Loader
    unlabeled_batch: Loader | None
    opt: torch.optim.Optimizer
    sched: Any
    ema: EMA | None  # the evaluated weights (train.ema)
    teacher: EMA | None  # the method's EMA teacher (Mean Teacher, ICT)
    shared: list[nn.Parameter] = field(default_factory=list)  # trunk: the balancer combines task gradients
    heads: list[nn.Parameter] = field(default_factory=list)  # per-task: each gets its own task's gradient
    params: list[nn.Parameter] = field(default_factory=list)  # everything the optimizer steps
    start: int = 0  # first step to run (a resumed run's checkpoint step)
    elapsed: float = 0.0  # seconds trained before this process
    sums: dict[str, Tensor] = field(default_factory=dict)  # logged values since the last log line
    first_bad: Tensor | None = None  # first step whose loss was not finite (-1: none), on the device
    t0: float = field(default_factory=time.perf_counter)

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self.t0


def build_run(cfg: Config, run_dir: RunDir | None, resume: bool = False, data: RunData | None = None) -> Run:
    """Everything a run needs, built from its config (and restored from its checkpoint on resume)."""
    tc, path = cfg.train, run_dir.path if run_dir is not None else None
    set_determinism(cfg.seed, tc.deterministic, tc.threads)
    d, device_name = init_from_env(tc.device)
    device = select_device(device_name)
    run_dir = run_dir if d.main else None
    data = data or build_data(cfg, run_dir.path if run_dir else None, device)
    views = build_views(cfg, data)
    model = build_model(cfg, data, views, device)
    if run_dir is not None:  # only once the data and the model are known to work
        run_dir.create()
    if tc.channels_last if tc.channels_last is not None else device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # 4-D weights; convs then run NHWC
    balancer, task_batches = build_multitask(cfg, model, data.labeled, device)
    balancer.reduce = d.mean  # gradient methods solve on the ranks' mean task gradients
    opt = build_optimizer(nn.ModuleList([model, balancer]), tc)
    method = METHODS.get(cfg.method)
    options = cfg.method_options()
    ema = make_teacher(model, tc.ema) if tc.ema is not None else None  # same warm-up as a teacher
    teacher = make_teacher(model, method.teacher_decay(options)) if method.teacher_decay else None
    if tc.compile:  # after the EMA copies; in place, so state-dict keys stay those of the model
        model.compile()
    b, m = cfg.data.batch_size, cfg.data.batch_size * cfg.data.unlabeled_ratio
    lab = EpochSampler(len(data.labeled), b, cfg.seed, data.labeled.device)  # indices where the rows are
    unl = data.unlabeled
    unl_rows = EpochSampler(len(unl), m, cfg.seed + 1, unl.device) if unl else None

    def labeled(step: int) -> Batch:  # every rank draws the global batch, then keeps its rows
        if task_batches is None:
            return data.labeled.batch(lab(step)[d.rows(b)])
        batch = task_batches(step)
        return slice_batch(batch, d.rows(batch.size)) if d.enabled else batch

    def unlabeled(step: int) -> Batch:
        return unl.batch(unl_rows(step)[d.rows(m)], with_targets=False)

    run = Run(
        cfg, run_dir, device, d, data, views, model, method, options, balancer,
        Loader(labeled, data.placement, device),
        Loader(unlabeled, data.placement, device) if unl is not None else None,
        opt, build_scheduler(opt, tc), ema, teacher,
        shared=model.shared_parameters(), heads=model.head_parameters(),
        params=[p for group in opt.param_groups for p in group["params"]],
        first_bad=torch.tensor(-1, device=device),
    )  # fmt: skip
    if resume and path is not None:  # every rank restores from the one checkpoint
        restore(run, RunDir(path))
    return run


class Loader:
    """``step -> Batch`` on the training device. Splits kept on the host (``pinned``, ``mmap``) are
    gathered there and copied asynchronously, and `ahead` prepares the next step's batch while the
    device still runs this one; a memory-mapped split gives its pages back after every gather."""

    def __init__(self, rows: Callable[[int], Batch], placement: str, device: torch.device) -> None:
        self.rows, self.placement, self.device = rows, placement, device
        self.ready: tuple[int, Batch] | None = None

    def _load(self, step: int) -> Batch:
        batch = self.rows(step)
        if self.placement == "mmap":
            release_pages()
        return batch if self.placement == "device" else batch.to(self.device)

    def __call__(self, step: int) -> Batch:
        if self.ready is not None and self.ready[0] == step:
            batch, self.ready = self.ready[1], None
            return batch
        return self._load(step)

    def ahead(self, step: int) -> None:
        if self.placement != "device":
            self.ready = (step, self._load(step))


def state_dict(run: Run, step: int) -> dict[str, Any]:
    """What a resumed run needs: weights, optimizer, schedule, balancer, EMA / teacher, log sums."""
    return {
        "step": step,
        "elapsed": run.seconds(),
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "balancer": run.balancer.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "teacher": run.teacher.state_dict() if run.teacher is not None else None,
        "log_sums": {k: float(v) for k, v in run.sums.items()},
    }


def restore(run: Run, run_dir: RunDir) -> None:
    state = run_dir.load_checkpoint()
    try:
        run.model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise PolymodalError(
            f"checkpoint '{run_dir.checkpoint}' does not fit the model built from its config: "
            f"{first[1].strip() if len(first) > 1 else first[0]}"
        ) from None
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    run.balancer.load_state_dict(state["balancer"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    if run.teacher is not None:
        run.teacher.load_state_dict(state["teacher"])
    run.start, run.elapsed = state["step"], state["elapsed"]
    run.sums = {k: torch.tensor(v, device=run.device) for k, v in state["log_sums"].items()}


def train_step(run: Run, step: int) -> None:
    """Sample, make views, loss, backward through the balancer, optimizer, EMA and teacher updates."""
    cfg, model = run.cfg, run.model
    g = step_generator(cfg.seed, step, run.device, run.dist.rank)
    labeled = run.labeled_batch(step)
    unlabeled = run.unlabeled_batch(step) if run.unlabeled_batch else None
    extra = {"teacher": run.teacher.module} if run.teacher is not None else {}
    with autocast(run.device, cfg.train.precision):
        terms = run.method.objective(
            model, labeled, unlabeled, run.views, step / cfg.train.steps, run.options, g, **extra
        )
    run.opt.zero_grad(set_to_none=True)
    loss = run.balancer.backward(terms.losses, run.shared, step, heads=run.heads, features=terms.features)
    average_gradients(run.params, run.dist)
    run.opt.step()
    run.sched.step()
    if step + 1 < cfg.train.steps:  # host-resident data: gather the next rows while the device works
        run.labeled_batch.ahead(step + 1)
        if run.unlabeled_batch is not None:
            run.unlabeled_batch.ahead(step + 1)
    if run.ema is not None:
        run.ema.update_parameters(model)
    if run.teacher is not None:
        run.teacher.update_parameters(model)
    run.first_bad = torch.where((run.first_bad < 0) & ~torch.isfinite(loss), step, run.first_bad)
    for k, v in {"loss": loss, **terms.logs}.items():
        run.sums[k] = run.sums.get(k, 0) + v.float()


def check_finite(run: Run, step: int) -> None:
    """Stop with one line if any step so far had a non-finite loss (reads the device once)."""
    bad = int(run.dist.max(run.first_bad).item())
    if bad >= 0:
        ckpt = run.dir.checkpoint if run.dir is not None else None
        kept = f"last good checkpoint kept in '{ckpt}'" + ("" if ckpt and ckpt.is_file() else " (none yet)")
        raise TrainingDiverged(f"loss became NaN/inf at step {bad}; stopped at step {step}, {kept}")
