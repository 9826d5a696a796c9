"""User-facing errors.

Everything a user can get wrong (a config key, a file, a shape) raises `PolymodalError` with one line
that names what was wrong and what is allowed. The CLI prints that line and exits non-zero, so no
traceback from deep inside ever reaches the user.
"""

from __future__ import annotations


class PolymodalError(Exception):
    """An error caused by input the user controls; its message is one complete line."""


class DataError(PolymodalError):
    """A dataset file is missing, corrupt or not in the expected format."""


class ConfigError(PolymodalError):
    """A config key, type or value is not allowed."""


class ShapeError(PolymodalError):
    """Two connected parts disagree on a tensor shape."""


class TrainingDiverged(PolymodalError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
