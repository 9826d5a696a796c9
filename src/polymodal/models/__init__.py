"""Encoders (one per file) and the model that puts heads on them.

`ENCODERS` is the one registry of modality encoders (as timm's `create_model`). An encoder is
an ``nn.Module`` with ``out_dim: int`` and ``forward(x, lengths=None) -> (B, out_dim)``; it also
exposes its hidden stages by name through ``forward_stages(x, lengths=None) -> dict[str, Tensor]``
(ordered, the last entry is the output), so fusion can read any stage.
"""

from __future__ import annotations

import inspect

from torch import nn

from polymodal.errors import ConfigError
from polymodal.registry import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder")


def takes(name: str, option: str) -> bool:
    """Whether encoder ``name``'s factory has a keyword ``option`` (e.g. ``vocab_size``)."""
    return option in inspect.signature(ENCODERS.get(name)).parameters


def create_encoder(name: str, **kwargs: object) -> nn.Module:
    """Build a registered encoder; a misspelt key is a `ConfigError`, not a deep `TypeError`.

    The keys are checked against the factory's signature before the call, so a genuine
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


from polymodal.models import audio_cnn, cnn28, lenet, tabular_mlp, text_cnn, wave_cnn, wrn  # noqa: E402,F401
