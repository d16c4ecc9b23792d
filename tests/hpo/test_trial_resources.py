"""A study whose trials cannot get CPUs ends with one line instead of waiting forever: the
decision (:class:`hpo.watch.StartWatch`) stepped by hand, the Tune callback around it on
stand-in trials, and a real study whose only CPUs another job holds."""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hpo.errors import MetricNotReportedError, StudyFailedError
from hpo.guard import StudyGuard, stall_message
from hpo.names import trial_run_name
from hpo.spec import SearchSpec
from hpo.study import run_study
from hpo.watch import StartDecision, StartVerdict, StartWatch, TrialPhase
from mtp_core.errors import exit_code_for
from mtp_core.layout import RunLayout
from tests.hpo.support import assert_still_there, seeded_storage, snapshot

W, T, D, F = (TrialPhase.WAITING, TrialPhase.TRAINING, TrialPhase.TRAINED,
              TrialPhase.FAILED_UNSTARTED)
S, TR, ID, ST = (StartDecision.STARTING, StartDecision.TRAINING, StartDecision.IDLE,
                StartDecision.STALLED)

# (name, [(time, {trial: phase}, expected decision)]) with timeout_s=10
SCENARIOS: list[tuple[str, list[tuple[float, dict[str, TrialPhase], StartDecision]]]] = [
    ("never starts", [(0, {"a": W}, S), (5, {"a": W}, S), (10, {"a": W}, S),
                      (10.5, {"a": W}, ST)]),
    ("starts in time", [(0, {"a": W}, S), (9, {"a": T}, TR), (30, {"a": T}, TR),
                        (31, {"a": D}, ID)]),
    ("queued behind a training trial", [(0, {"a": T, "b": W}, TR), (50, {"a": T, "b": W}, TR),
                                        (55, {"a": D, "b": T}, TR)]),
    ("next trial cannot start after one trained", [(0, {"a": T}, TR), (20, {"a": D}, ID),
                                                   (25, {"a": D, "b": W}, S),
                                                   (30, {"a": D, "b": W}, S),
                                                   (30.5, {"a": D, "b": W}, ST)]),
    ("every trial fails without starting", [(0, {"a": W}, S), (4, {"a": F, "b": W}, S),
                                            (8, {"a": F, "b": F, "c": W}, S),
                                            (11, {"a": F, "b": F, "c": W}, ST)]),
    ("a short trial seen only when done", [(0, {"a": W}, S), (9, {"a": D, "b": W}, S),
                                           (18, {"a": D, "b": W}, S),
                                           (19.5, {"a": D, "b": W}, ST)]),
    ("nothing waits", [(0, {}, ID), (100, {"a": F}, ID), (200, {"a": F}, ID)]),
    ("pending, then running-not-started, then training", [
        (0, {"a": W}, S), (6, {"a": W}, S), (9.9, {"a": T}, TR), (19, {"a": T}, TR)]),
]


