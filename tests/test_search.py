"""The search loop on a tiny 3-modality dataset (tests/search_toy.py): the same seed gives the same
search; a crashing, diverging or too slow candidate is recorded and the search goes on; kill -9 in
the middle of a generation, then --resume, ends with the same best genome and re-evaluates no
finished candidate; the process pool and Ray (local, 2 CPUs) give the in-process result."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import search_toy
import torch
import yaml
from torch import nn

from polymodal.errors import ConfigError
from polymodal.fusion import FUSION_OPS
from polymodal.search import run_search, validate_search_config
from polymodal.search.cache import WeightCache
from polymodal.search.config import CacheConfig
from polymodal.search.features import torch_threads

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module", autouse=True)
def toy(tmp_path_factory):
    """The toy dataset, a private pretrained-encoder cache, one torch thread (tiny ops on a busy
    machine are far slower with two)."""
    search_toy.register()
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("POLYMODAL_CACHE")
    os.environ["POLYMODAL_CACHE"] = str(cache)
    with torch_threads(1):
        yield cache
    if old is None:
        os.environ.pop("POLYMODAL_CACHE")
    else:
        os.environ["POLYMODAL_CACHE"] = old


def outcome(summary: dict) -> tuple:
    """What must not depend on how a search ran: every genome with its fitness and steps, and the best."""
    hist = summary["state"]["history"]
    return summary["best"]["genome"], [(r["id"], r["genome"], r["fitness"], r["steps"]) for r in hist]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "s"
    return run_search(validate_search_config(search_toy.config()), out, quiet=True, report=False)


def test_the_same_seed_gives_the_same_search_and_another_seed_another(reference, tmp_path) -> None:
    again = run_search(validate_search_config(search_toy.config()), tmp_path / "a", quiet=True, report=False)
    assert outcome(again) == outcome(reference)
    assert len(reference["state"]["history"]) == 5 + 4 + 4  # elites are carried, not re-evaluated
    other = search_toy.config(seed=1, **{"ga.generations": 1})
    other = run_search(validate_search_config(other), tmp_path / "b", quiet=True, report=False)
    assert outcome(other)[1] != outcome(reference)[1]
    warm = [r for r in reference["state"]["history"] if r["generation"] > 0]
    assert any(r["inherited"] > 0 for r in warm)  # children start shared blocks from the cache


class Boom(nn.Module):
    def __init__(self, dims, width, **_):
        super().__init__()
        self.linear = nn.Linear(sum(dims), width)

    def forward(self, xs, present):
        raise RuntimeError("boom")


class NaNOp(Boom):
    def forward(self, xs, present):
        return self.linear(torch.cat(xs, -1)) * float("nan")


class Slow(Boom):
    def forward(self, xs, present):
        time.sleep(0.03)
        return self.linear(torch.cat(xs, -1))


def test_a_crashing_diverging_or_slow_candidate_is_recorded_and_the_search_goes_on(tmp_path) -> None:
    ops = {"toy_boom": Boom, "toy_nan": NaNOp, "toy_slow": Slow}
    for name, op in ops.items():
        FUSION_OPS.register(name)(op)
    try:
        raw = search_toy.config(**{"space.ops": ["toy_boom", "toy_nan"], "ga.generations": 2})
        s = run_search(validate_search_config(raw), tmp_path / "s", quiet=True)  # every node fails
        slow = search_toy.config(
            **{
                "space.ops": ["toy_slow"],
                "candidate.time_limit_s": 0.2,
                "ga.generations": 1,
                "ga.population": 4,
            }
        )
        t = run_search(validate_search_config(slow), tmp_path / "t", quiet=True, report=False)
    finally:
        for name in ops:
            FUSION_OPS.unregister(name)
    state = json.loads((tmp_path / "s" / "state.json").read_text())
    reasons = {r["reason"].split(" ")[0] for r in state["history"] if r["status"] == "failed"}
    assert reasons == {"RuntimeError:", "diverged:"}, reasons
    assert state["totals"]["evaluated"] == 9 and 0 < state["totals"]["failed"] < 9
    assert s["best"]["genome"] and not json.loads(s["best"]["genome"])["nodes"]  # a late genome won
    late = [r["reason"] for r in t["state"]["history"] if r["status"] == "failed"]
    assert late and all(r.startswith("time limit 0.2s exceeded at step") for r in late)
    report = (tmp_path / "s" / "report.md").read_text()
    assert "RuntimeError: boom" in report and "## Top 10" in report and "```mermaid" in report


def _cli(*args: str) -> list[str]:
    return [sys.executable, str(HERE / "search_toy.py"), "search", *args, "--quiet"]


def test_kill_9_mid_generation_then_resume_ends_like_an_uninterrupted_search(reference, tmp_path) -> None:
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(yaml.safe_dump(search_toy.config(**{"retrain.steps": 0})))
    out = tmp_path / "s"
    proc = subprocess.Popen(_cli(str(cfg), "--out", str(out)), env=os.environ.copy())
    marker = out / "candidates" / "g001-c01.json"
    while not marker.is_file() and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "candidates").glob("g001-*.json")}
    state = json.loads((out / "state.json").read_text())
    assert state["pending"]["generation"] == 1 and 2 <= len(done) < 4  # killed inside generation 1
    subprocess.run(_cli("--resume", str(out)), check=True, env=os.environ.copy())
    final = json.loads((out / "state.json").read_text())
    assert final["pending"] is None and final["generation"] == 3
    ref = reference["state"]["history"]
    assert [(r["id"], r["genome"], r["fitness"]) for r in final["history"]] == [
        (r["id"], r["genome"], r["fitness"]) for r in ref
    ]
    assert json.loads((out / "summary.json").read_text())["best"]["genome"] == reference["best"]["genome"]
    for name, (mtime, data) in done.items():  # finished before the kill: never evaluated again
        p = out / "candidates" / name
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data
    runs = [json.loads(line)["id"] for line in (out / "evaluations.jsonl").read_text().splitlines()]
    assert len(runs) == len(set(runs)) == len(ref)


def test_the_process_pool_gives_the_in_process_result(reference, tmp_path) -> None:
    raw = search_toy.config(**{"backend.name": "pool", "backend.workers": 2})
    assert outcome(
        run_search(validate_search_config(raw), tmp_path / "p", quiet=True, report=False)
    ) == outcome(reference)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_gives_the_in_process_result(reference, local_ray, tmp_path) -> None:
    raw = search_toy.config(**{"backend.name": "ray", "backend.workers": 2})
    assert outcome(
        run_search(validate_search_config(raw), tmp_path / "r", quiet=True, report=False)
    ) == outcome(reference)


def test_finetune_mode_trains_the_encoders_and_children_inherit_them(tmp_path) -> None:
    raw = search_toy.config(**{"pretrain.mode": "finetune", "ga.generations": 2, "ga.population": 4})
    s = run_search(validate_search_config(raw), tmp_path / "f", quiet=True, report=False)
    children = [r for r in s["state"]["history"] if r["generation"] == 1]
    assert all(r["status"] == "ok" for r in s["state"]["history"])
    assert any(k.startswith("enc-") for r in children for k in r["inherited_keys"])  # fine-tuned encoders


def test_the_weight_cache_stays_within_its_bounds_and_keeps_the_fittest(tmp_path) -> None:
    cache = WeightCache(tmp_path, CacheConfig(max_blocks=3, disk_mb=1.0, memory_mb=0.001))
    w = {"w": torch.ones(100)}
    for i in range(5):
        cache.offer(f"node-{i}", w, fitness=i / 10, candidate=f"c{i}", generation=i)
    assert not cache.offer("node-4", {"w": torch.zeros(100)}, 0.1, "c9", 9)  # a less fit copy is refused
    assert cache.bound() == ["node-0", "node-1"] and len(cache) == 3
    cache.offer("node-big", {"w": torch.ones(250_000)}, 0.05, "cb", 5)  # 1 MB: over disk_mb with the rest
    assert cache.bound() == ["node-big"] and cache.disk_bytes() <= 1 << 20
    cache.gc()
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == sorted(e["file"] for e in cache.index.values())
    assert torch.equal(cache.get("node-4")["w"], w["w"])


def test_config_errors_are_one_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"^ga.populaton: unknown key; allowed: strategy, population"):
        validate_search_config({"ga": {"populaton": 3}})
    with pytest.raises(ConfigError, match=r"space.ops=.*allowed: attention"):
        validate_search_config({"space": {"ops": ["max"]}})
    with pytest.raises(ConfigError, match="backend.name='dask': allowed: inprocess, pool, ray"):
        run_search(
            validate_search_config(search_toy.config(**{"backend.name": "dask"})), tmp_path / "x", quiet=True
        )
