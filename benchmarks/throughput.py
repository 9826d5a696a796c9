"""The engine's UDA step against a hand-written floor, measured in one run (issue 12).

Three ways to run the same UDA step (labeled B + unlabeled μB images; a no-grad clean forward of the
unlabeled rows, one concatenated forward of labeled + strongly augmented rows, cross-entropy + KL,
backward, SGD step, EMA update: 2μB + B image forwards per step), interleaved round by round so load
from other processes hits all alike, medians reported:

- floor: the same model, batch and optimizer written by hand, float data already on the device, no
  augmentation, no engine.
- floor + augmentation: the floor plus the same augmentation calls the engine makes (uint8 data on the
  device, converted inside the views; weak view for labeled rows, clean and strong for unlabeled).
- engine: `polymodal.engine.run.train_step` on a run built by `build_run` from a config (sampling by
  (seed, step), views, the `uda` objective, the balancer, optimizer, schedule, EMA, device-side logs).

The floor + augmentation step is also timed phase by phase (augment, forward + backward, optimizer, EMA;
with a device synchronize between phases on an accelerator), and "everything else" is the engine's
step minus that. Workloads: ``cifar`` = WRN-28-2 on 3×32×32 (weak: crop + flip; strong: flip, crop,
RandAugment n=2 with cutout), ``mnist`` = cnn28 on 1×28×28 (weak: crop; strong: RandAugment n=2).
Data are random uint8 images, so no dataset is needed.

    python benchmarks/throughput.py --device cpu --threads 2              # writes the CPU table
    python benchmarks/throughput.py --device cuda --batch 64 --mu 7       # on a GPU (gpu_session.sh)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from polymodal.batch import TensorData
from polymodal.config import build_config
from polymodal.data import DataBundle
from polymodal.engine.build import RunData
from polymodal.engine.run import build_run, train_step
from polymodal.engine.runtime import autocast, set_determinism
from polymodal.ssl import uda_consistency

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine  # noqa: E402

WORKLOADS = {
    "cifar": {
        "shape": (3, 32, 32),
        "encoder": {"name": "wrn28_2"},
        "weak": [{"op": "crop", "pad": 4}, {"op": "flip"}],
        "strong": [{"op": "flip"}, {"op": "crop", "pad": 4}, {"op": "randaugment", "n": 2}],
    },
    "mnist": {
        "shape": (1, 28, 28),
        "encoder": {"name": "cnn28"},
        "weak": [{"op": "crop", "pad": 2}],
        "strong": [{"op": "randaugment", "n": 2}],
    },
}


def synthetic(shape: tuple[int, ...], n: int, device: torch.device, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return TensorData({"image": x}, {"class": torch.randint(0, 10, (n,), generator=g)}).to(device)


def make_run(name: str, args: argparse.Namespace):
    w = WORKLOADS[name]
    cfg = build_config(
        {
            "method": "uda",
            "data": {"batch_size": args.batch, "unlabeled_ratio": args.mu},
            "augment": {"image": {"weak": w["weak"], "strong": w["strong"]}},
            "model": {"encoders": {"image": w["encoder"]}},
            "train": {
                "steps": 10**6,
                "ema": 0.999,
                "device": args.device,
                "precision": args.precision,
                "compile": args.compile,
                "threads": args.threads,
            },
            "uda": {"tsa": "none"},
        }
    )
    device = torch.device(args.device)
    train = synthetic(w["shape"], max(args.batch * args.mu * 4, 256), device, 0)
    bundle = DataBundle(
        "synthetic", train, synthetic(w["shape"], 64, device, 1), {"class": 10}, {"image": "image"}
    )
    data = RunData(bundle, {"class": 10}, train, TensorData(train.inputs, {}, train.lengths), bundle.test)
    return build_run(cfg, None, data=data)


class Floor:
    """The UDA step by hand on the engine's model copy (same init, optimizer settings and EMA)."""

    def __init__(self, run, augment: bool) -> None:
        import copy

        self.run, self.augment = run, augment
        self.model = copy.deepcopy(run.model)
        self.model._compiled_call_impl = None  # compiled below, after the EMA copy (as the engine does)
        tc = run.cfg.train
        fused = {"fused": True} if run.device.type == "cuda" else {}
        opts = {"lr": 0.01, "momentum": tc.momentum, "nesterov": True, "weight_decay": tc.weight_decay}
        self.opt = torch.optim.SGD(self.model.parameters(), **opts, **fused)
        from polymodal.ssl.teacher import EMA

        self.ema = EMA(self.model, 0.999)
        if run.cfg.train.compile:
            self.model.compile()
        b, m = run.cfg.data.batch_size, run.cfg.data.batch_size * run.cfg.data.unlabeled_ratio
        self.lab = run.data.labeled.batch(torch.arange(b, device=run.device))
        self.unl = run.data.unlabeled.batch(torch.arange(b, b + m, device=run.device), with_targets=False)
        self.x_lab = self.lab.inputs["image"].float() / 255
        self.x_unl = self.unl.inputs["image"].float() / 255
        self.y = self.lab.targets["class"]
        self.phases = {"augment": [], "forward + backward": [], "optimizer": [], "ema": []}

    def _sync(self) -> float:
        if self.run.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def step(self, step: int, phases: bool = False) -> None:
        t0 = self._sync() if phases else 0.0
        if self.augment:
            g = torch.Generator(self.run.device).manual_seed(step)
            views = self.run.views
            x_lab = views(self.lab, "weak", g).inputs["image"]
            clean = views(self.unl, "clean", g).inputs["image"]
            strong = views(self.unl, "strong", g).inputs["image"]
        else:
            x_lab, clean, strong = self.x_lab, self.x_unl, self.x_unl
        t1 = self._sync() if phases else 0.0
        with autocast(self.run.device, self.run.cfg.train.precision):
            with torch.no_grad():
                target = self.model(_batch(clean))["class"]
            logits = self.model(_batch(torch.cat([x_lab, strong])))["class"]
            n = len(x_lab)
            loss = F.cross_entropy(logits[:n].float(), self.y) + uda_consistency(target, logits[n:], 0.4, 0.8)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = self._sync() if phases else 0.0
        self.opt.step()
        t3 = self._sync() if phases else 0.0
        self.ema.update_parameters(self.model)
        if phases:
            t4 = self._sync()
            for k, v in zip(self.phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                self.phases[k].append(v)


def _batch(x: torch.Tensor):
    from polymodal.batch import Batch

    return Batch({"image": x})


def timed(fn, steps: int, device: torch.device) -> float:
    """Seconds per call over ``steps`` calls (device synchronized at both ends)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def measure(name: str, args: argparse.Namespace) -> dict:
    run = make_run(name, args)
    floor, floor_aug = Floor(run, False), Floor(run, True)
    counter = {"engine": 0, "floor": 0, "aug": 0}

    def engine() -> None:
        train_step(run, counter["engine"])
        counter["engine"] += 1

    def plain() -> None:
        floor.step(counter["floor"])
        counter["floor"] += 1

    def aug() -> None:
        floor_aug.step(counter["aug"])
        counter["aug"] += 1

    for fn in (engine, plain, aug):  # warm-up (compilation, caches, allocator)
        timed(fn, args.warmup, run.device)
    times: dict[str, list[float]] = {"floor": [], "floor + augmentation": [], "engine": []}
    for r in range(args.rounds):
        times["floor"].append(timed(plain, args.steps, run.device))
        times["floor + augmentation"].append(timed(aug, args.steps, run.device))
        times["engine"].append(timed(engine, args.steps, run.device))
        floor_aug.step(10_000 + r, phases=True)  # one step timed phase by phase, in the same round
    med = {k: statistics.median(v) for k, v in times.items()}
    phases = {k: statistics.median(v) for k, v in floor_aug.phases.items()}
    total = sum(phases.values())  # the phases of one floor + augmentation step
    share = {k: v / total * med["floor + augmentation"] for k, v in phases.items()}  # scaled to the median
    share["everything else (engine − floor + aug)"] = med["engine"] - med["floor + augmentation"]
    phases = share
    b, m = args.batch, args.batch * args.mu
    return {"seconds": med, "phases": phases, "images": b + 2 * m}


def write(results: dict, args: argparse.Namespace, wall: float) -> str:
    lines = [
        "# Throughput: the engine's UDA step vs a hand-written floor (same run)",
        "",
        f"- Machine: {machine()}; device `{args.device}`, precision `{args.precision}`, compile "
        f"{args.compile}, {args.threads or 'default'} threads.",
        f"- Command: `python benchmarks/throughput.py {' '.join(sys.argv[1:])}`",
        f"- Batch: {args.batch} labeled + {args.batch * args.mu} unlabeled (μ = {args.mu}); medians of "
        f"{args.rounds} interleaved rounds × {args.steps} steps after {args.warmup} warm-up steps. "
        f"Wall time {wall / 60:.1f} min. Load (`uptime`) at the end: {_load()}.",
        "",
        "| workload | variant | it/s | images/s | × floor + aug |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        base = r["seconds"]["floor + augmentation"]
        for variant, s in r["seconds"].items():
            lines.append(f"| {name} | {variant} | {1 / s:.2f} | {r['images'] / s:.0f} | {s / base:.3f} |")
    lines += [
        "",
        "Breakdown: each round also times one floor + augmentation step phase by phase (device synchronized"
        " between phases); the phases' median shares, scaled to that variant's median step, and what the"
        " engine adds on top:",
        "",
    ]
    lines += ["| workload | phase | ms | share of the engine step |", "| --- | --- | --- | --- |"]
    for name, r in results.items():
        total = r["seconds"]["engine"]
        for phase, s in r["phases"].items():
            lines.append(f"| {name} | {phase} | {1000 * s:.1f} | {100 * s / total:.1f} % |")
    return "\n".join(lines) + "\n"


def _load() -> str:
    import os

    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--workloads", nargs="+", default=["mnist", "cifar"], choices=list(WORKLOADS))
    p.add_argument("--batch", type=int, default=16, help="labeled images per step (CIFAR/UDA uses 64)")
    p.add_argument("--mu", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "benchmarks/results/throughput.md"))
    args = p.parse_args()
    set_determinism(0, False, args.threads)
    t0 = time.perf_counter()
    results = {}
    for name in args.workloads:
        results[name] = r = measure(name, args)
        s = r["seconds"]
        print(
            f"{name}: floor {1 / s['floor']:.2f} it/s, floor+aug {1 / s['floor + augmentation']:.2f} it/s, "
            f"engine {1 / s['engine']:.2f} it/s ({s['engine'] / s['floor + augmentation']:.3f}× floor+aug)",
            flush=True,
        )
    text = write(results, args, time.perf_counter() - t0)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
