"""Bad input gives exactly one line on stderr, naming what was wrong and what is allowed; exit 2."""

from pathlib import Path

import pytest

from polymodal.cli import main

TINY = ["--set", "train.steps=1", "--set", "model.encoders.image.width=4"]


def run_cli(capsys, args: list[str]) -> str:
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2, f"expected exit 2, got {rc}: {err}"
    assert len(err.splitlines()) == 1, err
    assert err.startswith("polymodal: error: ")
    return err


@pytest.fixture
def cfg_file(tmp_path: Path, data_root: Path) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  name: mnist\n  root: {data_root}\n")
    return str(path)


@pytest.mark.parametrize(
    ("sets", "expect"),
    [
        (["train.stepz=3"], "train.stepz: unknown key; allowed: steps, lr"),
        (["train.steps=abc"], "train.steps='abc': Input should be a valid integer"),
        (["uda.confidence=1.5"], "uda.confidence=1.5: Input should be less than 1"),
        (["method=simclr"], "method='simclr': unknown method; available: fixmatch, ict, mean_teacher"),
        (["data.name=cifar"], "data.name='cifar': unknown dataset; available: avmnist, avmnist4, banking77"),
        (["train.precision=fp8"], "train.precision='fp8': Input should be 'auto', 'fp32' or 'bf16'"),
        (["augment.image.strong=[{op: blur}]"], "unknown augmentation 'blur'; available: affine"),
        (["augment.image.weak=[{op: crop, padding: 2}]"], "has no parameter 'padding'; allowed: pad"),
        (["augment.audio.weak=[]"], "augment.audio: the dataset has no modality 'audio'; it has: image"),
        (["model.encoders.image.name=resnet"], "unknown encoder 'resnet'; available: audio_cnn"),
        (["model.encoders.image.depthh=3"], "encoder 'cnn28' has no option 'depthh'"),
        (
            ["model.encoders.image={name: cnn28, in_channels: 3}"],
            "model.encoders vs data {'image': (2, 1, 28, 28)}: cnn28 expects images (B, 3, H, W)",
        ),
        (["model.encoders.image={name: audio_cnn}"], "audio_cnn expects log-mel (B, 40, frames)"),
        (["data.tasks=[digit]"], "data.tasks: 'digit' is not a task of mnist; allowed: class"),
        (["data.labels_per_class=7000"], "class 0 has only 5923 examples"),
        (["trainsteps"], "expected KEY=VALUE"),
        (["train.device=tpu"], "train.device='tpu': Input should be 'auto', 'cpu', 'cuda' or 'mps'"),
    ],
)
def test_bad_config_values(capsys, tmp_path, cfg_file, sets, expect):
    args = ["train", cfg_file, "--out", str(tmp_path / "run"), *TINY, "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert expect in run_cli(capsys, args)


def test_missing_config_file(capsys, tmp_path):
    assert "config file 'nope.yaml' does not exist" in run_cli(capsys, ["train", "nope.yaml"])


def test_invalid_yaml(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: [1,\n")
    assert "not valid YAML" in run_cli(capsys, ["train", str(bad)])


def test_missing_data_root(capsys, tmp_path, cfg_file):
    err = run_cli(capsys, ["train", cfg_file, "--data-root", str(tmp_path / "none"), *TINY])
    assert "data root" in err and "is not a directory" in err


def test_missing_dataset_folder(capsys, tmp_path, cfg_file):
    err = run_cli(capsys, ["train", cfg_file, "--data-root", str(tmp_path), *TINY])
    assert f"dataset 'mnist' not found: expected folder '{tmp_path}/mnist'" in err


def test_resume_and_eval_need_a_run_dir(capsys, tmp_path):
    assert "is not a run directory" in run_cli(capsys, ["train", "--resume", str(tmp_path)])
    assert "is not a run directory" in run_cli(capsys, ["eval", str(tmp_path)])


def test_corrupt_checkpoint(capsys, tmp_path, cfg_file):
    run = tmp_path / "run"
    assert main(["train", cfg_file, "--out", str(run), *TINY, "--quiet"]) == 0
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert "cannot load checkpoint" in run_cli(capsys, ["eval", str(run)])
    assert "already holds a run" in run_cli(capsys, ["train", cfg_file, "--out", str(run)])


def test_augmentation_on_the_wrong_modality(capsys, tmp_path, data_root):
    config = str(Path(__file__).resolve().parents[1] / "configs/fsdd_uda.yaml")
    args = ["train", config, "--data-root", str(data_root), "--out", str(tmp_path / "r")]
    err = run_cli(capsys, [*args, "--set", "augment.audio.strong=[{op: crop}]", "--set", "train.steps=1"])
    assert "augment.audio.strong: crop: expected a float image batch (B, C, H, W)" in err
