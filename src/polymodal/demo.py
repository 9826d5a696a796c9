"""`polymodal demo`: supervised-only vs UDA on MNIST with 10 labels per class, on the CPU.

Both runs share the seed, label split, model and step budget; only the method differs. The table
shows what consistency training on unlabeled data buys when labels are scarce.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from polymodal.config import build_config
from polymodal.engine.trainer import train

DEMO_CONFIG: dict[str, Any] = {
    "seed": 0,
    "data": {
        "name": "mnist",
        "labels_per_class": 10,
        "batch_size": 32,
        "unlabeled_ratio": 4,
        "eval_batch_size": 2000,
    },
    "augment": {
        "image": {
            "weak": [{"op": "crop", "pad": 2}],
            "strong": [
                {"op": "affine", "degrees": 20, "translate": 0.12, "scale": 0.15, "shear": 15},
                {"op": "cutout", "size": 10},
            ],
        }
    },
    "model": {"encoders": {"image": {"name": "cnn28", "width": 16, "out_dim": 64}}},
    "train": {
        "steps": 500,
        "lr": 0.03,
        "eval_every": 10_000,
        "checkpoint_every": 10_000,
        "log_every": 100,
        "device": "cpu",
    },
    "uda": {"weight": 1.0, "temperature": 0.4, "confidence": 0.8, "tsa": "linear"},
}


def run_demo(out: Path, data_root: str | None = None, steps: int | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result: dict[str, Any] = {}
    for method in ("supervised", "uda"):
        raw = json.loads(json.dumps(DEMO_CONFIG))
        raw["method"] = method
        if data_root:
            raw["data"]["root"] = data_root
        if steps:
            raw["train"]["steps"] = steps
        summary = train(build_config(raw), out / method)
        result[method] = {
            "test_error": summary["test_error"],
            "labels": summary["labeled_examples"],
            "steps": summary["steps"],
            "seconds": summary["seconds"],
        }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "demo.json").write_text(json.dumps(result, indent=2))
    print(f"\n{'method':12s} {'labels':>6s} {'steps':>6s} {'test error':>10s} {'time':>7s}")
    for method in ("supervised", "uda"):
        r = result[method]
        print(
            f"{method:12s} {r['labels']:6d} {r['steps']:6d} {100 * r['test_error']:9.2f}% "
            f"{r['seconds']:6.1f}s"
        )
    print(f"total {result['seconds']:.1f}s; written to {out / 'demo.json'}")
    return result
