"""Speaker recognition benchmark: a log-mel statistics + logistic regression baseline, SincNet, x-vector
and three fusions (SincNet front end -> x-vector TDNN; embedding concatenation; score level), on every
protocol, with accuracy, EER, minDCF, parameters and training time. Sized for 2 CPU cores.

    nice -n 10 python benchmarks/speaker.py [--seeds 0 1 2] [--parallel 2] [--steps 1200]

Trains every `configs/speaker_{protocol}_{system}.yaml` with `polymodal train` (finished runs are
reused), scores each run with `polymodal eval` (RUN/speaker_eval.json), fuses the SincNet and x-vector
runs of each seed at score level with `polymodal eval` on a score-fusion directory, and writes
benchmarks/results/speaker.{md,json} and speaker_det.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, mean_std, run_all  # noqa: E402

PROTOCOLS = {  # config infix -> title
    "fsdd": "FSDD closed set, official split (6 real speakers)",
    "fsdd_ti": "FSDD text-independent: train digits 0-4, test 5-9 (6 real speakers)",
    "synth": "synth_speakers (SYNTHETIC): 30 speakers identified, 10 held out for verification",
}
SYSTEMS = {  # config suffix -> name
    "logreg": "log-mel stats + logistic regression (baseline)",
    "sincnet": "SincNet",
    "xvector": "x-vector",
    "sinc_xvector": "fusion (a): SincNet front end -> x-vector TDNN",
    "concat": "fusion (b): embeddings concatenated",
    "score": "fusion (c): score level, s-norm averaged",
}
TRAINED = [s for s in SYSTEMS if s != "score"]
FUSIONS = ["sinc_xvector", "concat", "score"]


def pool(cmds: list[tuple[Path, list[str]]], parallel: int) -> None:
    """Run commands ``parallel`` at a time (logs beside ``done``); skip those whose file exists."""
    pending = [(done, cmd) for done, cmd in cmds if not done.is_file()]
    running: list[tuple[Path, subprocess.Popen, object, list[str]]] = []
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    while pending or running:
        while pending and len(running) < parallel:
            done, cmd = pending.pop(0)
            log = open(done.parent / "eval.log", "w")  # noqa: SIM115 - closed when the job ends
            running.append((done, subprocess.Popen(cmd, env=env, stdout=log, stderr=log), log, cmd))
        for item in list(running):
            done, proc, log, cmd = item
            if proc.poll() is not None:
                log.close()  # type: ignore[attr-defined]
                running.remove(item)
                if proc.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed; see {done.parent / 'eval.log'}")
                print(f"scored {done.parent.name}", flush=True)
        time.sleep(0.5)


def parameters(run: Path) -> int:
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return sum(v.numel() for k, v in state.items() if not k.endswith(skip))


def collect(out: Path, seeds: list[int]) -> dict:
    rows: dict = {}
    for p in PROTOCOLS:
        for s in SYSTEMS:
            runs = [out / f"{p}_{s}-s{seed}" for seed in seeds]
            files = [r / ("score_fusion.json" if s == "score" else "speaker_eval.json") for r in runs]
            evals = [json.loads(f.read_text()) for f in files]
            if s == "score":
                parts = [out / f"{p}_{x}-s{seed}" for seed in seeds for x in ("sincnet", "xvector")]
                params = parameters(parts[0]) + parameters(parts[1])
                secs = [json.loads((r / "summary.json").read_text())["seconds"] for r in parts]
                secs = [a + b for a, b in zip(secs[::2], secs[1::2], strict=True)]
            else:
                params = parameters(runs[0])
                secs = [json.loads((r / "summary.json").read_text())["seconds"] for r in runs]
            conds = {}
            for c in evals[0]["conditions"]:
                ms = [e["conditions"][c] for e in evals]
                conds[c] = {
                    "accuracy": [100 * m["accuracy"] for m in ms],
                    "summed_chunk_accuracy": [100 * m["summed_chunk_accuracy"] for m in ms],
                    "eer": [100 * m["eer"] for m in ms],
                    **{
                        f"min_dcf_{pt}": [m["min_dcf"][pt]["normalised"] for m in ms]
                        for pt in evals[0]["conditions"][c]["min_dcf"]
                    },
                    **{
                        f"min_dcf_{pt}_raw": [m["min_dcf"][pt]["raw"] for m in ms]
                        for pt in evals[0]["conditions"][c]["min_dcf"]
                    },
                }
            rows[f"{p}/{s}"] = {
                "conditions": conds,
                "parameters": params,
                "seconds": secs,
                "verification": evals[0]["verification"],
            }
    return rows


def checks(rows: dict) -> list[str]:
    """The issue's acceptance points, stated with their margins (means over seeds)."""
    mean = lambda p, s, k: statistics.mean(rows[f"{p}/{s}"]["conditions"]["clean"][k])  # noqa: E731
    lines = []
    keys = {"accuracy": "full-utterance accuracy", "summed_chunk_accuracy": "summed-chunk accuracy"}
    for s in TRAINED[1:] + ["score"]:
        parts = []
        for k, what in keys.items():
            a, b = mean("fsdd_ti", s, k), mean("fsdd_ti", "logreg", k)
            parts.append(f"{what} {a:.2f} vs {b:.2f} % ({a - b:+.2f})")
        best = max(mean("fsdd_ti", s, k) for k in keys)
        base = max(mean("fsdd_ti", "logreg", k) for k in keys)
        e, eb = mean("fsdd_ti", s, "eer"), mean("fsdd_ti", "logreg", "eer")
        verdict = "beats" if best > base else "does NOT beat"
        lines.append(
            f"- FSDD text-independent, {SYSTEMS[s]} {verdict} the baseline (best decision rule of each: "
            f"{best:.2f} vs {base:.2f} %): {'; '.join(parts)}; EER {e:.2f} vs {eb:.2f} %."
        )
    for f in FUSIONS:
        cells, n_acc, n_eer = [], 0, 0
        for p in PROTOCOLS:
            da = mean(p, f, "accuracy") - max(mean(p, s, "accuracy") for s in ("sincnet", "xvector"))
            ds = mean(p, f, "summed_chunk_accuracy") - max(
                mean(p, s, "summed_chunk_accuracy") for s in ("sincnet", "xvector")
            )
            de = min(mean(p, s, "eer") for s in ("sincnet", "xvector")) - mean(p, f, "eer")
            n_acc += da > 0
            n_eer += de > 0
            cells.append(f"{p}: accuracy {da:+.2f}, summed chunks {ds:+.2f}, EER {de:+.2f}")
        lines.append(
            f"- {SYSTEMS[f]} beats both single systems on full-utterance accuracy in {n_acc}/3 protocols and "
            f"on EER in {n_eer}/3 (points over the better single system, EER: points below it): "
            f"{'; '.join(cells)}."
        )
    return lines


