"""Multi-task data flow and engine: label masks, task sampling, method one / two, CLI, exact resume."""

import json
import os
from pathlib import Path

import pytest
import torch

from polymodal.batch import Batch, TensorData
from polymodal.cli import main
from polymodal.config import build_config
from polymodal.data.multimnist import build_multimnist, load_multimnist
from polymodal.data.one_label import one_label_per_example
from polymodal.engine import trainer
from polymodal.engine.checkpoint import load_checkpoint
from polymodal.errors import ConfigError, DataError
from polymodal.models import create_encoder
from polymodal.models.multihead import MultiHeadModel
from polymodal.mtl import build_balancer
from polymodal.mtl.sampling import TaskBatches, task_probabilities
from polymodal.ssl.method import supervised_terms

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mm_cache(tmp_path_factory, data_root):
    """A private MultiMNIST cache for this module (built once, ~3 s)."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("POLYMODAL_CACHE")
    os.environ["POLYMODAL_CACHE"] = str(cache)
    build_multimnist(data_root)
    yield cache
    if old is None:
        os.environ.pop("POLYMODAL_CACHE")
    else:
        os.environ["POLYMODAL_CACHE"] = old


def toy(n: int = 40, masks: dict | None = None) -> TensorData:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=g)
    targets = {"a": torch.randint(3, (n,), generator=g), "b": torch.randint(3, (n,), generator=g)}
    return TensorData({"image": x}, targets, {}, masks or {})


def test_task_probabilities():
    sizes = {"a": 100, "b": 300}
    assert torch.allclose(task_probabilities(sizes, "uniform"), torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert torch.allclose(
        task_probabilities(sizes, "proportional"), torch.tensor([0.25, 0.75], dtype=torch.float64)
    )
    p = task_probabilities(sizes, "temperature", 2.0)  # n^(1/2): 10 vs 17.32
    assert torch.allclose(p, torch.tensor([10, 300**0.5], dtype=torch.float64) / (10 + 300**0.5))
    with pytest.raises(ConfigError, match="allowed: uniform, proportional, temperature"):
        task_probabilities(sizes, "random")


def test_one_task_draws_follow_probabilities_and_walk_each_pool_once_per_epoch():
    mask_a = torch.arange(40) < 10  # unequal pools: 10 rows for a, 30 for b
    data = toy(40, {"a": mask_a, "b": ~mask_a})
    tb = TaskBatches(data, ["a", "b"], "one_task", 5, seed=3, steps=4000, sampling="proportional")
    freq = torch.bincount(tb.choice, minlength=2).double() / 4000
    assert torch.allclose(freq, torch.tensor([0.25, 0.75], dtype=torch.float64), atol=0.03)
    seen = {"a": [], "b": []}
    for step in range(200):
        task = tb.task_at(step)
        batch = tb(step)
        assert batch.tasks == [task] and bool(batch.target_mask[task].all())
        if len(seen[task]) < (10 if task == "a" else 30):
            seen[task] += tb.rows(task, int(tb.draw[step])).tolist()
    assert sorted(seen["a"]) == list(range(10)) and sorted(seen["b"]) == list(range(10, 40))
    # uniform with unequal pools: no pool is padded, the small one just starts its next epoch sooner
    uni = TaskBatches(data, ["a", "b"], "one_task", 5, seed=3, steps=2000, sampling="uniform")
    assert abs(float(uni.choice.double().mean()) - 0.5) < 0.05


def test_method_one_batch_has_every_task_on_its_own_rows():
    mask_a = torch.arange(40) < 10
    data = toy(40, {"a": mask_a, "b": ~mask_a})
    tb = TaskBatches(data, ["a", "b"], "task_batches", 4, seed=0, steps=10)
    batch = tb(0)
    assert batch.size == 8 and set(batch.tasks) == {"a", "b"}
    assert batch.target_mask["a"].tolist() == [True] * 4 + [False] * 4
    assert batch.target_mask["b"].tolist() == [False] * 4 + [True] * 4
    with pytest.raises(DataError, match="task 'b' has no labeled"):
        TaskBatches(toy(10, {"b": torch.zeros(10, dtype=torch.bool)}), ["a", "b"], "task_batches", 2, 0, 5)


def test_one_label_per_example_keeps_exactly_one_seeded_label():
    data = toy(200)
    one = one_label_per_example(data, seed=1)
    kept = torch.stack([one.target_mask["a"], one.target_mask["b"]]).sum(0)
    assert bool((kept == 1).all())
    assert bool((one.targets["a"][~one.target_mask["a"]] == -1).all())
    assert torch.equal(one.targets["a"][one.target_mask["a"]], data.targets["a"][one.target_mask["a"]])
    assert torch.equal(one_label_per_example(data, 1).target_mask["a"], one.target_mask["a"])
    assert 60 < int(one.target_mask["a"].sum()) < 140
    sub = one.subset(torch.tensor([0, 1, 2]))
    assert torch.equal(sub.target_mask["b"], one.target_mask["b"][:3])
    assert torch.equal(one.batch(torch.tensor([3, 4])).target_mask["a"], one.target_mask["a"][3:5])


def test_masked_labels_contribute_nothing():
    torch.manual_seed(0)
    model = MultiHeadModel({"image": create_encoder("cnn28", width=4, out_dim=8)}, {"a": 3, "b": 3})
    x = torch.rand(6, 1, 28, 28)
    mask = torch.tensor([True, True, True, False, False, False])
    grads = []
    for junk in (0, 2):
        y = torch.tensor([0, 1, 2, junk, junk, junk])
        batch = Batch({"image": x}, {"a": y, "b": y}, {"a": mask, "b": torch.zeros(6, dtype=torch.bool)})
        model.zero_grad()
        losses, _ = supervised_terms(model(batch), batch, lambda k: None)
        sum(losses.values()).backward()
        assert float(losses["b"].detach()) == 0.0
        grads.append([p.grad.clone() if p.grad is not None else None for p in model.parameters()])
        assert all(float(p.grad.abs().sum()) == 0 for p in model.heads["b"].parameters())
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True) if a is not None)


def test_method_two_updates_only_the_chosen_tasks_head():
    torch.manual_seed(0)
    model = MultiHeadModel({"image": create_encoder("cnn28", width=4, out_dim=8)}, {"a": 3, "b": 3})
    data = one_label_per_example(toy(40), seed=0)
    tb = TaskBatches(data, ["a", "b"], "one_task", 8, seed=0, steps=5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    bal = build_balancer("equal", ["a", "b"], update="one_task")
    task = tb.task_at(0)
    other = "b" if task == "a" else "a"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = tb(0)
    losses, _ = supervised_terms(model(batch), batch, lambda k: None)
    assert list(losses) == [task]
    opt.zero_grad(set_to_none=True)
    bal.backward(losses, [], 0)
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith(f"heads.{task}.") for n in changed)
    assert not any(n.startswith(f"heads.{other}.") for n in changed)
    assert any(n.startswith("encoders.") for n in changed)


def tiny_sets(root: Path) -> list[str]:
    return [
        f"data.root={root}",
        "model.encoders.image.c1=4",
        "model.encoders.image.c2=4",
        "model.encoders.image.out_dim=16",
        "data.batch_size=16",
        "data.eval_batch_size=5000",
        "train.steps=4",
        "train.eval_every=100",
        "train.log_every=2",
        "train.checkpoint_every=2",
        "train.device=cpu",
        "train.threads=1",
    ]


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs").glob("multitask_*.yaml")))
def test_each_multitask_config_runs_from_the_cli(config, mm_cache, data_root, tmp_path):
    args = ["train", str(REPO / "configs" / config), "--out", str(tmp_path), "--quiet"]
    sets = tiny_sets(data_root)
    if "fsdd" in config:
        sets = [s for s in sets if "image" not in s] + ["model.encoders.audio.width=4"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["test"]) == 2 and all(0 <= r["accuracy"] <= 1 for r in summary["test"].values())


@pytest.mark.parametrize("weighting", ["uncertainty", "dwa", "gradnorm", "rlw", "mgda", "cagrad", "imtl_g"])
def test_every_weighting_trains_in_the_engine(weighting, mm_cache, data_root, tmp_path):
    cfg = REPO / "configs" / "multitask_multimnist_equal.yaml"
    args = ["train", str(cfg), "--out", str(tmp_path), "--quiet", "--set", f"multitask.weighting={weighting}"]
    for s in tiny_sets(data_root):
        args += ["--set", s]
    assert main(args) == 0
    losses = [json.loads(x).get("loss") for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(v == v for v in losses if v is not None)  # finite, logged


def test_one_task_with_a_gradient_method_is_one_config_error(mm_cache, data_root, tmp_path, capsys):
    cfg = REPO / "configs" / "multitask_multimnist_method_two.yaml"
    args = ["train", str(cfg), "--out", str(tmp_path), "--set", "multitask.weighting=pcgrad"]
    for s in tiny_sets(data_root):
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one_task" in err[0]
    assert main(["train", str(cfg), "--out", str(tmp_path), "--set", "multitask.wieghting=x"]) == 2
    assert "multitask.wieghting: unknown key; allowed: weighting" in capsys.readouterr().err


def test_exact_resume_with_a_gradient_method(mm_cache, data_root, tmp_path, monkeypatch):
    raw = {
        "seed": 2,
        "data": {
            "name": "multimnist",
            "root": str(data_root),
            "one_label_per_example": True,
            "batch_size": 8,
            "eval_batch_size": 5000,
        },
        "model": {"encoders": {"image": {"name": "lenet", "c1": 4, "c2": 4, "out_dim": 16}}},
        "train": {
            "steps": 16,
            "eval_every": 8,
            "checkpoint_every": 5,
            "log_every": 2,
            "device": "cpu",
            "deterministic": True,
            "threads": 1,
        },
        "multitask": {"weighting": "pcgrad", "update": "task_batches", "recompute_every": 3},
    }
    full = trainer.train(build_config(raw), tmp_path / "full", quiet=True)
    real_eval = trainer.evaluate

    def crash(*a, **k):
        raise KeyboardInterrupt  # dies at step 8, after the step-5 checkpoint

    monkeypatch.setattr(trainer, "evaluate", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(build_config(raw), tmp_path / "cut", quiet=True)
    assert (
        load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 5
    )  # 5 % 3 != 0: reuses saved weights
    monkeypatch.setattr(trainer, "evaluate", real_eval)
    resumed = trainer.train(build_config(raw), tmp_path / "cut", resume=True, quiet=True)
    assert resumed["test"] == full["test"]
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["balancer"]["last_weights"], b["balancer"]["last_weights"])


def test_multimnist_build_is_byte_identical_and_checked(data_root, tmp_path, mm_cache):
    a = build_multimnist(data_root, out=tmp_path / "a")  # the fixture built the cache once already
    assert (a / "SHA256SUMS").read_text() == (mm_cache / "multimnist" / "SHA256SUMS").read_text()
    assert (a / "train-images.npy").read_bytes() == (
        mm_cache / "multimnist" / "train-images.npy"
    ).read_bytes()
    train, test = load_multimnist(data_root, a)
    assert train.inputs["image"].shape == (60000, 1, 28, 28) and len(test) == 10000
    assert set(train.targets) == {"left", "right"}
    assert (
        float((train.targets["left"] == train.targets["right"]).float().mean()) < 0.15
    )  # pairs are shuffled
    with open(a / "test-images.npy", "r+b") as f:
        f.seek(1000)
        f.write(b"\x07")
    with pytest.raises(DataError, match="corrupt data file .*test-images.npy"):
        load_multimnist(data_root, a)
