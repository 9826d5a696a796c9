"""Data placement: the same training run with its splits on the device vs memory-mapped from disk.

For each dataset, trains `configs/mnist_uda.yaml`'s model (supervised, fixed steps, same seed) twice —
``data.placement: device`` and ``data.placement: mmap`` (after ``polymodal data pack``) — each in a
fresh process whose peak resident memory (max RSS) is read from the kernel, and reports test error,
peak RSS and the dataset's size. MNIST (55 MB) shows that the result is the same; a synthetic set of
2M 28×28 images (1.6 GB) shows that an mmap run's memory does not grow with the data.

    python benchmarks/placement.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine  # noqa: E402

DATASETS = {
    "mnist": [],
    "synthetic": ["data.options={n_train: 2000000, n_test: 10000}"],
}


def peak_rss_run(cmd: list[str], env: dict) -> tuple[float, str]:
    """(peak RSS in MB, stdout) of ``cmd`` run alone in a fresh child of a fresh process."""
    probe = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(r.stdout); print(r.stderr, file=sys.stderr); "
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *cmd], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    rss = int(out.stdout.strip().splitlines()[-1].split()[1]) / 1024
    return rss, out.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", default=str(REPO / "benchmarks/results/placement.md"))
    args = p.parse_args()
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="placement-"))
    env = {**os.environ, "POLYMODAL_CACHE": str(work / "cache")}
    if args.data_root:
        env["POLYMODAL_DATA"] = str(Path(args.data_root).resolve())
    rows = []
    for name in args.datasets:
        sets = [f"data.name={name}", *DATASETS[name], "method=supervised", f"train.steps={args.steps}"]
        sets += [
            "train.eval_every=100000",
            "train.checkpoint_every=100000",
            "train.threads=2",
            "train.device=cpu",
        ]
        base = [sys.executable, "-m", "polymodal"]
        # packing reads the dataset whole, once, in its own process (not the one measured)
        script = (
            "import sys; from polymodal.data import load_dataset; from polymodal.data.packed import pack, "
            "packed_dir; opts = {'n_train': 2000000, 'n_test': 10000} if sys.argv[1] == 'synthetic' else {}; "
            "pack(load_dataset(sys.argv[1], None, **opts), packed_dir(sys.argv[1]))"
        )
        pack = [sys.executable, "-c", script, name]
        subprocess.run(pack, env=env, check=True, capture_output=True)
        size = sum(f.stat().st_size for f in (work / "cache/packed" / name).glob("*.npy")) / 2**20
        result = {}
        for where in ("device", "mmap"):
            out = work / f"{name}-{where}"
            cmd = [*base, "train", str(REPO / "configs/mnist_uda.yaml"), "--out", str(out), "--quiet"]
            cmd += [a for s in [*sets, f"data.placement={where}"] for a in ("--set", s)]
            t = time.time()
            rss, _ = peak_rss_run(cmd, env)
            summary = json.loads((out / "summary.json").read_text())
            result[where] = {"rss": rss, "error": summary["test_error"], "seconds": time.time() - t}
            print(name, where, result[where], flush=True)
        rows.append((name, size, result))
    lines = [
        "# Data placement: device vs memory-mapped (data.placement)",
        "",
        f"- Machine: {machine()}; `{resource.getpagesize()}`-byte pages.",
        f"- Command: `python benchmarks/placement.py {' '.join(sys.argv[1:])}`; wall time "
        f"{(time.time() - t0) / 60:.1f} min.",
        f"- Each run: `configs/mnist_uda.yaml`'s cnn28, method supervised, {args.steps} steps, seed 0, "
        "2 threads,"
        " in a fresh process; peak RSS = the kernel's max resident set of that process (torch and the"
        " interpreter included).",
        "",
        "| dataset | size on disk (MB) | placement | test error % | peak RSS (MB) | time (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, size, result in rows:
        for where, r in result.items():
            lines.append(
                f"| {name} | {size:.0f} | {where} | {100 * r['error']:.2f} | {r['rss']:.0f} "
                f"| {r['seconds']:.0f} |"
            )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
