"""Fusion architecture search benchmark: GA (warm start) vs GA (cold) vs random search vs the best
hand-made AV-MNIST fusion, at the same budget of training steps; then 4 modalities with a distractor.

    nice -n 10 python benchmarks/fusion_search.py [--seeds 0 1 2] [--parallel 2] [--budget 3000]

1. AV-MNIST, per search seed: ``polymodal search configs/search_avmnist.yaml`` as ``ga`` with the
   weight cache (warm), ``ga`` without it (cold) and ``random`` (warm), each stopped after the
   generation in which it has spent ``--budget`` training steps.
2. The same retraining protocol for every genome (`polymodal.search.retrain.retrain`: the pretrained
   frozen encoders, fusion weights fresh, ``--retrain-steps`` steps, test split): each search's best,
   and the best hand-made fusion of benchmarks/results/fusion_avmnist.md (intermediate concat of
   flattened image.stage2 + audio.stage3, width 128, trunk [64]) with the same seeds.
3. End to end: the GA's best genome (best validation fitness over the warm GA searches) trained by
   `polymodal train` exactly like the hand-made table (500 steps, encoders from scratch), one run per
   ``--engine-seeds``, against that table's 3-seed mean.
4. AV-MNIST4 (image, audio, image2 = the same digit occluded, distractor = another row's digit):
   ``configs/search_avmnist4.yaml`` per seed; how often the top genomes read the distractor, and the
   best genome's test accuracy vs concatenating all four modalities (same retraining protocol).

Finished searches and runs are kept (with the command that made them), so an interrupted benchmark
continues. Writes benchmarks/results/fusion_search.{md,json,png}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, mean_std  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SCRATCH = ["pretrain.mode=finetune", "pretrain.steps=0"]
PAIRED = "candidate.paired_cold=true"  # candidates train their encoders from random init
VARIANTS = {  # name -> (config, overrides, which seeds: --seeds, --four-seeds or --scratch-seeds)
    "ga-warm": ("search_avmnist", ["ga.strategy=ga", "cache.warm_start=true"], "seeds"),
    "scratch-warm": (
        "search_avmnist",
        ["ga.strategy=ga", "cache.warm_start=true", *SCRATCH],
        "scratch_seeds",
    ),
    "scratch-cold": (
        "search_avmnist",
        ["ga.strategy=ga", "cache.warm_start=false", *SCRATCH],
        "scratch_seeds",
    ),
    "ga-cold": ("search_avmnist", ["ga.strategy=ga", "cache.warm_start=false"], "seeds"),
    "random": ("search_avmnist", ["ga.strategy=random", "cache.warm_start=true"], "seeds"),
    "ga-seeded": ("search_avmnist", ["ga.strategy=ga", "cache.warm_start=true", "SEEDED"], "seeds"),
    "ga4-warm": ("search_avmnist4", ["ga.strategy=ga", "cache.warm_start=true"], "four_seeds"),
    # the same searches as ga-warm / scratch-warm, each inheriting child also trained from fresh weights
    "ga-paired": ("search_avmnist", ["ga.strategy=ga", "cache.warm_start=true", PAIRED], "seeds"),
    "scratch-paired": (
        "search_avmnist",
        ["ga.strategy=ga", "cache.warm_start=true", *SCRATCH, PAIRED],
        "scratch_seeds",
    ),
}
HAND_MADE = {  # benchmarks/results/fusion_avmnist.md, best row: configs/avmnist_mid_concat.yaml
    "nodes": [
        {
            "name": "mid",
            "inputs": ["image.stage2", "audio.stage3"],
            "op": "concat",
            "pool": "flatten",
            "width": 128,
        }
    ],
    "trunk": [64],
}
ALL_CONCAT4 = {  # the same fusion over all four modalities
    "nodes": [
        {
            "name": "mid",
            "inputs": ["image.stage2", "audio.stage3", "image2.stage2", "distractor.stage2"],
            "op": "concat",
            "pool": "flatten",
            "width": 128,
        }
    ],
    "trunk": [64],
}
HAND_MADE_TABLE = "intermediate (stage2/3 flattened, concat)"
LATE_MEAN = {"nodes": [], "heads": ["image.out", "audio.out"], "decision": "mean"}  # decision-level fusion
SEEDS = "ga.seed_genomes=" + json.dumps([HAND_MADE, LATE_MEAN])  # ga-seeded: generation 0 opens with these


def run_jobs(jobs: list[tuple[Path, list[str]]], parallel: int) -> None:
    """``(folder, command)`` jobs, ``parallel`` at a time; a folder whose ``done.json`` exists and whose
    ``.cmd`` beside it matches the command is kept (a finished job's summary becomes its ``done.json``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    pending, running = [], []
    for out, cmd in jobs:
        key = out.parent / f"{out.name}.cmd"
        if (out / "done.json").is_file() and key.is_file() and json.loads(key.read_text()) == _key(cmd):
            print(f"reused {out.name}", flush=True)
        else:
            pending.append((out, cmd))
    while pending or running:
        while pending and len(running) < parallel:
            out, cmd = pending.pop(0)
            shutil.rmtree(out, ignore_errors=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            (out.parent / f"{out.name}.cmd").write_text(json.dumps(_key(cmd)))
            log = open(out.parent / f"{out.name}.log", "w")  # noqa: SIM115 - closed when the job ends
            running.append((out, subprocess.Popen(cmd, env=env, stdout=log, stderr=log), log, time.time()))
            print(f"started {out.name}", flush=True)
        for item in list(running):
            out, proc, log, t0 = item
            if proc.poll() is None:
                continue
            log.close()
            running.remove(item)
            if proc.returncode != 0:
                raise SystemExit(f"{out} failed; see {out.parent / (out.name + '.log')}")
            print(f"finished {out.name} in {time.time() - t0:.0f}s", flush=True)
            mark_done(out)
        time.sleep(0.5)


def _key(cmd: list[str]) -> list:
    """What makes two jobs the same: the command and the content of every YAML file it names."""
    files = [a for a in cmd if a.endswith(".yaml") and Path(a).is_file()]
    return [cmd, [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files]]


def search_cmd(config: str, sets: list[str], out: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "polymodal.cli",
        "search",
        str(REPO / "configs" / f"{config}.yaml"),
        "--out",
        str(out),
    ]
    return cmd + [a for s in sets for a in ("--set", s)] + ["--quiet"]


def mark_done(out: Path) -> None:
    """A search directory is done when its summary exists (``done.json`` is what `run_jobs` checks)."""
    if (out / "summary.json").is_file():
        shutil.copy(out / "summary.json", out / "done.json")


def baseline(args: argparse.Namespace) -> None:
    """``--baseline NAME --seed S --out DIR``: a hand-made genome through the retraining protocol."""
    import torch

    from polymodal.fusion import FusionSpec
    from polymodal.search import load_search_config
    from polymodal.search.loop import prepare
    from polymodal.search.retrain import retrain, test_context

    torch.set_num_threads(1)
    config, genome = {
        "hand_made": ("search_avmnist", HAND_MADE),
        "all_concat4": ("search_avmnist4", ALL_CONCAT4),
    }[args.baseline]
    cfg = load_search_config(
        REPO / "configs" / f"{config}.yaml", [f"seed={args.seed}", f"retrain.steps={args.retrain_steps}"]
    )
    space, ctx, encoders = prepare(cfg, quiet=True)
    spec = FusionSpec.from_dict(genome)
    res = retrain(cfg, spec, ctx, test_context(cfg, ctx, encoders), args.retrain_steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "done.json").write_text(json.dumps({"genome": spec.to_json(), "retrain": res}))


def warm_caches() -> None:
    """Pretrain the encoders and cache their stage tables once, before searches race to do it."""
    from polymodal.data import BUILDERS
    from polymodal.data.files import cache_dir, resolve_root
    from polymodal.search import load_search_config
    from polymodal.search.loop import prepare

    for name in ("avmnist", "avmnist4"):
        if not (cache_dir(name) / "SHA256SUMS").is_file():
            BUILDERS.get(name)(resolve_root(None))
    for config in ("search_avmnist", "search_avmnist4"):
        prepare(load_search_config(REPO / "configs" / f"{config}.yaml"), quiet=False)


def engine_jobs(args: argparse.Namespace, out: Path, bests: dict[str, dict]) -> list[tuple[Path, list[str]]]:
    """`polymodal train` of each genome in ``bests`` (name -> best record), once per ``--engine-seeds``."""
    from polymodal.fusion import FusionSpec
    from polymodal.search import load_search_config
    from polymodal.search.retrain import engine_config

    cfg = load_search_config(REPO / "configs" / "search_avmnist.yaml")
    jobs = []
    for name, best in bests.items():
        for seed in args.engine_seeds:
            raw = engine_config(cfg, FusionSpec.from_json(best["genome"]), "digit", seed, args.engine_steps)
            path = out / "engine" / f"{name}-s{seed}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(raw, sort_keys=False))
            run = out / "engine" / f"{name}-s{seed}"
            cmd = [sys.executable, "-m", "polymodal.cli", "train", str(path), "--out", str(run), "--quiet"]
            jobs.append((run, cmd))
    return jobs


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--four-seeds", type=int, nargs="+", default=None, help="AV-MNIST4 seeds (default: --seeds)"
    )
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--population", type=int, default=6)
    ap.add_argument("--budget", type=int, default=6000, help="training steps per search")
    ap.add_argument("--retrain-steps", type=int, default=500)
    ap.add_argument("--engine-steps", type=int, default=500)
    ap.add_argument("--engine-seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument(
        "--scratch-seeds", type=int, nargs="*", default=[0], help="warm vs cold, encoders from scratch"
    )
    ap.add_argument("--scratch-budget", type=int, default=2500)
    ap.add_argument("--rewrite", action="store_true", help="re-render the results from the saved runs")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_fusion_search"))
    ap.add_argument("--baseline", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return ap.parse_args()


def seeds_of(args: argparse.Namespace, group: str) -> list[int]:
    if group == "four_seeds" and args.four_seeds is None:
        return args.seeds
    return getattr(args, group)


def search_jobs(args: argparse.Namespace, out: Path, four: list[int]) -> list[tuple[Path, list[str]]]:
    """The warm GA searches first (the end-to-end runs wait for them), then the others and the baselines."""
    common = [
        f"ga.population={args.population}",
        "ga.generations=1000",
        f"ga.budget_steps={args.budget}",
        f"retrain.steps={args.retrain_steps}",
        "retrain.engine_steps=0",
    ]
    jobs = []
    for name, (config, sets, group) in VARIANTS.items():
        budget = [f"ga.budget_steps={args.scratch_budget}"] if group == "scratch_seeds" else []
        for seed in seeds_of(args, group):
            d = out / f"{name}-s{seed}"
            sets = [SEEDS if x == "SEEDED" else x for x in sets]
            jobs.append((d, search_cmd(config, [*sets, *common, *budget, f"seed={seed}"], d)))
    me = [sys.executable, str(Path(__file__).resolve()), "--retrain-steps", str(args.retrain_steps)]
    for name, seeds in (("hand_made", args.seeds), ("all_concat4", four)):
        for seed in seeds:
            d = out / f"{name}-s{seed}"
            jobs.append((d, [*me, "--baseline", name, "--seed", str(seed), "--out", str(d)]))
    return jobs


def best_of(out: Path, name: str, seeds: list[int]) -> dict:
    """The answer of the search seed whose answer scored best on validation (finalists' score)."""
    summaries = [json.loads((out / f"{name}-s{s}" / "summary.json").read_text()) for s in seeds]
    score = lambda s: s["retrain"].get("finalists", {}).get("score", s["best"]["fitness"])  # noqa: E731
    return max(summaries, key=score)["best"]


def main() -> None:
    args = parse()
    if args.baseline:
        return baseline(args)
    out = Path(args.out)
    if args.rewrite:  # no training: the saved runs, the wall time of the pass that made them
        old = json.loads((RESULTS / "fusion_search.json").read_text())
        return write(collect(args, out), args, old["wall_s"])
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "started.txt").is_file():  # wall time counts from the first invocation
        (out / "started.txt").write_text(f"{time.time():.0f}\n")
    t0 = float((out / "started.txt").read_text())
    warm_caches()
    four = args.four_seeds if args.four_seeds is not None else args.seeds
    jobs = search_jobs(args, out, four)
    for folder, _ in jobs:
        mark_done(folder)
    first = [j for j in jobs if j[0].name.rsplit("-s", 1)[0] in ("ga-warm", "ga-seeded", "scratch-warm")]
    run_jobs(first, args.parallel)  # phase 1: the searches whose best genomes are trained end to end
    bests = {
        "ga-best": best_of(out, "ga-warm", args.seeds),
        "seeded-best": best_of(out, "ga-seeded", args.seeds),
        "scratch-best": best_of(out, "scratch-warm", args.scratch_seeds),
    }
    engine = engine_jobs(args, out, bests)
    for run, _ in engine:
        mark_done(run)
    run_jobs(engine + [j for j in jobs if j not in first], args.parallel)  # phase 2
    write(collect(args, out), args, time.time() - t0)


def collect(args: argparse.Namespace, out: Path) -> dict:
    from polymodal.search.report import steps_to_level

    four = args.four_seeds if args.four_seeds is not None else args.seeds
    bests = {
        "ga-best": best_of(out, "ga-warm", args.seeds),
        "seeded-best": best_of(out, "ga-seeded", args.seeds),
        "scratch-best": best_of(out, "scratch-warm", args.scratch_seeds),
    }
    res: dict = {"searches": {}, "baselines": {}, "engine": {}, "bests": bests}
    for name, (_, _, group) in VARIANTS.items():
        for seed in seeds_of(args, group):
            d = out / f"{name}-s{seed}"
            summary = json.loads((d / "summary.json").read_text())
            hist = json.loads((d / "state.json").read_text())["history"]
            res["searches"][f"{name}-s{seed}"] = {"summary": summary, "history": hist}
    for w, c, group in (("ga-warm", "ga-cold", "seeds"), ("scratch-warm", "scratch-cold", "scratch_seeds")):
        for seed in seeds_of(args, group):
            warm, cold = res["searches"][f"{w}-s{seed}"], res["searches"][f"{c}-s{seed}"]
            level = min(fittest(warm["history"]), fittest(cold["history"]))
            spent = {v: steps_to_level(r["history"], level) for v, r in (("warm", warm), ("cold", cold))}
            warm["to_level"] = {"level": level, **spent}
    for name, seeds in (("hand_made", args.seeds), ("all_concat4", four)):
        res["baselines"][name] = [json.loads((out / f"{name}-s{s}" / "done.json").read_text()) for s in seeds]
    for name in bests:
        for seed in args.engine_seeds:
            s = json.loads((out / "engine" / f"{name}-s{seed}" / "summary.json").read_text())
            res["engine"].setdefault(name, []).append(
                {"seed": seed, "test_accuracy": s["test"]["digit"]["accuracy"], "seconds": s["seconds"]}
            )
    table = json.loads((RESULTS / "fusion_avmnist.json").read_text())["rows"][HAND_MADE_TABLE]
    res["hand_made_table"] = table["accuracy"]
    return res


def _mean(v: list[float]) -> float:
    return statistics.mean(v) if v else float("nan")


def _of(S: dict, name: str) -> list[dict]:
    return [v["summary"] for k, v in S.items() if k.rsplit("-s", 1)[0] == name]


def _acc(S: dict, name: str) -> list[float]:
    return [100 * s["retrain"]["pretrained"]["test_accuracy"] for s in _of(S, name)]


def fittest(history: list[dict]) -> float:
    """A search's best validation fitness (its answer may be another finalist, see retrain.finalists)."""
    return max(r["fitness"] for r in history if r["status"] == "ok")


def trajectory(history: list[dict]) -> str:
    """Each new best fitness, at the training steps the search had spent by then."""
    spent, top, out = 0, float("-inf"), []
    for r in sorted(history, key=lambda r: r["id"]):
        spent += int(r.get("steps") or 0)
        if r["status"] == "ok" and r["fitness"] > top:
            top = r["fitness"]
            out.append(f"{top:.4f} at {spent:,}")
    return ", ".join(out)


def _fit(S: dict, name: str) -> str:
    v = [fittest(h["history"]) for k, h in S.items() if k.rsplit("-s", 1)[0] == name]
    return f"{_mean(v):.4f}" + (f" ± {statistics.stdev(v):.4f}" if len(v) > 1 else "")


def _search_rows(res: dict) -> list[str]:
    lines = [
        "| search | seed | candidates (failed) | training steps | best val fitness (the answer's) "
        "| test acc % (retrained) | best genome reads | where pairs meet |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, s in res["searches"].items():
        name, seed = key.rsplit("-s", 1)
        sm = s["summary"]
        b, t = sm["best"], sm["totals"]
        pairs = ", ".join(f"{p} {how}" for p, how in sm["pairings"].items()) or "—"
        lines.append(
            f"| {name} | {seed} | {t['evaluated']} ({t['failed']}) | {t['steps']:,} "
            f"| {fittest(s['history']):.4f} ({b['fitness']:.4f}) "
            f"| {100 * sm['retrain']['pretrained']['test_accuracy']:.2f} | {', '.join(b['modalities'])} "
            f"| {pairs} |"
        )
    return lines


def _distractor(res: dict) -> tuple[list[str], dict]:
    """Per AV-MNIST4 search: how many of the top 10 (and the best) read the distractor."""
    lines, stats = [], {"top10_with": 0, "top10": 0, "best_with": 0, "best": 0}
    for key, s in res["searches"].items():
        if not key.startswith("ga4"):
            continue
        every = [r for r in s["history"] if r["status"] == "ok"]
        top = sorted(every, key=lambda r: (-r["fitness"], r["id"]))[:10]
        n = sum("distractor" in r["modalities"] for r in top)
        best, sm = s["summary"]["best"], s["summary"]
        stats["top10_with"] += n
        stats["top10"] += len(top)
        stats["best_with"] += "distractor" in best["modalities"]
        stats["best"] += 1
        share = sum("distractor" in r["modalities"] for r in every) / max(len(every), 1)
        pairs = ", ".join(f"{p} {h}" for p, h in sm["pairings"].items())
        lines.append(
            f"| {key.rsplit('-s', 1)[1]} | {n}/{len(top)} | {100 * share:.0f}% "
            f"| {', '.join(best['modalities'])} "
            f"| {pairs} | {100 * sm['retrain']['pretrained']['test_accuracy']:.2f} |"
        )
    return lines, stats


def _command(args: argparse.Namespace) -> str:
    j = lambda v: " ".join(map(str, v))  # noqa: E731
    cmd = (
        f"nice -n 10 python benchmarks/fusion_search.py --seeds {j(args.seeds)} --parallel {args.parallel} "
        f"--population {args.population} --budget {args.budget} --retrain-steps {args.retrain_steps} "
        f"--engine-steps {args.engine_steps} --engine-seeds {j(args.engine_seeds)} "
        f"--scratch-seeds {j(args.scratch_seeds)} --scratch-budget {args.scratch_budget}"
    )
    return cmd + (f" --four-seeds {j(args.four_seeds)}" if args.four_seeds is not None else "")


def _head(args: argparse.Namespace, wall: float) -> list[str]:
    return [
        "# Fusion architecture search (genetic algorithm, warm-started candidates)",
        "",
        f"Machine: {machine()}. Command: `{_command(args)}`. Wall time: {wall / 60:.1f} min from the first "
        "invocation (pretraining, every search, retraining and the end-to-end runs; finished parts are kept "
        "across invocations, so pauses count; other jobs shared the 2 cores).",
        "",
        "Every search: `configs/search_avmnist.yaml` (AV-MNIST) or `configs/search_avmnist4.yaml`, "
        f"population {args.population}, stopped after the generation in which it had spent "
        f"{args.budget:,} training steps "
        "(the same budget for GA and random search). Candidates train at most 200 steps on the frozen "
        "pretrained encoders' cached stages, with early stopping (plateau: 2 evaluations without +0.2 "
        "points; hopeless: below 0.8 x the best fitness from step 75). Fitness: validation accuracy on 10% "
        "carved from the training split (AV-MNIST4: minus 0.01 per modality read, 0.03 more per modality "
        "read but unused — its permutation importance, the validation accuracy lost when its rows are "
        "shuffled, below 0.5 points — and 0.02 per million parameters). Warm start: a child starts every "
        "block it shares *by position* with an evaluated candidate (`cache.match: position`, MFAS-like "
        "keys: a node by op, settings, the refs it reads and their widths; a trunk or head by what it "
        "reads) from the fittest one's trained weights. *The answer* of a search (`retrain.finalists: 3`): "
        f"its 3 fittest genomes, each retrained from scratch {args.retrain_steps} steps, the best on "
        f"validation (+{3 * args.retrain_steps:,} steps for every search alike, not in the steps column). "
        "*Test acc (retrained)*: that genome from scratch on the pretrained encoders (frozen; "
        "scratch-*: from random init, trained with it), fusion weights fresh, "
        f"{args.retrain_steps} steps, on the test split (which the search never sees). *ga-seeded*: the "
        "GA whose generation 0 opens with the best hand-made fusion and late (decision) fusion.",
        "",
    ]


def _comparison(res: dict, args: argparse.Namespace) -> list[str]:
    S, table = res["searches"], res["hand_made_table"]
    hand = [100 * x["retrain"]["test_accuracy"] for x in res["baselines"]["hand_made"]]
    lines = [
        "## GA vs random search vs hand-made (AV-MNIST, same budget, same retraining)",
        "",
        "| | best validation fitness | test accuracy % (retrained, pretrained encoders) |",
        "|---|---|---|",
        f"| GA, warm start | {_fit(S, 'ga-warm')} | {mean_std(_acc(S, 'ga-warm'))} |",
        f"| GA, cold | {_fit(S, 'ga-cold')} | {mean_std(_acc(S, 'ga-cold'))} |",
        f"| random search | {_fit(S, 'random')} | {mean_std(_acc(S, 'random'))} |",
        f"| GA, warm, seeded with the hand-made + late fusion | {_fit(S, 'ga-seeded')} "
        f"| {mean_std(_acc(S, 'ga-seeded'))} |",
        f"| best hand-made fusion (concat of flattened image.stage2 + audio.stage3) | — | {mean_std(hand)} |",
        "",
        f"End to end (`polymodal train`, encoders from scratch, {args.engine_steps} steps, seeds "
        f"{', '.join(map(str, args.engine_seeds))}: the protocol of [fusion_avmnist.md](fusion_avmnist.md), "
        f"whose best hand-made fusion reaches **{mean_std(table)} %**), the best genome of each kind of warm "
        "GA search:",
        "",
        "| genome | from | validation fitness in the search | end-to-end test accuracy % | vs hand-made |",
        "|---|---|---|---|---|",
    ]
    kinds = {
        "ga-best": "GA on frozen pretrained encoders (ga-warm)",
        "seeded-best": "GA seeded with hand-made genomes (ga-seeded)",
        "scratch-best": "GA, encoders from scratch (scratch-warm)",
    }
    genomes = []
    for name, b in res["bests"].items():
        eng = [100 * e["test_accuracy"] for e in res["engine"][name]]
        lines.append(
            f"| {name} ({b['id']}) | {kinds[name]} | {b['fitness']:.4f} | **{mean_std(eng)}** "
            f"| {_mean(eng) - _mean(table):+.2f} |"
        )
        genomes += [f"{name}:", "```json", json.dumps(json.loads(b["genome"])), "```"]
    return [*lines, "", *genomes, ""]


def _pair(S: dict, w: str, c: str, seeds: list[int]) -> tuple[list[str], list[str], str]:
    """Table rows (warm, cold), the per-seed levels and the steps-to-level ratio for one warm/cold pair.

    Per candidate after generation 0 (where warm start can act): mean training steps; the share that
    reached 85 % validation accuracy within its 200 steps; steps to 85 %, a candidate that never got
    there counted at 200 (a censored mean, so one that fails to get there does not vanish from it)."""
    cap = 200
    rows, levels, ratios = [], [], []
    for v in (w, c):
        later = [
            r
            for s in seeds
            for r in S[f"{v}-s{s}"]["history"]
            if r["status"] == "ok" and not r.get("memo_of") and r["generation"] > 0
        ]
        reach = [r["steps_to_target"] for r in later if r.get("steps_to_target") is not None]
        censored = [r["steps_to_target"] if r.get("steps_to_target") is not None else cap for r in later]
        inherited = _mean([r["inherited"] / max(r["blocks"], 1) for r in later])
        best = [fittest(S[f"{v}-s{s}"]["history"]) for s in seeds]
        rows.append(
            f"| {v} | {len(later)} | {_mean([r['steps'] for r in later]):.1f} | "
            f"{100 * len(reach) / max(len(later), 1):.0f}% | {_mean(censored):.1f} | "
            f"{inherited:.2f} | {_mean(best):.4f} |"
        )
    for s in seeds:
        lv = S[f"{w}-s{s}"]["to_level"]
        shared = lv["warm"] == lv["cold"] and lv["warm"] is not None
        levels.append(
            f"seed {s}: level {lv['level']:.4f}, warm {lv['warm']}, cold {lv['cold']}"
            + (
                f" (both reached it in the shared generation 0; best so far, warm: "
                f"{trajectory(S[f'{w}-s{s}']['history'])}; cold: {trajectory(S[f'{c}-s{s}']['history'])})"
                if shared
                else ""
            )
        )
        if lv["warm"] and lv["cold"]:
            ratios.append(lv["warm"] / lv["cold"])
    ratio = f"{_mean(ratios):.2f}" + (f" ± {statistics.stdev(ratios):.2f}" if len(ratios) > 1 else "")
    return rows, levels, ratio if ratios else "—"


def _paired(res: dict) -> list[str]:
    """Warm vs cold on the same children: each inheriting candidate of a warm search, and the same
    candidate trained from fresh weights (same seed, init and batches), steps censored at 200."""
    cap, out = 200, []
    regimes = {"ga-paired": "frozen pretrained encoders", "scratch-paired": "encoders from scratch"}
    for name, what in regimes.items():
        pairs = [
            r for k, v in res["searches"].items() if k.rsplit("-s", 1)[0] == name
            for r in v["history"] if r["status"] == "ok" and r.get("cold")
        ]  # fmt: skip
        if not pairs:
            continue
        to = lambda x: cap if x is None else x  # noqa: E731
        warm = _mean([to(r["steps_to_target"]) for r in pairs])
        cold = _mean([to(r["cold"]["steps_to_target"]) for r in pairs])
        reach_w = sum(r["steps_to_target"] is not None for r in pairs) / len(pairs)
        reach_c = sum(r["cold"]["steps_to_target"] is not None for r in pairs) / len(pairs)
        acc_w = _mean([r["accuracy"] for r in pairs])
        acc_c = _mean([r["cold"]["accuracy"] for r in pairs])
        out.append(
            f"| {what} ({name}) | {len(pairs)} | {warm:.1f} vs {cold:.1f} | **{warm / cold:.2f}** "
            f"| {100 * reach_w:.0f}% vs {100 * reach_c:.0f}% "
            f"| {_mean([r['steps'] for r in pairs]):.1f} vs {_mean([r['cold']['steps'] for r in pairs]):.1f} "
            f"| {100 * acc_w:.2f} vs {100 * acc_c:.2f} |"
        )
    return out


def _warm_cold(res: dict, args: argparse.Namespace) -> list[str]:
    S = res["searches"]
    frozen, lv_f, r_f = _pair(S, "ga-warm", "ga-cold", args.seeds)
    scratch, lv_s, r_s = _pair(S, "scratch-warm", "scratch-cold", args.scratch_seeds)
    return [
        "## Warm start vs cold (GA, AV-MNIST)",
        "",
        "Two regimes. *ga-*: the searches above (encoders pretrained and frozen: the big blocks are already "
        "trained, for warm and cold alike). *scratch-*: encoders not pretrained (`pretrain.steps=0`) and "
        "trained by every candidate (`pretrain.mode=finetune`), budget "
        f"{args.scratch_budget:,} steps, seed(s) {', '.join(map(str, args.scratch_seeds))}: the lecture's "
        "setting — cold, every candidate starts untrained; warm, a child starts its encoders and every "
        "other block it shares (by position) from the fittest candidate that had them. Warm and cold share "
        "generation 0 (same seed, nothing to inherit yet); the columns count the candidates after it.",
        "",
        "| search | candidates after gen 0 | mean steps / candidate | reached 85 % "
        "| steps to 85 % (censored at 200) | inherited block fraction "
        "| best fitness at the end (same budget) "
        "|",
        "|---|---|---|---|---|---|---|",
        *frozen,
        *scratch,
        "",
        "*Steps to level*: training steps a search spent until its best fitness reached the lower of the "
        "warm and cold searches' final best. Frozen: "
        + "; ".join(lv_f)
        + ". From scratch: "
        + "; ".join(lv_s)
        + f". **Warm / cold steps to level: {r_f} with frozen pretrained encoders, {r_s} from scratch** "
        "(acceptance: ≤ 0.5).",
        "",
        "The same children, warm vs cold (`candidate.paired_cold`: every candidate of the warm searches "
        "that inherited blocks is trained a second time from fresh weights, same seed, initialisation, "
        "batches and early stopping; the searches are the ones above, replayed). Steps to 85 % validation "
        "accuracy, censored at 200:",
        "",
        "| regime | children | steps to 85 %, warm vs cold | ratio | reached 85 % | steps trained "
        "(early stopping) | best validation accuracy % |",
        "|---|---|---|---|---|---|---|",
        *_paired(res),
        "",
    ]


def write(res: dict, args: argparse.Namespace, wall: float) -> None:
    S = res["searches"]
    concat4 = [100 * b["retrain"]["test_accuracy"] for b in res["baselines"]["all_concat4"]]
    d_lines, d = _distractor(res)
    lines = [
        *_head(args, wall),
        *_search_rows(res),
        "",
        *_comparison(res, args),
        *_warm_cold(res, args),
        "## Four modalities: AV-MNIST4 (image, audio, image2 redundant, distractor)",
        "",
        "| seed | top-10 genomes reading the distractor | share of all candidates reading it "
        "| best genome reads | where pairs meet | test acc % (retrained) |",
        "|---|---|---|---|---|---|",
        *d_lines,
        "",
        f"The distractor is in {d['top10_with']} of {d['top10']} top-10 genomes and in {d['best_with']} of "
        f"{d['best']} best genomes. Best genomes {mean_std(_acc(S, 'ga4-warm'))} % vs concatenating all four "
        f"modalities (the hand-made fusion over image, audio, image2, distractor, same protocol) "
        f"{mean_std(concat4)} %.",
        "",
        "![best fitness vs training steps](fusion_search.png)",
    ]
    (RESULTS / "fusion_search.md").write_text("\n".join(lines) + "\n")
    slim = {k: {"summary": v["summary"], "to_level": v.get("to_level")} for k, v in S.items()}
    keep = {**{k: v for k, v in res.items() if k != "searches"}, "searches": slim}
    (RESULTS / "fusion_search.json").write_text(
        json.dumps({**keep, "wall_s": wall, "command": _command(args)}, indent=1)
    )
    plot(res, RESULTS / "fusion_search.png")


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"ga-warm": 0, "ga-cold": 0, "random": 0, "ga-seeded": 0, "scratch-warm": 1, "scratch-cold": 1}
    panels["ga4-warm"] = 2
    colors = {"ga-warm": "C0", "ga-cold": "C1", "random": "C2", "ga-seeded": "C4", "scratch-warm": "C0"}
    colors["scratch-cold"] = "C1"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key, s in res["searches"].items():
        name = key.rsplit("-s", 1)[0]
        if name not in panels:  # the paired replays draw what ga-warm / scratch-warm draw
            continue
        spent, top, xs, ys = 0, float("-inf"), [], []
        for r in sorted(s["history"], key=lambda r: r["id"]):
            spent += int(r.get("steps") or 0)
            top = max(top, r["fitness"]) if r["status"] == "ok" else top
            if top > float("-inf"):
                xs.append(spent)
                ys.append(top)
        axes[panels[name]].plot(xs, ys, color=colors.get(name, "C3"), alpha=0.8, label=name)
    titles = ("AV-MNIST, frozen pretrained encoders", "AV-MNIST, encoders from scratch", "AV-MNIST4")
    for ax, title in zip(axes, titles, strict=True):
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        ax.legend(uniq.values(), uniq.keys())
        ax.set_xlabel("training steps spent by the search")
        ax.set_ylabel("best validation fitness so far")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
