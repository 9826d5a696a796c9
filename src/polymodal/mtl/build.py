"""Build a balancer from plain arguments (the engine reads them from the config), refusing combinations
that cannot work."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from polymodal.errors import ConfigError
from polymodal.mtl.base import BALANCERS, Balancer, GradientBalancer


def gradient_methods() -> list[str]:
    """Weightings that reuse task weights between recomputes (`GradientBalancer`s), from the registry."""
    return [n for n, cls in BALANCERS.items() if isinstance(cls, type) and issubclass(cls, GradientBalancer)]


def build_balancer(
    weighting: str,
    tasks: Sequence[str],
    *,
    seed: int = 0,
    update: str = "all_tasks",
    recompute_every: int = 1,
    options: dict[str, Any] | None = None,
    has_shared: bool = True,
) -> Balancer:
    """``weighting`` from BALANCERS with its ``options`` (the method's constructor keywords).

    Raises one ConfigError line for an unknown option, an option of another method, a method that
    needs every task's loss in a ``one_task`` run, or GradNorm without shared parameters.
    """
    cls: Any = BALANCERS.get(weighting)
    options = dict(options or {})
    allowed = [n for n in inspect.signature(cls).parameters if n not in ("tasks", "seed")]
    gradient = isinstance(cls, type) and issubclass(cls, GradientBalancer)
    if recompute_every != 1 and not gradient:
        raise ConfigError(
            f"multitask.recompute_every={recompute_every}: only gradient methods reuse weights "
            f"({', '.join(gradient_methods())}); '{weighting}' has none"
        )
    if gradient:
        options["recompute_every"] = recompute_every
    bad = [k for k in options if k not in allowed]
    if bad:
        raise ConfigError(
            f"multitask.options.{bad[0]}: not an option of '{weighting}'; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    if update == "one_task" and getattr(cls, "needs_all_tasks", False):
        raise ConfigError(
            f"multitask.weighting='{weighting}' combines every task's loss each step, but "
            "multitask.update='one_task' gives one task per step; use equal or uncertainty, or update: "
            "all_tasks / task_batches"
        )
    if weighting == "gradnorm" and not has_shared:
        raise ConfigError(
            "multitask.weighting='gradnorm' needs shared (trunk) parameters; the model has none"
        )
    try:
        return cls(list(tasks), seed, **options)
    except TypeError as e:
        raise ConfigError(f"multitask.options for '{weighting}': {e}") from None
