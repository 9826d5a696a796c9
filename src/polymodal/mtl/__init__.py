"""Multi-task loss balancing: how per-task losses become one update of the shared parameters.

A balancer is an ``nn.Module`` (it may learn weights, e.g. uncertainty weighting, or keep history,
e.g. DWA, in its state) with ``backward(losses, shared, step, heads=, features=) -> Tensor``: it
fills ``.grad`` of every parameter from the per-task losses and returns the combined loss value to
log. ``shared`` are the parameters every task uses (the trunk); ``heads`` get their own task's
gradient. One method per file, each citing its paper; see docs/multitask.md.
"""

from __future__ import annotations

from polymodal.mtl import cagrad, dwa, equal, gradnorm, imtl, mgda, pcgrad, rlw, uncertainty  # noqa: F401
from polymodal.mtl.base import BALANCERS, Balancer, GradientBalancer, task_gradients
from polymodal.mtl.build import GRADIENT_METHODS, build_balancer, multitask_from_config
from polymodal.mtl.equal import EqualWeights

__all__ = [
    "BALANCERS",
    "GRADIENT_METHODS",
    "Balancer",
    "EqualWeights",
    "GradientBalancer",
    "build_balancer",
    "multitask_from_config",
    "task_gradients",
]
