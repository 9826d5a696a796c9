"""Fusion strategies: CCA / CKA against closed forms, each strategy's choice, and every parameter of the
models they emit trains (the autoencoder's decoder through its reconstruction loss)."""

import pytest
import torch

from polymodal.batch import Batch
from polymodal.fusion import FusionModel, FusionSpec
from polymodal.fusion.strategies import (
    STRATEGIES,
    cca_correlations,
    choose,
    linear_cka,
    similarities,
    stage_activations,
    warm_start,
)
from polymodal.models import create_encoder

SHAPES = {"image": (1, 28, 28), "audio": (20, 41)}
OUTPUTS = ["image.out", "audio.out"]


def encoders(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return {
        "image": create_encoder("lenet", c1=4, c2=6, out_dim=12),
        "audio": create_encoder("audio_cnn", n_mels=20, width=4, out_dim=12),
    }


def batch(n: int = 8, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = {"image": torch.rand(n, 1, 28, 28, generator=g), "audio": torch.randn(n, 20, 41, generator=g)}
    return Batch(x, {"digit": torch.arange(n) % 10})


def orthonormal_columns(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """k centred, orthonormal columns of length n (exact closed forms need exactly uncorrelated data)."""
    x = torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.cat([torch.ones(n, 1, dtype=torch.float64), x], 1))
    return q[:, 1:]


def test_linear_cka_closed_forms() -> None:
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [3.0], [2.0]])
    # centred: x = (-1, 0, 1), y = (-1, 1, 0): r = 1/2, and 1-D linear CKA is r^2
    torch.testing.assert_close(linear_cka(x, y), torch.tensor(0.25, dtype=torch.float64))
    a = torch.randn(30, 5, generator=torch.Generator().manual_seed(1))
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(2)))
    one = torch.tensor(1.0, dtype=torch.float64)
    torch.testing.assert_close(linear_cka(a, 3 * a @ q + 7), one)  # orthogonal, scale, shift invariant
    u = orthonormal_columns(40, 4)
    assert linear_cka(u[:, :2], u[:, 2:]).abs() < 1e-12  # uncorrelated features: 0
    # [u1, u2] vs [u1]: ||Y'X||^2 = 1, ||X'X|| = sqrt(2), ||Y'Y|| = 1 -> 1/sqrt(2)
    torch.testing.assert_close(linear_cka(u[:, :2], u[:, :1]), one / 2**0.5)


def test_cca_closed_forms() -> None:
    g = torch.Generator().manual_seed(0)
    x, noise = torch.randn(50, 1, generator=g), torch.randn(50, 1, generator=g)
    y = -2 * x + noise
    r = torch.corrcoef(torch.cat([x, y], 1).T.double())[0, 1]
    torch.testing.assert_close(cca_correlations(x, y, eps=0.0), r.abs()[None])  # 1-D: |Pearson r|
    a = torch.randn(60, 4, generator=g)
    mix = torch.randn(4, 4, generator=g) + 3 * torch.eye(4)
    torch.testing.assert_close(cca_correlations(a, a @ mix, eps=0.0), torch.ones(4, dtype=torch.float64))
    u = orthonormal_columns(40, 4)
    x, y = u[:, :2], torch.stack([u[:, 0], u[:, 2]], 1)  # share one direction, the other uncorrelated
    torch.testing.assert_close(cca_correlations(x, y, eps=0.0), torch.tensor([1.0, 0.0], dtype=torch.float64))
    y3 = torch.stack([0.6 * u[:, 0] + 0.8 * u[:, 2], u[:, 3]], 1)  # cos 0.6 with x's first direction
    torch.testing.assert_close(
        cca_correlations(x, y3, eps=0.0), torch.tensor([0.6, 0.0], dtype=torch.float64)
    )


