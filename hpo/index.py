"""The study index in the platform database (``mtp_studies``, ``mtp_trials``).

The study's files under ``<storage>/_studies/<name>`` stay the study's own record (Tune resumes
from them); the index is what a scheduler, the API or ``SELECT`` reads without parsing them: a
row per study (status, searcher, metric, best trial, MLflow parent run) and per trial (status,
parameters, value, last metrics). A study writes its row when it starts, a trial row as each
trial finishes (from the Tune driver, one writer), and every row again when it ends.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from database import Database
from database.schema import STUDIES, TRIALS
from database.sql import insert_ignoring_conflict

__all__ = ["IndexedStudy", "StudyIndex", "StudyStatus", "TrialRow"]

logger = logging.getLogger(__name__)


class StudyStatus(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    position: int
    status: str
    params: dict[str, Any]
    value: float | None
    metrics: dict[str, float]
    iterations: int
    time_s: float
    reused: bool


@dataclass(frozen=True)
class IndexedStudy:
    name: str
    study_dir: str
    status: StudyStatus
    searcher: str
    metric: str
    mode: str
    trials: int
    best_trial: str | None
    best_value: float | None
    best_params: dict[str, Any] | None
    run_id: str | None
    started_at: float
    updated_at: float
    error: str | None


class StudyIndex:
    """Rows of the studies of one database (see the module docstring for the lifecycle)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def started(self, name: str, *, study_dir: str, searcher: str, metric: str, mode: str,
                run_id: str | None = None) -> None:
        """A study (re)starts: its row RUNNING; a resumed study keeps its trial rows."""
        now = time.time()
        row = {"study_dir": study_dir, "status": StudyStatus.RUNNING.value,
               "searcher": searcher, "metric": metric, "mode": mode, "run_id": run_id,
               "updated_at": now, "error": None}

        def txn(conn: Connection) -> None:
            if not insert_ignoring_conflict(conn, STUDIES, {
                    "name": name, "trials": 0, "started_at": now, **row}):
                conn.execute(update(STUDIES).where(STUDIES.c.name == name).values(**row))

        self.db.write(txn, f"study {name} started")

    def trial(self, name: str, trial: TrialRow) -> None:
        """One trial's row, inserted or replaced."""
        self.db.write(lambda conn: self._put_trial(conn, name, trial), f"trial of {name}")

    def ended(self, name: str, status: StudyStatus, *, trials: list[TrialRow] | None = None,
              best: Mapping[str, Any] | None = None, error: str | None = None) -> None:
        """The study's end: its status, every trial row (when known) and the best trial."""

        def txn(conn: Connection) -> None:
            for t in trials or []:
                self._put_trial(conn, name, t)
            count = len(conn.execute(select(TRIALS.c.trial_id)
                                     .where(TRIALS.c.study == name)).all())
            values: dict[str, Any] = {"status": status.value, "updated_at": time.time(),
                                      "trials": count, "error": error}
            if best is not None:
                values.update(best_trial=best["trial_id"], best_value=best["value"],
                              best_params=json.dumps(best["params"], sort_keys=True,
                                                     default=str))
            conn.execute(update(STUDIES).where(STUDIES.c.name == name).values(**values))

        self.db.write(txn, f"study {name} ended")

    def get(self, name: str) -> IndexedStudy | None:
        row = self.db.read(lambda conn: conn.execute(
            select(STUDIES).where(STUDIES.c.name == name)).first(), f"study {name}")
        return None if row is None else _study(row)

    def studies(self) -> list[IndexedStudy]:
        rows = self.db.read(lambda conn: conn.execute(
            select(STUDIES).order_by(STUDIES.c.started_at)).all(), "studies")
        return [_study(r) for r in rows]

    def trials(self, name: str) -> list[TrialRow]:
        rows = self.db.read(lambda conn: conn.execute(
            select(TRIALS).where(TRIALS.c.study == name).order_by(TRIALS.c.position)).all(),
            f"trials of {name}")
        return [TrialRow(trial_id=r.trial_id, position=r.position, status=r.status,
                         params=json.loads(r.params), value=r.value,
                         metrics=json.loads(r.metrics), iterations=r.iterations,
                         time_s=r.time_s, reused=bool(r.reused)) for r in rows]

    @staticmethod
    def _put_trial(conn: Connection, name: str, t: TrialRow) -> None:
        conn.execute(delete(TRIALS).where(TRIALS.c.study == name,
                                          TRIALS.c.trial_id == t.trial_id))
        conn.execute(TRIALS.insert().values(
            study=name, trial_id=t.trial_id, position=t.position, status=t.status,
            params=json.dumps(t.params, sort_keys=True, default=str), value=t.value,
            metrics=json.dumps(t.metrics, sort_keys=True), iterations=t.iterations,
            time_s=t.time_s, reused=t.reused))


def _study(r: Any) -> IndexedStudy:
    return IndexedStudy(name=r.name, study_dir=r.study_dir, status=StudyStatus(r.status),
                        searcher=r.searcher, metric=r.metric, mode=r.mode, trials=r.trials,
                        best_trial=r.best_trial, best_value=r.best_value,
                        best_params=None if r.best_params is None else json.loads(
                            r.best_params),
                        run_id=r.run_id, started_at=r.started_at, updated_at=r.updated_at,
                        error=r.error)
