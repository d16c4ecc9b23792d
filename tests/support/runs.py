"""Finished run directories made without Ray: the training loop in this process
(``trainer.train_local``) plus the driver's own result writer, so that tests of what a run
directory may hold start from a real one in a few seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtp_core.spec import TrainingTask, parse_task
from trainer.result import PhaseClock

__all__ = ["finished_run"]


def finished_run(task: dict[str, Any] | TrainingTask, storage: Path,
                 run_name: str | None = None) -> Path:
    """Train ``task`` in-process under ``storage`` and store its ``result.json`` as
    ``mtp run`` does; returns the run directory."""
    from trainer import api

    t = task if isinstance(task, TrainingTask) else parse_task(task)
    name = run_name or t.task_id
    clock = PhaseClock()
    api.train_local(t, storage_path=storage, run_name=name)
    run_dir = Path(storage).resolve() / name
    api._collect_result(t, api.prepare(t), name, run_dir, clock)
    return run_dir
