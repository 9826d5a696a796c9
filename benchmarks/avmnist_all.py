"""SSL x fusion x multi-task in one run on AV-MNIST (digit + speaker), against its ablations, 3 seeds.

    nice -n 10 python benchmarks/avmnist_all.py [--seeds 0 1 2] [--parallel 2] [--steps 300]

Rows: configs/avmnist_all.yaml (UDA on both modalities' augmentations + intermediate fusion + digit and
speaker heads with PCGrad, 10 labeled pairs per digit), its one-label-per-example variant, and the
ablations: no SSL (supervised on the same labels), single task (digit only), single modality (image
only). Builds AV-MNIST if needed; finished runs are reused (benchmarks/common.py). Writes
benchmarks/results/avmnist_all.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, mean_std, run_all  # noqa: E402

ROWS = {  # name -> (config, overrides)
    "all-in-one: UDA + fusion + digit & speaker (PCGrad)": ("avmnist_all", []),
    "ablation: no SSL (supervised, same labels)": ("avmnist_all", ["method=supervised"]),
    "ablation: single task (digit only)": ("avmnist_all", ["data.tasks=[digit]"]),
    "ablation: single modality (image only)": ("avmnist_all_image_only", []),
    "variant: all-in-one, one label per example": ("avmnist_all_one_label", []),
}
MAIN = next(iter(ROWS))
ABLATIONS = [n for n in ROWS if n.startswith("ablation")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_avmnist_all"))
    args = ap.parse_args()
    from polymodal.data import BUILDERS, load_dataset
    from polymodal.data.files import cache_dir, resolve_root

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "started.txt").is_file():  # wall time counts from the first invocation
        (out / "started.txt").write_text(f"{time.time():.0f}\n")
    t0 = float((out / "started.txt").read_text())
    if not (cache_dir("avmnist") / "SHA256SUMS").is_file():
        BUILDERS.get("avmnist")(resolve_root(None))
    meta = load_dataset("avmnist").meta  # (rebuilds an older cache)
    jobs, keys = [], {}
    for name, (cfg, sets) in ROWS.items():
        for seed in args.seeds:
            tag = "" if not sets else "-" + "-".join(s.split("=")[1].strip("[]") for s in sets)
            run = out / f"{cfg}{tag}-s{seed}"
            jobs.append(
                (
                    run,
                    str(REPO / "configs" / f"{cfg}.yaml"),
                    [
                        f"seed={seed}",
                        f"train.steps={args.steps}",
                        f"train.checkpoint_every={args.steps}",
                        *sets,
                    ],
                )
            )
            keys.setdefault(name, []).append(run)
    results = run_all(jobs, args.parallel)
    rows = {}
    for name, runs in keys.items():
        res = [results[r] for r in runs]
        rows[name] = {
            "config": f"configs/{ROWS[name][0]}.yaml",
            "sets": ROWS[name][1],
            "digit": [100 * r["test"]["digit"]["accuracy"] for r in res],
            "speaker": [100 * r["test"]["speaker"]["accuracy"] for r in res if "speaker" in r["test"]],
            "labeled": res[0]["labeled_examples"],
            "seconds": [r["seconds"] for r in res],
        }
        print(name, rows[name], flush=True)
    write(rows, meta, args, time.time() - t0)


def write(rows: dict, meta: dict, args: argparse.Namespace, wall: float) -> None:
    m = lambda v: mean_std(v) if v else "—"  # noqa: E731
    mean = statistics.mean
    lines = [
        "# AV-MNIST: SSL × fusion × multi-task in one run",
        "",
        f"Machine: {machine()}. Command: `nice -n 10 python benchmarks/avmnist_all.py --seeds "
        f"{' '.join(map(str, args.seeds))} --parallel {args.parallel} --steps {args.steps}`. Wall time: "
        f"{wall / 60:.1f} min from the first invocation (finished runs are kept), other jobs sharing "
        "the 2 cores.",
        "",
        f"Data: AV-MNIST version {meta['version']} ({meta['n_train']} train / {meta['n_test']} test "
        "pairs), two modalities (degraded image, noisy log-mel) and two tasks: digit (10) and the FSDD "
        "speaker of the clip (6). Labels: 10 pairs per digit (100 labeled pairs, drawn with the seed; the "
        "speaker labels are those pairs' speakers), the whole training split as unlabeled data. Every run: "
        f"{args.steps} steps, 32 labeled + 64 unlabeled rows per step, AdamW lr 3e-3 cosine, 1 thread. "
        "UDA: weak view crop (image) / none (audio), strong view affine + cutout (image) and SpecAugment "
        "(audio), τ 0.4, confidence 0.7, linear TSA. Fusion: image.stage2 + audio.stage3 flattened, concat "
        "(the best row of fusion_avmnist.md), modality dropout 0.3, auxiliary per-modality heads 0.5. "
        f"Test accuracy %, mean ± std over seeds {', '.join(map(str, args.seeds))}.",
        "",
        "| run | config | labeled pairs | digit accuracy % | speaker accuracy % | train time s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        sets = "".join(f" `--set {s}`" for s in r["sets"])
        lines.append(
            f"| {name} | [{Path(r['config']).name}](../../{r['config']}){sets} | {r['labeled']} | "
            f"{m(r['digit'])} | {m(r['speaker'])} | {mean(r['seconds']):.0f} |"
        )
    main_digit = mean(rows[MAIN]["digit"])
    lines += [
        "",
        "**Digit accuracy, all-in-one minus each ablation** (mean over seeds; per seed in brackets):",
        "",
    ]
    for n in ABLATIONS:
        d = [a - b for a, b in zip(rows[MAIN]["digit"], rows[n]["digit"], strict=True)]
        verdict = "beats it" if mean(d) > 0 else "MISSES it"
        lines.append(f"- {n}: {mean(d):+.2f} points ({', '.join(f'{x:+.2f}' for x in d)}) — {verdict}")
    lines.append(f"\nAll-in-one digit accuracy: {main_digit:.2f} %.")
    res = REPO / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "avmnist_all.md").write_text("\n".join(lines) + "\n")
    (res / "avmnist_all.json").write_text(json.dumps({"rows": rows, "meta": meta, "wall_s": wall}, indent=1))


if __name__ == "__main__":
    main()
