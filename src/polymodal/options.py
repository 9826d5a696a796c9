"""The one strict base for every options model (the run config, each method's section, transfer).

Unknown keys are refused (``extra="forbid"``) and assignments re-validated, so a typo is an error
naming the key instead of a silently ignored setting.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NoOptions(Options):
    """The section of a method that has no knobs (``supervised``)."""
