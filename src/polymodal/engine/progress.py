"""One progress line per log interval: step, loss, rate and ETA (readable in a pipe or a log)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def fmt_seconds(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    def __init__(
        self,
        total: int,
        start: int = 0,
        name: str = "",
        stream: TextIO | None = None,
        quiet: bool = False,
    ) -> None:
        self.total, self.name, self.quiet = total, name, quiet
        self.stream = stream or sys.stderr
        self._t0, self._s0 = time.perf_counter(), start

    def rate(self, step: int) -> float:
        dt = time.perf_counter() - self._t0
        return (step - self._s0) / dt if dt > 0 else 0.0

    def log(self, step: int, values: dict[str, float]) -> None:
        if self.quiet:
            return
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        vals = " ".join(f"{k} {v:.4g}" for k, v in values.items())
        print(
            f"{self.name}step {step}/{self.total} | {vals} | {rate:.1f} step/s | ETA {fmt_seconds(eta)}",
            file=self.stream,
            flush=True,
        )

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"{self.name}{text}", file=self.stream, flush=True)
