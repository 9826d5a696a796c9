"""The genetic algorithm: plan a generation (sample / select, cross over, mutate), commit its results.

Generation 0 (and every generation of ``strategy: random``) is ``population`` distinct random
genomes (a GA's generation 0 opens with ``seed_genomes``, e.g. hand-made fusions, then random
ones). Afterwards: the ``elite`` fittest of the population carry over unevaluated ("keep the best");
every other slot is a child of tournament-selected parents (``tournament`` drawn, the fittest wins;
a failed candidate has fitness -inf), a crossover with probability ``crossover``, then
1..``mutations`` mutations (at least one unless it is a crossover), repaired. A child equal to a
genome already evaluated or planned is drawn again (then sampled at random); a duplicate left after
40 tries takes the earlier record without training (``memo_of``).

Everything a generation needs is fixed when it is planned — genomes, training seeds, the block keys
to inherit (warm start: the weight cache as the previous generation left it), the hopeless
threshold — and saved in the state before any candidate runs; results are committed in id order.
So the outcome does not depend on the backend, the order candidates finish in, or a kill.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from polymodal.fusion.spec import FusionSpec
from polymodal.search.cache import WeightCache
from polymodal.search.config import SearchConfig
from polymodal.search.evaluate import block_keys
from polymodal.search.features import Context
from polymodal.search.space import Space, crossover, mutate, sample, used_modalities

TRIES = 40


def fitness(rec: dict[str, Any]) -> float:
    return rec["fitness"] if rec.get("status") == "ok" and rec.get("fitness") is not None else float("-inf")


def ranked(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fittest first; ties by id (the earlier candidate wins), so the order is total."""
    return sorted(records, key=lambda r: (-fitness(r), r["id"]))


def best(state: dict[str, Any]) -> dict[str, Any] | None:
    ok = [r for r in state["history"] if fitness(r) > float("-inf")]
    return ranked(ok)[0] if ok else None


def train_seed(seed: int, cid: str) -> int:
    return int(hashlib.sha256(f"{seed}:{cid}".encode()).hexdigest()[:8], 16)


def _tournament(pop: list[dict[str, Any]], k: int, rng: random.Random) -> dict[str, Any]:
    return ranked(rng.sample(pop, min(k, len(pop))))[0]


def _child(pop: list[dict[str, Any]], cfg: SearchConfig, space: Space, rng: random.Random) -> tuple:
    ga = cfg.ga
    a = _tournament(pop, ga.tournament, rng)
    spec, parents, origin = FusionSpec.from_json(a["genome"]), [a["id"]], []
    if len(pop) > 1 and rng.random() < ga.crossover:
        b = _tournament([r for r in pop if r["id"] != a["id"]], ga.tournament, rng)
        spec = crossover(spec, FusionSpec.from_json(b["genome"]), space, rng)
        parents, origin = [a["id"], b["id"]], ["crossover"]
    if not origin or rng.random() < 0.5:
        spec, names = mutate(spec, space, rng, rng.randint(1, ga.mutations))
        origin += names
    return spec, parents, "+".join(origin) or "copy"


def _novel(make: Any, seen: set[str], space: Space, rng: random.Random) -> tuple[FusionSpec, list[str], str]:
    for i in range(TRIES):
        spec, parents, origin = make() if i < TRIES // 2 else (sample(space, rng), [], "random")
        if spec.to_json() not in seen:
            return spec, parents, origin
    return spec, parents, origin


def plan(
    state: dict[str, Any], cfg: SearchConfig, space: Space, ctx: Context, cache: WeightCache
) -> dict[str, Any]:
    """The next generation, fully determined (see the module docstring)."""
    g = state["generation"]
    rng = random.Random(f"{cfg.seed}:{g}")
    by_id = {r["id"]: r for r in state["history"]}
    seen = set(by_id[i]["genome"] for i in by_id)
    pop = [by_id[i] for i in state["population"]]
    ga = cfg.ga
    if g == 0 or ga.strategy == "random" or not any(fitness(r) > float("-inf") for r in pop):
        elites, make = [], lambda: (sample(space, rng), [], "random")
    else:
        elites = [r["id"] for r in ranked(pop)[: ga.elite] if fitness(r) > float("-inf")]
        make = lambda: _child(pop, cfg, space, rng)  # noqa: E731
    top = best(state)
    threshold = cfg.candidate.hopeless_fraction * top["fitness"] if top is not None else None
    seeded = [FusionSpec.from_dict(d) for d in ga.seed_genomes] if g == 0 and ga.strategy == "ga" else []
    candidates = []
    for i in range(ga.population - len(elites)):
        if i < len(seeded) and seeded[i].to_json() not in seen:
            spec, parents, origin = seeded[i], [], "seeded"
        else:
            spec, parents, origin = _novel(make, seen, space, rng)
        seen.add(spec.to_json())
        cid = f"g{g:03d}-c{i:02d}"
        inherit = [k for k in block_keys(ctx, spec) if k in cache] if cfg.cache.warm_start else []
        cache.touch(inherit, g)
        memo = next((r["id"] for r in state["history"] if r["genome"] == spec.to_json()), None)
        candidates.append(
            {
                "id": cid,
                "generation": g,
                "genome": spec.to_json(),
                "parents": parents,
                "origin": origin,
                "seed": train_seed(cfg.seed, cid),
                "inherit": inherit,
                "memo_of": memo,
                "uses": used_modalities(spec),
            }  # fmt: skip
        )
    return {"generation": g, "elites": elites, "candidates": candidates, "hopeless_below": threshold}


def commit(
    state: dict[str, Any], results: dict[str, tuple[dict[str, Any], dict[str, Any]]], cache: WeightCache,
    cfg: SearchConfig,
) -> list[str]:  # fmt: skip
    """Fold a finished generation into the state (in id order); returns the ids committed."""
    gen = state["pending"]
    ids = [c["id"] for c in gen["candidates"]]
    for c in gen["candidates"]:
        record, blocks = results[c["id"]]
        rec = {**{k: v for k, v in c.items() if k != "inherit"}, **record}
        state["history"].append(rec)
        t = state["totals"]
        t["evaluated"] += 1
        t["failed"] += rec["status"] != "ok"
        t["steps"] += int(rec.get("steps") or 0)
        t["seconds"] += float(rec.get("seconds") or 0.0)
        if cfg.cache.warm_start and rec["status"] == "ok":
            for key in sorted(blocks):
                cache.offer(key, blocks[key], rec["fitness"], c["id"], gen["generation"])
    cache.bound()
    state["population"] = list(gen["elites"]) + ids
    if cfg.ga.strategy == "random":  # the population is the best seen so far (for the report only)
        state["population"] = [r["id"] for r in ranked(state["history"])[: cfg.ga.population]]
    state["generation"] = gen["generation"] + 1
    state["pending"] = None
    state["cache"] = cache.index
    return ids
