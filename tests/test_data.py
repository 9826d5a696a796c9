"""Loaders on the real data: shapes, counts, official splits, checksums and clear errors."""

import shutil
from collections import Counter

import pytest
import torch

from polymodal.data import label_split, load_dataset, load_split, save_split
from polymodal.data.fsdd import read_wav
from polymodal.errors import ConfigError, DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist(data_root):
    return load_dataset("mnist", data_root)


def test_mnist_shapes_and_counts(mnist):
    x = mnist.train.inputs["image"]
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8
    assert mnist.test.inputs["image"].shape == (10000, 1, 28, 28)
    assert torch.bincount(mnist.train.targets["class"]).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.test.targets["class"]).tolist() == MNIST_TEST_COUNTS
    assert mnist.tasks == {"class": 10} and mnist.modalities == {"image": "image"}


def test_fsdd_official_split(data_root):
    fsdd = load_dataset("fsdd", data_root)
    assert len(fsdd.train) == 2700 and len(fsdd.test) == 300
    pairs = Counter(
        zip(
            fsdd.train.targets["digit"].tolist(),
            fsdd.train.targets["speaker"].tolist(),
            strict=True,
        )
    )
    assert len(pairs) == 60 and set(pairs.values()) == {45}  # indices 5-49 of each (digit, speaker)
    test_pairs = Counter(
        zip(fsdd.test.targets["digit"].tolist(), fsdd.test.targets["speaker"].tolist(), strict=True)
    )
    assert set(test_pairs.values()) == {5}
    lengths = fsdd.train.lengths["audio"]
    assert lengths.min() >= 0.1435 * 8000 and lengths.max() <= 2.2835 * 8000  # SOURCE.md: 0.144-2.283 s
    audio = fsdd.train.inputs["audio"]
    assert audio.abs().max() <= 1.0
    row = int(lengths.argmin())
    assert audio[row, lengths[row] :].abs().sum() == 0  # right padding is silent
    # train and test hold different recordings: no test waveform equals a train waveform
    train_set = {tuple(audio[i, :50].tolist()) for i in range(len(fsdd.train))}
    test_audio = fsdd.test.inputs["audio"]
    assert not any(tuple(test_audio[i, :50].tolist()) in train_set for i in range(300))


def test_banking77_counts(data_root):
    b = load_dataset("banking77", data_root)
    assert len(b.train) == 10003 and len(b.test) == 3080
    assert b.tasks == {"intent": 77}
    assert torch.bincount(b.test.targets["intent"], minlength=77).tolist() == [40] * 77
    assert b.meta["vocab_size"] > 1000
    assert (b.train.lengths["text"] > 0).all()


def test_label_split_is_seeded_balanced_and_saved(mnist, tmp_path):
    y = mnist.train.targets["class"]
    a = label_split(y, 10, seed=3)
    assert len(a) == 100 and torch.bincount(y[a]).tolist() == [10] * 10
    assert torch.equal(a, label_split(y, 10, seed=3))
    assert not torch.equal(a, label_split(y, 10, seed=4))
    save_split(tmp_path / "split.json", a, 10, 3)
    assert torch.equal(load_split(tmp_path / "split.json"), a)
    with pytest.raises(ConfigError, match="has only"):
        label_split(torch.tensor([0, 0, 1]), 2, seed=0)


def test_unlabeled_pool_excludes_test(data_root, tmp_path):
    from polymodal.config import build_config
    from polymodal.engine.build import build_data

    cfg = build_config(
        {
            "method": "uda",
            "data": {"name": "mnist", "root": str(data_root), "labels_per_class": 1},
        }
    )
    data = build_data(cfg, tmp_path, torch.device("cpu"))
    assert len(data.unlabeled) == 60000 and data.unlabeled.targets == {}
    assert data.unlabeled.inputs["image"].data_ptr() != data.test.inputs["image"].data_ptr()
    assert (tmp_path / "split.json").is_file()


def test_corrupt_and_missing_files_name_the_file(data_root, tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(data_root / "mnist", folder)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"corrupt data file '.*t10k-labels-idx1-ubyte.gz'"):
        load_dataset("mnist", tmp_path)
    target.unlink()
    with pytest.raises(DataError, match=r"missing data file '.*t10k-labels-idx1-ubyte.gz'"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DataError, match="dataset 'fsdd' not found"):
        load_dataset("fsdd", tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        load_dataset("mnist", tmp_path / "nope")


def test_corrupt_wav_is_one_clear_error(tmp_path):
    bad = tmp_path / "0_x_0.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(DataError, match="corrupt wav"):
        read_wav(bad)
