"""Bad input that used to get through: each is one line on stderr, exit 2, and the run directory keeps
everything it had (configs, metrics, checkpoint bytes)."""

import shutil
from pathlib import Path

import pytest
from test_cli_errors import TINY, run_cli

from polymodal.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root) -> Path:
    base = tmp_path_factory.mktemp("trained")
    cfg = base / "c.yaml"
    cfg.write_text(f"data:\n  name: mnist\n  root: {data_root}\ntrain:\n  log_every: 1\n")
    assert (
        main(["train", str(cfg), "--out", str(base / "run"), *TINY, "--set", "train.steps=2", "--quiet"]) == 0
    )
    return base / "run"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (b"", "is empty"),
        (b"# only a comment\n", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not text (UTF-8 YAML expected)"),
    ],
)
def test_config_files_that_are_not_configs(capsys, tmp_path, content, expect):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert expect in run_cli(capsys, ["train", str(path), "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


def test_a_directory_as_config_and_a_missing_resume_folder(capsys, tmp_path):
    assert f"config '{tmp_path}' is a directory" in run_cli(capsys, ["train", str(tmp_path)])
    err = run_cli(capsys, ["train", "--resume", str(tmp_path / "nope")])
    assert f"run directory '{tmp_path / 'nope'}' does not exist" in err


def test_resume_drops_a_torn_metrics_line_and_says_so(capsys, run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 2, "loss": 0.1')  # power loss
    assert main(["train", "--resume", str(run), "--set", "train.steps=3"]) == 0
    captured = capsys.readouterr()
    assert "dropped 1 torn line(s)" in captured.out + captured.err
    records = (run / "metrics.jsonl").read_text().splitlines()
    assert records[: len(lines)] == lines and len(records) > len(lines)  # nothing complete was lost


@pytest.mark.parametrize(
    ("text", "expect"), [("train: [1,\n", "not valid YAML"), ("- a\n- b\n", "must hold a mapping")]
)
def test_a_hand_edited_run_config_is_one_line(capsys, run, text, expect):
    (run / "config.yaml").write_text(text)
    before = _files(run)
    assert expect in run_cli(capsys, ["train", "--resume", str(run)])
    assert _files(run) == before


def test_resume_refuses_keys_the_checkpoint_cannot_follow(capsys, run):
    before = _files(run)
    err = run_cli(capsys, ["train", "--resume", str(run), "--set", "model.encoders.image.out_dim=64"])
    assert (
        "--set model: cannot change on --resume" in err and "allowed on resume: data.eval_batch_size" in err
    )
    err = run_cli(capsys, ["train", "--resume", str(run), "--set", "train.lr=0.5"])
    assert "--set train.lr: cannot change on --resume" in err
    assert _files(run) == before


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_checkpoints_say_so(capsys, run, damage):
    ckpt = run / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(b"\x00garbage" * 10 if damage == "garbage" else data[: len(data) // 2])
    err = run_cli(capsys, ["eval", str(run)])
    assert f"cannot load checkpoint '{ckpt}': the file is corrupt or truncated" in err


def test_a_fusion_node_reading_a_missing_modality_names_its_place():
    from polymodal.errors import ConfigError
    from polymodal.fusion import FusionModel, FusionSpec
    from polymodal.models import create_encoder

    spec = FusionSpec.from_dict(
        {"nodes": [{"name": "a", "inputs": ["image.out"]}, {"name": "mid", "inputs": ["a", "video.out"]}]}
    )
    enc = {"image": create_encoder("cnn28", width=4, out_dim=8)}
    with pytest.raises(
        ConfigError, match=r"^model\.fusion\.nodes\[1\]\.inputs: 'video.out' is not an encoder"
    ):
        FusionModel(enc, {"digit": 10}, spec, {"image": (1, 28, 28)})


def test_data_list_tells_built_from_buildable(capsys, tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("POLYMODAL_CACHE", str(tmp_path / "cache"))
    assert main(["data", "list", "--data-root", str(data_root)]) == 0
    rows = {ln.split()[0]: ln.split()[1] for ln in capsys.readouterr().out.splitlines()[1:]}
    assert rows["mnist"] == "found" and rows["multimnist"] == "buildable" and rows["avmnist"] == "buildable"
    (tmp_path / "cache" / "avmnist").mkdir(parents=True)
    (tmp_path / "cache" / "avmnist" / "SHA256SUMS").write_text("")
    assert main(["data", "list", "--data-root", str(data_root)]) == 0
    rows = {ln.split()[0]: ln.split()[1] for ln in capsys.readouterr().out.splitlines()[1:]}
    assert rows["avmnist"] == "built" and rows["multimnist"] == "buildable"
