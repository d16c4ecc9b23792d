"""Bounding a study whose trials cannot start: a plain decision, stepped by the study's loop.

A trial that cannot get resources does not fail: Tune keeps it PENDING, and a training trial's
Ray Train run keeps waiting for its worker group's placement group. On a cluster whose CPUs
are held by other work (another study or run, placement groups a stopped run left behind)
such a study would wait forever. :class:`StartWatch` turns that into a decision: the study is
STALLED when trials wait to start, none is training, and none has been training for
``timeout_s`` (``search.trial_start_timeout_s``). Trials that queue behind the study's own
training trials are not stalled, and a trial that fails without ever training is no
progress, so a study whose every trial times out starting its workers stalls too.

The watch sees each trial as a :class:`TrialPhase`; the Tune callback in ``hpo.study`` maps
Tune's trial states (and, for training trials, whether the run has started its workers) to
phases and calls :meth:`StartWatch.step` with the time.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["StartDecision", "StartVerdict", "StartWatch", "TrialPhase"]

logger = logging.getLogger(__name__)


class TrialPhase(enum.StrEnum):
    WAITING = "waiting"  # created, or running but its training has not started
    TRAINING = "training"  # its training has started (workers up, or a result reported)
    TRAINED = "trained"  # ended after training
    FAILED_UNSTARTED = "failed_unstarted"  # ended (error, stop) without ever training


class StartDecision(enum.StrEnum):
    TRAINING = "training"  # some trial is training
    IDLE = "idle"  # no trial trains or waits (between trials): nothing to bound
    STARTING = "starting"  # trials wait to start, within timeout_s of the latest progress
    STALLED = "stalled"  # trials wait and none has trained for timeout_s


@dataclass(frozen=True)
class StartVerdict:
    decision: StartDecision
    idle_s: float  # since a trial last trained (or the study started)
    waiting: tuple[str, ...]  # trial ids that wait to start


class StartWatch:
    """Lifecycle: created when a study starts, :meth:`step` on every pass of the study's loop
    with the current time (any monotonic clock) and every trial's phase; returns the verdict.
    Holds only the time of the latest progress, so it restarts cleanly with a resumed study.
    """

    def __init__(self, timeout_s: float) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._last_progress: float | None = None
        self._trained: set[str] = set()

    def step(self, now: float, phases: Mapping[str, TrialPhase]) -> StartVerdict:
        if self._last_progress is None:
            self._last_progress = now
        for trial_id, phase in phases.items():
            if phase is TrialPhase.TRAINING:
                self._last_progress = now
            elif phase is TrialPhase.TRAINED and trial_id not in self._trained:
                self._trained.add(trial_id)
                self._last_progress = now
        waiting = tuple(sorted(t for t, p in phases.items() if p is TrialPhase.WAITING))
        idle = now - self._last_progress
        if any(p is TrialPhase.TRAINING for p in phases.values()):
            decision = StartDecision.TRAINING
        elif not waiting:
            decision = StartDecision.IDLE
        elif idle > self.timeout_s:
            decision = StartDecision.STALLED
            logger.warning("study STALLED: %d trial(s) waiting to start and none training "
                           "for %.1f s > trial_start_timeout_s=%g", len(waiting), idle,
                           self.timeout_s)
        else:
            decision = StartDecision.STARTING
        return StartVerdict(decision, idle, waiting)
