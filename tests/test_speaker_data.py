"""Speaker folders: both layouts, wav and flac, resampling, and one line for every bad input."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from polymodal.data import load_dataset
from polymodal.data.speakers import read_audio, read_folder, scan_folder
from polymodal.errors import ConfigError, DataError

RATE = 8000


def tone(freq: float, seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def write_speaker_dirs(root: Path, speakers: int = 4, utts: int = 6, rate: int = RATE) -> Path:
    """``root/{speaker}/{session}/{utt}.flac|wav``: each speaker a tone of its own pitch."""
    for s in range(speakers):
        for u in range(utts):
            folder = root / f"spk{s}" / f"sess{u % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            ext = "flac" if u % 2 else "wav"
            x = tone(200 + 150 * s + 5 * u, 0.25 + 0.05 * u, rate, seed=10 * s + u)
            sf.write(folder / f"u{u}.{ext}", x, rate)
    return root


def test_speaker_dirs_layout_wav_and_flac(tmp_path):
    root = write_speaker_dirs(tmp_path / "corpus")
    layout, utts = scan_folder(root)
    assert layout == "speaker_dirs" and len(utts) == 24
    assert {u.speaker for u in utts} == {"spk0", "spk1", "spk2", "spk3"}
    assert utts[0].name == "spk0/sess0/u0"
    b = load_dataset(
        "speakers", tmp_path, path="corpus", sample_rate=RATE, heldout_speakers=1, test_fraction=0.3
    )
    assert b.tasks == {"speaker": 3} and b.modalities == {"audio": "audio"}
    ver = b.meta["verification"]
    assert len(ver) == 6 and set(ver.targets["speaker"].tolist()) == {0}
    assert len(b.train) + len(b.test) == 18 and len(b.test) == 6  # round(0.3 * 6) = 2 per speaker
    assert set(b.meta["test_names"]).isdisjoint(b.meta["train_names"])
    n = b.train.lengths["audio"]
    assert int(n.max()) == b.train.inputs["audio"].shape[1]
    assert all(b.train.inputs["audio"][i, int(n[i]) :].abs().sum() == 0 for i in range(len(b.train)))
    # the data root itself can be the folder, and the same seed gives the same split
    again = load_dataset("speakers", root, sample_rate=RATE, heldout_speakers=1, test_fraction=0.3)
    assert again.meta["test_names"] == b.meta["test_names"]


def test_fsdd_layout_in_recordings(tmp_path):
    rec = tmp_path / "digits" / "recordings"
    rec.mkdir(parents=True)
    for digit in range(2):
        for s in ("ann", "bob"):
            for i in range(3):
                sf.write(rec / f"{digit}_{s}_{i}.wav", tone(300 + digit * 50, 0.2, seed=i), RATE)
    layout, utts = scan_folder(tmp_path / "digits")
    assert layout == "fsdd" and len(utts) == 12
    assert (utts[0].label, utts[0].speaker, utts[0].index) == ("0", "ann", 0)
    b = load_dataset("speakers", tmp_path / "digits", sample_rate=RATE)
    assert b.meta["speakers"] == ["ann", "bob"] and b.meta["layout"] == "fsdd"


def test_resampling_matches_the_closed_form(tmp_path):
    t16 = np.arange(16000) / 16000  # 1 s of a 440 Hz sine at 16 kHz
    sf.write(tmp_path / "a.flac", (0.5 * np.sin(2 * np.pi * 440 * t16)).astype(np.float32), 16000)
    x = read_audio(tmp_path / "a.flac", 8000)
    assert x.shape == (8000,) and x.dtype == np.float32
    t8 = np.arange(8000) / 8000
    mid = slice(200, -200)  # away from the filter's edge effects
    assert np.abs(x[mid] - 0.5 * np.sin(2 * np.pi * 440 * t8)[mid]).max() < 0.02  # flac is 16-bit


def test_sample_rate_mismatch_without_resampling_is_one_line(tmp_path):
    root = write_speaker_dirs(tmp_path / "c", speakers=2, utts=2, rate=16000)
    with pytest.raises(DataError) as e:
        load_dataset("speakers", root, sample_rate=RATE, resample=False)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and "16000 Hz" in msg and f"audio file '{root}/spk" in msg


def test_corrupt_file_is_one_line_naming_it(tmp_path):
    root = write_speaker_dirs(tmp_path / "c", speakers=2, utts=2)
    bad = root / "spk1" / "sess1" / "u1.flac"
    bad.write_bytes(b"fLaC not really")
    with pytest.raises(DataError) as e:
        load_dataset("speakers", root, sample_rate=RATE)
    assert len(str(e.value).splitlines()) == 1 and str(bad) in str(e.value)


def test_unknown_layout_is_one_line(tmp_path):
    (tmp_path / "flat").mkdir()
    sf.write(tmp_path / "flat" / "hello.wav", tone(300, 0.1), RATE)
    with pytest.raises(DataError, match=r"unknown layout .*'hello.wav' does not fit") as e:
        load_dataset("speakers", tmp_path / "flat")
    assert len(str(e.value).splitlines()) == 1
    deep = tmp_path / "deep" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    sf.write(deep / "x.wav", tone(300, 0.1), RATE)
    with pytest.raises(DataError, match=r"unknown layout .*a/b/c/x.wav"):
        scan_folder(tmp_path / "deep")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .wav or .flac files"):
        scan_folder(tmp_path / "empty")
    names, speakers, data = read_folder(tmp_path / "flat", RATE)  # embedding any flat folder still works
    assert names == ["hello"] and speakers is None and data.inputs["audio"].shape == (1, 800)


def test_unknown_dataset_option_is_one_line(tmp_path):
    with pytest.raises(
        ConfigError, match=r"^data.options.rate: dataset 'speakers' has no such option; allowed: path"
    ):
        load_dataset("speakers", tmp_path, rate=8000)


def test_synth_speakers_split_and_checksums(data_root):
    b = load_dataset("synth_speakers", data_root)
    assert b.tasks == {"speaker": 30} and b.meta["sample_rate"] == RATE
    assert b.meta["verification_speakers"] == [f"s{i}" for i in range(30, 40)]
    assert (len(b.train), len(b.test), len(b.meta["verification"])) == (2400, 600, 1000)
    assert torch.equal(torch.unique(b.test.targets["speaker"]), torch.arange(30))
    assert "synthetic" in b.meta["protocol"]
