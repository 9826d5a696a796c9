"""Your own data: class folders (images, audio), tables, multi-modal manifests with missing cells,
`polymodal data check`, and a tiny end-to-end train on a written manifest. Every file is written here
(PNG with Pillow, WAV with the stdlib `wave`), a few rows each."""

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_cli_errors import run_cli

from polymodal.augment.views import Views
from polymodal.batch import TensorData
from polymodal.cli import main
from polymodal.data import load_dataset
from polymodal.data.banking77 import UNK
from polymodal.data.check import check_dataset, format_check
from polymodal.engine.evaluate import evaluate
from polymodal.errors import ConfigError, DataError


def png(path: Path, size=(12, 10), mode="RGB", value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode).save(path)
    return path


def wav(path: Path, n: int, rate: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (3000 * np.sin(np.arange(n) * 0.3)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(x.tobytes())
    return path


def write_manifest(folder: Path, rows: int = 10) -> Path:
    """A JSONL manifest: image file + age number, tasks label and size; row 1 lacks its image, row 2
    its label, row 3 its age; rows 7 and 9 are the test split."""
    records = []
    for i in range(rows):
        img = png(folder / "img" / f"{i}.png", value=20 * i).relative_to(folder).as_posix()
        records.append(
            {
                "img": img,
                "age": 20 + i,
                "label": "ab"[i % 2],
                "size": ["s", "m", "l"][i % 3],
                "split": "train",
            }
        )
    records[1]["img"] = ""
    records[2]["label"] = None
    del records[3]["age"]
    records[7]["split"] = records[9]["split"] = "test"
    path = folder / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


MODS = {"img": "image", "age": "number"}


def test_image_folder_loads_resized_uint8_with_a_seeded_stratified_split(tmp_path):
    for c in ("cat", "dog"):
        for i in range(5):
            png(tmp_path / "pets" / c / f"{i}.png", size=(12 + i, 10), mode="L" if i % 2 else "RGB", value=9)
    (tmp_path / "pets" / "notes.txt").write_text("skipped")
    b = load_dataset("folder", tmp_path, path="pets", image_size=[8, 6], test_fraction=0.2, seed=3)
    assert b.modalities == {"image": "image"} and b.tasks == {"class": 2}
    x = b.train.inputs["image"]
    assert x.dtype == torch.uint8 and x.shape == (8, 3, 8, 6) and int(x.max()) == 9
    assert len(b.test) == 2 and sorted(b.test.targets["class"].tolist()) == [0, 1]  # one per class
    assert b.meta["classes"] == {"class": ["cat", "dog"]} and b.meta["skipped_files"] == 1
    again = load_dataset("folder", tmp_path, path="pets", image_size=[8, 6], test_fraction=0.2, seed=3)
    assert torch.equal(again.test.inputs["image"], b.test.inputs["image"])
    grey = load_dataset("folder", tmp_path, path="pets", channels=1, image_size=4)
    assert grey.train.inputs["image"].shape[1:] == (1, 4, 4)


def test_train_test_folders_and_a_progress_line(tmp_path, capsys):
    for split, n in (("train", 3), ("test", 1)):
        for c in ("a", "b"):
            for i in range(n):
                png(tmp_path / "d" / split / c / f"{i}.jpg")
    b = load_dataset("folder", tmp_path, path="d", progress_every=4)
    assert (len(b.train), len(b.test)) == (6, 2) and b.meta["layout"] == "train/test/{class} folders"
    err = capsys.readouterr().err
    assert "reading image files: 4/8 (" in err and "files/s" in err and "reading image files: 8/8" in err


def test_audio_class_folders_are_resampled_and_fsdd_names_give_two_tasks(tmp_path):
    for c in ("yes", "no"):
        for i in range(3):
            wav(tmp_path / "words" / c / f"{i}.wav", 400 + 100 * i)
    b = load_dataset("folder", tmp_path, path="words", sample_rate=16000)
    assert b.modalities == {"audio": "audio"} and b.meta["sample_rate"] == 16000
    lengths = torch.cat([b.train.lengths["audio"], b.test.lengths["audio"]])
    assert sorted(set(lengths.tolist())) == [800, 1000, 1200]  # 8 kHz -> 16 kHz
    for digit in (0, 1):
        for spk in ("ann", "bob"):
            for k in range(2):
                wav(tmp_path / "fsdd" / "recordings" / f"{digit}_{spk}_{k}.wav", 300)
    f = load_dataset("folder", tmp_path, path="fsdd", sample_rate=8000, max_seconds=0.02)
    assert f.tasks == {"class": 2, "speaker": 2} and f.train.inputs["audio"].shape[1] == 160
    with pytest.raises(DataError, match="does not fit '{label}_{speaker}_{index}.wav|flac'"):
        wav(tmp_path / "fsdd" / "recordings" / "oops.wav", 300)
        load_dataset("folder", tmp_path, path="fsdd")


def test_table_text_vocabulary_and_number_statistics_come_from_the_training_rows(tmp_path):
    rows = ["text,height,weight,label,split"]
    rows += [
        f"hello world {w},{h},{70 + h},{'xy'[h % 2]},train" for h, w in zip(range(6), "abcabc", strict=True)
    ]
    rows += ["zebra hello,100,170,x,test", "world,101,,y,test"]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    b = load_dataset("table", tmp_path, path="t.csv")
    assert b.modalities == {"text": "text", "tabular": "tabular"} and b.meta["feature_dims"] == {"tabular": 2}
    assert "zebra" not in b.meta["vocab"] and b.meta["vocab_size"] == len(b.meta["vocab"])
    assert b.test.inputs["text"][0, 0].item() == UNK  # a word only the test split has
    x = b.train.inputs["tabular"]
    assert x.dtype == torch.float32 and torch.allclose(x.mean(0), torch.zeros(2), atol=1e-6)
    assert b.test.inputs["tabular"][1, 1].item() == 0.0  # an empty number: the training mean
    assert b.meta["standardise"]["tabular"]["mean"] == [2.5, 72.5]


def test_manifest_missing_cells_are_masks_and_zero_slots(tmp_path):
    write_manifest(tmp_path)
    b = load_dataset(
        "manifest", tmp_path, path="m.jsonl", modalities=MODS, tasks=["label", "size"], image_size=4
    )
    assert b.modalities == {"img": "image", "age": "tabular"} and b.tasks == {"label": 2, "size": 3}
    tr = b.train
    assert (len(tr), len(b.test)) == (8, 2)
    assert tr.modality_mask["img"].tolist() == [True, False, *[True] * 6]
    assert int(tr.inputs["img"][1].abs().sum()) == 0  # the missing image's zero slot
    assert tr.modality_mask["age"].tolist() == [True, True, True, False, *[True] * 4]
    assert tr.target_mask["label"].tolist() == [True, True, False, *[True] * 5]
    assert tr.targets["label"][2].item() == -1 and tr.target_mask["size"].all()
    batch = tr.batch(torch.tensor([0, 1, 2]))  # masks reach the batch
    assert batch.modality_mask["img"].tolist() == [True, False, True]
    assert batch.target_mask["label"].tolist() == [True, True, False]
    assert b.meta["classes"]["size"] == ["l", "m", "s"]


def test_manifest_audio_and_text_cells_have_lengths_and_masks(tmp_path):
    rows = ["clip,note,label,split"]
    for i in range(6):
        wav(tmp_path / "clips" / f"{i}.wav", 200 + 40 * i, rate=16000)
        clip, note = "" if i == 2 else f"clips/{i}.wav", "" if i == 4 else "the cat sat"[: 3 + 2 * i]
        rows.append(f"{clip},{note},{'xy'[i % 2]},{'test' if i == 5 else 'train'}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    b = load_dataset("manifest", tmp_path, path="m.csv", modalities={"clip": "audio", "note": "text"})
    tr = b.train
    assert tr.modality_mask["clip"].tolist() == [True, True, False, True, True]
    assert tr.lengths["clip"].tolist() == [200, 240, 200, 320, 360]  # missing: the shortest present length
    assert tr.batch(torch.arange(5)).inputs["clip"].shape == (5, 360)  # padding trimmed per batch
    assert float(tr.inputs["clip"][2].abs().sum()) == 0.0
    assert tr.modality_mask["note"].tolist() == [True, True, True, True, False]
    assert (
        tr.lengths["note"][4].item() == 1
        and tr.inputs["note"][4].tolist() == [0] * tr.inputs["note"].shape[1]
    )
    assert b.meta["sample_rate"] == 16000 and b.meta["vocab"][2:] == [
        "c",
        "cat",
        "s",
        "the",
    ]  # "sat": test only


def test_evaluate_counts_only_rows_that_have_the_label():
    class Zero(torch.nn.Module):
        def forward(self, batch):
            return {"t": torch.tensor([[1.0, 0.0]]).expand(batch.size, 2)}

    x = torch.zeros(4, 1)
    data = TensorData(
        {"x": x}, {"t": torch.tensor([0, 0, 1, -1])}, {}, {"t": torch.tensor([1, 1, 1, 0]).bool()}
    )
    res = evaluate(Zero(), data, Views({}, {"x": "tabular"}), 2, torch.device("cpu"), "fp32")
    assert res["t"]["accuracy"] == pytest.approx(2 / 3)


def test_an_unreadable_file_is_one_line_naming_it(tmp_path, capsys):
    write_manifest(tmp_path)
    (tmp_path / "img" / "4.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as e:
        load_dataset("manifest", tmp_path, path="m.jsonl", modalities=MODS, tasks=["label"])
    msg = str(e.value)
    assert "cannot read image file" in msg and "img/4.png" in msg and "line 5, column 'img'" in msg
    assert len(msg.splitlines()) == 1


@pytest.mark.parametrize(
    ("options", "expect"),
    [
        ({"modalities": {"photo": "image"}}, "data.options.modalities.photo: column 'photo' is not in"),
        ({"modalities": {"img": "video"}}, "unknown kind; allowed: image, audio, text, number"),
        ({"modalities": MODS, "tasks": ["colour"]}, "data.options.tasks: column 'colour' is not in"),
        ({"modalities": MODS, "sizes": 3}, "data.options.sizes: dataset 'manifest' has no such option"),
        ({"modalities": {"img": {"kind": "image", "col": "img"}}}, "img.col: unknown key"),
    ],
)
def test_wrong_options_and_columns_are_one_config_error(tmp_path, options, expect):
    write_manifest(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_dataset("manifest", tmp_path, path="m.jsonl", **options)
    assert expect in str(e.value) and len(str(e.value).splitlines()) == 1
    if "is not in" in expect:
        assert "it has: img, age, label, size, split" in str(e.value)


def test_data_check_exit_codes_and_each_problem_named(tmp_path, capsys):
    write_manifest(tmp_path)
    mods = "modalities={img: image, age: number}"
    assert (
        main(["data", "check", str(tmp_path / "m.jsonl"), "--set", mods, "--set", "tasks=[label,size]"]) == 0
    )
    out = capsys.readouterr().out
    assert "10 rows — 8 train, 2 test (split: column 'split')" in out
    assert "img          image         7/2            1/0" in out and "missing labels: 1 train, 0 test" in out
    assert "OK: the data loads" in out
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    lines[4] = lines[4].replace('"age": 24', '"age": "old"').replace('"train"', '"val"')
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "img" / "5.png").write_bytes(b"junk")
    (tmp_path / "img" / "6.png").unlink()
    err = run_cli(capsys, ["data", "check", str(tmp_path / "m.jsonl"), "--set", mods])
    assert f"data check: 4 error(s) in '{tmp_path / 'm.jsonl'}' (listed above)" in err
    res = check_dataset("manifest", tmp_path, {"path": "m.jsonl", "modalities": MODS})  # what it listed
    out = "\n".join(format_check(res))
    assert "'old' is not a number" in out and "split 'val' is not one of: train, test" in out
    assert f"cannot read image file '{tmp_path}/img/5.png'" in out
    assert f"missing image file '{tmp_path}/img/6.png'" in out and "4 error(s): fix them" in out


def test_data_check_of_a_folder_and_of_a_config(tmp_path, capsys):
    png(tmp_path / "pets" / "cat" / "0.png"), png(tmp_path / "pets" / "cat" / "1.png")
    png(tmp_path / "pets" / "dog" / "0.png"), png(tmp_path / "pets" / "dog" / "1.png")
    assert main(["data", "check", str(tmp_path / "pets")]) == 0
    assert "task 'class': 2 classes" in capsys.readouterr().out
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump({"data": {"name": "folder", "root": str(tmp_path), "options": {"path": "nope"}}})
    )
    assert f"folder '{tmp_path}/nope' is not a directory" in run_cli(capsys, ["data", "check", str(cfg)])


def test_train_on_a_manifest_with_two_modalities_and_two_tasks(tmp_path, capsys):
    write_manifest(tmp_path)
    cfg = {
        "method": "supervised",
        "data": {
            "name": "manifest",
            "root": str(tmp_path),
            "batch_size": 4,
            "eval_batch_size": 8,
            "options": {"path": "m.jsonl", "modalities": MODS, "tasks": ["label", "size"], "image_size": 8},
        },
        "model": {
            "encoders": {
                "img": {"name": "cnn28", "in_channels": 3, "width": 2, "out_dim": 4},
                "age": {"name": "tabular_mlp", "hidden": [4], "out_dim": 4},  # in_dim from the data
            }
        },
        "train": {
            "steps": 2,
            "log_every": 1,
            "eval_every": 1,
            "checkpoint_every": 2,
            "device": "cpu",
            "threads": 1,
        },
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["test"]) == {"label", "size"} and summary["labeled_examples"] == 8
    assert main(["eval", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "(without img)" in out and "(without age)" in out
