"""`polymodal report`: the markdown sections, the PNGs it links, accuracy without each modality from
checkpoints, speaker metrics when a run has them, the config diff, and one-line errors."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image
from test_cli_errors import run_cli
from test_own_data import MODS, write_manifest

from polymodal.cli import main

SECTIONS = [
    "## Runs",
    "## Final test metrics",
    "## Training loss",
    "## Test error",
    "## Accuracy without each modality",
    "## Speaker metrics",
    "## Config differences",
    "## Per run",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Two 3-step runs on a written manifest (image + number, two tasks): supervised and UDA."""
    folder = tmp_path_factory.mktemp("report")
    write_manifest(folder)
    cfg = {
        "data": {
            "name": "manifest",
            "root": str(folder),
            "batch_size": 4,
            "unlabeled_ratio": 1,
            "eval_batch_size": 8,
            "options": {"path": "m.jsonl", "modalities": MODS, "tasks": ["label", "size"], "image_size": 8},
        },
        "model": {
            "encoders": {
                "img": {"name": "cnn28", "in_channels": 3, "width": 2, "out_dim": 4},
                "age": {"name": "tabular_mlp", "hidden": [4], "out_dim": 4},
            }
        },
        "train": {
            "steps": 3,
            "log_every": 1,
            "eval_every": 1,
            "checkpoint_every": 3,
            "device": "cpu",
            "threads": 1,
        },
    }
    (folder / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = []
    for method in ("supervised", "uda"):
        rc = main(
            [
                "train",
                str(folder / "c.yaml"),
                "--out",
                str(folder / method),
                "--set",
                f"method={method}",
                "--quiet",
            ]
        )
        assert rc == 0
        out.append(folder / method)
    return out


def test_report_has_every_section_and_readable_pngs(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", *map(str, runs), "--out", str(out), "--missing"]) == 0
    md = (out / "report.md").read_text()
    assert str(out / "report.md") in capsys.readouterr().out
    positions = [md.index(s) for s in SECTIONS]
    assert positions == sorted(positions)
    assert "| **supervised** | manifest | supervised | 3 |" in md and "| **uda** | manifest | uda | 3 |" in md
    assert "| run | task | all | without age | without img |" in md  # from the checkpoints
    assert '| `method` | "supervised" | "uda" |' in md and "`data.root`" not in md  # only what differs
    assert "No speaker evaluation in these runs" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"loss.png", "test_error.png", "missing.png", "run-supervised.png", "run-uda.png"} <= set(links)
    for name in links:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] >= 400


def test_speaker_metrics_are_shown_when_a_run_has_them(runs, tmp_path):
    run = tmp_path / "spk"
    shutil.copytree(runs[0], run)
    spk = {
        "protocol": "speaker folder 'x': 2 training speakers",
        "p_targets": [0.01],
        "conditions": {
            "clean": {
                "accuracy": 0.9,
                "summed_chunk_accuracy": 0.95,
                "eer": 0.05,
                "min_dcf": {"0.01": {"normalised": 0.3}},
            }
        },
    }
    (run / "speaker_eval.json").write_text(json.dumps(spk))
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| spk | clean | 90.00% | 95.00% | 5.00% | 0.3000 |" in md
    assert "One run: nothing to compare." in md and "pass `--missing`" in md


def test_report_errors_are_one_line(runs, tmp_path, capsys, monkeypatch):
    err = run_cli(capsys, ["report", str(tmp_path), "--out", str(tmp_path / "rep")])
    assert f"'{tmp_path}' is not a run directory: it has no config.yaml" in err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plot extra were not installed
    err = run_cli(capsys, ["report", str(runs[0]), "--out", str(tmp_path / "rep")])
    assert "pip install 'polymodal[plot]'" in err
