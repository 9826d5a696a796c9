"""The one-label-per-example variant of a multi-task split (``data.one_label_per_example: true``).

Each example keeps its label for one task, drawn uniformly with a seed; its other labels are hidden
(target -1, mask False), as when every example was annotated for a single task. Rows already missing
a task's label stay missing.
"""

from __future__ import annotations

import torch

from polymodal.batch import TensorData


def one_label_per_example(data: TensorData, seed: int) -> TensorData:
    tasks = list(data.targets)
    g = torch.Generator().manual_seed(seed * 7919 + 13)
    choice = torch.randint(len(tasks), (len(data),), generator=g).to(data.device)
    masks, targets = {}, {}
    for i, t in enumerate(tasks):
        keep = choice == i
        if t in data.target_mask:
            keep = keep & data.target_mask[t]
        masks[t] = keep
        targets[t] = torch.where(keep, data.targets[t], torch.full_like(data.targets[t], -1))
    return TensorData(data.inputs, targets, data.lengths, masks, data.modality_mask)
