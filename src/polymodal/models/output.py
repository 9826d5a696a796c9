"""What a model computed: `ModelOutput`, and the `TaskModel` base that splits shared from head parameters.

``model(batch)`` returns a `ModelOutput` instead of leaving results on attributes: the logits by task
(the record reads as that mapping, so ``out[task]`` and ``out.items()`` work), the features the heads
read (what MGDA-UB differentiates), the auxiliary per-modality logits a fusion model adds in
training, and any extra training losses the model computed itself (``losses``, e.g. a fusion
autoencoder's reconstruction). Objectives that run one forward over several views split the record by
rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

AuxLogits = dict[str, list[tuple[Tensor, Tensor]]]  # task -> [(logits (B, k), rows it may train on (B,))]


@dataclass
class ModelOutput(Mapping[str, Tensor]):
    logits: dict[str, Tensor]
    features: Tensor  # (B, D): what the task heads read; gradients w.r.t. it are the heads' real ones
    aux: AuxLogits = field(default_factory=dict)  # training only, when the model has auxiliary heads
    aux_weight: float = 0.0
    # training only: name -> weighted scalar loss over the whole forward (every row, labeled or not);
    # kept whole by `rows` (it describes the forward), added once by the objectives' supervised term
    losses: dict[str, Tensor] = field(default_factory=dict)

    def __getitem__(self, task: str) -> Tensor:
        return self.logits[task]

    def __iter__(self) -> Iterator[str]:
        return iter(self.logits)

    def __len__(self) -> int:
        return len(self.logits)

    def rows(self, start: int, stop: int | None = None) -> ModelOutput:
        """The same record for rows ``start:stop`` (one view of a concatenated forward)."""
        s = slice(start, stop)
        aux = {t: [(z[s], r[s]) for z, r in pairs] for t, pairs in self.aux.items()}
        logits = {t: z[s] for t, z in self.logits.items()}
        return ModelOutput(logits, self.features[s], aux, self.aux_weight, self.losses)

    def split(self, sizes: list[int]) -> list[ModelOutput]:
        """Consecutive row blocks of ``sizes`` (they must add up to the batch)."""
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [self.rows(a, a + n) for a, n in zip(starts, sizes, strict=True)]


class TaskModel(nn.Module):
    """Base of the models the engine trains: explicit shared (trunk) vs head (per-task) parameters.

    Multi-task balancers give shared parameters a combined gradient and heads their own task's
    gradient; subclasses list their per-task modules in ``head_modules``.
    """

    def head_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.head_modules() for p in m.parameters()]

    def shared_parameters(self) -> list[nn.Parameter]:
        heads = {id(p) for p in self.head_parameters()}
        return [p for p in self.parameters() if id(p) not in heads]
