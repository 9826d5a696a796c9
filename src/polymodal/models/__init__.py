"""Encoders (one per file) and the models that put heads on them.

`ENCODERS` is the one registry of modality encoders (as timm's `create_model`): each is an `Encoder`
subclass (``models/base.py``) registered as the class, ``@ENCODERS.register("name")``, so its
constructor's keywords are its config options. Every module in this package is imported (and so
registered) when the package is: adding an encoder is adding one file.
"""

from __future__ import annotations

from polymodal.models.registry import ENCODERS, create_encoder, takes
from polymodal.registry import import_submodules

import_submodules(__name__)  # each encoder module registers its class

__all__ = ["ENCODERS", "create_encoder", "takes"]
