"""Batched, per-sample augmentations that run on the tensors' own device.

Every op has the signature ``op(x, *, generator, lengths, **params) -> (x, lengths)``:
``x`` is a whole batch, every random draw comes from ``generator`` (on ``x.device``) and is made
per sample, and there is no Python loop over samples. ``lengths`` is the valid length along the last
axis for variable-length modalities (None otherwise); an op that changes the time axis (a feature
extractor) returns new lengths. Ops are registered by name in ``AUGMENTATIONS`` and listed in a
config as ``{op: name, **params}``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from polymodal.registry import Registry

AugmentOp = Callable[..., tuple[Tensor, Tensor | None]]
AUGMENTATIONS: Registry[tuple[Tensor, Tensor | None]] = Registry("augmentation")

# Importing the op modules registers their ops; they import AUGMENTATIONS from here, so these
# imports must stay below the registry definition.
from polymodal.augment import audio, image, randaugment, text  # noqa: E402, F401
from polymodal.augment.pipeline import Pipeline  # noqa: E402

__all__ = ["AUGMENTATIONS", "AugmentOp", "Pipeline"]
