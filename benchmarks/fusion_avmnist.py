"""AV-MNIST fusion benchmark: unimodal vs early / intermediate / late / tensor fusion, 3 seeds, plus
accuracy with each modality missing, and the latent space transfer table.

    python benchmarks/fusion_avmnist.py [--seeds 0 1 2] [--parallel 2] [--steps 800]

Builds AV-MNIST (default options) if needed, trains every config with `polymodal train`, evaluates
each run with each modality removed, then runs `polymodal transfer` (image -> audio) with each
alignment loss, reusing the seed-0 image-only run as the source. Writes
benchmarks/results/fusion_avmnist.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, mean_std  # noqa: E402

VARIANTS = {  # name -> config
    "image only": "avmnist_image",
    "audio only": "avmnist_audio",
    "early (stage1 concat)": "avmnist_early",
    "intermediate (stage2/3 flattened, concat)": "avmnist_mid_concat",
    "intermediate (chained: stage1/2 concat, then gated)": "avmnist_mid_gated",
    "late (mean of logits)": "avmnist_late_mean",
    "late (learned weights)": "avmnist_late_learned",
    "low-rank tensor fusion": "avmnist_lowrank",
}
UNIMODAL = {"image only": "image", "audio only": "audio"}


def used_parameters(run: Path) -> int:
    """Parameters that get a gradient (encoder stages a fusion graph never reads are not counted)."""
    from polymodal.engine.evaluate import load_run

    loaded = load_run(run)
    data, views, model = loaded.data, loaded.views, loaded.model
    model.train()
    b = views(data.test.batch(torch.arange(4)), "clean", torch.Generator().manual_seed(0))
    sum(z.sum() for z in model(b).values()).backward()
    return sum(p.numel() for p in model.parameters() if p.grad is not None)


def dropout_setting(runs: list[Path]) -> str:
    """The modality dropout (and auxiliary loss) the runs trained with (read from their saved configs)."""
    import yaml

    seen = set()
    for r in runs:
        mc = yaml.safe_load((r / "config.yaml").read_text())["model"]
        p, mode = mc.get("modality_dropout", 0.0), mc.get("modality_dropout_mode", "independent")
        aux = f", aux_loss {mc['aux_loss']}" if mc.get("aux_loss") else ""
        seen.add((f"p={p} {mode}" if p else "none") + aux)
    return ", ".join(sorted(seen))


def pool(jobs: list[tuple[Path, list[str], Path | None]], parallel: int) -> None:
    """Run commands ``parallel`` at a time; a job waits for its ``after`` run to finish; finished runs
    (``RUN/summary.json`` or ``RUN/transfer.json``) are kept, so an interrupted benchmark continues."""
    done = lambda run: (run / "summary.json").is_file() or (run / "transfer.json").is_file()  # noqa: E731
    pending = [j for j in jobs if not done(j[0])]
    running: list[tuple[Path, subprocess.Popen, float]] = []
    while pending or running:
        for job in list(pending):
            if len(running) >= parallel:
                break
            run, cmd, after = job
            if after is not None and not done(after):
                continue
            pending.remove(job)
            shutil.rmtree(run, ignore_errors=True)
            run.parent.mkdir(parents=True, exist_ok=True)
            log = open(run.parent / f"{run.name}.log", "w")  # noqa: SIM115 - the child owns it
            running.append((run, subprocess.Popen(cmd, stdout=log, stderr=log), time.time()))
            print(f"started {run.name}", flush=True)
        for item in list(running):
            run, proc, t0 = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode != 0:
                    raise SystemExit(f"{run} failed; see {run.parent / (run.name + '.log')}")
                print(f"finished {run.name} in {time.time() - t0:.0f}s", flush=True)
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_fusion_avmnist"))
    ap.add_argument("--rewrite", action="store_true", help="re-render the table from the saved runs' configs")
    args = ap.parse_args()
    if args.rewrite:  # no training or evaluation: the .json numbers, settings re-read from the runs
        old = json.loads((REPO / "benchmarks" / "results" / "fusion_avmnist.json").read_text())
        for r in old["rows"].values():
            cfg = Path(r["config"]).stem
            r["modality_dropout"] = dropout_setting([Path(args.out) / f"{cfg}-s{s}" for s in args.seeds])
        return write(old["rows"], old["transfer"], old["meta"], args, old["wall_s"])
    t0 = time.time()
    torch.set_num_threads(1)
    from polymodal.data import BUILDERS, load_dataset
    from polymodal.data.files import cache_dir, resolve_root
    from polymodal.engine.evaluate import evaluate_run

    if not (cache_dir("avmnist") / "SHA256SUMS").is_file():
        BUILDERS.get("avmnist")(resolve_root(None))
    meta = load_dataset("avmnist").meta
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "started.txt").is_file():  # wall time counts from the first invocation
        (out / "started.txt").write_text(f"{t0:.0f}\n")
    t0 = float((out / "started.txt").read_text())
    cli = [sys.executable, "-m", "polymodal.cli"]
    jobs: list[tuple[Path, list[str], Path | None]] = []
    for seed in args.seeds:
        for cfg in VARIANTS.values():
            run = out / f"{cfg}-s{seed}"
            sets = [f"seed={seed}", f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}"]
            cmd = [*cli, "train", str(REPO / "configs" / f"{cfg}.yaml"), "--out", str(run), "--quiet"]
            jobs.append((run, cmd + [a for s in sets for a in ("--set", s)], None))
        if seed == args.seeds[0]:  # transfer (image -> audio) reuses this seed's image-only run
            source = out / f"avmnist_image-s{seed}"
            for loss in ("l2", "cosine", "infonce"):
                sets = [f"align.loss={loss}", f"source.run={source}", f"steps={args.steps}", f"seed={seed}"]
                sets += [f"align.steps={args.steps}", f"scratch={loss == 'l2'}"]
                cmd = [*cli, "transfer", str(REPO / "configs" / "transfer_image_to_audio.yaml")]
                run = out / f"transfer-{loss}"
                jobs.append(
                    (run, cmd + [a for s in sets for a in ("--set", s)] + ["--out", str(run)], source)
                )
    pool(jobs, args.parallel)
    rows = {}
    for name, cfg in VARIANTS.items():
        runs = [out / f"{cfg}-s{seed}" for seed in args.seeds]
        res = [evaluate_run(r) for r in runs]

        def acc(case: str, res: list[dict] = res) -> list[float]:
            return [100 * x[case]["digit"]["accuracy"] for x in res if case in x]

        rows[name] = {
            "config": f"configs/{cfg}.yaml",
            "accuracy": acc("all"),
            "without_image": acc("without_image"),
            "without_audio": acc("without_audio"),
            "parameters": used_parameters(runs[0]),
            "seconds": [json.loads((r / "summary.json").read_text())["seconds"] for r in runs],
            "modality_dropout": dropout_setting(runs),
        }
        print(name, rows[name], flush=True)
    transfer = {}
    for loss in ("l2", "cosine", "infonce"):
        transfer[loss] = json.loads((out / f"transfer-{loss}" / "transfer.json").read_text())
        print(loss, transfer[loss], flush=True)
    wall = time.time() - t0
    write(rows, transfer, meta, args, wall)


def write(rows: dict, transfer: dict, meta: dict, args: argparse.Namespace, wall: float) -> None:
    res = REPO / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    m = lambda v: mean_std(v) if v else "—"  # noqa: E731
    mean = lambda v: statistics.mean(v) if v else float("nan")  # noqa: E731
    lines = [
        "# AV-MNIST fusion benchmark",
        "",
        f"Machine: {machine()}. Command: `nice -n 10 python benchmarks/fusion_avmnist.py --seeds "
        f"{' '.join(map(str, args.seeds))} --parallel {args.parallel} --steps {args.steps}`. "
        f"Wall time: {wall / 60:.1f} min from the first invocation to this table (runs already finished are "
        "kept, so it includes any pause between invocations), AV-MNIST build included (other jobs shared "
        "the 2 cores).",
        "",
        f"Data: AV-MNIST built by `polymodal data build avmnist` with {json.dumps(meta, sort_keys=True)}: "
        f"{meta['n_train']} train / {meta['n_test']} test pairs. Every run: {args.steps} steps of batch 64, "
        "AdamW lr 3e-3 cosine, 1 thread, no augmentation. *Modality dropout* is what each row trained with "
        "(from the runs' saved configs): `independent` hides each modality w.p. p (never both), `one` "
        "hides exactly one modality of a row w.p. p; `aux_loss w` adds w x the per-modality classifiers' "
        "cross-entropy (docs/fusion.md). "
        "Accuracy on the test split, mean ± std over seeds "
        f"{', '.join(map(str, args.seeds))}. *Parameters* count weights that get a gradient "
        "at inference (the training-only auxiliary heads are not counted).",
        "",
        "| model | modality dropout, aux loss | test accuracy % | without image % | without audio % "
        "| parameters | train time s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} ([config]({'../../' + r['config']})) | {r['modality_dropout']} | {m(r['accuracy'])} | "
            f"{m(r['without_image'])} | "
            f"{m(r['without_audio'])} | {r['parameters']:,} | {statistics.mean(r['seconds']):.0f} |"
        )
    uni = {n: mean(rows[n]["accuracy"]) for n in UNIMODAL}
    fused = {n: mean(r["accuracy"]) for n, r in rows.items() if n not in UNIMODAL}
    best_uni, best_fused = max(uni, key=uni.get), max(fused, key=fused.get)
    gain = fused[best_fused] - uni[best_uni]
    lines += [
        "",
        f"**Best fusion** {best_fused}: {fused[best_fused]:.2f}% vs best single modality {best_uni}: "
        f"{uni[best_uni]:.2f}% → **{gain:+.2f} points** "
        f"(acceptance ≥ +3: {'PASS' if gain >= 3 else 'FAIL'}).",
        "",
        "**Missing modality** (fusion trained with modality dropout): accuracy without audio vs image only "
        f"({uni['image only']:.2f}%), without image vs audio only ({uni['audio only']:.2f}%); "
        "acceptance: no more than 5 points below.",
        "",
        "| model | without audio − image only | without image − audio only | at most 5 points below |",
        "|---|---|---|---|",
    ]
    for n in fused:
        da = mean(rows[n]["without_audio"]) - uni["image only"]
        di = mean(rows[n]["without_image"]) - uni["audio only"]
        ok = da >= -5 and di >= -5  # above the unimodal model is fine too
        lines.append(f"| {n} | {da:+.2f} | {di:+.2f} | {'yes' if ok else 'NO'} |")
    first = next(iter(transfer.values()))
    lines += [
        "",
        "## Latent space transfer (image → audio)",
        "",
        "`polymodal transfer configs/transfer_image_to_audio.yaml --set align.loss=LOSS` with the seed-0 "
        "image-only run as source: the audio encoder is trained on paired, *unlabeled* train pairs to "
        "match the image encoder's 64-d output, then read by the image model's frozen head (0 audio "
        f"labels). Baselines use all {meta['n_train']} labels: an audio model trained from scratch and a "
        "linear probe on the aligned audio features. Seed 0, test accuracy %.",
        "",
        "| alignment | " + " | ".join(first["accuracy"]) + " | time s |",
        "|---|" + "---|" * (len(first["accuracy"]) + 1),
    ]
    for loss, t in transfer.items():
        lines.append(
            f"| {loss} | "
            + " | ".join(f"{100 * a:.2f}" if a is not None else "(as l2)" for a in t["accuracy"].values())
            + f" | {t['seconds']:.0f} |"
        )
    (res / "fusion_avmnist.md").write_text("\n".join(lines) + "\n")
    (res / "fusion_avmnist.json").write_text(
        json.dumps({"rows": rows, "transfer": transfer, "meta": meta, "wall_s": wall}, indent=1)
    )
    plot(rows, res / "fusion_avmnist.png")


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in rows.items():
        y, e = (
            statistics.mean(r["accuracy"]),
            statistics.stdev(r["accuracy"]) if len(r["accuracy"]) > 1 else 0,
        )
        ax.errorbar(r["parameters"], y, yerr=e, fmt="o" if name in UNIMODAL else "s", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (used)")
    ax.set_ylabel("test accuracy % (mean ± std)")
    ax.set_title("AV-MNIST: accuracy vs parameters")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
