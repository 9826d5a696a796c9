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
    out = m(batch())  # + the op's own training loss, if it has one (the autoencoder's reconstruction)
    ce = torch.nn.functional.cross_entropy(out["digit"], batch().targets["digit"])
    (ce + sum(out.losses.values())).backward()
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


def test_position_keys_let_a_child_inherit_the_trunk_and_head_when_an_upstream_block_changed() -> None:
    """Exact (Merkle) keys: a trunk reading a changed node is a new block. Position keys (MFAS): the
    trunk reads the same ref at the same width, so it starts from the parent's weights."""
    old = model(FusionSpec.of(fuse([Tap("image", "stage3"), Tap("audio", "stage3")], op="concat", width=8,
                                   name="mid"), trunk=[8]))  # fmt: skip
    torch.manual_seed(1)
    child = fuse([Tap("image", "stage3"), Tap("audio", "stage3")], op="gated", width=8, name="mid")
    new = FusionModel(encoders(), {"digit": 10}, FusionSpec.of(child, trunk=[8]), SHAPES)
    assert inherit_weights(new, old) == [old.block_keys[k] for k in ("encoders.image", "encoders.audio")]
    by_position = inherit_weights(new, old, by="position")
    shared = ("encoders.image", "encoders.audio", "trunks.0", "heads.digit")
    assert by_position == [old.share_keys[k] for k in shared]
    assert torch.equal(new.trunks[0][0].weight, old.trunks[0][0].weight)
    twins = [fuse([Tap("image"), Tap("audio")], op="sum", width=8, name=n) for n in ("p", "q")]
    both = model(FusionSpec.of(*twins, decision="mean"))  # the same block twice: two keys, not one
    assert len(set(both.share_keys.values())) == len(both.share_keys)
    with pytest.raises(ConfigError, match="allowed: exact, position"):
        both.blocks("loose")


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


def test_modality_dropout_one_hides_exactly_one_present_modality() -> None:
    from polymodal.fusion import drop_modalities

    torch.manual_seed(0)
    n = 4000
    old = {"a": torch.ones(n, dtype=torch.bool), "b": torch.ones(n, dtype=torch.bool)}
    old["b"][:1000] = False  # rows with a single modality are never touched
    kept = torch.stack(list(drop_modalities(old, 0.7, "one").values()), 1)
    assert kept[:1000, 0].all() and not kept[:1000, 1].any()
    dropped = (~kept[1000:]).sum(1)
    assert dropped.max() == 1  # never both
    assert 0.66 < dropped.float().mean() < 0.74  # a row is chosen w.p. p
    assert 0.3 < (~kept[1000:, 0]).float().mean() < 0.4  # each modality alone in p/2 of rows
    with pytest.raises(ValueError, match="allowed: independent, one"):
        drop_modalities(old, 0.5, "both")


def test_modality_dropout_mode_is_checked_by_the_config() -> None:
    assert build_config({"model": {"modality_dropout_mode": "one"}}).model.modality_dropout_mode == "one"
    with pytest.raises(ConfigError, match="modality_dropout_mode"):
        build_config({"model": {"modality_dropout_mode": "some"}})


