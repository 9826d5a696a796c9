"""Data-parallel training over processes started by ``torchrun`` (gloo on CPU, nccl on CUDA).

Every rank builds the same run and computes the same global batch rows from (seed, step), then keeps
its own contiguous slice of them. Gradients are averaged with one all-reduce of the flattened
gradients after the balancer's backward (parameters a step left unused count as zero, so modality
dropout, late fusion and several forwards per step need no special mode); gradient-method balancers
average the per-task gradients (or their Gram matrix) *before* solving for task weights, so every
rank solves the same problem as one process with the global batch. Logged sums, the non-finite flag
and evaluation hit counts are summed over ranks; only rank 0 writes the run directory.

Unlike `torch.nn.parallel.DistributedDataParallel` the all-reduce does not overlap the backward pass;
on two CPU processes that costs nothing measurable, on many GPUs bucketed overlap is the next step.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from polymodal.batch import Batch
from polymodal.errors import ConfigError, PolymodalError

TIMEOUT = datetime.timedelta(minutes=10)  # a peer that stopped answering ends the job, never a hang


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """This rank's contiguous share of a global batch of ``n`` rows."""
        if n % self.world:
            raise ConfigError(f"a global batch of {n} rows does not split over {self.world} processes")
        k = n // self.world
        return slice(self.rank * k, (self.rank + 1) * k)

    def sum(self, x: Tensor) -> Tensor:
        if self.enabled:
            x = x.clone()
            _collective(dist.all_reduce, x)
        return x

    def mean(self, x: Tensor) -> Tensor:
        return self.sum(x) / self.world if self.enabled else x

    def max(self, x: Tensor) -> Tensor:
        if self.enabled:
            x = x.clone()
            _collective(dist.all_reduce, x, dist.ReduceOp.MAX)
        return x


def init_from_env(device_name: str) -> tuple[Dist, str]:
    """The process group torchrun describes in the environment (none: one process), and the device
    this rank uses (``cuda:LOCAL_RANK`` when the config's device is cuda or auto with a GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), device_name
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    gpus = torch.cuda.device_count() if cuda else 0
    if cuda:
        torch.cuda.set_device(local % gpus)
    # nccl needs a GPU per process; more processes than GPUs (a smoke run on one GPU) share them via gloo
    shared = cuda and int(os.environ.get("LOCAL_WORLD_SIZE", world)) > gpus
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda and not shared else "gloo", timeout=TIMEOUT)
    return Dist(rank, world, local), (f"cuda:{local % gpus}" if cuda else "cpu")


def slice_batch(batch: Batch, rows: slice) -> Batch:
    def cut(d: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: v[rows] for k, v in d.items()}

    return Batch(
        cut(batch.inputs),
        cut(batch.targets),
        cut(batch.target_mask),
        cut(batch.modality_mask),
        cut(batch.lengths),
    )


def average_gradients(params: Sequence[nn.Parameter], d: Dist) -> None:
    """Every parameter's ``.grad`` becomes its mean over ranks (a missing gradient counts as zero)."""
    if not d.enabled:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    _collective(dist.all_reduce, flat)
    flat /= d.world
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def broadcast_buffers(model: nn.Module, d: Dist) -> None:
    """Rank 0's buffers (batch-norm statistics) everywhere, so every rank evaluates one model."""
    if d.enabled:
        for b in model.buffers():
            _collective(dist.broadcast, b, 0)


def _collective(fn, *args: object) -> None:
    try:
        fn(*args)
    except (RuntimeError, dist.DistError) as e:  # a peer died or timed out
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise PolymodalError(
            f"distributed training stopped: another process failed or stopped answering ({first}); "
            "resume with --resume RUN_DIR"
        ) from None


def launch(nproc: int, argv: list[str]) -> int:
    """``polymodal train --nproc N ...``: the same command under ``torchrun --nproc-per-node N``."""
    torchrun = shutil.which("torchrun")
    cmd = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    cmd += ["--nproc-per-node", str(nproc), "-m", "polymodal", *argv]
    return subprocess.call(cmd)
