"""The augmentation registry: every op registers here by name (``{op: name, **params}`` in a config)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from polymodal.registry import Registry

AugmentOp = Callable[..., tuple[Tensor, Tensor | None]]
AUGMENTATIONS: Registry[tuple[Tensor, Tensor | None]] = Registry("augmentation")
