"""The lecture's intermediate-fusion techniques as fusion strategies on AV-MNIST, 3 seeds, beside the
existing fusions.

    nice -n 10 python benchmarks/fusion_techniques.py [--seeds 0 1 2] [--parallel 2] [--steps 500]

Per seed: train the unimodal models (configs/avmnist_image.yaml, avmnist_audio.yaml); read every stage
of the two trained encoders on 1000 paired training examples; let each strategy of
`polymodal.fusion.strategies` emit its `FusionSpec` (written as a config under RUNS/configs/, so
`polymodal train` runs it); train it the same way (500 steps), from scratch or, for
``similarity_merge``, from the trained unimodal encoders (a step-0 checkpoint the run resumes).
Evaluates with every modality and without each one. Writes benchmarks/results/fusion_techniques.{md,json};
the existing fusions' rows come from benchmarks/results/fusion_avmnist.json (same data bytes, steps and
seeds).

    python benchmarks/fusion_techniques.py --warm RUN --config CFG --init image=RUN_A --init audio=RUN_B

trains one warm-started run (what the benchmark does for ``similarity_merge``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, mean_std  # noqa: E402
from fusion_avmnist import pool, used_parameters  # noqa: E402

BASE = REPO / "configs" / "avmnist_mid_concat.yaml"  # training settings every fused row shares
UNIMODAL = {"image": "avmnist_image", "audio": "avmnist_audio"}
OUTPUTS = ["image.out", "audio.out"]
N_PAIRS = 1000  # paired training examples the similarities are measured on
CITES = {
    "autoencoder": "multimodal stacked denoising autoencoder, shared code before the heads "
    "(Ngiam et al. 2011; Ding & Tao 2015)",
    "correlated_early": "most CCA-correlated hidden stages fused early, outputs at the top "
    "(Neverova et al. 2016)",
    "similarity_merge": "each modality trained fully, merged at the most CKA-similar stages, "
    "trained on from the unimodal weights (Lu & Xu 2018 style)",
}
EXISTING = [  # rows of fusion_avmnist.json shown for comparison
    "early (stage1 concat)",
    "intermediate (stage2/3 flattened, concat)",
    "intermediate (chained: stage1/2 concat, then gated)",
    "late (mean of logits)",
    "late (learned weights)",
    "low-rank tensor fusion",
]


def encoder_state(run: Path, key: str) -> dict[str, torch.Tensor]:
    from polymodal.engine.rundir import RunDir

    state = RunDir(run).load_checkpoint()["model"]
    prefix = f"encoders.{key}."
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def warm_train(run: Path, config: str, init: dict[str, Path]) -> None:
    """Build the run, load the trained unimodal encoders, save that as its step-0 checkpoint, resume."""
    from polymodal.config import load_config
    from polymodal.engine.run import build_run, state_dict
    from polymodal.engine.rundir import RunDir
    from polymodal.engine.trainer import train
    from polymodal.fusion.strategies import warm_start

    cfg, rd = load_config(config), RunDir(run)
    built = build_run(cfg, rd)
    warm_start(built.model, {k: encoder_state(r, k) for k, r in init.items()})
    rd.write_config(cfg)
    rd.save_checkpoint({**state_dict(built, 0), "elapsed": 0.0})
    train(cfg, rd, resume=True, quiet=True)


def activations(image_run: Path, audio_run: Path) -> dict[str, torch.Tensor]:
    from polymodal.engine.evaluate import load_run
    from polymodal.fusion.strategies import stage_activations

    runs = {"image": load_run(image_run), "audio": load_run(audio_run)}
    data, views = runs["image"].data, runs["image"].views
    rows = torch.randperm(len(data.labeled), generator=torch.Generator().manual_seed(0))[:N_PAIRS]
    batch = views(data.labeled.batch(rows), "clean", torch.Generator().manual_seed(0))
    return stage_activations({m: r.model.encoders[m] for m, r in runs.items()}, batch)


def save_choice(choice, path: Path) -> None:  # noqa: ANN001 - a polymodal.fusion.strategies.Choice
    scores = [[a, b, v] for (a, b), v in (choice.scores or {}).items()]
    raw = {
        "spec": choice.spec.to_dict(),
        "warm_start": choice.warm_start,
        "pair": choice.pair,
        "scores": scores,
    }
    path.write_text(json.dumps(raw, indent=1))


def load_choice(path: Path):  # noqa: ANN201
    from polymodal.fusion import FusionSpec
    from polymodal.fusion.strategies import Choice

    raw = json.loads(path.read_text())
    scores = {(a, b): v for a, b, v in raw["scores"]} or None
    pair = tuple(raw["pair"]) if raw["pair"] else None
    return Choice(FusionSpec.from_dict(raw["spec"]), raw["warm_start"], pair, scores)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_fusion_techniques"))
    ap.add_argument("--warm", help="train one warm-started run into this folder (with --config, --init)")
    ap.add_argument("--config")
    ap.add_argument("--init", action="append", default=[], help="ENCODER=RUN: take that encoder from RUN")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.warm:
        return warm_train(
            Path(args.warm), args.config, dict((k, Path(v)) for k, v in (i.split("=") for i in args.init))
        )
    from polymodal.fusion.strategies import STRATEGIES, choose

    out = Path(args.out)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    if not (out / "started.txt").is_file():
        (out / "started.txt").write_text(f"{time.time():.0f}\n")
    t0 = float((out / "started.txt").read_text())
    cli = [sys.executable, "-m", "polymodal.cli"]
    steps = [f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}"]

    def train_cmd(config: Path, run: Path, seed: int) -> list[str]:
        sets = [f"seed={seed}", *steps]
        return [
            *cli,
            "train",
            str(config),
            "--out",
            str(run),
            "--quiet",
            *[a for s in sets for a in ("--set", s)],
        ]

    first = []
    for seed in args.seeds:
        for cfg in UNIMODAL.values():
            first.append(
                (
                    out / f"{cfg}-s{seed}",
                    train_cmd(REPO / "configs" / f"{cfg}.yaml", out / f"{cfg}-s{seed}", seed),
                    None,
                )
            )
    pool(first, args.parallel)
    jobs, choices = [], {}
    for seed in args.seeds:
        uni = {m: out / f"{c}-s{seed}" for m, c in UNIMODAL.items()}
        acts = None
        for name in STRATEGIES.names():
            saved = out / "configs" / f"{name}-s{seed}.json"  # the choice, kept: measuring is slow
            if saved.is_file():
                choice = load_choice(saved)
            else:
                acts = acts if acts is not None else activations(uni["image"], uni["audio"])
                choice = choose(name, acts, OUTPUTS)
                save_choice(choice, saved)
            raw = yaml.safe_load(BASE.read_text())
            raw["seed"] = seed
            raw["train"].update(steps=args.steps, checkpoint_every=args.steps)
            raw["model"]["fusion"] = choice.spec.to_dict()
            config = out / "configs" / f"{name}-s{seed}.yaml"
            config.write_text(
                f"# emitted by fusion strategy '{name}' ({CITES[name]})\n"
                + yaml.safe_dump(raw, sort_keys=False)
            )
            run = out / f"{name}-s{seed}"
            if choice.warm_start:
                init = [a for m, r in uni.items() for a in ("--init", f"{m}={r}")]
                cmd = [sys.executable, __file__, "--warm", str(run), "--config", str(config), *init]
            else:
                cmd = [
                    *cli,
                    "train",
                    str(config),
                    "--out",
                    str(run),
                    "--quiet",
                    "--set",
                    f"train.steps={args.steps}",
                    "--set",
                    f"train.checkpoint_every={args.steps}",
                ]
            jobs.append((run, cmd, None))
            choices[(name, seed)] = choice
    pool(jobs, args.parallel)
    report(out, args, choices, time.time() - t0)


def report(out: Path, args: argparse.Namespace, choices: dict, wall: float) -> None:
    from polymodal.engine.evaluate import evaluate_run

    def evaluate(name: str, runs: list[Path]) -> dict:
        res = [evaluate_run(r) for r in runs]
        acc = lambda case: [100 * x[case]["digit"]["accuracy"] for x in res if case in x]  # noqa: E731
        return {
            "accuracy": acc("all"),
            "without_image": acc("without_image"),
            "without_audio": acc("without_audio"),
            "parameters": used_parameters(runs[0]),
            "seconds": [json.loads((r / "summary.json").read_text())["seconds"] for r in runs],
        }

    rows: dict[str, dict] = {}
    for cfg in UNIMODAL.values():
        rows[cfg] = evaluate(cfg, [out / f"{cfg}-s{s}" for s in args.seeds])
    for name in sorted({n for n, _ in choices}):
        rows[name] = evaluate(name, [out / f"{name}-s{s}" for s in args.seeds])
        picked = [choices[(name, s)] for s in args.seeds]
        rows[name]["pairs"] = [list(c.pair) if c.pair else None for c in picked]
        rows[name]["pair_scores"] = [c.scores[c.pair] if c.pair else None for c in picked]
        rows[name]["warm_start"] = picked[0].warm_start
        rows[name]["spec"] = picked[0].spec.to_dict()
    seed0 = {
        n: {f"{a} × {b}": v for (a, b), v in (choices[(n, args.seeds[0])].scores or {}).items()}
        for n in ("correlated_early", "similarity_merge")
    }
    write(rows, seed0, args, wall)


def write(rows: dict, seed0: dict, args: argparse.Namespace, wall: float) -> None:
    m = lambda v: mean_std(v) if v else "—"  # noqa: E731
    old = json.loads((REPO / "benchmarks" / "results" / "fusion_avmnist.json").read_text())["rows"]
    lines = [
        "# Fusion techniques on AV-MNIST (fusion strategies)",
        "",
        f"Machine: {machine()}. Command: `nice -n 10 python benchmarks/fusion_techniques.py --seeds "
        f"{' '.join(map(str, args.seeds))} --parallel {args.parallel} --steps {args.steps}`. "
        f"Wall time: {wall / 60:.1f} min from the first invocation (finished runs are kept), other jobs "
        "sharing the 2 cores.",
        "",
        "Each strategy (`polymodal.fusion.strategies`) emits a `FusionSpec` from the seed's trained unimodal "
        f"encoders (activations of every stage on {N_PAIRS} paired training examples, flattened); the spec "
        "is written as a config (`runs/bench_fusion_techniques/configs/`) and trained like every other row: "
        f"{args.steps} steps of batch 64, AdamW lr 3e-3 cosine, modality dropout 0.3 independent, 1 thread, "
        "no augmentation, all 20000 labels (the settings of configs/avmnist_mid_concat.yaml). "
        "`similarity_merge` starts from the trained unimodal encoders (its cost is its own row plus the two "
        "unimodal rows). Test accuracy %, mean ± std over seeds "
        f"{', '.join(map(str, args.seeds))}. *Parameters*: weights that get a gradient at inference.",
        "",
        "| model | chosen stages (similarity, per seed) | warm start | test accuracy % | without image % "
        "| without audio % | parameters | train time s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"avmnist_image": "image only (rerun)", "avmnist_audio": "audio only (rerun)"}
    for key, r in rows.items():
        label = names.get(key) or f"**{key}**: {CITES[key]}"
        pairs = (
            "; ".join(
                f"{' + '.join(p)} ({s:.3f})" for p, s in zip(r["pairs"], r["pair_scores"], strict=True) if p
            )
            if r.get("pairs") and r["pairs"][0]
            else "—"
        )
        if key == "autoencoder":
            pairs = "image.out + audio.out (fixed)"
        lines.append(
            f"| {label} | {pairs} | {'yes' if r.get('warm_start') else 'no'} | {m(r['accuracy'])} | "
            f"{m(r['without_image'])} | {m(r['without_audio'])} | {r['parameters']:,} | "
            f"{statistics.mean(r['seconds']):.0f} |"
        )
    lines += [
        "",
        "Existing fusions ([fusion_avmnist.md](fusion_avmnist.md), same data bytes, steps and seeds):",
        "",
        "| model | test accuracy % | without image % | without audio % |",
        "|---|---|---|---|",
    ]
    for n in EXISTING:
        r = old[n]
        lines.append(f"| {n} | {m(r['accuracy'])} | {m(r['without_image'])} | {m(r['without_audio'])} |")
    for n, table in seed0.items():
        measure = (
            "CCA (mean of the top 10 canonical correlations, SVCCA)"
            if n == "correlated_early"
            else "linear CKA"
        )
        lines += [
            "",
            f"{measure} of the trained unimodal stages, seed {args.seeds[0]} (what `{n}` chose from):",
            "",
            "| image stage × audio stage | similarity |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.3f} |" for k, v in sorted(table.items(), key=lambda kv: -kv[1])]
    res = REPO / "benchmarks" / "results"
    (res / "fusion_techniques.md").write_text("\n".join(lines) + "\n")
    (res / "fusion_techniques.json").write_text(
        json.dumps({"rows": rows, "similarity_seed0": seed0, "wall_s": wall}, indent=1)
    )


if __name__ == "__main__":
    main()