@pytest.mark.parametrize(("name", "steps"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_the_watch_decides_when_a_study_is_stalled(
    name: str, steps: list[tuple[float, dict[str, TrialPhase], StartDecision]]
) -> None:
    watch = StartWatch(timeout_s=10)
    got = [watch.step(t, phases).decision for t, phases, _ in steps]
    assert got == [want for _, _, want in steps], name


def test_the_verdict_names_the_waiting_trials_and_the_idle_time() -> None:
    watch = StartWatch(timeout_s=3)
    watch.step(100.0, {"b": W, "a": W})
    verdict = watch.step(104.0, {"b": W, "a": W, "c": D})
    assert verdict == StartVerdict(S, 0.0, ("a", "b"))
    # "c" trained (first seen done): progress at 104; the wait starts again
    verdict = watch.step(107.5, {"b": W, "a": W, "c": D})
    assert verdict == StartVerdict(ST, 3.5, ("a", "b"))
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        StartWatch(0)


@dataclass
class _Trial:
    """The fields of ``ray.tune.experiment.Trial`` the guard reads."""

    trial_id: str
    status: str
    last_result: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    pickled_error_file: str | None = None  # Tune's driver-side copy (see the Ray test)

    def get_pickled_error(self) -> BaseException | None:
        return self.error


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _guard(clock: _Clock, run_root: Path | None, free: float = 0.0) -> StudyGuard:
    return StudyGuard("s", 30.0, 2.0, "2 CPUs (resources.num_workers=2 x cpus_per_worker=1)",
                      None if run_root is None else str(run_root), clock=clock,
                      cpu_counts=lambda: (2.0, free))


def _start_event(run_root: Path, trial_id: str) -> None:
    events = RunLayout.of(run_root / trial_run_name("s", trial_id)).events
    events.parent.mkdir(parents=True, exist_ok=True)
    with open(events, "a") as f:
        f.write('{"event": "start", "from_epoch": 0, "time_unix": 1.0}\n')


def test_a_training_trial_trains_once_its_run_has_started(tmp_path: Path) -> None:
    guard = _guard(_Clock(), tmp_path)
    trial = _Trial("0a1b2c3d", "PENDING")
    assert guard.phase(trial) is W
    trial.status = "RUNNING"
    assert guard.phase(trial) is W  # driving Ray Train, whose workers wait for CPUs
    _start_event(tmp_path, "0a1b2c3d")
    assert guard.phase(trial) is T
    trial.status = "TERMINATED"
    trial.last_result = {"training_iteration": 1}
    assert guard.phase(trial) is D
    # a retried trial: the start of the attempt before does not count again
    trial.status = "RUNNING"
    assert guard.phase(trial) is W
    trial.last_result = {"training_iteration": 2}
    assert guard.phase(trial) is T
    failed = _Trial("ffffffff", "ERROR")
    assert guard.phase(failed) is F
    half = RunLayout.of(tmp_path / trial_run_name("s", "abcde_00001")).events
    half.parent.mkdir(parents=True)
    half.write_text('{"event": "sta')  # a line being written
    assert guard.phase(_Trial("abcde_00001", "RUNNING")) is W


def test_a_plain_objective_trains_as_soon_as_it_runs() -> None:
    guard = _guard(_Clock(), None)
    assert guard.phase(_Trial("a", "PENDING")) is W
    assert guard.phase(_Trial("a", "RUNNING")) is T
    assert guard.phase(_Trial("a", "ERROR")) is D  # it ran: it failed by itself


@pytest.mark.parametrize(("free", "words"), [
    (0.0, "0 free; other work holds them (another study or run, or placement groups a "
          "stopped run left behind)"),
    (1.5, "1.5 free; other work holds them"),
    (2.0, "2 free; the trial's workers did not start in time"),
])
def test_the_guard_ends_a_stalled_study_with_one_line(free: float, words: str,
                                                       tmp_path: Path) -> None:
    clock = _Clock()
    guard = _guard(clock, tmp_path, free=free)
    trials = [_Trial("0a1b2c3d", "RUNNING"), _Trial("11112222", "PENDING")]
    for t in (0.0, 10.0, 20.0, 30.0):
        clock.now = t
        guard.on_step_end(iteration=int(t), trials=trials)
    clock.now = 31.0
    with pytest.raises(StudyFailedError) as info:
        guard.on_step_end(iteration=31, trials=trials)
    msg = str(info.value)
    assert msg.startswith("study s: no trial could start training for 31 s "
                          "(search.trial_start_timeout_s=30; 2 waiting): a trial needs 2 CPUs "
                          "(resources.num_workers=2 x cpus_per_worker=1), the cluster has 2 "
                          "CPUs and "), msg
    assert words in msg and "\n" not in msg, msg
    assert exit_code_for(info.value) == 1


def test_the_guard_stops_the_study_on_a_metric_no_trial_reports(tmp_path: Path) -> None:
    guard = _guard(_Clock(), None)
    err = MetricNotReportedError("search.metric 'x' is not reported by the trials; they "
                                 "report: loss")
    guard.on_trial_recover(iteration=1, trials=[], trial=_Trial("a", "RUNNING", error=err))
    with pytest.raises(MetricNotReportedError, match="search.metric 'x'"):
        guard.on_step_end(iteration=2, trials=[])
    # as Tune hands it over: a Ray task error around it, in the trial's driver-side file
    from ray import cloudpickle
    from ray.exceptions import RayTaskError

    wrapped = RayTaskError("ImplicitFunc.train", "Traceback ...", err).as_instanceof_cause()
    path = tmp_path / "error.pkl"
    path.write_bytes(cloudpickle.dumps(wrapped))
    from_file = _guard(_Clock(), None)
    from_file.on_trial_error(iteration=1, trials=[],
                             trial=_Trial("a", "ERROR", pickled_error_file=str(path)))
    with pytest.raises(MetricNotReportedError, match="search.metric 'x'"):
        from_file.on_step_end(iteration=2, trials=[])
    other = _guard(_Clock(), None)  # any other trial error is the study's summary's business
    other.on_trial_error(iteration=1, trials=[],
                         trial=_Trial("a", "ERROR", error=RuntimeError("boom")))
    other.on_step_end(iteration=2, trials=[])


def test_a_restored_guard_keeps_its_settings_and_forgets_its_times(tmp_path: Path) -> None:
    guard = StudyGuard("s", 30.0, 2.0, "2 CPUs", str(tmp_path))
    guard.on_step_end(iteration=1, trials=[_Trial("a", "PENDING")])
    again = pickle.loads(pickle.dumps(guard))
    assert (again.study, again.timeout_s, again.cpus, again.needs, again.run_root) == (
        "s", 30.0, 2.0, "2 CPUs", str(tmp_path))
    assert again._watch is not guard._watch and again._watch._last_progress is None


def test_stall_message_for_a_plain_objective() -> None:
    msg = stall_message("s", StartVerdict(ST, 12.0, ("a",)), 10, 1.0, "1 CPU", 2.0, 0.0)
    assert "a trial needs 1 CPU, the cluster has 2 CPUs and 0 free" in msg


SPEC = {"space": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}, "searcher": "random",
        "metric": "loss", "mode": "min"}


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_study_whose_trials_get_no_cpu_fails_within_its_bound(tmp_path: Path) -> None:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    storage = seeded_storage(tmp_path)
    before = snapshot(tmp_path)
    total = ray.cluster_resources()["CPU"]
    held = placement_group([{"CPU": total}])  # another job holds every CPU
    ray.get(held.ready(), timeout=60)
    spec = SearchSpec.model_validate({**SPEC, "num_samples": 2, "trial_start_timeout_s": 3})
    t0 = time.monotonic()
    try:
        with pytest.raises(StudyFailedError) as info:
            run_study(spec, name="starved", storage=storage,
                      objective=lambda p: {"loss": p["x"]})
    finally:
        remove_placement_group(held)
    took = time.monotonic() - t0
    assert took < 3 + 30, took  # the bound and Tune's start, not forever
    msg = str(info.value)
    assert msg.startswith("study starved: no trial could start training for "), msg
    assert f"a trial needs 1 CPU, the cluster has {total:g} CPUs and 0 free" in msg, msg
    assert_still_there(before, tmp_path)
    # the stopped trials hold nothing: every CPU is free again
    from tests.conftest import wait_for

    wait_for(lambda: ray.available_resources().get("CPU", 0) == total, timeout_s=30,
             what="the study's CPUs to be released")


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_trials_queued_behind_a_training_trial_are_not_stalled(tmp_path: Path) -> None:
    """One CPU held elsewhere: the study's two trials run one after the other; the second
    waits (PENDING, no CPU) longer than the bound while the first trains, and that is fine."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    total = ray.cluster_resources()["CPU"]
    held = placement_group([{"CPU": total - 1}])
    ray.get(held.ready(), timeout=60)
    spec = SearchSpec.model_validate({**SPEC, "num_samples": 2, "max_concurrent_trials": 2,
                                      "trial_start_timeout_s": 10})

    def slow(p: dict[str, Any]) -> dict[str, float]:
        time.sleep(12)  # longer than the bound: the second trial waits past it
        return {"loss": p["x"]}

    try:
        result = run_study(spec, name="queued", storage=tmp_path, objective=slow)
    finally:
        remove_placement_group(held)
    assert len(result.trials) == 2
