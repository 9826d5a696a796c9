"""AV-MNIST: byte-identical rebuilds, recorded knobs, FSDD's split kept, checksums enforced."""

from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.data import load_dataset
from polymodal.data.avmnist import FILES, _pair, build_avmnist, load_avmnist
from polymodal.data.fsdd import load_fsdd
from polymodal.errors import ConfigError, DataError
from polymodal.signal import log_mel_spectrogram

TINY = {
    "n_train": 120,
    "n_test": 60,
    "snr_db": 200.0,
    "seed": 3,
}  # 200 dB: noise-free audio, to check pairing


@pytest.fixture(scope="module")
def built(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    a = build_avmnist(data_root, tmp_path_factory.mktemp("a"), **TINY)
    b = build_avmnist(data_root, tmp_path_factory.mktemp("b"), **TINY)
    return a, b


def test_same_seed_same_bytes(built: tuple[Path, Path]) -> None:
    a, b = built
    for name in [*FILES, "meta.json", "SHA256SUMS"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_metadata_records_the_degradation(built: tuple[Path, Path]) -> None:
    train, test, meta = load_avmnist(built[0])
    assert meta["pca_remove"] == 0.7 and meta["snr_db"] == 200.0 and meta["pca_components_kept"] > 0
    assert train.inputs["image"].shape == (120, 1, 28, 28) and train.inputs["image"].dtype == torch.uint8
    assert test.inputs["audio"].shape == (60, 20, 41)


def test_test_images_meet_only_test_recordings_of_the_same_digit(
    data_root: Path, built: tuple[Path, Path]
) -> None:
    train, test, _ = load_avmnist(built[0])
    fsdd = load_fsdd(data_root / "fsdd", "test", verify_sums=False)
    clips = torch.zeros(len(fsdd), 8000)
    for i, n in enumerate(fsdd.lengths["audio"].tolist()):
        off = max(0, (n - 8000) // 2)
        w = fsdd.inputs["audio"][i, off : off + min(n, 8000)]
        clips[i, : len(w)] = w
    ref = log_mel_spectrogram(clips, 8000, n_fft=256, hop_length=200, n_mels=20).half().float()
    dist = torch.cdist(test.inputs["audio"].flatten(1), ref.flatten(1))  # (60 pairs, 300 recordings)
    best = dist.argmin(1)
    assert dist.min(1).values.max() < 0.5  # every test pair is (almost exactly) a test recording
    assert torch.equal(fsdd.targets["digit"][best], test.targets["digit"])
    far = torch.cdist(train.inputs["audio"][:20].flatten(1), ref.flatten(1)).min(1).values
    assert far.min() > 1.0  # training pairs use training recordings


def test_pairing_draws_the_same_digit() -> None:
    digits = np.arange(100) % 10
    audio = np.repeat(np.arange(10), 3)
    idx = _pair(digits, audio, np.random.default_rng(0))
    assert (audio[idx] == digits).all()


def test_corrupt_file_is_a_data_error(built: tuple[Path, Path], tmp_path: Path) -> None:
    for f in built[1].iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    raw = bytearray((tmp_path / "test_audio.npy").read_bytes())
    raw[-1] ^= 1
    (tmp_path / "test_audio.npy").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt data file .*test_audio.npy"):
        load_avmnist(tmp_path)


def test_registered_dataset_loads_from_the_cache(
    built: tuple[Path, Path], data_root: Path, monkeypatch, tmp_path: Path
) -> None:
    (tmp_path / "avmnist").symlink_to(built[0])
    monkeypatch.setenv("POLYMODAL_CACHE", str(tmp_path))
    bundle = load_dataset("avmnist", data_root)
    assert bundle.tasks == {"digit": 10, "speaker": 6} and set(bundle.modalities) == {"image", "audio"}
    with pytest.raises(ConfigError, match="avmnist has no option 'snr'"):
        build_avmnist(data_root, tmp_path / "x", snr=3)


def test_fusion_config_trains_and_eval_reports_each_missing_modality(
    built: tuple[Path, Path], data_root: Path, monkeypatch, tmp_path: Path, capsys
) -> None:
    from polymodal.cli import main

    (tmp_path / "avmnist").symlink_to(built[0])
    monkeypatch.setenv("POLYMODAL_CACHE", str(tmp_path))
    repo = Path(__file__).resolve().parents[1]
    common = [
        "--data-root",
        str(data_root),
        "--quiet",
        "--set",
        "train.steps=3",
        "--set",
        "data.eval_batch_size=60",
    ]
    run = tmp_path / "run"
    assert main(["train", str(repo / "configs/avmnist_late_learned.yaml"), "--out", str(run), *common]) == 0
    capsys.readouterr()
    from polymodal.engine.evaluate import load_run

    trained = load_run(run, str(data_root)).model  # the config's dropout scheme and auxiliary heads are used
    assert trained.modality_dropout_mode == "one" and trained.aux_weight == 1.0
    assert main(["eval", str(run), "--data-root", str(data_root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].endswith("(without image)") and lines[2].endswith("(without audio)")
    # a fusion node that does not fit its encoder stage: one line naming both ends, before training
    bad = "model.fusion.nodes=[{name: mid, inputs: [image.stage2], in_dims: [64]}]"
    args = ["train", str(repo / "configs/avmnist_mid_concat.yaml"), "--out", str(tmp_path / "bad"), *common]
    assert main([*args, "--set", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "polymodal: error: fusion node 'mid' expects 64 features from image.stage2 but it gives 20"
