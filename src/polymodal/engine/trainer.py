"""The training loop. It fits on a screen: build, then step, log, evaluate, save; then finish.

The step itself is `polymodal.engine.run.train_step`; what a run is made of, `build_run`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from polymodal.config import Config
from polymodal.engine.distributed import broadcast_buffers
from polymodal.engine.evaluate import Results, evaluate
from polymodal.engine.progress import Progress
from polymodal.engine.run import Run, build_run, check_finite, state_dict, train_step
from polymodal.engine.rundir import RunDir
from polymodal.engine.runtime import resolve_precision


def train(cfg: Config, run_dir: Path | RunDir, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train as configured, writing config.yaml, metrics.jsonl, checkpoint.pt, summary.json (rank 0)."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    run = build_run(cfg, rd, resume)
    tc, data, out = cfg.train, run.data, run.dir  # out: None on ranks other than 0
    note = (out.truncate_metrics(run.start) if resume else out.reset_metrics()) if out else None
    if out:
        out.write_config(cfg)
    progress = Progress(tc.steps, run.start, name=f"[{cfg.method}] ", quiet=quiet or out is None)
    if note:
        progress.note(note)
    n_unl = len(data.unlabeled) if data.unlabeled is not None else 0
    progress.note(
        f"{cfg.data.name}: {len(data.labeled)} labeled, {n_unl} unlabeled, {len(data.test)} test | "
        f"device {run.device} {resolve_precision(tc.precision, run.device)} | "
        f"{run.dist.world} process(es) | run dir {rd}"
    )
    run.t0 = time.perf_counter()  # setup is not training time
    for step in range(run.start, tc.steps):
        train_step(run, step)
        done = step + 1
        if done % tc.log_every == 0 or done == tc.steps:
            log(run, done, progress)
        if done % tc.eval_every == 0 and done != tc.steps:
            check_finite(run, done)
            res = test(run)
            if out:
                out.append_metrics({"step": done, "test": res})
            progress.note(f"eval step {done}: " + _errors(res, "error"))
        if done % tc.checkpoint_every == 0 or done == tc.steps:
            check_finite(run, done)
            if out:
                out.save_checkpoint(state_dict(run, done))
    return finish(run, progress)


def test(run: Run) -> Results:
    cfg = run.cfg
    model = run.eval_model()
    broadcast_buffers(model, run.dist)  # one model on every rank (batch-norm statistics are per rank)
    return evaluate(
        model, run.data.test, run.views, cfg.data.eval_batch_size, run.device, cfg.train.precision, run.dist
    )


def log(run: Run, done: int, progress: Progress) -> None:
    """Average the device-side sums since the last line (and over ranks), print them and append them
    to metrics.jsonl."""
    check_finite(run, done)
    n = (done - 1) % run.cfg.train.log_every + 1
    keys = list(run.sums)
    means = run.dist.mean(torch.stack([run.sums[k].float() for k in keys])) / n if keys else None
    values = {k: float(v) for k, v in zip(keys, means.tolist() if means is not None else [], strict=True)}
    run.sums = {}
    lr = run.sched.get_last_lr()[0]
    progress.log(done, {**values, "lr": lr})
    if run.dir is not None:
        run.dir.append_metrics({"step": done, **values, "lr": lr, "steps_per_s": progress.rate(done)})


def finish(run: Run, progress: Progress) -> dict[str, Any]:
    """Final test metrics, summary.json and the closing line."""
    cfg, rd = run.cfg, run.dir
    res = test(run)
    if rd is None:  # ranks other than 0 write nothing
        return {"test": res}
    rd.append_metrics({"step": cfg.train.steps, "test": res})
    seconds = run.seconds()
    summary = {
        "method": cfg.method,
        "dataset": cfg.data.name,
        "steps": cfg.train.steps,
        "seed": cfg.seed,
        "labeled_examples": len(run.data.labeled),
        "test": res,
        "test_error": res[next(iter(res))]["error"],
        "seconds": round(seconds, 2),
        "device": str(run.device),
        "precision": resolve_precision(cfg.train.precision, run.device),
    }
    rd.write_summary(summary)
    progress.note(f"done in {seconds:.1f}s: " + _errors(res, "test error"))
    return summary


def _errors(res: Results, word: str) -> str:
    return ", ".join(f"{t} {word} {100 * r['error']:.2f}%" for t, r in res.items())
