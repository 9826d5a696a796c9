"""The seven baselines: each one's defining property, and one training step of each."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from polymodal.augment.views import Views
from polymodal.batch import Batch
from polymodal.config import build_config
from polymodal.engine.trainer import train
from polymodal.errors import ConfigError
from polymodal.models import create_encoder
from polymodal.models.multihead import MultiHeadModel
from polymodal.ssl import METHODS, make_teacher
from polymodal.ssl.common import forward_with, mix, sample_beta, sharpen
from polymodal.ssl.ict import ict_targets
from polymodal.ssl.method import confident_hard_label_ce
from polymodal.ssl.mixmatch import guess_labels, mixmatch_lambda
from polymodal.ssl.vat import vat_perturbation

BASELINES = ("pi_model", "mean_teacher", "vat", "pseudo_label", "ict", "mixmatch", "fixmatch")


def test_registered_need_unlabeled_and_have_validated_config_sections():
    assert set(BASELINES) <= set(METHODS.names()) and all(METHODS.get(m).unlabeled for m in BASELINES)
    cfg = build_config({"method": "mixmatch", "mixmatch": {"T": 0.3, "K": 3}, "vat": {"eps": 1.5}})
    assert cfg.mixmatch.T == 0.3 and cfg.mixmatch.K == 3 and cfg.vat.eps == 1.5
    with pytest.raises(ConfigError, match=r"^fixmatch.tau: unknown key; allowed: threshold, weight$"):
        build_config({"fixmatch": {"tau": 0.9}})
    with pytest.raises(ConfigError, match=r"mixmatch.K=0"):
        build_config({"mixmatch": {"K": 0}})


def test_fixmatch_masks_on_weak_confidence_and_uses_hard_labels():
    weak = torch.tensor([[3.0, 0.0], [0.0, 0.0]], requires_grad=True)  # confidences 0.9526, 0.5
    strong = torch.tensor([[0.0, 0.0], [1.0, 0.0]], requires_grad=True)
    loss, mask = confident_hard_label_ce(weak, strong, threshold=0.95)
    assert mask.tolist() == [True, False]
    assert loss.item() == pytest.approx(math.log(2) / 2, abs=1e-6)  # hard label 0, mean over both rows
    loss.backward()
    assert weak.grad is None and strong.grad is not None  # no gradient through the pseudo-label
    assert confident_hard_label_ce(weak, strong, threshold=0.96)[0].item() == 0.0


def test_pseudo_label_uses_argmax_targets_above_threshold():
    logits = torch.tensor([[0.0, 3.0], [1.0, 0.0]])  # argmax 1 (p 0.9526), argmax 0 (p 0.731)
    loss, mask = confident_hard_label_ce(logits, logits, threshold=0.9)
    assert mask.tolist() == [True, False]
    assert loss.item() == pytest.approx(-math.log(math.exp(3) / (1 + math.exp(3))) / 2, abs=1e-6)


def test_mixmatch_sharpens_with_T_and_mixes_with_folded_beta():
    p = torch.tensor([[0.6, 0.4]])
    assert sharpen(p, 0.5)[0].tolist() == pytest.approx([0.36 / 0.52, 0.16 / 0.52], abs=1e-6)
    z1, z2 = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    mean = (z1.softmax(-1) + z2.softmax(-1)) / 2
    assert torch.allclose(guess_labels([z1, z2], 0.5), sharpen(mean, 0.5))
    g = torch.Generator().manual_seed(0)
    alpha = 0.75
    lam = sample_beta(alpha, 200_000, g, torch.device("cpu"))
    assert lam.mean().item() == pytest.approx(0.5, abs=0.005)
    assert lam.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), abs=0.003)  # Beta(α, α) variance
    folded = mixmatch_lambda(alpha, 1000, g, torch.device("cpu"))
    assert (folded >= 0.5).all() and (folded <= 1).all()


def test_ict_mixes_inputs_and_teacher_predictions_alike():
    probs = torch.tensor([[1.0, 0.0], [0.2, 0.8], [0.5, 0.5]])
    lam, perm = torch.full((3,), 0.7), torch.tensor([1, 2, 0])
    assert torch.allclose(ict_targets(probs, lam, perm), 0.7 * probs + 0.3 * probs[perm])
    x = torch.rand(3, 1, 4, 4)
    assert torch.allclose(mix(lam, perm)("image", x), 0.7 * x + 0.3 * x[perm])


def test_mean_teacher_is_the_ema_of_the_student():
    student = torch.nn.Linear(2, 1)
    teacher = make_teacher(student, decay=0.9)
    assert torch.equal(teacher.module.weight, student.weight)  # starts as a copy
    expected, history = None, []
    for n in range(6):
        with torch.no_grad():
            student.weight.add_(torch.randn_like(student.weight))
        teacher.update_parameters(student)
        w = student.weight.detach().clone()
        history.append(w)
        a = min(0.9, 1 - 1 / (n + 1))  # the first update copies, then the Mean Teacher warm-up
        expected = w if n == 0 else a * expected + (1 - a) * w
        assert torch.allclose(teacher.module.weight, expected, atol=1e-6)
    assert not torch.allclose(teacher.module.weight, history[-1])
    assert not any(p.requires_grad for p in teacher.parameters())


def test_engine_passes_the_ema_teacher_to_mean_teacher(data_root, tmp_path, monkeypatch):
    from test_engine import tiny

    seen = []
    real = METHODS.get("mean_teacher")

    def spy(model, *args, teacher=None):
        seen.append(
            (model.heads["class"][1].weight.detach().clone(), teacher.heads["class"][1].weight.clone())
        )
        return real.objective(model, *args, teacher=teacher)

    monkeypatch.setitem(METHODS._items, "mean_teacher", dataclasses.replace(real, objective=spy))
    raw = tiny(data_root, method="mean_teacher", **{"train.steps": 5, "train.eval_every": 100})
    raw["mean_teacher"] = {"ema": 0.6}
    train(build_config(raw), tmp_path, quiet=True)
    assert torch.equal(seen[0][0], seen[0][1])  # step 0: the teacher is a copy of the student
    ema = seen[1][0]  # the first update copies the student after step 0
    for n, (student, teacher) in enumerate(seen[1:], start=1):
        if n > 1:
            a = min(0.6, 1 - 1 / n)
            ema = a * ema + (1 - a) * student
        assert torch.allclose(teacher, ema, atol=1e-6)


def _tiny_model(text: bool = False) -> MultiHeadModel:
    if text:
        enc = create_encoder("text_cnn", vocab_size=30, embed_dim=8, width=8, out_dim=8, dropout=0.0)
        return MultiHeadModel({"text": enc}, {"class": 3})
    return MultiHeadModel({"image": create_encoder("cnn28", width=4, out_dim=8)}, {"class": 3})


@pytest.mark.parametrize("text", [False, True])
def test_vat_perturbation_has_norm_eps_per_example(text):
    torch.manual_seed(0)
    model = _tiny_model(text)
    if text:
        batch = Batch({"text": torch.randint(2, 30, (5, 7))}, lengths={"text": torch.tensor([7, 5, 3, 2, 1])})
    else:
        batch = Batch({"image": torch.rand(5, 1, 28, 28)})
    reps: dict = {}
    clean = forward_with(model, batch, lambda m, r: reps.setdefault(m, r))
    r = vat_perturbation(
        model, batch, clean, reps, eps=2.5, xi=1e-6, iterations=1, generator=torch.Generator().manual_seed(0)
    )
    ((m, v),) = r.items()
    assert v.shape == reps[m].shape  # pixels for images, the embeddings for token ids
    assert torch.allclose(v.flatten(1).norm(dim=1), torch.full((5,), 2.5), atol=1e-4)
    assert all(p.grad is None for p in model.parameters())  # the power iteration leaves no gradients


def test_pi_model_compares_two_stochastic_views():
    model = _tiny_model().eval()  # deterministic network: only the views can differ
    lab = Batch({"image": torch.rand(4, 1, 28, 28)}, {"class": torch.tensor([0, 1, 2, 0])})
    unl = Batch({"image": torch.rand(6, 1, 28, 28)})
    cfg = build_config({"method": "pi_model", "pi_model": {"rampup": 0.0}})
    calls = []

    def views_fn(specs):
        v = Views(specs, {"image": "image"})

        def call(b, view, g):
            calls.append(view)
            return v(b, view, g)

        return call

    g = torch.Generator().manual_seed(0)
    pi_model = METHODS.get("pi_model").objective
    _, logs, _ = pi_model(model, lab, unl, views_fn({}), 1.0, cfg.pi_model, g)
    assert calls.count("strong") == 2 and logs["unsup"].item() == 0.0  # identical views agree exactly
    noisy = views_fn({"image": {"strong": [{"op": "randaugment", "n": 2, "magnitude": 9}]}})
    _, logs, _ = pi_model(model, lab, unl, noisy, 1.0, cfg.pi_model, g)
    assert logs["unsup"].item() > 0


@pytest.mark.parametrize("text", [False, True])
@pytest.mark.parametrize("method", BASELINES)
def test_one_step_of_each_method_gives_finite_losses_and_gradients(method, text):
    torch.manual_seed(0)
    model = _tiny_model(text)
    if text:
        lab = Batch(
            {"text": torch.randint(2, 30, (4, 6))},
            {"class": torch.tensor([0, 1, 2, 0])},
            lengths={"text": torch.tensor([6, 4, 2, 5])},
        )
        unl = Batch(
            {"text": torch.randint(2, 30, (6, 5))}, lengths={"text": torch.tensor([5, 5, 3, 1, 2, 4])}
        )
        views = Views(
            {"text": {"strong": [{"op": "switchout"}]}},
            {"text": "text"},
            {"text": {"meta": {"vocab_size": 30}}},
        )
    else:
        lab = Batch({"image": torch.rand(4, 1, 28, 28)}, {"class": torch.tensor([0, 1, 2, 0])})
        unl = Batch({"image": torch.rand(6, 1, 28, 28)})
        views = Views(
            {"image": {"weak": [{"op": "crop"}], "strong": [{"op": "randaugment"}]}}, {"image": "image"}
        )
    cfg = build_config({"method": method, "pseudo_label": {"threshold": 0.0}, "fixmatch": {"threshold": 0.0}})
    m = METHODS.get(method)
    extra = {"teacher": make_teacher(model, 0.99).module} if m.teacher_decay else {}
    losses, logs, _ = m.objective(
        model, lab, unl, views, 0.5, cfg.method_options(), torch.Generator().manual_seed(0), **extra
    )
    assert set(losses) == {"class"} and torch.isfinite(losses["class"])
    assert all(torch.isfinite(v) for v in logs.values())
    losses["class"].backward()
    emb = next(p for n, p in model.named_parameters() if n.startswith("encoders"))
    assert emb.grad is not None and torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    if extra:
        assert all(p.grad is None for p in extra["teacher"].parameters())


def test_baseline_config_path_in_engine(data_root, tmp_path):
    from test_engine import tiny

    raw = tiny(Path(data_root), method="fixmatch", **{"train.steps": 3, "train.eval_every": 100})
    summary = train(build_config(raw), tmp_path, quiet=True)
    assert summary["method"] == "fixmatch" and 0 <= summary["test_error"] <= 1


def test_teacher_is_checkpointed_and_resume_is_exact(data_root, tmp_path, monkeypatch):
    from test_engine import tiny

    from polymodal.cli import main
    from polymodal.engine.checkpoint import load_checkpoint

    over = {"train.steps": 6, "train.eval_every": 100, "train.checkpoint_every": 3, "train.log_every": 3}
    cfg = build_config(tiny(data_root, method="ict", **over))
    full = train(cfg, tmp_path / "full", quiet=True)
    real = METHODS.get("ict")

    def crash_at_step_4(*args, **kwargs):
        if args[4] >= 4 / 6:
            raise RuntimeError("killed")
        return real.objective(*args, **kwargs)

    monkeypatch.setitem(METHODS._items, "ict", dataclasses.replace(real, objective=crash_at_step_4))
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg, tmp_path / "part", quiet=True)
    monkeypatch.setitem(METHODS._items, "ict", real)
    assert load_checkpoint(tmp_path / "part/checkpoint.pt")["step"] == 3
    assert main(["train", "--resume", str(tmp_path / "part"), "--quiet"]) == 0
    a, b = load_checkpoint(tmp_path / "full/checkpoint.pt"), load_checkpoint(tmp_path / "part/checkpoint.pt")
    assert a["teacher"] is not None and all(
        torch.equal(a["teacher"][k], b["teacher"][k]) for k in a["teacher"]
    )
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert json.loads((tmp_path / "part/summary.json").read_text())["test"] == full["test"]
