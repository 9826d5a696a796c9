"""The encoder registry and `create_encoder` (as timm's `create_model`)."""

from __future__ import annotations

import inspect

from torch import nn

from polymodal.errors import ConfigError
from polymodal.registry import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder")


def takes(name: str, option: str) -> bool:
    """Whether encoder ``name``'s constructor has a keyword ``option`` (e.g. ``vocab_size``)."""
    return option in inspect.signature(ENCODERS.get(name)).parameters


def create_encoder(name: str, **kwargs: object) -> nn.Module:
    """Build a registered encoder; a misspelt key is a `ConfigError`, not a deep `TypeError`.

    The keys are checked against the constructor's signature before the call, so a genuine
    `TypeError` raised inside a constructor is never mistaken for a bad config key.
    """
    factory = ENCODERS.get(name)  # unknown name: ConfigError listing the available ones
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [
        k
        for k, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = [k for k in kwargs if k not in allowed]
    if unknown and not takes_any:
        bad = ", ".join(f"'{k}'" for k in unknown)
        raise ConfigError(
            f"encoder '{name}' has no option {bad}; allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    return ENCODERS.create(name, **kwargs)
