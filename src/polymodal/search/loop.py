"""`run_search`: sample → evaluate → select, cross over, mutate → keep the best → repeat, resumable.

    polymodal search configs/search_avmnist.yaml --out runs/search   # a new search
    polymodal search --resume runs/search                            # continue after a kill

The state is written atomically before a generation runs (its plan) and after (its results), and
each candidate's record as it finishes, so a resumed search re-runs only the candidates of the
planned generation that had not finished, and ends with what an uninterrupted one would have.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from polymodal.errors import ConfigError
from polymodal.search.backends import BACKENDS
from polymodal.search.cache import WeightCache
from polymodal.search.config import SearchConfig
from polymodal.search.evaluate import Job
from polymodal.search.features import Context, build_context, encoder_stages
from polymodal.search.ga import best, commit, plan
from polymodal.search.space import Space, make_space
from polymodal.search.state import SearchDir, SearchProgress, new_state


def finished(state: dict[str, Any], cfg: SearchConfig) -> bool:
    if state["pending"] is not None:
        return False
    budget = cfg.ga.budget_steps
    return state["generation"] >= cfg.ga.generations or (
        budget is not None and state["totals"]["steps"] >= budget
    )


def _memo(c: dict[str, Any], state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A duplicate genome: the earlier record, with no training (0 steps, no blocks offered)."""
    old = next(r for r in state["history"] if r["id"] == c["memo_of"])
    keep = ("status", "reason", "fitness", "accuracy", "without", "importance", "params", "fusion_params")
    keep += ("modalities",)
    return {"id": c["id"], **{k: old.get(k) for k in keep}, "steps": 0, "seconds": 0.0, "inherited": 0}, {}


def run_generation(
    state: dict[str, Any], sd: SearchDir, backend: Any, cache: WeightCache, progress: SearchProgress
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Every candidate of the planned generation, reusing those already finished on disk."""
    gen = state["pending"]
    results: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    jobs = []
    for c in gen["candidates"]:
        found = sd.read_result(c["id"])
        if found is not None:
            results[c["id"]] = found
        elif c.get("memo_of"):
            results[c["id"]] = _memo(c, state)
        else:
            jobs.append(
                Job(c["id"], c["genome"], c["seed"], cache.states(c["inherit"]), gen["hopeless_below"])
            )
    if results:
        progress.note(
            f"generation {gen['generation'] + 1}: {len(results)} candidate(s) already finished, kept"
        )
    top = best(state)
    top_pair = [top["fitness"], top["id"]] if top else [float("-inf"), None]

    def done(record: dict[str, Any], blocks: dict[str, Any]) -> None:
        sd.write_result(record, blocks)
        results[record["id"]] = (record, blocks)
        if record["status"] == "ok" and record["fitness"] > top_pair[0]:
            top_pair[:] = [record["fitness"], record["id"]]
        failed = sum(r[0]["status"] != "ok" for r in results.values())
        steps = sum(int(r[0].get("steps") or 0) for r in results.values())
        progress.candidate(state, len(results), len(gen["candidates"]), failed, tuple(top_pair), steps)

    backend.run(jobs, done)
    return results


def prepare(cfg: SearchConfig, quiet: bool) -> tuple[Space, Context, dict]:
    space = make_space(cfg.space, encoder_stages(cfg))
    ctx, encoders = build_context(cfg, space.taps, quiet)
    return space, ctx, encoders


def run_search(
    cfg: SearchConfig | None, out: str | Path, resume: bool = False, quiet: bool = False, report: bool = True
) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) a search in ``out``; returns the summary (see `report`)."""
    sd = SearchDir(out)
    if resume:
        cfg, state = sd.read_config(), sd.read_state()
    else:
        if cfg is None:
            raise ConfigError("give a search config or resume a search directory")
        if cfg.backend.name not in BACKENDS:
            raise ConfigError(f"backend.name='{cfg.backend.name}': allowed: {', '.join(BACKENDS.names())}")
        sd.create(cfg)
        state = new_state(cfg)
    space, ctx, encoders = prepare(cfg, quiet)
    progress = SearchProgress(cfg, quiet)  # after pretraining: its ETA is the search's
    cache = WeightCache(sd.cache, cfg.cache, state["cache"])
    cache.gc()
    backend = BACKENDS.get(cfg.backend.name)(ctx, cfg.backend, sd.path)
    t0 = time.time()
    try:
        while not finished(state, cfg):
            if state["pending"] is None:
                state["pending"] = plan(state, cfg, space, ctx, cache)
                sd.write_state(state)
            results = run_generation(state, sd, backend, cache, progress)
            ids = commit(state, results, cache, cfg)
            state["wall_s"] = state.get("wall_s", 0.0) + time.time() - t0
            t0 = time.time()
            sd.write_state(state)
            cache.gc()
            sd.drop_blocks(ids)
    finally:
        backend.close()
    if not report:
        return {"best": best(state), "state": state}
    from polymodal.search.report import write_report

    return write_report(sd, cfg, state, space, ctx, encoders, quiet)
