"""What a search returns and how it ranks (tests/search_toy.py, whose third modality is pure noise):
permutation importance and the unused-modality penalty against their closed form, the finalists'
retraining that picks the answer, and hand-made genomes opening generation 0."""

import json
import os

import pytest
import search_toy

from polymodal.errors import ConfigError
from polymodal.search import run_search, validate_search_config
from polymodal.search.features import torch_threads

SEEDED = {"nodes": [{"name": "m", "inputs": ["a.out", "b.out"], "op": "concat", "width": 8}], "trunk": []}


@pytest.fixture(scope="module", autouse=True)
def toy(tmp_path_factory):
    search_toy.register()
    old = os.environ.get("POLYMODAL_CACHE")
    os.environ["POLYMODAL_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    with torch_threads(1):
        yield
    if old is None:
        os.environ.pop("POLYMODAL_CACHE")
    else:
        os.environ["POLYMODAL_CACHE"] = old


def history(raw: dict, out) -> list[dict]:
    return run_search(validate_search_config(raw), out, quiet=True, report=False)["state"]["history"]


def test_the_unused_penalty_is_its_closed_form_and_the_noise_modality_has_no_importance(tmp_path) -> None:
    raw = search_toy.config(**{"fitness.unused_penalty": 0.1, "fitness.unused_below": 0.02})
    hist = history(raw, tmp_path / "s")
    ok = [r for r in hist if r["status"] == "ok" and len(r["modalities"]) > 1]
    assert ok
    for r in ok:  # fitness = accuracy - 0.1 x (modalities read whose importance is below 0.02)
        unused = sum(v < 0.02 for v in r["importance"].values())
        assert r["fitness"] == pytest.approx(r["accuracy"] - 0.1 * unused, abs=1e-12)

    def mean(m: str) -> float:
        have = [r["importance"][m] for r in ok if m in r["importance"]]
        return sum(have) / len(have)

    assert mean("noise") < 0.25 * mean("b")  # shuffling noise costs little; shuffling b, a lot


def test_the_answer_is_the_best_finalist_on_validation_and_one_finalist_is_the_fittest(tmp_path) -> None:
    raw = search_toy.config(**{"retrain.finalists": 3})
    s = run_search(validate_search_config(raw), tmp_path / "f", quiet=True)
    fin = s["retrain"]["finalists"]
    rows = fin["finalists"]
    assert len(rows) == 3 and fin["steps"] == 3 * 30
    assert [r["fitness"] for r in rows] == sorted((r["fitness"] for r in rows), reverse=True)
    hist = {r["id"]: r for r in json.loads((tmp_path / "f" / "state.json").read_text())["history"]}
    win = max(rows, key=lambda r: r["score"])
    assert s["best"]["id"] == win["id"] and s["fittest"] == rows[0]["id"]
    assert s["retrain"]["pretrained"]["val_accuracy"] == win["val_accuracy"]
    for r in rows:  # score = retrained validation accuracy + the penalties of the search fitness
        rec = hist[r["id"]]
        assert r["score"] == pytest.approx(r["val_accuracy"] + rec["fitness"] - rec["accuracy"])
        assert r["fitness"] == rec["fitness"]
    one = run_search(validate_search_config(search_toy.config()), tmp_path / "o", quiet=True)
    assert one["best"]["id"] == one["fittest"] and "finalists" not in one["retrain"]


def test_seed_genomes_open_generation_0_and_a_bad_one_is_one_line(tmp_path) -> None:
    raw = search_toy.config(**{"ga.seed_genomes": [SEEDED], "ga.generations": 1})
    hist = history(raw, tmp_path / "g")
    first = hist[0]
    assert first["origin"] == "seeded" and first["parents"] == []
    assert validate_search_config(raw).ga.seed_genomes[0] == SEEDED
    from polymodal.fusion import FusionSpec

    assert FusionSpec.from_json(first["genome"]) == FusionSpec.from_dict(SEEDED)
    assert all(r["origin"] == "random" for r in hist[1:])
    bad = {"nodes": [{"name": "m", "inputs": ["a.out"], "op": "nope", "width": 8}]}
    with pytest.raises(ConfigError, match=r"ga.seed_genomes.*seed_genomes\[0\]:.*nope.*allowed") as e:
        validate_search_config(search_toy.config(**{"ga.seed_genomes": [bad]}))
    assert "\n" not in str(e.value)


def test_paired_cold_is_the_same_candidate_trained_without_its_inherited_weights(tmp_path) -> None:
    from polymodal.search.evaluate import Job, evaluate_job
    from polymodal.search.loop import prepare

    raw = search_toy.config(**{"candidate.paired_cold": True, "candidate.hopeless_after": None})
    cfg = validate_search_config(raw)
    hist = history(raw, tmp_path / "p")
    warm = [r for r in hist if r["status"] == "ok" and r["inherited"]]
    assert warm and all(r["cold"] is None for r in hist if r["status"] == "ok" and not r["inherited"])
    _, ctx, _ = prepare(cfg, quiet=True)
    for r in warm[:3]:
        again, _ = evaluate_job(ctx, Job(r["id"], r["genome"], r["seed"]))  # nothing inherited
        assert (again["steps"], again["steps_to_target"], again["accuracy"]) == (
            r["cold"]["steps"],
            r["cold"]["steps_to_target"],
            r["cold"]["accuracy"],
        )