def test_aux_loss_trains_each_encoder_alone_and_is_added_by_the_objective() -> None:
    from polymodal.ssl import METHODS
    from polymodal.ssl.method import aux_terms

    spec = FusionSpec.of(fuse([Tap("image"), Tap("audio")], op="lowrank", width=8))
    assert model(spec).train()(batch(8)).aux == {} and not hasattr(model(spec), "aux_heads")
    m = model(spec, aux_loss=0.5).train()
    assert {"aux_heads.digit.image.weight", "aux_heads.digit.audio.weight"} <= set(m.state_dict())
    b = batch(8)
    aux = aux_terms(m(b), b)["digit"]
    x = {k: m.encoders[k](b.inputs[k]) for k in ("image", "audio")}  # each encoder's real output
    want = 0.5 * sum(
        torch.nn.functional.cross_entropy(m.aux_heads["digit"][k](x[k]), b.targets["digit"]) for k in x
    )
    assert torch.allclose(aux, want)
    aux.backward()  # the auxiliary loss alone reaches both encoders and their heads
    for name in ("encoders.audio", "encoders.image", "aux_heads.digit.audio"):
        grads = [q.grad for k, q in m.named_parameters() if k.startswith(name)]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    fused = torch.nn.functional.cross_entropy(m(b)["digit"], b.targets["digit"])
    supervised = METHODS.get("supervised").objective
    losses, _, _ = supervised(m, b, None, lambda x, kind, g: x, 0.0, None, None)
    assert torch.allclose(losses["digit"], fused + aux_terms(m(b), b)["digit"])
    m.eval()
    assert m(b).aux == {}  # training only


def test_aux_loss_of_late_fusion_trains_each_branch_logits_on_the_label() -> None:
    from polymodal.ssl.method import aux_terms

    late = model(FusionSpec.of(Tap("image"), Tap("audio"), decision="mean"), aux_loss=1.0).train()
    assert not hasattr(late, "aux_heads")  # the branch heads are the per-modality classifiers
    b = batch(8)
    aux = aux_terms(late(b), b)["digit"]
    feats, _, _ = late._branches(b)
    y = b.targets["digit"]
    want = sum(
        torch.nn.functional.cross_entropy(h(f), y)
        for h, f in zip(late.heads["digit"].linears, feats, strict=True)
    )
    assert torch.allclose(aux, want)
    aux.backward()
    assert late.heads["digit"].linears[1][1].weight.grad.abs().sum() > 0  # the audio branch's head trains
    # with modality dropout, each branch is still trained on every row, from its input before dropout
    spec = FusionSpec.of(Tap("image"), Tap("audio"))
    late = model(spec, aux_loss=1.0, modality_dropout=0.9, modality_dropout_mode="one").train()
    torch.manual_seed(0)
    feats, pres, _ = late._branches(b)
    dropped = [(p == 0) for p in pres]
    assert any(d.any() for d in dropped)  # the fused path lost some rows' modalities ...
    torch.manual_seed(0)
    out = late(b)
    late.modality_dropout = 0.0
    full, _, _ = late._branches(b)  # the branches with nothing dropped
    heads = late.heads["digit"].linears
    for (z, rows), f, h, d in zip(out.aux["digit"], full, heads, dropped, strict=True):
        assert rows.all() and torch.allclose(z, h(f), atol=1e-6)  # ... the auxiliary branches did not
        assert (f[d].abs().sum(1) > 0).all()


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
    out = fused(batch())
    (z,) = torch.autograd.grad(out["digit"].sum(), out.features)  # the heads read out.features
    assert out.features.shape == (6, 32) and z.abs().sum() > 0


def test_lowrank_missing_input_contributes_the_identity_factor() -> None:
    """LMF with input 0 missing is the product of the other inputs' factors alone (closed form)."""
    from polymodal.fusion.ops import LowRank

    op = LowRank([3, 2], width=4, rank=2)
    x0, x1 = torch.randn(5, 3), torch.randn(5, 2)
    present = [torch.tensor([1.0, 0, 1, 0, 1]), torch.ones(5)]
    out = op([x0 * present[0][:, None], x1], present)
    one = lambda x: torch.cat([x, torch.ones(len(x), 1)], 1)  # noqa: E731
    f0 = torch.einsum("bd,rdw->brw", one(x0), op.factors[0])
    f1 = torch.einsum("bd,rdw->brw", one(x1), op.factors[1])
    both = torch.einsum("brw,r->bw", f0 * f1, op.rank_weights) + op.bias
    alone = torch.einsum("brw,r->bw", f1, op.rank_weights) + op.bias
    want = torch.where(present[0][:, None] > 0, both, alone)
    assert torch.allclose(out, want, atol=1e-6)
