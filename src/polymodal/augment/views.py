"""Named views of a batch: ``clean``, ``weak`` and ``strong`` pipelines per modality.

Training methods ask for views by name (UDA: weak labeled, clean and strong unlabeled; FixMatch:
weak and strong) and never touch augmentation details; the config decides what each view does.
"""

from __future__ import annotations

import torch

from polymodal.augment.pipeline import Pipeline
from polymodal.batch import Batch
from polymodal.errors import ConfigError, ShapeError

VIEW_NAMES = ("clean", "weak", "strong")


class Views:
    def __init__(
        self,
        specs: dict[str, dict[str, list[dict]]],
        modalities: dict[str, str],
        context: dict[str, dict] | None = None,
    ):
        """``context[modality]`` is what ops with a ``prepare`` hook may read (see `Pipeline`)."""
        unknown = sorted(set(specs) - set(modalities))
        if unknown:
            raise ConfigError(
                f"augment.{unknown[0]}: the dataset has no modality '{unknown[0]}'; "
                f"it has: {', '.join(modalities)}"
            )
        self.pipelines = {}
        for m in modalities:
            for v in VIEW_NAMES:
                try:
                    self.pipelines[(m, v)] = Pipeline(specs.get(m, {}).get(v, []), (context or {}).get(m))
                except ConfigError as e:
                    raise ConfigError(f"augment.{m}.{v}: {e}") from None

    def __call__(self, batch: Batch, view: str, generator: torch.Generator) -> Batch:
        inputs, lengths = dict(batch.inputs), dict(batch.lengths)
        for m, x in batch.inputs.items():
            try:
                x, new_len = self.pipelines[(m, view)](x, generator, lengths.get(m))
            except (ValueError, RuntimeError) as e:  # an op applied to the wrong kind of input
                raise ShapeError(f"augment.{m}.{view}: {str(e).splitlines()[0]}") from None
            inputs[m] = x
            if new_len is not None:
                lengths[m] = new_len
        return batch.with_inputs(inputs, lengths)
