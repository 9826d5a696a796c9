"""Speaker evaluation: chunk-summing identification by hand, trial lists, `polymodal eval` / `embed`, and
every system's config trained from the CLI for 2 steps."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_speaker_data import write_speaker_dirs

from polymodal.cli import main
from polymodal.speaker import build_trials, sliding_windows, utterance_log_posteriors, z_norm
from polymodal.speaker.verify import read_trials

REPO = Path(__file__).resolve().parents[1]
XVEC = {
    "name": "xvector",
    "sample_rate": 8000,
    "n_mels": 8,
    "widths": [8, 8],
    "kernels": [3, 1],
    "dilations": [1, 1],
    "embed_dim": 8,
    "out_dim": 8,
}


def test_sliding_windows_by_hand():
    utt, start, length = sliding_windows([5, 2, 9], window=4, shift=2)
    assert utt.tolist() == [0, 1, 2, 2, 2]  # 5: one window (0-4; 2-6 does not fit); 2: the whole clip
    assert start.tolist() == [0, 0, 0, 2, 4] and length.tolist() == [4, 2, 4, 4, 4]


def test_summed_chunk_log_posteriors_decide_an_utterance():
    # utterance 0: two chunks lean weakly to class 0, one is very sure of class 1 -> summing picks 1,
    # a majority vote would pick 0; utterance 1: its single chunk decides.
    p = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.05, 0.95], [0.3, 0.7]])
    summed = utterance_log_posteriors(p.log(), np.array([0, 0, 0, 1]), 2)
    expect = torch.stack([p[:3].log().sum(0), p[3].log()])
    assert torch.allclose(summed, expect, atol=1e-6)
    assert summed.argmax(-1).tolist() == [1, 1]
    logits = 3.0 * p.log() + 1.0  # logits, not log-posteriors: each chunk is log-softmaxed first
    assert torch.allclose(
        utterance_log_posteriors(logits, [0, 0, 0, 1], 2),
        utterance_log_posteriors(logits.log_softmax(-1), [0, 0, 0, 1], 2),
    )


def test_trials_are_capped_seeded_and_z_norm_by_hand():
    ids = [0, 0, 0, 1, 1, 2]
    t = build_trials(ids, 100, 100, seed=3)
    assert t[:, 2].sum() == 4 and (1 - t[:, 2]).sum() == 11  # every pair: 3 + 1 target, 15 - 4 non-target
    assert np.array_equal(t, build_trials(ids, 100, 100, seed=3))
    z = z_norm(np.array([1.0, 0.0]), np.array([[0.0, 2.0], [1.0, 3.0]]))
    assert np.allclose(z, [0.0, -2.0])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("speaker")
    write_speaker_dirs(root / "corpus", speakers=5, utts=6)
    cfg = {
        "method": "supervised",
        "data": {
            "name": "speakers",
            "root": str(root),
            "batch_size": 8,
            "eval_batch_size": 50,
            "options": {"path": "corpus", "sample_rate": 8000, "heldout_speakers": 2, "test_fraction": 0.3},
        },
        "augment": {"audio": {"weak": [{"op": "time_crop", "seconds": 0.2, "sample_rate": 8000}]}},
        "model": {"encoders": {"audio": XVEC}, "head": {"kind": "aam"}},
        "train": {
            "steps": 2,
            "lr": 0.01,
            "optimizer": "adamw",
            "eval_every": 10,
            "log_every": 1,
            "device": "cpu",
            "threads": 1,
        },
        "speaker": {
            "embedding": ["audio.embedding"],
            "test_snr_db": [5],
            "test_crop_s": [0.2],
            "cohort_size": 10,
            "score_norm": "snorm",
        },
    }
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(root / "c.yaml"), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


def test_eval_prints_eer_and_min_dcf_and_saves_reproducible_trials(tiny_run, capsys):
    capsys.readouterr()
    assert main(["eval", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "identification (closed set, 3 speakers" in out and "summed chunks" in out
    assert "verification (held-out speakers: 2 speakers, 12 utterances" in out
    assert "EER (threshold)" in out and "minDCF p=0.01 normalised (raw)" in out and "minDCF p=0.001" in out
    for cond in ("clean", "crop 0.2 s", "snr 5 dB"):
        assert f"  {cond}" in out
    trials = (tiny_run / "trials.tsv").read_text()
    assert trials.startswith("enrol\ttest\ttarget") and "spk" in trials
    rows = read_trials(tiny_run / "trials.tsv")
    ids = [0] * 6 + [1] * 6  # the two held-out speakers' utterances, in name order
    assert np.array_equal(rows, build_trials(ids, 2000, 20000, seed=0))  # speaker.trial_seed
    assert main(["eval", str(tiny_run), "--set", "speaker.test_snr_db=[]"]) == 0
    assert (tiny_run / "trials.tsv").read_text() == trials  # the same list again
    assert (tiny_run / "speaker_eval.json").is_file() and (tiny_run / "det.png").is_file()


def test_eval_set_is_one_line(tiny_run, capsys):
    assert main(["eval", str(tiny_run), "--set", "train.steps=3"]) == 2
    assert "eval accepts speaker.* keys only" in capsys.readouterr().err


def test_embed_writes_names_speakers_and_embeddings(tiny_run, tmp_path, capsys):
    audio = write_speaker_dirs(tmp_path / "new", speakers=2, utts=2, rate=16000)  # resampled to 8 kHz
    assert main(["embed", str(tiny_run), str(audio), "--out", str(tmp_path / "e.npz")]) == 0
    assert "4 embeddings of dimension 8 (with speakers)" in capsys.readouterr().out
    z = np.load(tmp_path / "e.npz")
    assert z["names"].tolist() == ["spk0/sess0/u0", "spk0/sess1/u1", "spk1/sess0/u0", "spk1/sess1/u1"]
    assert z["speakers"].tolist() == ["spk0", "spk0", "spk1", "spk1"] and z["embeddings"].shape == (4, 8)


SYSTEMS = ["logreg", "sincnet", "xvector", "sinc_xvector", "concat"]
FAST = ["--set", "train.steps=2", "--set", "train.log_every=1", "--quiet"]


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_system_config_trains_from_the_cli(system, data_root, tmp_path):
    config = REPO / "configs" / f"speaker_fsdd_{system}.yaml"
    assert (
        main(["train", str(config), "--data-root", str(data_root), "--out", str(tmp_path / "r"), *FAST]) == 0
    )
    assert (tmp_path / "r" / "summary.json").is_file()


def test_score_fusion_config_trains_both_systems_and_fuses(data_root, tmp_path, capsys):
    config = REPO / "configs" / "speaker_fsdd_score.yaml"
    sets = [
        "--set",
        "speaker.test_snr_db=[]",
        "--set",
        "speaker.test_crop_s=[]",
        "--set",
        "speaker.cohort_size=20",
    ]
    args = ["train", str(config), "--data-root", str(data_root), "--out", str(tmp_path / "f"), *FAST, *sets]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "alone, " in out and "EER" in out and "score norm snorm" in out
    assert (tmp_path / "f" / "speaker_fsdd_sincnet" / "summary.json").is_file()
    assert (tmp_path / "f" / "score_fusion.json").is_file()
    assert main(["eval", str(tmp_path / "f"), "--data-root", str(data_root)]) == 0  # re-scores the fusion


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("speaker_*.yaml")), ids=lambda p: p.stem)
def test_every_speaker_config_is_valid(config):
    from polymodal.config import load_config
    from polymodal.speaker.fusion import is_fusion_config, read_fusion_config

    if is_fusion_config(config):
        assert all((config.parent / s).is_file() for s in read_fusion_config(config).systems)
    else:
        assert load_config(config).data.name in ("fsdd", "fsdd_ti", "synth_speakers")
