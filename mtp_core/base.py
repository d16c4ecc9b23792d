"""The one strict base of every configuration model.

Unknown fields are errors (a typo names the field instead of being ignored), models are frozen,
and NaN or infinity is refused for every float field, at any depth: a value like
``every_minutes: .inf`` must fail where the config is read, not minutes later in a worker.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """Frozen, ``extra="forbid"``, finite floats only; enums stay enums."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                              use_enum_values=False)
