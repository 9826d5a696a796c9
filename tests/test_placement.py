"""Where the splits live: on the device, in (pinned) host memory, or memory-mapped from the packed
on-disk form. The same seed trains to the same weights and test error wherever the data live."""

import pytest
import torch
from test_cli_errors import run_cli
from test_engine import tiny

from polymodal.cli import main
from polymodal.config import build_config
from polymodal.data.packed import load_packed
from polymodal.engine.checkpoint import load_checkpoint
from polymodal.engine.trainer import train


@pytest.fixture(scope="module")
def packed(tmp_path_factory, data_root):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("POLYMODAL_CACHE", str(cache))
    assert main(["data", "pack", "mnist", "--data-root", str(data_root)]) == 0
    yield cache
    mp.undo()


def test_pack_writes_arrays_with_checksums_and_maps_them(packed, monkeypatch):
    monkeypatch.setenv("POLYMODAL_CACHE", str(packed))
    index, train_split, test_split = load_packed("mnist")
    assert index["tasks"] == {"class": 10} and len(train_split) == 60000 and len(test_split) == 10000
    x = train_split.inputs["image"]
    assert x.dtype == torch.uint8 and x.shape == (60000, 1, 28, 28)
    from polymodal.data import packed as module

    maps = {m.ctypes.data for m in module._MAPS}
    assert x.data_ptr() in maps  # a view on the mapped file, not a copy in memory


@pytest.mark.parametrize("placement", ["mmap", "pinned"])
def test_every_placement_trains_to_the_same_weights(packed, data_root, tmp_path, monkeypatch, placement):
    monkeypatch.setenv("POLYMODAL_CACHE", str(packed))
    over = {"train.steps": 12, "train.eval_every": 100, "train.checkpoint_every": 100}
    runs = {}
    for where in ("device", placement):
        raw = tiny(data_root, **over)
        raw["data"]["placement"] = where
        runs[where] = train(build_config(raw), tmp_path / where, quiet=True)
    assert runs["device"]["test"] == runs[placement]["test"]
    a, b = (load_checkpoint(tmp_path / w / "checkpoint.pt")["model"] for w in ("device", placement))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_unpacked_dataset_is_one_line(capsys, tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("POLYMODAL_CACHE", str(tmp_path))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{name: mnist, root: {data_root}, placement: mmap}}\n")
    err = run_cli(capsys, ["train", str(cfg), "--out", str(tmp_path / "r"), "--set", "train.steps=1"])
    assert "dataset 'mnist' is not packed" in err and "polymodal data pack mnist" in err
