"""Per-sample RandAugment: one batched call on 512 images vs a per-image loop over the same ops.

The loop calls the same op code on one image at a time (what a Dataset.__getitem__ transform does),
so the ratio measures batching, not a different implementation. Writes
benchmarks/results/randaugment_speed.md. Acceptance (issue 4): batched ≥ 5× faster on 2 CPU cores.

    python benchmarks/randaugment_speed.py --threads 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from common import REPO, machine

from polymodal.augment.randaugment import randaugment


def batched(x: torch.Tensor, seed: int, kw: dict) -> torch.Tensor:
    return randaugment(x, generator=torch.Generator(x.device).manual_seed(seed), **kw)[0]


def per_image(x: torch.Tensor, seed: int, kw: dict) -> torch.Tensor:
    g = torch.Generator(x.device).manual_seed(seed)
    return torch.cat([randaugment(x[i : i + 1], generator=g, **kw)[0] for i in range(x.shape[0])])


def timed(fn, x: torch.Tensor, kw: dict, repeats: int) -> list[float]:
    fn(x, 0, kw)  # warm-up
    out = []
    for r in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(x, r + 1, kw)
        if x.is_cuda:
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op threads to try")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/randaugment_speed.md"))
    args = p.parse_args()
    t_start = time.time()
    kw = {"n": 2, "magnitude": None, "cutout": 16}
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for shape in ((1, 28, 28), (3, 32, 32)):
            x = torch.rand(args.batch, *shape, generator=torch.Generator().manual_seed(0)).to(args.device)
            tb = timed(batched, x, kw, args.repeats)
            tl = timed(per_image, x, kw, max(1, args.repeats // 2))
            rows.append((threads, shape, min(tb), min(tl)))
    lines = [
        "# RandAugment (per-sample ops): batched vs per-image loop",
        "",
        f"- Machine: {machine()}; device: {args.device}; load average at start: {os.getloadavg()[0]:.1f}",
        f"- Command: `python benchmarks/randaugment_speed.py {' '.join(sys.argv[1:])}`",
        f"- Wall time: {time.time() - t_start:.1f} s",
        f"- Op: `randaugment(n=2, magnitude=None (uniform 1..9), p=0.5, cutout=16)`, batch {args.batch}, "
        "best of repeats (the machine is shared)",
        "",
        "| torch threads | images | batched (ms / batch) | per-image loop (ms / batch) | speed-up |",
        "| --- | --- | --- | --- | --- |",
    ]
    for threads, shape, b, loop in rows:
        lines.append(f"| {threads} | {args.batch} × {'×'.join(map(str, shape))} | {1e3 * b:.1f} | "
                     f"{1e3 * loop:.1f} | {loop / b:.1f}× |")  # fmt: skip
    worst = min(loop / b for _, _, b, loop in rows)
    lines += ["", f"Acceptance (≥ 5× faster than the loop): {'met' if worst >= 5 else 'MISSED'} "
              f"(smallest speed-up {worst:.1f}×).", ""]  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
