"""Shared test fixtures. Real data comes from $POLYMODAL_DATA or ../shared/data beside the repo."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("POLYMODAL_DATA", REPO.parent / "shared" / "data"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def data_root() -> Path:
    assert DATA_ROOT.is_dir(), f"real data expected at {DATA_ROOT} (set POLYMODAL_DATA)"
    return DATA_ROOT


@pytest.fixture
def host_copies(monkeypatch) -> list[int]:
    """The sizes of the tensors moved to the host while the test runs (``cpu``, ``numpy``, ``tolist``,
    ``.to("cpu")``): the multi-task solvers may move the T×T Gram matrix, never a gradient."""
    moved: list[int] = []
    for attr in ("cpu", "numpy", "tolist"):
        orig = getattr(torch.Tensor, attr)

        def spy(self, *a, _orig=orig, **k):
            moved.append(self.numel())
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, attr, spy)
    orig_to = torch.Tensor.to

    def spy_to(self, *a, **k):
        if any(str(x) == "cpu" for x in (*a, *k.values())):
            moved.append(self.numel())
        return orig_to(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "to", spy_to)
    return moved
