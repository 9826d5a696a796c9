"""A tiny 3-modality dataset for the search tests (two informative tabular modalities and one of pure
noise), registered as ``search_toy``, and a tiny search config. Run as a script it is the
`polymodal` CLI with the dataset registered (the kill / resume test runs it in a subprocess)."""

from __future__ import annotations

import sys

import torch

from polymodal.batch import TensorData
from polymodal.data import DATASETS, DataBundle

NAME = "search_toy"


def _split(n: int, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    centres = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(99))
    x = {m: centres[i][y] + 1.6 * torch.randn(n, 6, generator=g) for i, m in enumerate(("a", "b"))}
    x["noise"] = torch.randn(n, 6, generator=g)
    return TensorData(x, {"label": y})


def load(root) -> DataBundle:
    kinds = {"a": "tabular", "b": "tabular", "noise": "tabular"}
    return DataBundle(NAME, _split(480, 1), _split(200, 2), {"label": 4}, kinds)


def register() -> None:
    if NAME not in DATASETS:
        DATASETS.register(NAME)(load)


def config(**over) -> dict:
    """A search that runs in a second or two: 5 genomes, then 2 x 4 children, at most 20 steps each."""
    enc = {"name": "tabular_mlp", "in_dim": 6, "hidden": [8], "out_dim": 8}
    cfg = {
        "seed": 0,
        "data": {"name": NAME, "val_fraction": 0.25},
        "encoders": {"a": enc, "b": enc, "noise": enc},
        "pretrain": {"steps": 40, "batch_size": 32},
        "space": {"widths": [8, 16], "trunks": [[], [8]], "max_nodes": 2},
        "candidate": {"steps": 20, "batch_size": 32, "eval_every": 5, "patience": 2, "hopeless_after": 10},
        "ga": {"population": 5, "generations": 3, "elite": 1},
        "retrain": {"steps": 30},
    }
    for key, value in over.items():
        node = cfg
        *parts, last = key.split(".")
        for p in parts:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


if __name__ == "__main__":
    register()
    from polymodal.cli import main

    sys.exit(main(sys.argv[1:]))
