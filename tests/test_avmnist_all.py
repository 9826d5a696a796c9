"""SSL × fusion × multi-task in one run: AV-MNIST's speaker task, and `polymodal train
configs/avmnist_all.yaml` (and its one-label variant) running from the CLI."""

import json
from pathlib import Path

import pytest
import torch

from polymodal.cli import main
from polymodal.data import load_dataset
from polymodal.data.avmnist import build_avmnist, load_avmnist
from polymodal.data.fsdd import load_fsdd

REPO = Path(__file__).resolve().parents[1]
TINY = {"n_train": 80, "n_test": 40, "seed": 1}


@pytest.fixture(scope="module")
def cache(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cache")
    build_avmnist(data_root, base / "avmnist", **TINY)
    return base


def test_speaker_is_the_paired_clip_speaker(cache: Path, data_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("POLYMODAL_CACHE", str(cache))
    bundle = load_dataset("avmnist", data_root)
    assert bundle.tasks == {"digit": 10, "speaker": 6}
    test = bundle.test
    fsdd = load_fsdd(data_root / "fsdd", "test", verify_sums=False)
    # every test pair's (digit, speaker) is one that FSDD's test split has
    have = set(zip(fsdd.targets["digit"].tolist(), fsdd.targets["speaker"].tolist(), strict=True))
    pairs = zip(test.targets["digit"].tolist(), test.targets["speaker"].tolist(), strict=True)
    assert all(p in have for p in pairs)
    assert len(set(bundle.train.targets["speaker"].tolist())) > 1
    assert json.loads((cache / "avmnist" / "meta.json").read_text())["version"] == 2


@pytest.mark.parametrize("config", ["avmnist_all", "avmnist_all_one_label"])
def test_all_in_one_config_trains_from_the_cli(
    config: str, cache: Path, data_root: Path, monkeypatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setenv("POLYMODAL_CACHE", str(cache))
    run = tmp_path / "run"
    sets = ["train.steps=2", "data.eval_batch_size=40", "data.labels_per_class=2", "data.batch_size=8"]
    args = ["train", str(REPO / "configs" / f"{config}.yaml"), "--out", str(run), "--quiet"]
    assert main([*args, "--data-root", str(data_root), *[a for s in sets for a in ("--set", s)]]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "uda" and set(summary["test"]) == {"digit", "speaker"}
    saved = (run / "config.yaml").read_text()
    assert "pcgrad" in saved and "fusion" in saved and "spec_augment" in saved
    capsys.readouterr()


def test_an_old_cache_is_rebuilt_or_named_in_one_line(cache: Path, data_root: Path, tmp_path: Path) -> None:
    from polymodal.errors import DataError

    old = tmp_path / "old"
    old.mkdir()
    for f in (cache / "avmnist").iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    meta = json.loads((old / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps({**meta, "version": 1}))
    with pytest.raises(DataError, match=r"built by version 1 .* rebuild it: polymodal data build avmnist$"):
        load_avmnist(old)  # no source data given: one line
    train, _, meta = load_avmnist(old, data_root)  # with the sources: rebuilt with the recorded options
    assert meta["version"] == 2 and meta["n_train"] == TINY["n_train"] and "speaker" in train.targets
    assert torch.equal(train.inputs["image"], load_avmnist(cache / "avmnist")[0].inputs["image"])
