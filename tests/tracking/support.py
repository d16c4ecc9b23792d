"""What the tracking tests share: tracking turned back on, a tiny tracked task, a client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import iris_task_dict


def tracking_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the suite's ``MTP_TRACKING=off`` (tests/conftest.py) for one test."""
    monkeypatch.setenv("MTP_TRACKING", "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MTP_DATABASE_URL", raising=False)


def iris_tracked(name: str, epochs: int = 2, **tracking: Any) -> dict[str, Any]:
    """The smallest real task (iris, linear, one worker), ``epochs`` epochs, no reuse."""
    raw = iris_task_dict(name)
    raw["training"]["epochs"] = epochs
    if tracking:
        raw["tracking"] = tracking
    return raw


def default_store(storage: Path) -> str:
    return f"sqlite:///{(storage / '_db' / 'mtp.db').resolve()}"
