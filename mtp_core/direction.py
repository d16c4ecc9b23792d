"""Which way a metric improves (like Optuna's ``StudyDirection``).

The one place that decides "better by mode": the best epoch and early stopping of a run, the
best trial of a study, and the searchers' mode all use it. The values are the strings stored in
results and configs (``min`` / ``max``).
"""

from __future__ import annotations

import enum
import math

__all__ = ["Direction"]


class Direction(enum.StrEnum):
    MINIMIZE = "min"
    MAXIMIZE = "max"

    def improves(self, value: float, best: float | None, min_delta: float = 0.0) -> bool:
        """Whether ``value`` beats ``best`` by more than ``min_delta`` (any value beats None;
        NaN never improves)."""
        if math.isnan(value):
            return False
        if best is None or math.isnan(best):
            return True
        if self is Direction.MAXIMIZE:
            return value > best + min_delta
        return value < best - min_delta
