"""The best genome retrained from scratch, then (only now) measured on the test split.

* ``retrain.steps``: on the search's pretrained encoders (frozen: their cached stages), every fusion
  weight freshly initialised (no inheritance), ``steps`` steps on the search's training rows, no early
  stopping; accuracy on the validation rows and on the test split, with every modality and without
  each one. Cheap, and the same protocol for any genome (the benchmark runs hand-made genomes
  through it too).
* ``retrain.finalists`` > 1: the search's answer is chosen, not just its fittest candidate. A
  candidate's fitness comes from at most ``candidate.steps`` steps with early stopping, on a
  validation split small enough that the top genomes differ by less than its noise; so the top
  ``finalists`` distinct genomes by fitness are each retrained as above, and the one with the best
  validation accuracy plus the penalties of its search fitness (fitness - accuracy: modalities,
  parameters, unused modalities) wins (ties: the fitter). Only validation rows choose; the test
  split is read for the winner's report only. It costs ``finalists`` x ``steps`` training steps.
* ``retrain.engine_steps``: end to end with the engine (`polymodal train`: encoders trained from
  scratch together with the fusion graph, on the whole training split), the protocol of
  benchmarks/fusion_avmnist.py, once per ``retrain.engine_seeds``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from polymodal.fusion import FusionModel
from polymodal.fusion.spec import FusionSpec
from polymodal.models.base import Encoder
from polymodal.search.config import SearchConfig
from polymodal.search.evaluate import Job, Trained, accuracy, build_candidate, train_candidate
from polymodal.search.features import Context, cached_tables, load_search_data, torch_threads
from polymodal.search.ga import train_seed


def test_context(cfg: SearchConfig, ctx: Context, encoders: dict[str, Encoder]) -> Context:
    """The test split as a context (``n_train = 0``: every row is an evaluation row)."""
    bundle, task = load_search_data(cfg)
    test = bundle.test
    if ctx.mode == "frozen":
        with torch_threads(ctx.candidate.threads):
            data = {
                m: cached_tables(encoders[m], ctx.encoders[m]["key"], "test", test.inputs[m], ctx.stages[m])
                for m in ctx.stages
            }
    else:
        data = {"inputs": {m: test.inputs[m] for m in ctx.stages}}
    return dataclasses.replace(ctx, data=data, targets=test.targets[task], n_train=0)


def fit_fresh(
    cfg: SearchConfig, spec: FusionSpec, ctx: Context, steps: int, seed: int | None = None
) -> tuple[FusionModel, dict[str, Any]]:
    """``spec`` from scratch for ``steps`` steps, no early stopping; the model and its validation
    accuracy (the test split is not read)."""
    c = ctx.candidate.model_copy(
        update={
            "steps": steps,
            "patience": None,
            "hopeless_after": None,
            "eval_every": steps,
            "time_limit_s": 1e9,
        }
    )
    rctx = dataclasses.replace(ctx, candidate=c)
    job = Job("retrain", spec.to_json(), train_seed(cfg.seed if seed is None else seed, "retrain"))
    t0 = time.perf_counter()
    with torch_threads(c.threads):
        torch.manual_seed(job.seed)
        model = build_candidate(rctx, spec)
        tr = train_candidate(model, rctx, job, t0, Trained())
        model.load_state_dict(tr.state)
        val = accuracy(model, rctx, rctx.val_rows)
    return model, {"steps": steps, "val_accuracy": val, "seconds": time.perf_counter() - t0}


def on_test(model: FusionModel, spec: FusionSpec, test: Context, fitted: dict[str, Any]) -> dict[str, Any]:
    """``fitted`` (from `fit_fresh`) with the test accuracy, with and without each modality."""
    t0 = time.perf_counter()
    with torch_threads(test.candidate.threads):
        tested = build_candidate(test, spec)
        tested.load_state_dict(model.state_dict())
        rows = torch.arange(len(test.targets))
        mods = list(model.encoders)
        return {
            "steps": fitted["steps"],
            "val_accuracy": fitted["val_accuracy"],
            "test_accuracy": accuracy(tested, test, rows),
            "test_without": {m: accuracy(tested, test, rows, drop=m) for m in mods} if len(mods) > 1 else {},
            "seconds": round(fitted["seconds"] + time.perf_counter() - t0, 2),
        }


def retrain(
    cfg: SearchConfig, spec: FusionSpec, ctx: Context, test: Context, steps: int, seed: int | None = None
) -> dict[str, Any]:
    """``spec`` from scratch for ``steps`` steps; validation and test accuracy (and without each modality)."""
    model, fitted = fit_fresh(cfg, spec, ctx, steps, seed)
    return on_test(model, spec, test, fitted)


def choose(cfg: SearchConfig, history: list[dict[str, Any]], ctx: Context, test: Context) -> dict[str, Any]:
    """The finalists (id, search fitness, retrained validation accuracy, score) and the winner's id
    and retrain result (see the module docstring); one finalist: the fittest, retrained. Only the
    winner is measured on the test split."""
    from polymodal.search.ga import fitness, ranked

    ok, seen = [], set()
    for r in ranked([r for r in history if fitness(r) > float("-inf") and not r.get("memo_of")]):
        if r["genome"] not in seen:
            seen.add(r["genome"])
            ok.append(r)
    rows = []
    for r in ok[: cfg.retrain.finalists]:
        spec = FusionSpec.from_json(r["genome"])
        model, fitted = fit_fresh(cfg, spec, ctx, cfg.retrain.steps)
        score = fitted["val_accuracy"] + (r["fitness"] - r["accuracy"])
        rows.append({"id": r["id"], "fitness": r["fitness"], "val_accuracy": fitted["val_accuracy"],
                     "score": score, "fitted": (model, spec, fitted)})  # fmt: skip
    win = max(rows, key=lambda x: x["score"])  # the first (fitter) of equal scores
    finalists = [{k: v for k, v in x.items() if k != "fitted"} for x in rows]
    model, spec, fitted = win["fitted"]
    return {"id": win["id"], "score": win["score"], "result": on_test(model, spec, test, fitted),
            "finalists": finalists, "steps": len(rows) * cfg.retrain.steps}  # fmt: skip


def engine_config(cfg: SearchConfig, spec: FusionSpec, task: str, seed: int, steps: int) -> dict[str, Any]:
    """A `polymodal train` config for ``spec``: only the encoders of the modalities it reads."""
    from polymodal.search.space import used_modalities

    mods = used_modalities(spec)
    return {
        "seed": seed,
        "method": "supervised",
        "data": {"name": cfg.data.name, "root": cfg.data.root, "tasks": [task], "batch_size": 64},
        "model": {
            "encoders": {m: dict(cfg.encoders[m]) for m in mods},
            "fusion": spec.to_dict(),
            "modality_dropout": cfg.retrain.modality_dropout if len(mods) > 1 else 0.0,
        },
        "train": {
            "steps": steps,
            "lr": 0.003,
            "optimizer": "adamw",
            "weight_decay": 1e-4,
            "eval_every": 10**9,
            "checkpoint_every": steps,
            "log_every": 100,
            "device": "auto",
            "threads": 1,
        },  # fmt: skip
    }


def retrain_engine(cfg: SearchConfig, spec: FusionSpec, task: str, out: Path, quiet: bool) -> list[dict]:
    """End to end with the engine, once per ``retrain.engine_seeds``; finished runs are reused."""
    import json

    from polymodal.config import build_config
    from polymodal.engine.trainer import train

    results = []
    for seed in cfg.retrain.engine_seeds:
        run = out / f"engine-s{seed}"
        if not (run / "summary.json").is_file():
            raw = engine_config(cfg, spec, task, seed, cfg.retrain.engine_steps)
            train(build_config(raw), run, quiet=quiet)
        s = json.loads((run / "summary.json").read_text())
        results.append({"seed": seed, "test_accuracy": s["test"][task]["accuracy"], "seconds": s["seconds"]})
    return results