def table(rows: dict, p: str, cond: str, seeds: list[int]) -> list[str]:
    r0 = rows[f"{p}/logreg"]["conditions"][cond]
    pts = [k.removeprefix("min_dcf_") for k in r0 if k.startswith("min_dcf_") and not k.endswith("_raw")]
    head = " | ".join(f"minDCF p={pt} normalised (raw)" for pt in pts)
    lines = [
        f"| system | accuracy % (full utterance) | accuracy % (summed 200 ms chunks) | EER % | {head} "
        "| parameters | train time s |",
        "|---|---|---|---|" + "---|" * len(pts) + "---|---|",
    ]
    for s, name in SYSTEMS.items():
        r = rows[f"{p}/{s}"]
        c = r["conditions"][cond]
        dcf = " | ".join(
            f"{mean_std(c[f'min_dcf_{pt}'])} ({statistics.mean(c[f'min_dcf_{pt}_raw']):.5f})" for pt in pts
        )
        cfg = f"[config](../../configs/speaker_{p}_{s}.yaml)"
        lines.append(
            f"| {name} ({cfg}) | {mean_std(c['accuracy'])} | {mean_std(c['summed_chunk_accuracy'])} | "
            f"{mean_std(c['eer'])} | {dcf} | {r['parameters']:,} | {statistics.mean(r['seconds']):.0f} |"
        )
    return lines


