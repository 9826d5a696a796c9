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
