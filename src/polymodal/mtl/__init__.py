"""Multi-task loss balancing: how per-task losses become one update of the shared parameters.

A balancer is an ``nn.Module`` (it may learn weights, e.g. uncertainty weighting, or keep history,
e.g. DWA, in its state) with ``backward(losses, shared, step, heads=, features=) -> Tensor``: it
fills ``.grad`` of every parameter from the per-task losses and returns the combined loss value to
log. ``shared`` are the parameters every task uses (the trunk); ``heads`` get their own task's
gradient. One method per file, each citing its paper; see docs/multitask.md.
"""

from __future__ import annotations

from polymodal.mtl.base import BALANCERS, Balancer, GradientBalancer, task_gradients
from polymodal.mtl.build import build_balancer, gradient_methods
from polymodal.mtl.equal import EqualWeights
from polymodal.registry import import_submodules

import_submodules(__name__)  # each method file registers itself: adding a weighting is one file

__all__ = [
    "BALANCERS",
    "Balancer",
    "EqualWeights",
    "GradientBalancer",
    "build_balancer",
    "gradient_methods",
    "task_gradients",
]
