"""Batched, per-sample augmentations that run on the tensors' own device.

Every op has the signature ``op(x, *, generator, lengths, **params) -> (x, lengths)``:
``x`` is a whole batch, every random draw comes from ``generator`` (on ``x.device``) and is made
per sample, and there is no Python loop over samples. ``lengths`` is the valid length along the last
axis for variable-length modalities (None otherwise); an op that changes the time axis (a feature
extractor) returns new lengths. Ops are registered by name in ``AUGMENTATIONS`` and listed in a
config as ``{op: name, **params}``.
"""

from __future__ import annotations

from polymodal.augment.pipeline import Pipeline
from polymodal.augment.registry import AUGMENTATIONS, AugmentOp
from polymodal.registry import import_submodules

import_submodules(__name__)  # each op module registers its ops

__all__ = ["AUGMENTATIONS", "AugmentOp", "Pipeline"]
