"""The study's guard: a Tune callback that ends a study which cannot go on.

Two causes, both raised from ``on_step_end`` (Tune then stops every trial, and ``Tuner.fit``
raises the error as is):

- a trial reported no ``search.metric`` (its :class:`MetricNotReportedError`, an input
  error): every other trial would fail the same way;
- no trial could start training for ``search.trial_start_timeout_s``
  (:class:`hpo.watch.StartWatch`): :class:`StudyFailedError` naming the CPUs a trial needs,
  the cluster's CPUs and those free.

The guard is a thin shell: it maps Tune's trials to :class:`hpo.watch.TrialPhase` (a training
trial counts as training once its run has started its workers, i.e. written a ``start`` event
to its run folder's events file, or reported a result) and asks the watch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from hpo.errors import MetricNotReportedError, StudyFailedError
from hpo.names import trial_run_name
from hpo.watch import StartDecision, StartVerdict, StartWatch, TrialPhase
from mtp_core.errors import raised_error
from mtp_core.layout import RunLayout
from mtp_core.ray_env import reap_orphan_placement_groups

__all__ = ["StudyGuard", "stall_message"]

logger = logging.getLogger(__name__)

# how often the guard looks at the trials (each look may read a run's events file)
_LOOK_INTERVAL_S = 1.0
_SETTINGS = ("study", "timeout_s", "cpus", "needs", "run_root", "clock", "cpu_counts")


def _cluster_cpus() -> tuple[float, float]:
    """The cluster's CPUs and those free now."""
    import ray

    return (float(ray.cluster_resources().get("CPU", 0.0)),
            float(ray.available_resources().get("CPU", 0.0)))


def stall_message(study: str, verdict: StartVerdict, timeout_s: float, cpus: float,
                  needs: str, total: float, free: float) -> str:
    """One line: how long no trial could start, what a trial needs, what is free, what to do."""
    head = (f"study {study}: no trial could start training for {verdict.idle_s:.0f} s "
            f"(search.trial_start_timeout_s={timeout_s:g}; {len(verdict.waiting)} waiting): "
            f"a trial needs {needs}, the cluster has {total:g} CPUs and {free:g} free")
    if free + 1e-9 < cpus:
        return (head + "; other work holds them (another study or run, or placement groups "
                "a stopped run left behind): free them, lower the task's resources, or raise "
                "search.trial_start_timeout_s")
    return (head + "; the trial's workers did not start in time (a slow start, or free CPUs "
            "split over nodes too small for a worker): raise search.trial_start_timeout_s or "
            "lower the task's resources")


class StudyGuard(Callback):
    """Lifecycle: made by ``run_study`` for one study; Tune calls it on every pass of its loop.

    ``run_root`` is the storage folder holding training trials' run folders (None for a plain
    objective, whose trial trains as soon as it runs). Tune pickles its callbacks with the
    study and restores them on resume: only the settings are kept, the watch starts afresh
    (its times belong to the process that ran it).
    """

    def __init__(self, study: str, timeout_s: float, cpus: float, needs: str,
                 run_root: str | None, clock: Callable[[], float] = time.monotonic,
                 cpu_counts: Callable[[], tuple[float, float]] = _cluster_cpus) -> None:
        self.study = study
        self.timeout_s = timeout_s
        self.cpus = cpus  # one trial's, while it trains
        self.needs = needs
        self.run_root = run_root
        self.clock = clock
        self.cpu_counts = cpu_counts
        self._reset()

    def _reset(self) -> None:
        self._watch = StartWatch(self.timeout_s)
        self._error: BaseException | None = None
        self._next_look = float("-inf")
        self._running_from: dict[str, tuple[int, int]] = {}  # run starts, iterations
        self._trained: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _SETTINGS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._note_error(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._note_error(trial)

    def _note_error(self, trial: Any) -> None:
        try:
            err = _trial_error(trial)
        except Exception as read_err:  # noqa: BLE001 - the trial's error file: best effort
            logger.debug("trial %s: error not readable: %s", trial.trial_id, read_err)
            return
        if err is not None and isinstance(raised_error(err), MetricNotReportedError):
            self._error = raised_error(err)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._error is not None:
            raise self._error
        now = self.clock()
        if now < self._next_look:
            return
        self._next_look = now + _LOOK_INTERVAL_S
        phases = {t.trial_id: self.phase(t) for t in trials}
        if TrialPhase.WAITING in phases.values():
            # a stopped trial's Ray Train controller may have died with its worker group's
            # placement group still pending: nothing else frees it while this driver lives
            reap_orphan_placement_groups()
        verdict = self._watch.step(now, phases)
        if verdict.decision is StartDecision.STALLED:
            total, free = self.cpu_counts()
            raise StudyFailedError(stall_message(self.study, verdict, self.timeout_s,
                                                 self.cpus, self.needs, total, free))

    def phase(self, trial: Any) -> TrialPhase:
        """A Tune trial (``trial_id``, ``status``, ``last_result``) as the watch sees it."""
        status = trial.status
        iterations = int((trial.last_result or {}).get("training_iteration", 0) or 0)
        if status == "RUNNING":
            if self.run_root is None:  # a plain objective runs as soon as its trial does
                self._trained.add(trial.trial_id)
                return TrialPhase.TRAINING
            starts = self._run_starts(trial.trial_id)
            # what the run had when this attempt was first seen running
            base = self._running_from.setdefault(trial.trial_id, (starts, iterations))
            if starts > base[0] or iterations > base[1]:
                self._trained.add(trial.trial_id)
                return TrialPhase.TRAINING
            return TrialPhase.WAITING
        self._running_from.pop(trial.trial_id, None)
        if status == "PENDING":
            return TrialPhase.WAITING
        if trial.trial_id in self._trained or iterations > 0:
            return TrialPhase.TRAINED
        return TrialPhase.FAILED_UNSTARTED  # TERMINATED, ERROR (or PAUSED) before training

    def _run_starts(self, trial_id: str) -> int:
        """Attempts the trial's training run has started (its workers were up)."""
        assert self.run_root is not None
        events = RunLayout.of(Path(self.run_root) / trial_run_name(self.study, trial_id)).events
        try:
            lines = events.read_text(encoding="utf-8").splitlines()
        except OSError:  # not there yet
            return 0
        return sum(1 for line in lines if _event_name(line) == "start")


def _trial_error(trial: Any) -> BaseException | None:
    """The error a trial just raised. Tune writes it to the trial's driver-side folder before
    it calls the callbacks, and copies it to the study's storage later: read the first."""
    local = trial.pickled_error_file
    if local is not None and Path(local).is_file():
        from ray import cloudpickle

        with open(local, "rb") as f:
            err = cloudpickle.load(f)
        return err if isinstance(err, BaseException) else None
    err = trial.get_pickled_error()
    return err if isinstance(err, BaseException) else None


def _event_name(line: str) -> str | None:
    """The ``event`` of one line of a run's events file (None: a line being written)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("event") if isinstance(record, dict) else None
