"""What every balancer shares: the call signature, per-task gradients, and weight reuse every k steps.

A balancer turns per-task losses into ``.grad`` on every parameter. Weighting methods only rescale
losses (one backward). Gradient methods look at the per-task gradients of the shared parameters and
return task weights ``w`` such that the shared update is ``Σ_t w_t g_t``; every method here (PCGrad,
CAGrad, IMTL-G, MGDA) can be written that way, with ``w`` a function of the T×T Gram matrix
``G Gᵀ``. That is why only a T×T matrix ever leaves the device, and why a method can reuse its last
``w`` for ``recompute_every - 1`` steps at the cost of one ordinary backward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from polymodal.errors import ConfigError
from polymodal.registry import Registry

Params = Sequence[nn.Parameter]


def _identity(x: Tensor) -> Tensor:
    return x


BALANCERS: Registry[nn.Module] = Registry("multi-task weighting")


class Balancer(nn.Module):
    """Base class: ``backward(losses, shared, step, heads=, features=) -> combined loss (detached)``."""

    needs_features = False  # True: wants the shared representation (MGDA-UB)
    needs_all_tasks = False  # True: cannot work with one task's loss per step

    def __init__(self, tasks: Sequence[str], seed: int = 0) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.seed = seed
        # data-parallel training: the mean over processes of what a rank computed from its rows (the
        # engine sets it); methods apply it to task gradients / losses before deciding task weights
        self.reduce: Callable[[Tensor], Tensor] = _identity

    def stack(self, losses: dict[str, Tensor]) -> Tensor:
        """Losses as a (T,) vector in ``self.tasks`` order; every task must be present."""
        if self.needs_all_tasks and set(losses) != set(self.tasks):
            raise ConfigError(
                f"multitask.weighting '{type(self).__name__}' needs a loss for every task "
                f"{self.tasks} each step, got {sorted(losses)}"
            )
        return torch.stack([losses[t].float() for t in self.tasks if t in losses])

    def generator(self, step: int) -> torch.Generator:
        """Host RNG for this step, derived from (seed, step) so a resumed run draws the same."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + step) % (2**63 - 1) + 17)

    def backward(
        self,
        losses: dict[str, Tensor],
        shared: Params,
        step: int,
        heads: Params = (),
        features: Tensor | None = None,
    ) -> Tensor:
        raise NotImplementedError


def task_gradients(losses: Tensor, params: Params, retain_graph: bool = True) -> Tensor:
    """(T, P) per-task gradients of ``losses`` (T,) w.r.t. ``params``, on their device.

    One batched vector-Jacobian product (``is_grads_batched``: the T backward passes run as one
    vmapped pass); a loop of T ``autograd.grad`` calls is the fallback for ops vmap cannot batch.
    """
    eye = torch.eye(len(losses), device=losses.device, dtype=losses.dtype)
    try:
        grads = torch.autograd.grad(
            losses, list(params), eye, retain_graph=True, is_grads_batched=True, allow_unused=True
        )
        rows = [
            g if g is not None else torch.zeros(len(losses), *p.shape, device=p.device)
            for g, p in zip(grads, params, strict=True)
        ]
        return torch.cat([r.reshape(len(losses), -1) for r in rows], dim=1)
    except RuntimeError:
        out = []
        for t in range(len(losses)):
            g = torch.autograd.grad(losses[t], list(params), retain_graph=True, allow_unused=True)
            out.append(
                torch.cat(
                    [
                        (x if x is not None else torch.zeros_like(p)).flatten()
                        for x, p in zip(g, params, strict=True)
                    ]
                )
            )
        return torch.stack(out)


def write_grads(params: Params, flat: Tensor) -> None:
    """Accumulate a flat gradient into ``.grad`` of ``params`` (the engine zeroed them)."""
    offset = 0
    for p in params:
        g = flat[offset : offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
        p.grad = g.clone() if p.grad is None else p.grad + g


def host_gram(gram: Tensor) -> np.ndarray:
    """The T×T Gram matrix as float64 numpy: the only thing a solver moves off the device."""
    return gram.detach().to("cpu", torch.float64).numpy()


class LossWeighting(Balancer):
    """Methods that only rescale the losses: ``Σ_t w_t L_t``, one backward, then ``observe``."""

    def loss_weights(self, vec: Tensor, step: int) -> Tensor:
        raise NotImplementedError

    def observe(self, vec: Tensor, step: int) -> None:
        """Hook for methods that keep a loss history (DWA); called after the backward pass."""

    def backward(
        self,
        losses: dict[str, Tensor],
        shared: Params,
        step: int,
        heads: Params = (),
        features: Tensor | None = None,
    ) -> Tensor:
        vec = self.stack(losses)
        total = (self.loss_weights(vec, step).to(vec) * vec).sum()
        total.backward()
        self.observe(self.reduce(vec.detach()), step)
        return total.detach()


class GradientBalancer(Balancer):
    """Per-task gradients of the shared parameters → task weights ``w`` → shared grad ``Σ w_t g_t``.

    Heads get their own task's plain gradient. Every ``recompute_every`` steps the weights are
    recomputed from fresh per-task gradients; in between the last weights are reused with a single
    backward of ``Σ w_t L_t`` (exactly the method's update with stale weights).
    """

    needs_all_tasks = True

    def __init__(self, tasks: Sequence[str], seed: int = 0, recompute_every: int = 1) -> None:
        super().__init__(tasks, seed)
        if recompute_every < 1:
            raise ConfigError(f"multitask.recompute_every={recompute_every}: must be >= 1")
        self.recompute_every = recompute_every
        self.register_buffer("last_weights", torch.ones(len(self.tasks)))

    def weights(self, gram: Tensor, step: int) -> Tensor:
        """(T,) weights from the (T, T) Gram matrix of per-task gradients."""
        raise NotImplementedError

    def gram_source(self, losses: Tensor, shared: Params, features: Tensor | None) -> Tensor | None:
        """Gradients whose Gram matrix defines the weights; None: use the shared-parameter grads."""
        return None

    def backward(
        self,
        losses: dict[str, Tensor],
        shared: Params,
        step: int,
        heads: Params = (),
        features: Tensor | None = None,
    ) -> Tensor:
        vec = self.stack(losses)
        if step % self.recompute_every == 0:
            rep = self.gram_source(vec, shared, features)
            if rep is None:
                grads = self.reduce(task_gradients(vec, shared))  # every rank: the global-batch gradients
                w = self.weights(grads @ grads.T, step).to(grads.dtype)
                write_grads(shared, w @ grads)
            else:  # features are per-row: the global Gram is the ranks' mean (up to scale)
                w = self.weights(self.reduce(rep @ rep.T), step).to(vec.dtype)
                torch.autograd.backward((w * vec).sum(), inputs=list(shared), retain_graph=True)
            self.last_weights.copy_(w.detach())
        else:
            w = self.last_weights.to(vec.dtype)
            torch.autograd.backward((w * vec).sum(), inputs=list(shared), retain_graph=True)
        if heads:
            torch.autograd.backward(vec.sum(), inputs=[h for h in heads if h.requires_grad])
        return (w.detach() * vec.detach()).sum()
