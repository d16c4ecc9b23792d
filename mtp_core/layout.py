"""Where a run keeps its files under ``<storage_path>/<run_name>/``.

One frozen value shared by the driver (which prepares and reads a run directory) and every
worker (which writes checkpoints, events and the final model into it).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mtp_core.errors import ConfigError

__all__ = ["RunLayout", "check_storage", "ensure_storage"]


def check_storage(storage: Path, field: str = "--storage-path") -> Path:
    """``storage`` when it is, or can be created as, a writable folder; creates nothing.

    Checked before any run, cache or study file is read or written, so a storage path that is
    a file, lies under a file, or is read-only is one :class:`ConfigError` naming it.
    """
    if storage.exists() and not storage.is_dir():
        raise ConfigError(f"{field} {str(storage)!r} is a file, not a folder: give a folder "
                          "(it is created if missing)")
    existing = next(p for p in (storage, *storage.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{field} {str(storage)!r} cannot be created: {str(existing)!r} is "
                          "a file")
    try:  # a real write: os.access says yes to root on a read-only filesystem
        fd, probe = tempfile.mkstemp(prefix=".mtp-write-check-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        what = "is not writable" if existing == storage else (
            f"cannot be created in {str(existing)!r}")
        raise ConfigError(f"{field} {str(storage)!r} {what}: {err.strerror or err}") from None
    return storage


def ensure_storage(storage: Path, field: str = "--storage-path") -> Path:
    """``storage`` after :func:`check_storage`, created if missing."""
    check_storage(storage, field)
    try:
        storage.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{field} {str(storage)!r} cannot be created: "
                          f"{err.strerror or err}") from None
    return storage


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
    def estimator(self) -> Path:
        """A scikit-learn model's fitted pipeline (skops; ``model.type: sklearn``)."""
        return self.root / "model.skops"

    @property
    def preprocess(self) -> Path:
        """The fitted ``dataset.preprocess`` pipeline (skops), applied before the model."""
        return self.root / "preprocess.skops"

    @property
    def data_report(self) -> Path:
        """The data's report: columns, missing values, classes, splits, training statistics."""
        return self.root / "data_report.json"

    @property
    def final(self) -> Path:
        """Rank 0's summary of the finished loop (history, weights hash)."""
        return self.root / "final.json"

    @property
    def events(self) -> Path:
        """One JSON line per attempt start and finish."""
        return self.root / "events.jsonl"

    @property
    def progress(self) -> Path:
        """Rank 0's per-epoch records of the current driver's run, one JSON line each (the
        driver prints them as they come; display only)."""
        return self.root / "progress.jsonl"

    @property
    def result(self) -> Path:
        """The stored :class:`trainer.result.TrainingResult`."""
        return self.root / "result.json"

    @property
    def task(self) -> Path:
        """The task the run directory belongs to, as trained."""
        return self.root / "task.json"
