"""Which labeled rows a multi-task step trains on, for each ``multitask.update`` mode.

* ``all_tasks`` — one batch from the whole labeled set, every task's loss on it (rows without a
  task's label are masked). The engine's plain `EpochSampler` does this; nothing here is needed.
* ``task_batches`` (method one) — each step one batch of ``batch_size`` rows from every task's pool
  (the rows labeled for that task), concatenated into one batch whose target masks keep each task's
  loss on its own rows: one forward, one combined update.
* ``one_task`` (method two) — each step one task is drawn (uniform, proportional to pool size, or
  temperature-scaled ``p_t ∝ n_t^(1/τ)``) and one batch of its pool carries only that task's target.

Epochs are per task: task t's pool is walked in a seeded permutation per epoch, its k-th batch being
positions k·B … k·B+B−1 of it. A small task simply starts its next epoch sooner; no pool is padded or
oversampled to match another. Everything derives from the run seed and the step, so a resumed run
draws exactly the same batches.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polymodal.batch import Batch, TensorData, cat_batches
from polymodal.data.sampling import EpochSampler
from polymodal.errors import ConfigError, DataError

UPDATES = ("all_tasks", "task_batches", "one_task")
SAMPLINGS = ("uniform", "proportional", "temperature")


def task_probabilities(sizes: dict[str, int], sampling: str, temperature: float = 1.0) -> Tensor:
    """p_t for method two: uniform 1/T, proportional n_t/Σn, temperature n_t^(1/τ)/Σ n^(1/τ)."""
    if sampling not in SAMPLINGS:
        raise ConfigError(f"multitask.task_sampling='{sampling}': allowed: {', '.join(SAMPLINGS)}")
    if temperature <= 0:
        raise ConfigError(f"multitask.sampling_temperature={temperature}: must be > 0")
    n = torch.tensor([float(v) for v in sizes.values()], dtype=torch.float64)
    power = {"uniform": 0.0, "proportional": 1.0, "temperature": 1.0 / temperature}[sampling]
    p = n**power
    return p / p.sum()


def task_pools(data: TensorData, tasks: list[str]) -> dict[str, Tensor]:
    """Row indices labeled for each task (the task's pool)."""
    pools = {}
    for t in tasks:
        mask = data.target_mask.get(t)
        pools[t] = torch.arange(len(data), device=data.device) if mask is None else mask.nonzero().flatten()
        if len(pools[t]) == 0:
            raise DataError(f"task '{t}' has no labeled training example")
    return pools


def only_task(batch: Batch, task: str, keep: list[str] | None = None) -> Batch:
    """A copy whose labels count for ``task`` only: other tasks dropped, or kept fully masked."""
    targets = {t: y for t, y in batch.targets.items() if t == task or (keep and t in keep)}
    masks = {
        t: batch.target_mask[t] if t == task else torch.zeros_like(batch.target_mask[t]) for t in targets
    }
    return Batch(batch.inputs, targets, masks, dict(batch.modality_mask), dict(batch.lengths))


class TaskBatches:
    """``step -> Batch`` for method one (``task_batches``) and method two (``one_task``)."""

    def __init__(
        self,
        data: TensorData,
        tasks: list[str],
        update: str,
        batch_size: int,
        seed: int,
        steps: int,
        sampling: str = "proportional",
        temperature: float = 1.0,
    ) -> None:
        if update not in UPDATES[1:]:
            raise ConfigError(f"multitask.update='{update}' needs no task sampler; allowed: {UPDATES[1:]}")
        self.data, self.tasks, self.update = data, tasks, update
        self.pools = task_pools(data, tasks)
        self.samplers = {
            t: EpochSampler(len(self.pools[t]), batch_size, seed + 101 * (i + 1), data.device)
            for i, t in enumerate(tasks)
        }
        self.probs = task_probabilities({t: len(p) for t, p in self.pools.items()}, sampling, temperature)
        if update == "one_task":  # the whole run's task sequence, and each draw's index within its task
            g = torch.Generator().manual_seed(seed * 7919 + 4242)
            self.choice = torch.multinomial(self.probs, steps, replacement=True, generator=g)
            onehot = torch.nn.functional.one_hot(self.choice, len(tasks))
            self.draw = (onehot.cumsum(0) - onehot)[torch.arange(steps), self.choice]

    def rows(self, task: str, k: int) -> Tensor:
        return self.pools[task][self.samplers[task](k)]

    def task_at(self, step: int) -> str:
        return self.tasks[int(self.choice[step])]

    def __call__(self, step: int) -> Batch:
        if self.update == "one_task":
            task = self.task_at(step)
            return only_task(self.data.batch(self.rows(task, int(self.draw[step]))), task)
        parts = [only_task(self.data.batch(self.rows(t, step)), t, keep=self.tasks) for t in self.tasks]
        return cat_batches(parts)
