"""Equal weights: the sum of task losses, one backward (the baseline every method is measured against)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from polymodal.mtl.base import BALANCERS, Balancer, Params


@BALANCERS.register("equal")
class EqualWeights(Balancer):
    """Sum of task losses, one backward: the baseline every multi-task method is measured against."""

    def __init__(self, tasks: Sequence[str] = (), seed: int = 0) -> None:
        super().__init__(tasks, seed)

    def backward(
        self,
        losses: dict[str, Tensor],
        shared: Params,
        step: int,
        heads: Params = (),
        features: Tensor | None = None,
    ) -> Tensor:
        total = sum(losses.values())
        total.backward()
        return total.detach()
