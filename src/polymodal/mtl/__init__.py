"""Multi-task loss balancing: how per-task losses become one update of the shared parameters.

A balancer is an ``nn.Module`` (it may learn weights, e.g. uncertainty weighting, or keep history,
e.g. DWA, in its state) with ``backward(losses, shared, step) -> Tensor``: it fills ``.grad`` of
every parameter from the per-task losses and returns the combined loss value to log. ``shared`` are
the parameters every task uses (the trunk); heads get their own task's gradient.
"""

from __future__ import annotations

from torch import Tensor, nn

from polymodal.registry import Registry

BALANCERS: Registry[nn.Module] = Registry("multi-task weighting")


@BALANCERS.register("equal")
class EqualWeights(nn.Module):
    """Sum of task losses, one backward: the baseline every multi-task method is measured against."""

    def backward(self, losses: dict[str, Tensor], shared: list[nn.Parameter], step: int) -> Tensor:
        total = sum(losses.values())
        total.backward()
        return total.detach()
