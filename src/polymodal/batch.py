"""The one data model every part of polymodal speaks.

A `Batch` carries inputs by modality, targets by task, and two kinds of masks:

* ``target_mask[task]`` (B,) bool: the example has a label for that task. Unlabeled data is a batch
  with all target masks False (or no targets at all); one-task-per-example multi-task data sets one
  mask True per row.
* ``modality_mask[modality]`` (B,) bool: the modality is present. A missing modality keeps a
  zero-filled slot in ``inputs`` so tensors stay rectangular; fusion reads the mask.

Variable-length modalities (waveforms, token ids) are right-padded along their last axis, with the
valid length per example in ``lengths[modality]``.

`TensorData` is a whole split held as tensors (our datasets fit in memory), so a batch is one
gather on the device, and augmentation can run batched on the device too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from polymodal.errors import ShapeError


def valid_mask(lengths: Tensor, size: int) -> Tensor:
    """(B,) valid lengths -> (B, size) bool, True at the valid positions of a right-padded axis."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def _check_rows(name: str, tensors: dict[str, Tensor], n: int) -> None:
    for key, t in tensors.items():
        if t.shape[0] != n:
            raise ShapeError(f"{name}['{key}'] has {t.shape[0]} rows but the batch has {n}")


@dataclass
class Batch:
    inputs: dict[str, Tensor]
    targets: dict[str, Tensor] = field(default_factory=dict)
    target_mask: dict[str, Tensor] = field(default_factory=dict)
    modality_mask: dict[str, Tensor] = field(default_factory=dict)
    lengths: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ShapeError("a batch needs at least one input modality")
        n = self.size
        for name in ("inputs", "targets", "target_mask", "modality_mask", "lengths"):
            _check_rows(name, getattr(self, name), n)
        for task in self.targets:
            if task not in self.target_mask:
                self.target_mask[task] = torch.ones(n, dtype=torch.bool, device=self.device)
        for mod in self.inputs:
            if mod not in self.modality_mask:
                self.modality_mask[mod] = torch.ones(n, dtype=torch.bool, device=self.device)

    @property
    def size(self) -> int:
        return next(iter(self.inputs.values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.inputs.values())).device

    @property
    def tasks(self) -> list[str]:
        return list(self.targets)

    def to(self, device: torch.device | str) -> Batch:
        def move(d: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: v.to(device, non_blocking=True) for k, v in d.items()}

        return Batch(
            move(self.inputs),
            move(self.targets),
            move(self.target_mask),
            move(self.modality_mask),
            move(self.lengths),
        )

    def with_inputs(self, inputs: dict[str, Tensor], lengths: dict[str, Tensor] | None = None) -> Batch:
        """A copy with new inputs (an augmented view); labels and masks are shared."""
        return replace(self, inputs=inputs, lengths=self.lengths if lengths is None else lengths)

    def unlabeled(self) -> Batch:
        """The same inputs with every label hidden: what the unlabeled stream sees."""
        return Batch(self.inputs, {}, {}, dict(self.modality_mask), dict(self.lengths))


@dataclass
class TensorData:
    """A whole split as tensors; `batch(index)` gathers rows and trims padding to the batch max."""

    inputs: dict[str, Tensor]
    targets: dict[str, Tensor] = field(default_factory=dict)
    lengths: dict[str, Tensor] = field(default_factory=dict)
    # task -> (N,) bool: which rows hold that task's label (missing labels); absent: every row does
    target_mask: dict[str, Tensor] = field(default_factory=dict)
    # modality -> (N,) bool: which rows have that modality (a missing one is a zero slot); absent: all do
    modality_mask: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self)
        for name in ("inputs", "targets", "lengths", "target_mask", "modality_mask"):
            _check_rows(name, getattr(self, name), n)

    def __len__(self) -> int:
        return next(iter(self.inputs.values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.inputs.values())).device

    def to(self, device: torch.device | str) -> TensorData:
        return TensorData(
            {k: v.to(device) for k, v in self.inputs.items()},
            {k: v.to(device) for k, v in self.targets.items()},
            {k: v.to(device) for k, v in self.lengths.items()},
            {k: v.to(device) for k, v in self.target_mask.items()},
            {k: v.to(device) for k, v in self.modality_mask.items()},
        )

    def subset(self, index: Tensor) -> TensorData:
        index = index.to(self.device)
        return TensorData(
            {k: v[index] for k, v in self.inputs.items()},
            {k: v[index] for k, v in self.targets.items()},
            {k: v[index] for k, v in self.lengths.items()},
            {k: v[index] for k, v in self.target_mask.items()},
            {k: v[index] for k, v in self.modality_mask.items()},
        )

    def batch(self, index: Tensor, with_targets: bool = True) -> Batch:
        index = index.to(self.device)
        lengths = {k: v[index] for k, v in self.lengths.items()}
        inputs = {}
        for k, v in self.inputs.items():
            x = v[index]
            if k in lengths and x.ndim >= 2:  # trim right padding shared by the whole batch
                x = x[..., : int(lengths[k].max())]
            inputs[k] = x
        targets = {k: v[index] for k, v in self.targets.items()} if with_targets else {}
        masks = {k: v[index] for k, v in self.target_mask.items() if k in targets}
        present = {k: v[index] for k, v in self.modality_mask.items()}
        return Batch(inputs, targets, masks, present, lengths)


def cat_batches(batches: list[Batch]) -> Batch:
    """Stack batches along rows (one forward pass for several views); pads variable-length axes."""
    first = batches[0]

    def stack(name: str, key: str) -> Tensor:
        parts = [getattr(b, name)[key] for b in batches]
        if name == "inputs" and key in first.lengths:
            width = max(p.shape[-1] for p in parts)
            parts = [torch.nn.functional.pad(p, (0, width - p.shape[-1])) for p in parts]
        return torch.cat(parts)

    fields = {}
    for name in ("inputs", "targets", "target_mask", "modality_mask", "lengths"):
        keys = [set(getattr(b, name)) for b in batches]
        if any(k != keys[0] for k in keys):
            raise ShapeError(f"cannot concatenate batches whose {name} keys differ: {keys}")
        fields[name] = {k: stack(name, k) for k in getattr(first, name)}
    return Batch(**fields)
