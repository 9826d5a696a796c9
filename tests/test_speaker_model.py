"""Random fixed-length crops; two encoders reading one modality; the margin-softmax head option."""

import pytest
import torch

from polymodal.augment import AUGMENTATIONS
from polymodal.batch import Batch
from polymodal.config import build_config
from polymodal.errors import ConfigError
from polymodal.fusion import FusionModel, FusionSpec
from polymodal.models import create_encoder
from polymodal.models.missing import without
from polymodal.models.multihead import MarginHead, MultiHeadModel

SINC = {
    "sample_rate": 8000,
    "sinc_filters": 8,
    "conv_widths": [8],
    "conv_kernels": [3],
    "conv_pools": [3],
    "out_dim": 16,
}
XVEC = {
    "sample_rate": 8000,
    "n_mels": 8,
    "widths": [8, 8],
    "kernels": [3, 1],
    "dilations": [1, 1],
    "embed_dim": 12,
    "out_dim": 16,
}


def test_time_crop_offsets_are_per_sample_and_inside_the_valid_samples():
    crop = AUGMENTATIONS.get("time_crop")
    lengths = torch.tensor([100, 40, 100, 100, 7, 100, 100, 100])
    t = torch.arange(1, 101, dtype=torch.float32)
    x = torch.where(t < lengths[:, None] + 1, t, 0.0)  # x[b, i] = i + 1 inside, 0 in the padding
    out, n = crop(
        x, generator=torch.Generator().manual_seed(0), lengths=lengths, seconds=0.25, sample_rate=100
    )
    assert out.shape == (8, 25) and n.tolist() == [25, 25, 25, 25, 7, 25, 25, 25]
    offsets = out[:, 0] - 1
    for b in range(8):
        k = int(n[b])
        assert torch.equal(out[b, :k], offsets[b] + torch.arange(1, k + 1))  # one contiguous window
        assert out[b, k:].abs().sum() == 0  # padding stays silent
        assert offsets[b] >= 0 and offsets[b] + k <= lengths[b]  # inside the clip's valid samples
    assert len(set(offsets[lengths == 100].tolist())) > 3  # drawn per sample
    # per-sample crop lengths in [seconds, max_seconds]; (B, C, T) inputs crop along the last axis
    out, n = crop(
        x[:, None].expand(8, 3, 100),
        generator=torch.Generator().manual_seed(1),
        lengths=lengths,
        seconds=0.1,
        max_seconds=0.5,
        sample_rate=100,
    )
    assert out.shape == (8, 3, 50) and ((n >= 10) & (n <= 50) | (n == lengths)).all()
    assert len(set(n[lengths == 100].tolist())) > 2
    with pytest.raises(ValueError, match="time_crop needs"):
        crop(x, generator=None, seconds=0.5, max_seconds=0.2)


def two_encoder_model() -> FusionModel:
    torch.manual_seed(0)
    encoders = {"sinc": create_encoder("sincnet", **SINC), "xvec": create_encoder("xvector", **XVEC)}
    spec = FusionSpec.from_dict(
        {"nodes": [{"name": "emb", "inputs": ["sinc.out", "xvec.embedding"], "width": 10}]}
    )
    inputs = {"sinc": "audio", "xvec": "audio"}
    return FusionModel(encoders, {"speaker": 3}, spec, {"audio": (800,)}, inputs=inputs)


def test_two_encoders_read_one_modality_through_a_fusion_graph():
    model = two_encoder_model()
    assert model.nodes["emb"].op.linear.in_features == 16 + 12  # sinc.out (16) + xvec.embedding (12)
    g = torch.Generator().manual_seed(0)
    batch = Batch(
        {"audio": torch.randn(4, 800, generator=g)},
        {"speaker": torch.tensor([0, 1, 2, 0])},
        lengths={"audio": torch.tensor([800, 600, 800, 500])},
    )
    out = model(batch)
    assert out["speaker"].shape == (4, 3) and out.features.shape == (4, 10)
    torch.nn.functional.cross_entropy(out["speaker"], batch.targets["speaker"]).backward()
    xvec = model.encoders["xvec"].tdnn  # both branches train (up to the stage the node reads)
    for module in (model.encoders["sinc"], xvec.frames, xvec.segment6):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    # the mask is per modality: hiding audio hides both encoders (every input the node reads is zero)
    model.eval()
    hidden = model.features(without(batch, "audio"))
    assert torch.allclose(hidden, model.nodes["emb"].op.linear.bias.relu().expand(4, 10))
    keys = model.block_keys
    assert keys["encoders.sinc"] != keys["encoders.xvec"]


def test_two_encoders_on_one_modality_from_a_config():
    cfg = build_config(
        {
            "model": {
                "encoders": {
                    "sinc": {"name": "sincnet", "input": "audio"},
                    "xvec": {"name": "xvector", "input": "audio"},
                }
            }
        }
    )
    assert cfg.model.inputs() == {"sinc": "audio", "xvec": "audio"} and cfg.model.modalities() == ["audio"]
    with pytest.raises(ConfigError, match="must not contain '.'"):
        build_config({"model": {"encoders": {"a.b": {"name": "sincnet"}}}})
    mh = MultiHeadModel(
        {"a": create_encoder("xvector", **XVEC), "b": create_encoder("xvector", **XVEC)},
        {"speaker": 2},
        inputs={"a": "audio", "b": "audio"},
    )
    mh.eval()
    f = mh.features(Batch({"audio": torch.randn(2, 800)}))
    assert f.shape == (2, 32)


def test_margin_head_penalises_labeled_targets_in_training_only():
    torch.manual_seed(0)
    head = MarginHead(6, 3, 0.0, "am", 0.3, 10.0)
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 1])
    plain = head(x)
    mask = torch.tensor([True, True, False, True])
    z = head(x, y, mask)
    rows = torch.arange(4)
    assert torch.allclose(z[rows[mask], y[mask]], plain[rows[mask], y[mask]] - 3.0)  # s * m
    assert torch.allclose(z[~mask], plain[~mask])  # an unlabeled row gets no margin
    head.eval()
    assert torch.allclose(head(x, y, mask), plain)


def test_aam_head_through_the_engine(data_root, tmp_path):
    from polymodal.engine.evaluate import load_run
    from polymodal.engine.trainer import train

    raw = {
        "method": "supervised",
        "data": {"name": "synth_speakers", "root": str(data_root), "batch_size": 8, "eval_batch_size": 200},
        "model": {
            "encoders": {"audio": {"name": "logmel_stats", "n_mels": 8}},
            "head": {"kind": "aam", "margin": 0.3, "scale": 20},
        },
        "train": {
            "steps": 3,
            "lr": 0.01,
            "optimizer": "adamw",
            "eval_every": 100,
            "log_every": 1,
            "device": "cpu",
            "threads": 1,
        },
    }
    summary = train(build_config(raw), tmp_path / "run", quiet=True)
    assert 0 <= summary["test_error"] <= 1
    model = load_run(tmp_path / "run").model
    assert isinstance(model.heads["speaker"], MarginHead) and model.heads["speaker"].margin.kind == "aam"
    raw["model"]["head"]["tasks"] = ["digit"]
    with pytest.raises(ConfigError, match="model.head.tasks: 'digit' is not a task of this run"):
        train(build_config(raw), tmp_path / "bad", quiet=True)
