"""One small registry type, used for models, datasets, methods, weightings and ops (as in timm).

`register` is a decorator; `get(name)` returns what was registered; `create(name, **kwargs)` calls it;
an unknown name is a `ConfigError` that lists what exists. A registry is the only list of its kind:
configs validate names against it, so adding an entry touches the one file that registers it.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from polymodal.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        def deco(item: Any) -> Any:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = item
            return item

        return deco

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a toy entry clean up with this)."""
        self._items.pop(name, None)

    def get(self, name: str) -> Any:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} '{name}'; available: {', '.join(sorted(self._items))}")
        return self._items[name]

    def create(self, name: str, **kwargs: object) -> T:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, Any]]:
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (each registers its entries): one file adds one entry."""
    path = sys.modules[package].__path__
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        importlib.import_module(f"{package}.{info.name}")