def conditions_table(rows: dict, p: str) -> list[str]:
    conds = list(rows[f"{p}/logreg"]["conditions"])
    lines = [
        "| system | " + " | ".join(f"{c}: acc % / EER %" for c in conds) + " |",
        "|---|" + "---|" * len(conds),
    ]
    for s, name in SYSTEMS.items():
        cs = rows[f"{p}/{s}"]["conditions"]
        cells = [
            f"{statistics.mean(cs[c]['accuracy']):.2f} / {statistics.mean(cs[c]['eer']):.2f}" for c in conds
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def plot(out: Path, seed: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polymodal.metrics import det_curve
    from polymodal.speaker.report import _probit, det_axes

    fig, axes = plt.subplots(1, len(PROTOCOLS), figsize=(5 * len(PROTOCOLS), 4.8))
    for ax, (p, title) in zip(axes, PROTOCOLS.items(), strict=True):
        for s, name in SYSTEMS.items():
            z = np.load(out / f"{p}_{s}-s{seed}" / "speaker_scores.npz")
            p_miss, p_fa, _ = det_curve(z["clean"], z["labels"])
            ax.plot(_probit(p_fa), _probit(p_miss), label=name.split(":")[0] if ":" in name else name)
        det_axes(ax, title)
    fig.suptitle(f"DET curves, clean test audio, seed {seed}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_speaker"))
    ap.add_argument("--rewrite", action="store_true", help="re-render the table from results/speaker.json")
    ap.add_argument("--note", default="", help="a sentence for the table's header (e.g. why one seed)")
    args = ap.parse_args()
    res = REPO / "benchmarks" / "results"
    if args.rewrite:  # no training or scoring: the saved rows, seeds and wall time
        old = json.loads((res / "speaker.json").read_text())
        args.seeds, args.note = old["seeds"], args.note or old.get("note", "")
        return write(old["rows"], args, old["wall_s"], res / "speaker.md")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "started.txt").is_file():  # wall time counts from the first invocation
        (out / "started.txt").write_text(f"{time.time():.0f}\n")
    t0 = float((out / "started.txt").read_text())
    sets = lambda seed: [f"seed={seed}", f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}"]  # noqa: E731
    jobs = [
        (out / f"{p}_{s}-s{seed}", str(REPO / "configs" / f"speaker_{p}_{s}.yaml"), sets(seed))
        for seed in args.seeds
        for p in PROTOCOLS
        for s in TRAINED
    ]
    run_all(jobs, args.parallel)
    cli = [sys.executable, "-m", "polymodal.cli", "eval"]
    evals = [(run / "speaker_eval.json", [*cli, str(run)]) for run, _, _ in jobs]
    for seed in args.seeds:
        for p in PROTOCOLS:
            fused = out / f"{p}_score-s{seed}"
            fused.mkdir(exist_ok=True)
            systems = [f"../{p}_sincnet-s{seed}", f"../{p}_xvector-s{seed}"]
            (fused / "score_fusion.yaml").write_text(
                yaml.safe_dump({"score_fusion": {"systems": systems, "norm": "snorm"}})
            )
            evals.append((fused / "score_fusion.json", [*cli, str(fused)]))
    pool(evals, args.parallel)
    rows = collect(out, args.seeds)
    res.mkdir(parents=True, exist_ok=True)
    plot(out, args.seeds[0], res / "speaker_det.png")
    wall = time.time() - t0
    saved = {"rows": rows, "seeds": args.seeds, "wall_s": wall, "note": args.note}
    (res / "speaker.json").write_text(json.dumps(saved, indent=1))
    write(rows, args, wall, res / "speaker.md")


def write(rows: dict, args: argparse.Namespace, wall: float, path: Path) -> None:
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "# Speaker recognition benchmark",
        "",
        f"Machine: {machine()}. Command: `nice -n 10 python benchmarks/speaker.py --seeds {seeds} --parallel "
        f"{args.parallel} --steps {args.steps}`. Wall time: {wall / 60:.1f} min from the first invocation to "
        "this table (finished runs are reused; other jobs shared the 2 cores).",
        *([f"**{args.note}**"] if args.note else []),
        "",
        f"Every learned system: {args.steps} steps of batch 32, AdamW lr 5e-3 cosine, 1 thread, 200 ms "
        "random crops (`time_crop`, SincNet's protocol), gain and white-noise (5-40 dB SNR) augmentation, "
        "AAM-softmax head (margin 0.2, scale 15), CPU widths (SincNet: 40 sinc filters of 8 ms, conv "
        "widths 32/32; x-vector: 24 log-mels without CMN, TDNN widths 64x4/192, embedding 128). The "
        "baseline is a multinomial logistic regression (softmax, lr 1e-2) on the mean and std of 40 "
        "log-mels per full utterance. Mean ± std over seeds "
        f"{', '.join(map(str, args.seeds))} (one seed: its value). *Accuracy* is closed-set "
        "identification on the test split: one decision per full utterance, and SincNet's protocol "
        "(200 ms chunks every 100 ms, log-posteriors summed). *EER* and *minDCF* are verification by "
        "cosine scoring (length-normalised with the mean of a 300-utterance training cohort) on seeded "
        "trials (`speaker.trial_seed` 0: the same trials for every system and seed); minDCF with "
        "C_miss = C_fa = 1, **normalised** (divided by min(p, 1 - p)), with the **raw** value in brackets "
        "(mean over seeds). Score fusion sums the two systems' log-posteriors and averages their "
        "s-normalised scores. *Parameters* count weights; *train time* is the training loop alone "
        "(fusion (c): both systems).",
        "",
    ]
    for p, title in PROTOCOLS.items():
        v = rows[f"{p}/logreg"]["verification"]
        lines += [
            f"## {title}",
            "",
            f"Verification on the {v['set']}: {v['speakers']} speakers, {v['utterances']} utterances, "
            f"{v['target_trials']} target + {v['nontarget_trials']} non-target trials; {v['scoring']}.",
            "",
            *table(rows, p, "clean", args.seeds),
            "",
        ]
        if len(rows[f"{p}/logreg"]["conditions"]) > 1:
            lines += [
                "Test conditions of the same runs (mean over seeds): 200 ms centre crops of each test "
                "utterance (short test chunks) and white noise added at 0 / 5 / 10 dB SNR (training adds "
                "noise at 5-40 dB to the learned systems, none to the baseline):",
                "",
                *conditions_table(rows, p),
                "",
            ]
    lines += [
        "## Acceptance",
        "",
        *checks(rows),
        "",
        "DET curves (seed 0): [speaker_det.png](speaker_det.png)",
        "",
    ]
    path.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
