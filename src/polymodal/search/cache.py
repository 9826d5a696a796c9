"""The weight cache: block key -> the trained weights of the fittest evaluated candidate holding that
block, so a child starts every block it shares with an evaluated candidate from trained weights.

On disk, one file per entry (``DIR/cache/<key>-<candidate>.pt``, written atomically and never
overwritten: a new entry for a key is a new file), listed in an index that is part of the search
state, so a search killed mid-generation resumes with exactly the cache it planned that generation
with. Files the index does not list (an entry replaced or evicted, or written by a generation that
did not commit) are deleted by `gc` after the state is saved. Bounds: at most ``max_blocks`` entries
and ``disk_mb`` of tensors on disk (evicting the least fit, then the least recently used, entries);
at most ``memory_mb`` of them loaded (least recently used first out). Eviction order depends only
on the index, so it is the same on every backend and after a resume.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymodal.engine.checkpoint import save_atomic
from polymodal.search.config import CacheConfig

State = dict[str, Tensor]
MB = 1 << 20


def nbytes(state: State) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


class WeightCache:
    def __init__(
        self, folder: Path, cfg: CacheConfig, index: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.folder, self.cfg = folder, cfg
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index: dict[str, dict[str, Any]] = index if index is not None else {}
        self._mem: OrderedDict[str, State] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def __len__(self) -> int:
        return len(self.index)

    def disk_bytes(self) -> int:
        return sum(e["bytes"] for e in self.index.values())

    def touch(self, keys: list[str], generation: int) -> None:
        for k in keys:
            self.index[k]["used"] = generation

    def get(self, key: str) -> State:
        if key in self._mem:
            self._mem.move_to_end(key)
            return self._mem[key]
        state = torch.load(self.folder / self.index[key]["file"], map_location="cpu", weights_only=True)
        self._remember(key, state)
        return state

    def states(self, keys: list[str]) -> dict[str, State]:
        return {k: self.get(k) for k in keys if k in self.index}

    def _remember(self, key: str, state: State) -> None:
        self._mem[key] = state
        self._mem.move_to_end(key)
        while len(self._mem) > 1 and sum(nbytes(s) for s in self._mem.values()) > self.cfg.memory_mb * MB:
            self._mem.popitem(last=False)

    def offer(self, key: str, state: State, fitness: float, candidate: str, generation: int) -> bool:
        """Keep ``state`` for ``key`` if no fitter candidate's weights are cached for it."""
        old = self.index.get(key)
        if old is not None and old["fitness"] >= fitness:
            return False
        name = f"{key}-{candidate}.pt"
        save_atomic(state, self.folder / name)
        entry = {"file": name, "fitness": fitness, "candidate": candidate, "bytes": nbytes(state)}
        self.index[key] = {**entry, "used": generation}
        self._mem.pop(key, None)
        self._remember(key, state)
        return True

    def bound(self) -> list[str]:
        """Evict (least fit, then least recently used) until within ``max_blocks`` and ``disk_mb``."""
        order = sorted(self.index, key=lambda k: (self.index[k]["fitness"], self.index[k]["used"], k))
        evicted = []
        while order and (len(self.index) > self.cfg.max_blocks or self.disk_bytes() > self.cfg.disk_mb * MB):
            k = order.pop(0)
            del self.index[k]
            self._mem.pop(k, None)
            evicted.append(k)
        return evicted

    def gc(self) -> None:
        """Delete block files the index no longer lists (call after the state is saved)."""
        keep = {e["file"] for e in self.index.values()}
        for f in self.folder.glob("*.pt"):
            if f.name not in keep:
                f.unlink(missing_ok=True)
        for f in self.folder.glob(".*.tmp"):
            f.unlink(missing_ok=True)