def test_the_strategies_pick_the_matching_pair() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 6, generator=g)
    acts = {  # image.stage2 and audio.stage1 are linear views of the same signal; the rest is noise
        "image.stage1": torch.randn(200, 9, generator=g),
        "image.stage2": z @ torch.randn(6, 8, generator=g),
        "image.out": torch.randn(200, 5, generator=g),
        "audio.stage1": z @ torch.randn(6, 7, generator=g),
        "audio.stage2": torch.randn(200, 10, generator=g),
        "audio.out": torch.randn(200, 5, generator=g),
    }
    scores = similarities(acts, "cca")
    assert len(scores) == 9 and max(scores, key=scores.get) == ("image.stage2", "audio.stage1")
    early = choose("correlated_early", acts, OUTPUTS)
    assert early.pair == ("image.stage2", "audio.stage1") and not early.warm_start
    assert early.spec.nodes[0].inputs == ["image.stage2", "audio.stage1"]
    assert early.spec.nodes[1].inputs == ["early", *OUTPUTS]
    merge = choose("similarity_merge", acts, OUTPUTS)
    assert merge.pair == ("image.stage2", "audio.stage1") and merge.warm_start
    assert [n.inputs for n in merge.spec.nodes] == [["image.stage2", "audio.stage1"]]
    ae = choose("autoencoder", None, OUTPUTS)
    assert ae.spec.nodes[0].op == "autoencoder" and ae.spec.nodes[0].inputs == OUTPUTS
    assert FusionSpec.from_json(merge.spec.to_json()) == merge.spec  # plain, round-tripping specs


def strategy_model(name: str) -> FusionModel:
    acts = stage_activations(encoders(), batch(16))
    assert acts["image.stage2"].shape == (16, 6 * 4 * 4) and acts["audio.out"].shape == (16, 12)
    spec = choose(name, acts, OUTPUTS).spec
    torch.manual_seed(0)
    return FusionModel(encoders(1), {"digit": 10}, spec, SHAPES)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_parameter_of_each_strategy_model_trains(name: str) -> None:
    m = strategy_model(name).train()
    b = batch()
    out = m(b)
    loss = torch.nn.functional.cross_entropy(out["digit"], b.targets["digit"]) + sum(out.losses.values())
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    loss.backward()
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    fused = {k: v for k, v in m.named_parameters() if not k.startswith("encoders.")}
    assert fused, name
    for k, v in fused.items():  # every node, trunk and head weight got a gradient and moved
        assert v.grad is not None and v.grad.abs().sum() > 0, f"{name}: {k} got no gradient"
        assert not torch.equal(before[k], v), f"{name}: {k} did not train"
    for enc in ("encoders.image.stage1", "encoders.audio.blocks.0"):  # the encoders train through it
        assert any(
            v.grad is not None and v.grad.abs().sum() > 0
            for k, v in m.named_parameters()
            if k.startswith(enc)
        )


def test_autoencoder_reconstruction_is_a_training_loss_every_objective_adds() -> None:
    from polymodal.ssl import METHODS

    m = strategy_model("autoencoder").train()
    b = batch()
    torch.manual_seed(3)
    out = m(b)
    assert set(out.losses) == {"nodes.code"} and out.losses["nodes.code"] > 0
    torch.manual_seed(3)
    losses, _, _ = METHODS.get("supervised").objective(m, b, None, lambda x, kind, g: x, 0.0, None, None)
    ce = torch.nn.functional.cross_entropy(out["digit"], b.targets["digit"])
    torch.testing.assert_close(losses["digit"], ce + out.losses["nodes.code"])
    assert out.rows(0, 3).losses is out.losses  # split views keep the whole forward's loss (added once)
    assert m.eval()(b).losses == {}  # training only


def test_warm_start_loads_the_trained_unimodal_encoders() -> None:
    trained = encoders(5)
    m = strategy_model("similarity_merge").eval()
    assert warm_start(m, {k: e.state_dict() for k, e in trained.items()}) == ["image", "audio"]
    x = batch().inputs["audio"]
    torch.testing.assert_close(m.encoders["audio"].eval()(x), trained["audio"].eval()(x))
