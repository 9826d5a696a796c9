"""Latent space transfer on AV-MNIST (image -> audio), 3 seeds: audio classified through the image model's
frozen head with 0 audio labels, against audio trained from scratch with all labels.

    nice -n 10 python benchmarks/transfer.py [--seeds 0 1 2] [--parallel 2]

Per seed, the image model (source) and the audio model from scratch (the baseline) are the seed's
unimodal runs of benchmarks/fusion_techniques.py (configs/avmnist_image.yaml, avmnist_audio.yaml: 500
steps, all 20000 labels; trained here if missing). `polymodal transfer
configs/transfer_image_to_audio_distill.yaml` then trains a fresh audio encoder on the paired,
unlabeled training split for 1500 steps by distilling the frozen image head's softened prediction
through the same head. On the first seed also: distillation plus 1 audio label per digit, and a control
for the longer schedule, audio from scratch with all labels for 1500 steps. Writes
benchmarks/results/transfer.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, mean_std  # noqa: E402
from fusion_avmnist import pool  # noqa: E402

CONFIG = REPO / "configs" / "transfer_image_to_audio_distill.yaml"
TARGET = 0.8  # the audio through the image head / audio from scratch ratio the issue asks for
EXTRA = {"distillation + 1 audio label per digit": ["align.target_labels_per_class=1"]}  # first seed only


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--runs", default=str(REPO / "runs" / "bench_fusion_techniques"), help="unimodal runs")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_transfer"))
    ap.add_argument("--no-extra", action="store_true", help="only the 3-seed distillation rows")
    args = ap.parse_args()
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "started.txt").is_file():
        (out / "started.txt").write_text(f"{time.time():.0f}\n")
    t0 = float((out / "started.txt").read_text())
    cli = [sys.executable, "-m", "polymodal.cli"]
    unimodal = []
    for seed in args.seeds:
        for cfg in ("avmnist_image", "avmnist_audio"):
            run = runs / f"{cfg}-s{seed}"
            sets = [f"seed={seed}", "train.steps=500", "train.checkpoint_every=500"]
            cmd = [*cli, "train", str(REPO / "configs" / f"{cfg}.yaml"), "--out", str(run), "--quiet"]
            unimodal.append((run, cmd + [a for s in sets for a in ("--set", s)], None))
    control = (
        out / f"audio1500-s{args.seeds[0]}"
    )  # audio from scratch, all labels, the alignment's 1500 steps
    sets = [f"seed={args.seeds[0]}", "train.steps=1500", "train.checkpoint_every=1500"]
    cmd = [*cli, "train", str(REPO / "configs" / "avmnist_audio.yaml"), "--out", str(control), "--quiet"]
    unimodal.append((control, cmd + [a for s in sets for a in ("--set", s)], None))
    pool(unimodal, args.parallel)  # the unimodal runs are there when fusion_techniques.py ran
    jobs, rows = [], {}
    for seed in args.seeds:
        variants = {"distillation, 0 audio labels": []}
        if seed == args.seeds[0] and not args.no_extra:
            variants |= EXTRA
        for i, (name, sets) in enumerate(variants.items()):
            run = out / f"v{i}-s{seed}"
            sets = [
                f"seed={seed}",
                f"source.run={runs / f'avmnist_image-s{seed}'}",
                f"target.run={runs / f'avmnist_audio-s{seed}'}",
                *sets,
            ]
            cmd = [*cli, "transfer", str(CONFIG), "--out", str(run), *[a for s in sets for a in ("--set", s)]]
            jobs.append((run, cmd, None))
            rows.setdefault(name, []).append(run)
    pool(jobs, args.parallel)
    results = {n: [json.loads((r / "transfer.json").read_text()) for r in rs] for n, rs in rows.items()}
    scratch1500 = json.loads((control / "summary.json").read_text())["test"]["digit"]["accuracy"]
    write(results, scratch1500, args, time.time() - t0)


def write(results: dict[str, list[dict]], scratch1500: float, args: argparse.Namespace, wall: float) -> None:
    mean = statistics.mean
    lines = [
        "# Latent space transfer on AV-MNIST (image → audio)",
        "",
        f"Machine: {machine()}. Command: `nice -n 10 python benchmarks/transfer.py --seeds "
        f"{' '.join(map(str, args.seeds))} --parallel {args.parallel}` (after "
        "`benchmarks/fusion_techniques.py`, whose unimodal runs it reuses). Wall time: "
        f"{wall / 60:.1f} min from the first invocation, other jobs sharing the 2 cores.",
        "",
        "Source: the seed's image-only run (configs/avmnist_image.yaml, 500 steps, all labels); its "
        "encoder and linear head are frozen. A fresh audio encoder (audio_cnn) is trained for 1500 steps of "
        "batch 64 on the *paired, unlabeled* training split "
        "([transfer_image_to_audio_distill.yaml](../../configs/transfer_image_to_audio_distill.yaml)): "
        "T² · KL(softmax(head(enc_img(x_img)) / T) ‖ softmax(head(enc_aud(x_aud)) / T)), T = 2, i.e. the "
        "image head reading the audio features must predict what it predicts from the image. Then audio "
        "is classified through the image head. Baseline: the seed's audio-only run "
        "(configs/avmnist_audio.yaml, 500 steps, all 20000 labels). *Ratio*: through the head ÷ from "
        "scratch (target ≥ 0.80). Test accuracy %.",
        "",
        "| alignment | seeds | image (source, own head) | audio through image head | audio from scratch "
        "(all labels) | ratio | linear probe on aligned audio features (all labels) | time s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        col = lambda k, res=res: [100 * list(r["accuracy"].values())[k] for r in res]  # noqa: E731
        ratio = [r["ratio_to_scratch"] for r in res]
        lines.append(
            f"| {name} | {len(res)} | {mean_std(col(0))} | {mean_std(col(1))} | {mean_std(col(2))} | "
            f"{mean_std(ratio) if len(ratio) > 1 else f'{ratio[0]:.3f}'} | {mean_std(col(3))} | "
            f"{mean(r['seconds'] for r in res):.0f} |"
        )
    main = next(iter(results.values()))
    ratios = [r["ratio_to_scratch"] for r in main]
    verdict = "MET" if mean(ratios) >= TARGET else "MISSED"
    lines += [
        "",
        f"**Target** (0 audio labels ≥ {TARGET:.0%} of audio from scratch with all labels): mean ratio "
        f"{mean(ratios):.3f} over {len(ratios)} seeds (per seed {', '.join(f'{x:.3f}' for x in ratios)}) — "
        f"**{verdict}**.",
        "",
        "Ratios are per seed (through-head ÷ that seed's scratch run), then averaged; accuracies are "
        "mean ± std over seeds.",
        "",
        f"Control for the longer schedule (seed {args.seeds[0]}): audio from scratch with all labels for "
        f"1500 steps reaches {100 * scratch1500:.2f} %; against it the seed's ratio is "
        f"{list(main[0]['accuracy'].values())[1] / scratch1500:.3f}.",
        "",
        "Earlier runs (kept in runs/bench_transfer_500), 500 alignment steps, the scratch model's budget: "
        "distillation 45.30 % (seed 0, ratio 0.649) and 47.70 % (seed 1, ratio 0.739); cosine feature "
        "alignment, the earlier default's best loss, 41.82 % (seed 0, ratio 0.599; fusion_avmnist.md has "
        "the same number).",
    ]
    res_dir = REPO / "benchmarks" / "results"
    (res_dir / "transfer.md").write_text("\n".join(lines) + "\n")
    (res_dir / "transfer.json").write_text(json.dumps({"rows": results, "wall_s": wall}, indent=1))


if __name__ == "__main__":
    main()
