"""Where candidates are evaluated: in this process (default), a local process pool, or Ray.

Every backend runs the same pure function, `evaluate_job(ctx, job)`, with the same torch thread
count, and hands each ``(record, blocks)`` back to the search as it finishes; the search orders
results by candidate id before anything depends on them, so the same seed gives the same best
genome on every backend.

* ``inprocess``: one candidate after another in this process.
* ``pool``: ``backend.workers`` spawned processes; the context is written once to
  ``DIR/context.pt`` and each worker memory-maps it (``torch.load(mmap=True)``). A worker that dies
  fails the candidates it had (``BrokenProcessPool``) and the pool is started again.
* ``ray``: ``backend.workers`` actors (one CPU each) that receive the context once through the
  object store (``ray.put``), so it works on a cluster too. ``ray.init`` is local unless
  ``backend.address`` is set, and is skipped when Ray is already initialised (then it is not shut
  down either). Needs the ``search`` extra: ``pip install -e ".[search]"``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from polymodal.engine.checkpoint import save_atomic
from polymodal.errors import ConfigError
from polymodal.registry import Registry
from polymodal.search.config import BackendConfig
from polymodal.search.evaluate import Job, evaluate_job
from polymodal.search.features import Context

Done = Callable[[dict[str, Any], dict[str, Any]], None]
BACKENDS: Registry[Any] = Registry("search backend")


def _failed(job: Job, reason: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return {
        "id": job.id,
        "status": "failed",
        "reason": reason,
        "fitness": None,
        "steps": 0,
        "seconds": 0.0,
    }, {}


@BACKENDS.register("inprocess")
class InProcess:
    def __init__(self, ctx: Context, cfg: BackendConfig, folder: Path) -> None:
        self.ctx = ctx

    def run(self, jobs: list[Job], done: Done) -> None:
        for job in jobs:
            done(*evaluate_job(self.ctx, job))

    def close(self) -> None:
        pass


_WORKER: dict[str, Context] = {}


def _init_worker(path: str) -> None:
    _WORKER["ctx"] = Context.from_state(torch.load(path, map_location="cpu", weights_only=True, mmap=True))


def _run_in_worker(job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
    return evaluate_job(_WORKER["ctx"], job)


@BACKENDS.register("pool")
class Pool:
    def __init__(self, ctx: Context, cfg: BackendConfig, folder: Path) -> None:
        self.path, self.workers = folder / "context.pt", cfg.workers
        save_atomic(ctx.to_state(), self.path)
        self.executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),  # fork after torch has threads can hang
            initializer=_init_worker,
            initargs=(str(self.path),),
        )

    def run(self, jobs: list[Job], done: Done) -> None:
        futures = {self.executor.submit(_run_in_worker, j): j for j in jobs}
        broken = False
        while futures:
            finished, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for f in sorted(finished, key=lambda f: futures[f].id):
                job = futures.pop(f)
                try:
                    done(*f.result())
                except BrokenProcessPool:
                    broken = True
                    done(*_failed(job, "worker process died (BrokenProcessPool)"))
        if broken:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._start()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.path.unlink(missing_ok=True)


class _RayWorker:
    def __init__(self, state: dict[str, Any]) -> None:
        self.ctx = Context.from_state(state)

    def run(self, job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
        return evaluate_job(self.ctx, job)


@BACKENDS.register("ray")
class RayBackend:
    def __init__(self, ctx: Context, cfg: BackendConfig, folder: Path) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError('backend.name=ray needs Ray: pip install -e ".[search]"') from None
        self.ray, self.owned = ray, not ray.is_initialized()
        if self.owned:
            local = {"num_cpus": cfg.workers} if cfg.address is None else {}
            ray.init(address=cfg.address, include_dashboard=False, log_to_driver=False, **local)
        self.state = ray.put(ctx.to_state())
        self.actor = ray.remote(num_cpus=1)(_RayWorker)
        self.actors = [self.actor.remote(self.state) for _ in range(cfg.workers)]

    def run(self, jobs: list[Job], done: Done) -> None:
        ray, pending, idle, running = self.ray, list(jobs), list(self.actors), {}
        while pending or running:
            while idle and pending:
                actor, job = idle.pop(0), pending.pop(0)
                running[actor.run.remote(job)] = (job, actor)
            ready, _ = ray.wait(list(running), num_returns=1)
            job, actor = running.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - the actor died: record, replace it, go on
                result = _failed(
                    job, f"ray worker failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                )
                self.actors.remove(actor)
                actor = self.actor.remote(self.state)
                self.actors.append(actor)
            idle.append(actor)
            done(*result)

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        if self.owned:
            self.ray.shutdown()
