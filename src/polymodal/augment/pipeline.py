"""A validated chain of registered augmentation ops, built from config specs.

Specs are checked when the pipeline is built (op names and parameter names), so a typo in a config
fails at start-up with a one-line `ConfigError` instead of deep inside the first training step.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polymodal.augment.registry import AUGMENTATIONS, AugmentOp
from polymodal.errors import ConfigError

_RESERVED = ("generator", "lengths", "context")
"""Arguments the pipeline passes itself; a config may not set them. An op with a ``prepare(context,
**params)`` attribute (e.g. TF-IDF statistics of the training corpus) gets its result as ``context=``."""


def op_params(op: AugmentOp) -> dict[str, Any]:
    """The configurable keyword parameters of an op and their defaults."""
    return {
        name: p.default
        for name, p in inspect.signature(op).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in _RESERVED
    }


class Pipeline:
    """Applies ops in order: ``Pipeline([{"op": "crop", "pad": 2}, {"op": "cutout", "size": 8}])``.

    Calling it with a uint8 batch converts it to float in [0, 1] first, since the image ops assume
    that range (grey fill 0.5, zero padding = black).
    """

    def __init__(self, specs: Sequence[Mapping[str, Any]], context: Mapping[str, Any] | None = None) -> None:
        self.steps: list[tuple[str, AugmentOp, dict[str, Any]]] = []
        self.prepared: dict[int, Any] = {}  # step index -> what the op's prepare() returned
        for i, spec in enumerate(specs):
            if not isinstance(spec, Mapping) or "op" not in spec:
                raise ConfigError(f"augmentation #{i} must be a mapping with an 'op' key, got {spec!r}")
            name = str(spec["op"])
            op = AUGMENTATIONS.get(name)  # ConfigError listing the available ops
            allowed = op_params(op)
            params = {k: v for k, v in spec.items() if k != "op"}
            for key in params:
                if key not in allowed:
                    raise ConfigError(
                        f"augmentation '{name}' has no parameter '{key}'; "
                        f"allowed: {', '.join(allowed) or '(none)'}"
                    )
            if hasattr(op, "prepare"):
                self.prepared[i] = op.prepare(None if context is None else dict(context), **params)
            self.steps.append((name, op, params))

    def __call__(
        self, x: Tensor, generator: torch.Generator | None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        for i, (_, op, params) in enumerate(self.steps):
            extra = {"context": self.prepared[i]} if i in self.prepared else {}
            x, lengths = op(x, generator=generator, lengths=lengths, **params, **extra)
        return x, lengths

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"Pipeline({[{'op': name, **params} for name, _, params in self.steps]!r})"
