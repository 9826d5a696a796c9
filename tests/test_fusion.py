"""Fusion graphs: every op trains and is saved, shapes fail at build, specs round-trip, late rules."""

import io
import json

import pytest
import torch

from polymodal.batch import Batch
from polymodal.config import build_config
from polymodal.errors import ConfigError, ShapeError
from polymodal.fusion import FUSION_OPS, FusionModel, FusionSpec, Tap, fuse, inherit_weights, without
from polymodal.models import create_encoder

SHAPES = {"image": (1, 28, 28), "audio": (20, 41)}


def encoders() -> dict:
    return {
        "image": create_encoder("cnn28", width=4, out_dim=16),
        "audio": create_encoder("audio_cnn", n_mels=20, width=4, out_dim=16),
    }


def batch(n: int = 6, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = {"image": torch.rand(n, 1, 28, 28, generator=g), "audio": torch.randn(n, 20, 41, generator=g)}
    return Batch(x, {"digit": torch.arange(n) % 10})


def model(spec: FusionSpec, **kw) -> FusionModel:
    torch.manual_seed(0)
    return FusionModel(encoders(), {"digit": 10}, spec, SHAPES, **kw)


@pytest.mark.parametrize("op", FUSION_OPS.names())
def test_every_op_trains_and_is_in_the_checkpoint(op: str) -> None:
    spec = FusionSpec.of(fuse([Tap("image", "stage2"), Tap("audio", "out")], op=op, width=8, name="mid"))
    m = model(spec)
    node = dict(m.nodes["mid"].named_parameters())
    assert node, f"{op} has no parameters"
    ids = {id(p) for p in m.parameters()}
    assert all(id(p) in ids for p in node.values())  # the optimizer sees them
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    saved = torch.load(io.BytesIO(buf.getvalue()))
    assert all(f"nodes.mid.{k}" in saved for k in node)  # the checkpoint holds them
    before = {k: v.detach().clone() for k, v in node.items()}
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(m(batch())["digit"], batch().targets["digit"]).backward()
    opt.step()
    assert all(not torch.equal(before[k], v) for k, v in node.items()), f"{op}: a weight did not train"
    fresh = model(spec)
    fresh.load_state_dict(saved)
    fresh.eval(), m.eval()
    m.load_state_dict(saved)
    assert torch.equal(fresh(batch())["digit"], m(batch())["digit"])


def test_shape_mismatch_is_one_line_naming_both_ends() -> None:
    spec = FusionSpec.from_dict({"nodes": [{"name": "mid", "inputs": ["image.stage2"], "in_dims": [64]}]})
    with pytest.raises(ShapeError) as e:
        model(spec)
    assert str(e.value) == "fusion node 'mid' expects 64 features from image.stage2 but it gives 8"
    spec = FusionSpec.from_dict({"nodes": [{"name": "mid", "inputs": ["image.stage9"]}]})
    with pytest.raises(
        ConfigError, match=r"'image.stage9' is not an encoder stage; available: .*image.stage2"
    ):
        model(spec)


@pytest.mark.parametrize(
    ("fusion", "message"),
    [
        (
            {"nodes": [{"name": "a", "inputs": ["image.out"], "op": "max"}]},
            "model.fusion.nodes[0].op='max': allowed",
        ),
        ({"nodes": [{"name": "a", "inputs": ["b"]}]}, "model.fusion.nodes[0].inputs: 'b' is neither"),
        (
            {"nodes": [{"name": "a", "inputs": ["image.out"], "widht": 3}]},
            "model.fusion.nodes[0].widht: unknown",
        ),
        ({"heads": ["image.out", "audio.out"], "decision": "vote"}, "model.fusion.decision='vote'"),
    ],
)
def test_bad_fusion_config_is_one_config_error(fusion: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        build_config({"model": {"fusion": fusion}})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_json_round_trip_rebuilds_an_identical_model() -> None:
    low = fuse([Tap("image", "stage2"), Tap("audio", "stage2")], op="concat", pool="max", width=8, name="low")
    top = fuse([low, Tap("image"), Tap("audio")], op="gated", width=8, name="top")
    spec = FusionSpec.of(top, Tap("audio"), trunk=[8], decision="stacking")
    back = FusionSpec.from_json(json.dumps(json.loads(spec.to_json())))
    assert back == spec and back.to_json() == spec.to_json()
    a, b = model(spec), model(back)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [
        (k, v.shape) for k, v in b.state_dict().items()
    ]
    assert a.block_keys == b.block_keys
    a.eval(), b.eval()
    assert torch.equal(a(batch())["digit"], b(batch())["digit"])  # same seed, same description


def test_functional_api_equals_the_dict_form() -> None:
    spec = FusionSpec.of(fuse([Tap("image", "stage3"), Tap("audio", "stage3")], op="sum", width=8, name="m"))
    raw = {
        "nodes": [{"name": "m", "inputs": ["image.stage3", "audio.stage3"], "op": "sum", "width": 8}],
        "heads": ["m"],
    }
    assert spec == FusionSpec.from_dict(raw)


def test_inherit_weights_copies_exactly_the_shared_blocks() -> None:
    mid = fuse([Tap("image", "stage3"), Tap("audio", "stage3")], op="lowrank", width=8, name="mid")
    old = model(FusionSpec.of(mid, trunk=[8]))
    renamed = fuse([Tap("image", "stage3"), Tap("audio", "stage3")], op="lowrank", width=8, name="other")
    torch.manual_seed(1)
    new = FusionModel(encoders(), {"digit": 10}, FusionSpec.of(renamed, trunk=[16]), SHAPES)
    copied = inherit_weights(new, old)
    assert copied == [old.block_keys[k] for k in ("encoders.image", "encoders.audio", "nodes.mid")]
    assert torch.equal(new.nodes["other"].op.factors[0], old.nodes["mid"].op.factors[0])
    assert new.block_keys["trunks.0"] != old.block_keys["trunks.0"]  # trunk [16] vs [8]: not copied


def test_late_mean_is_the_average_of_present_branches() -> None:
    m = model(FusionSpec.of(Tap("image"), Tap("audio"), decision="mean")).eval()
    b = batch()
    head = m.heads["digit"]
    zi = head.linears[0](m.encoders["image"](b.inputs["image"]))
    za = head.linears[1](m.encoders["audio"](b.inputs["audio"]))
    torch.testing.assert_close(m(b)["digit"], (zi + za) / 2)
    torch.testing.assert_close(m(without(b, "audio"))["digit"], zi)  # a missing branch gets no vote


def test_late_learned_and_stacking_have_trainable_decision_weights() -> None:
    learned = model(FusionSpec.of(Tap("image"), Tap("audio"), decision="learned"))
    assert "heads.digit.logit_weights" in dict(learned.named_parameters())
    stacking = model(FusionSpec.of(Tap("image"), Tap("audio"), decision="stacking"))
    assert "heads.digit.stack.weight" in dict(stacking.named_parameters())


def test_modality_dropout_only_in_training_never_drops_everything() -> None:
    m = model(FusionSpec.of(fuse([Tap("image"), Tap("audio")], width=8)), modality_dropout=0.9)
    from polymodal.fusion import drop_modalities

    torch.manual_seed(3)
    mask = drop_modalities(
        {"a": torch.ones(1000, dtype=torch.bool), "b": torch.ones(1000, dtype=torch.bool)}, 0.5
    )
    kept = torch.stack(list(mask.values()), 1)
    assert kept.any(1).all() and 0.2 < (~kept).float().mean() < 0.5
    torch.manual_seed(3)
    again = drop_modalities(
        {"a": torch.ones(1000, dtype=torch.bool), "b": torch.ones(1000, dtype=torch.bool)}, 0.5
    )
    assert all(torch.equal(mask[k], again[k]) for k in mask)  # the global RNG decides: exact resume
    m.eval()
    assert torch.equal(m(batch())["digit"], m(batch())["digit"])


def test_features_is_the_shared_representation() -> None:
    m = model(FusionSpec.of(fuse([Tap("image"), Tap("audio")], op="attention", width=8), trunk=[5])).eval()
    assert m.features(batch()).shape == (6, 5) and m.feature_dim == 5


def test_concat_trunk_modality_dropout_and_kept_features() -> None:
    from polymodal.models.multihead import MultiHeadModel

    torch.manual_seed(0)
    m = MultiHeadModel(encoders(), {"digit": 10}, modality_dropout=0.5)
    m.train()
    torch.manual_seed(1)
    f = m.features(batch(32))
    img_zero, aud_zero = (f[:, :16] == 0).all(1), (f[:, 16:] == 0).all(1)
    assert img_zero.any() and aud_zero.any() and not (img_zero & aud_zero).any()
    m.eval()
    assert not (m.features(batch(32)) == 0).all(1).any()
    fused = model(FusionSpec.of(Tap("image"), Tap("audio"), decision="learned"))
    fused.keep_features = True
    out = fused(batch())["digit"]
    (z,) = torch.autograd.grad(out.sum(), fused.last_features)  # the heads read last_features
    assert fused.last_features.shape == (6, 32) and z.abs().sum() > 0
