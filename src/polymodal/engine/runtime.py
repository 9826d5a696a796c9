"""Devices, precision, seeding: the engine's choices, never hard-coded in models or methods."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from polymodal.errors import ConfigError


def select_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable explicit choice is an error."""
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if name.startswith("cuda:") and available["cuda"]:  # a data-parallel rank's own GPU
        return torch.device(name)
    if not available.get(name, False):
        have = ", ".join(d for d, ok in available.items() if ok)
        raise ConfigError(f"train.device='{name}' is not available here; available: auto, {have}")
    return torch.device(name)


def set_determinism(seed: int, deterministic: bool, threads: int | None = None) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


def step_generator(seed: int, step: int, device: torch.device, rank: int = 0) -> torch.Generator:
    """All randomness of one step (augmentation, dropout) comes from (seed, step, rank) alone.

    That makes a resumed run draw exactly what the uninterrupted run drew, with no RNG state to save.
    Dropout draws from the global generator, which is reseeded the same way. Each data-parallel rank
    gets its own stream (rank 0's is the single-process one), so ranks do not augment alike.
    """
    derived = (seed * 1_000_003 + step + rank * 7_919_000_003) % (2**63 - 1)
    torch.manual_seed(derived)
    return torch.Generator(device=device).manual_seed(derived)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 autocast on cuda (tensor cores; no loss scaling needed) and fp32 elsewhere: on
    CPU bf16 matmuls are slower than fp32 on most cores, and on mps bf16 autocast is incomplete."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
