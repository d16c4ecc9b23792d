"""Where a run keeps its files under ``<storage_path>/<run_name>/``.

One frozen value shared by the driver (which prepares and reads a run directory) and every
worker (which writes checkpoints, events and the final model into it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunLayout"]


@dataclass(frozen=True)
class RunLayout:
    """The files of one run directory (paths only; nothing is created)."""

    root: Path

    @classmethod
    def of(cls, run_dir: str | Path) -> RunLayout:
        return cls(Path(run_dir))

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model(self) -> Path:
        """The final weights (safetensors)."""
        return self.root / "model.safetensors"

    @property
    def final(self) -> Path:
        """Rank 0's summary of the finished loop (history, weights hash)."""
        return self.root / "final.json"

    @property
    def events(self) -> Path:
        """One JSON line per attempt start and finish."""
        return self.root / "events.jsonl"

    @property
    def result(self) -> Path:
        """The stored :class:`trainer.result.TrainingResult`."""
        return self.root / "result.json"

    @property
    def task(self) -> Path:
        """The task the run directory belongs to, as trained."""
        return self.root / "task.json"
