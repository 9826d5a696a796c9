"""Latent space transfer: the alignment losses' closed forms, and B classified through A's head."""

import pytest
import torch
import yaml

from polymodal import transfer
from polymodal.batch import TensorData
from polymodal.cli import main
from polymodal.data import DataBundle
from polymodal.transfer import TransferConfig, alignment_loss, run_transfer


def test_alignment_losses_closed_forms() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    torch.testing.assert_close(alignment_loss(a, b, "l2"), ((a - b) ** 2).mean())
    assert alignment_loss(3 * a, a, "cosine").abs() < 1e-6  # scale-free
    torch.testing.assert_close(alignment_loss(-a, a, "cosine"), torch.tensor(2.0))
    eye = torch.eye(5)
    assert alignment_loss(eye, eye, "infonce", 0.01) < 1e-6  # each row matches only its partner
    assert alignment_loss(eye, eye.roll(1, 0), "infonce", 0.01) > 50


def synthetic(n: int, seed: int) -> TensorData:
    """Class-clustered 'a' features; 'b' is a fixed random linear view of 'a' plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    centres = torch.randn(4, 6, generator=torch.Generator().manual_seed(9)) * 3
    a = centres[y] + torch.randn(n, 6, generator=g)
    mix = torch.randn(6, 10, generator=torch.Generator().manual_seed(7))
    return TensorData({"a": a, "b": a @ mix + 0.1 * torch.randn(n, 10, generator=g)}, {"y": y})


@pytest.fixture
def fake_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = DataBundle(
        "syn", synthetic(384, 0), synthetic(200, 1), {"y": 4}, {"a": "tabular", "b": "tabular"}
    )
    monkeypatch.setattr(transfer, "load_dataset", lambda name, root: bundle)


def config(**over: object) -> TransferConfig:
    raw = {
        "dataset": "syn",
        "task": "y",
        "source": {
            "modality": "a",
            "encoder": {"name": "tabular_mlp", "in_dim": 6, "hidden": [16], "out_dim": 8},
        },
        "target": {
            "modality": "b",
            "encoder": {"name": "tabular_mlp", "in_dim": 10, "hidden": [16], "out_dim": 8},
        },
        "align": {"loss": "l2", "steps": 80},
        "steps": 80,
        "probe_steps": 300,
        "lr": 0.01,
        "batch_size": 32,
        **over,
    }
    return TransferConfig.model_validate(raw)


@pytest.mark.usefixtures("fake_dataset")
@pytest.mark.parametrize("loss", ["l2", "cosine", "infonce"])
def test_b_through_a_head_without_b_labels(loss: str) -> None:
    res = run_transfer(config(align={"loss": loss, "steps": 80}, scratch=loss == "l2"))
    acc = list(res["accuracy"].values())
    assert acc[0] > 0.9  # A's own model
    assert acc[3] > 0.9  # linear probe on the aligned B features
    if loss == "l2":  # L2 puts B exactly where A's head reads; cosine/InfoNCE only up to scale
        assert acc[1] > 0.85 and acc[2] > 0.9
    else:
        assert acc[2] is None


@pytest.mark.usefixtures("fake_dataset")
def test_transfer_cli_one_line_errors(tmp_path, capsys) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(config().model_dump()))
    assert main(["transfer", str(path), "--set", "align.los=l2"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "polymodal: error: align.los: unknown key; allowed: loss, feature_weight, steps, temperature, "
        "distill, distill_temperature, target_labels_per_class, lr"
    )
    assert main(["transfer", str(path), "--set", "target.encoder.out_dim=5"]) == 2
    assert "target.encoder gives 5 features but source a's head reads 8" in capsys.readouterr().err


def test_distillation_loss_closed_form() -> None:
    from polymodal.transfer import distillation_loss

    t = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    s = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    p, q = (t / 2).softmax(-1), (s / 2).softmax(-1)
    want = 4 * (p * (p.log() - q.log())).sum(-1).mean()  # T^2 KL(p_T(teacher) || p_T(student)), T = 2
    torch.testing.assert_close(distillation_loss(s, t, 2.0), want)
    assert distillation_loss(t, t, 2.0).abs() < 1e-6
    s.requires_grad_(True), t.requires_grad_(True)
    distillation_loss(s, t).backward()
    assert t.grad is None and s.grad.abs().sum() > 0  # the teacher gets no gradient


@pytest.mark.usefixtures("fake_dataset")
def test_distillation_alone_reads_b_through_a_head_and_reports_the_ratio() -> None:
    res = run_transfer(config(align={"loss": "none", "distill": 1.0, "steps": 150}, steps=40))
    acc = list(res["accuracy"].values())
    assert "(0 b labels)" in list(res["accuracy"])[1]
    assert acc[1] > 0.85 and res["ratio_to_scratch"] == pytest.approx(acc[1] / acc[2])


@pytest.mark.usefixtures("fake_dataset")
def test_a_few_target_labels_and_a_scratch_run_as_baseline(tmp_path, monkeypatch) -> None:
    from polymodal.engine.rundir import RunDir
    from polymodal.models import create_encoder
    from polymodal.models.multihead import MultiHeadModel

    enc = {"name": "tabular_mlp", "in_dim": 10, "hidden": [16], "out_dim": 8}
    torch.manual_seed(0)
    model = MultiHeadModel({"b": create_encoder(**enc)}, {"y": 4})
    RunDir(tmp_path).create()
    RunDir(tmp_path).save_checkpoint({"model": model.state_dict()})  # an untrained "scratch" run
    target = {"modality": "b", "encoder": enc, "run": str(tmp_path)}
    align = {"loss": "l2", "steps": 60, "target_labels_per_class": 2}
    res = run_transfer(config(align=align, target=target))
    assert "(2 per class b labels)" in list(res["accuracy"])[1]
    assert list(res["accuracy"].values())[2] < 0.5  # the run's (untrained) model was evaluated, not retrained
