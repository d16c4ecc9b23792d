"""The scheduler's decisions (``cluster.scheduler.Scheduler``), without Ray: hand-built queue
records, a fake clock, cluster capacities and job reports fed in, and the step's admissions,
actions, states and reasons checked."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.queue import Outcome, Progress, QueueState, StopRequest, TaskRecord
from cluster.scheduler import (
    Action,
    ActionKind,
    Capacity,
    JobReport,
    JobStatus,
    Scheduler,
    SchedulerError,
    SchedulerPolicy,
    StepResult,
)
from mtp_core.resources import Resources, TaskResources

T0 = 1_000_000.0
GIB = float(1 << 30)


class Clock:
    """The scheduler's clock: ``now`` moves only when a test advances it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def rec(id: str, priority: int = 50, seq: int = 0, cpus: float = 1.0, *, workers: int = 1,
        gpus: float = 0.0, memory: float = 0.0, **fields: Any) -> TaskRecord:
    """A waiting task of ``workers`` x (``cpus``, ``gpus``, ``memory`` bytes)."""
    return TaskRecord(
        id=id, name=f"name-{id}", task_id=f"task-{id}", priority=priority,
        resources=TaskResources(workers, cpus, gpus, 0.0, memory), config="{}",
        config_path=f"/q/{id}/task.json", storage="/storage", run_name=f"run-{id}",
        submitter="tester", submitted_at=T0 - 1000.0, seq=seq, **fields)


def running(id: str, priority: int = 50, seq: int = 0, cpus: float = 1.0, *,
            started: float = T0, attempt: int = 1, **fields: Any) -> TaskRecord:
    """A task as a restarted scheduler loads it: RUNNING its ``attempt`` since ``started``."""
    return rec(id, priority, seq, cpus, state=QueueState.RUNNING, attempts=attempt,
               job_id=f"mtp-{id}-{attempt}", attempt_started_at=started, started_at=started,
               **fields)


def cap(cpu: float, gpu: float = 0.0, memory: float = 0.0, *,
        available: Resources | None = None) -> Capacity:
    """One node of ``cpu``/``gpu``/``memory``; Ray reports it all available unless told."""
    node = Resources(cpu=cpu, gpu=gpu, memory=memory)
    return Capacity(nodes=(node,), available=node if available is None else available)


def make(*records: TaskRecord, policy: SchedulerPolicy | None = None,
         clock: Clock | None = None) -> tuple[Scheduler, Clock]:
    clock = clock or Clock()
    s = Scheduler(policy, clock=clock)
    s.load(records)
    for r in records:
        if r.state is QueueState.RUNNING:
            s.observe(r.id, JobReport(JobStatus.RUNNING))
    return s, clock


def started(result: StepResult) -> list[str]:
    return [a.task.id for a in result.actions if a.kind is ActionKind.START_JOB]


def stops(result: StepResult) -> list[Action]:
    return [a for a in result.actions if a.kind is ActionKind.STOP_JOB]


def stopped(result: StepResult) -> list[str]:
    return [a.task.id for a in stops(result)]


def changed(result: StepResult, task_id: str) -> TaskRecord:
    """The last record of ``task_id`` the step asks to persist."""
    found = [r for r in result.changed if r.id == task_id]
    assert found, f"{task_id} not among the changed records {[r.id for r in result.changed]}"
    return found[-1]


def still_running(s: Scheduler, *ids: str) -> None:
    """Report each task's job as RUNNING (no new progress)."""
    for i in ids:
        s.observe(i, JobReport(JobStatus.RUNNING, s.get(i).progress))


def end(s: Scheduler, task_id: str, code: int | None, *, status: JobStatus | None = None,
        message: str = "", result: dict[str, Any] | None = None, job_message: str = "") -> None:
    """Report the task's job as ended; ``code`` None: its driver wrote no outcome."""
    outcome = None if code is None else Outcome(code, message, result)
    if status is None:
        status = JobStatus.SUCCEEDED if code == 0 else (
            JobStatus.STOPPED if code in (130, 143) else JobStatus.FAILED)
    s.observe(task_id, JobReport(status, s.get(task_id).progress, outcome, job_message))


def progress(epoch: int, epochs: int | None = 10, ckpt: int | None = None) -> Progress:
    return Progress(epoch, epochs, {"loss": 1.0 / (epoch + 1)}, ckpt, at=T0)


# -- admission order -----------------------------------------------------------------------------


def test_priority_first_then_submit_order_within_a_priority() -> None:
    s, _ = make(rec("a", 50, seq=3), rec("b", 70, seq=5), rec("c", 50, seq=1),
                rec("d", 70, seq=2), rec("e", 10, seq=0))
    assert [t.id for t in s.waiting()] == ["d", "b", "c", "a", "e"]
    out = s.step(cap(3))
    assert started(out) == ["d", "b", "c"]
    assert [t.id for t in out.admitted] == ["d", "b", "c"]
    for t in out.admitted:
        assert t.state is QueueState.RUNNING and t.attempts == 1
        assert t.job_id == f"mtp-{t.id}-1" and t.attempt_started_at == T0
        assert t.started_at == T0
        assert "admitted in queue order" in t.reason and t.reason.endswith("(attempt 1)")
    assert [a.task.job_id for a in out.actions] == ["mtp-d-1", "mtp-b-1", "mtp-c-1"]
    assert s.get("a").state is QueueState.PENDING and s.get("e").state is QueueState.PENDING
    assert s.free(cap(3)) == Resources()
    # the next free CPU goes to a (priority 50) before e (10), though e was submitted first
    end(s, "c", 0)
    out = s.step(cap(3))
    assert started(out) == ["a"]
    assert changed(out, "c").state is QueueState.SUCCEEDED


def test_a_task_that_does_not_fit_waits_and_starts_once_room_frees() -> None:
    s, clock = make(rec("small", 50, seq=1, cpus=2), rec("big", 50, seq=2, cpus=3))
    out = s.step(cap(4))
    assert started(out) == ["small"]
    assert s.get("big").state is QueueState.PENDING
    for _ in range(3):
        clock.advance(10)
        still_running(s, "small")
        out = s.step(cap(4))
        assert out.actions == [] and out.changed == []
    end(s, "small", 0)
    out = s.step(cap(4))
    assert started(out) == ["big"]  # in the same step that saw the room free up
    big = s.get("big")
    assert big.state is QueueState.RUNNING and big.started_at == T0 + 30
    assert "needs 3 CPU" in big.reason and "free was 4 CPU" in big.reason
    assert [t.id for t in s.running()] == ["big"]


# -- reservation and backfill ----------------------------------------------------------------------


def test_a_small_task_may_not_take_the_room_a_blocked_large_one_waits_for() -> None:
    # 1 CPU free now; once r1 ends the big one needs all 4: nothing is left over for small,
    # and r1 has no time limit, so nothing is known to end before big can start
    s, clock = make(running("r1", 50, seq=1, cpus=3), rec("big", 50, seq=2, cpus=4),
                    rec("small", 50, seq=3, cpus=1))
    for _ in range(3):
        out = s.step(cap(4))
        assert started(out) == [] and out.preempted == []
        assert s.get("small").state is QueueState.PENDING
        clock.advance(60)
        still_running(s, "r1")
    end(s, "r1", 0)
    out = s.step(cap(4))
    assert started(out) == ["big"]  # and small keeps waiting behind it
    assert s.get("small").state is QueueState.PENDING


def test_without_known_ends_small_tasks_never_take_the_room_a_blocked_one_lacks() -> None:
    # 6 CPUs, r1 holds 3 with no time limit: big (4) cannot know when it will start, so the
    # 3 free CPUs stay for it: a 1-CPU task there could be followed by another forever
    s, _ = make(running("r1", 50, seq=1, cpus=3), rec("big", 50, seq=2, cpus=4),
                rec("s1", 50, seq=3), rec("s2", 50, seq=4), rec("s3", 50, seq=5))
    assert started(s.step(cap(6))) == []
    assert [s.get(i).state for i in ("s1", "s2", "s3")] == [QueueState.PENDING] * 3
    end(s, "r1", 0)
    out = s.step(cap(6))
    assert started(out) == ["big", "s1", "s2"]  # 6 - 4 = 2 CPUs left once big runs
    assert s.get("s1").reason.startswith("admitted in queue order")
    assert s.get("s3").state is QueueState.PENDING


def test_small_tasks_backfill_into_what_the_blocked_one_does_not_lack() -> None:
    # big lacks a GPU, not CPUs: CPU-only tasks may use the CPUs it would leave over
    s, _ = make(running("g", 50, seq=1, cpus=1, gpus=1.0), rec("big", 50, seq=2, cpus=2,
                                                               gpus=1.0),
                rec("c1", 50, seq=3, cpus=2), rec("c2", 50, seq=4, cpus=2),
                rec("c3", 50, seq=5, cpus=2))
    out = s.step(cap(8, gpu=1))
    # 7 CPUs free; big needs 2 of them: 5 extra, two 2-CPU tasks fit
    assert started(out) == ["c1", "c2"]
    assert "backfilled ahead of big (it fits in the room left over once big runs)" \
        in s.get("c1").reason
    assert s.get("c3").state is QueueState.PENDING


@pytest.mark.parametrize(("limit", "backfilled"), [(50.0, True), (60.0, True), (61.0, False)])
def test_a_small_task_that_ends_before_the_shadow_time_may_jump_ahead(
    limit: float, backfilled: bool
) -> None:
    # r1 (limit 100 s) has trained 20 s in an earlier attempt and 20 s in this one: it ends
    # within 60 s, when big (4 CPUs) can start; 1 CPU is free now, no extra once big runs
    r1 = running("r1", 50, seq=1, cpus=3, started=T0 - 20, max_runtime_s=100.0, ran_s=20.0)
    s, _ = make(r1, rec("big", 50, seq=2, cpus=4),
                rec("long", 50, seq=3, max_runtime_s=limit + 100),
                rec("unlimited", 50, seq=4), rec("short", 50, seq=5, max_runtime_s=limit))
    out = s.step(cap(4))
    assert started(out) == (["short"] if backfilled else [])
    for i in ("long", "unlimited"):
        assert s.get(i).state is QueueState.PENDING
    if backfilled:
        assert (f"backfilled ahead of big (its max_runtime_s={limit:g} ends before big can "
                "start in 60 s)") in s.get("short").reason
    else:
        assert s.get("short").state is QueueState.PENDING


def test_without_backfill_nothing_starts_behind_a_blocked_task() -> None:
    s, _ = make(running("r1", 50, seq=1, cpus=3, max_runtime_s=100.0),
                rec("big", 50, seq=2, cpus=4), rec("s1", 50, seq=3),
                rec("s2", 50, seq=4, max_runtime_s=1.0),
                policy=SchedulerPolicy(backfill=False))
    out = s.step(cap(6))  # s1 fits in the extra, s2 ends long before r1: neither may start
    assert started(out) == [] and out.changed == []
    assert [t.id for t in s.waiting()] == ["big", "s1", "s2"]
    end(s, "r1", 0)
    out = s.step(cap(6))
    assert started(out) == ["big", "s1", "s2"]  # strict queue order once there is room


# -- preemption ------------------------------------------------------------------------------------


def _crowded() -> tuple[Scheduler, Clock]:
    """4 CPUs all taken: two priority-10 tasks (low_new started later), one of 30, one of 60;
    ``urgent`` (priority 50) needs 2 CPUs."""
    return make(running("low_old", 10, seq=1, started=T0 - 300),
                running("low_new", 10, seq=2, started=T0 - 100),
                running("mid", 30, seq=3, started=T0 - 500),
                running("high", 60, seq=4, started=T0 - 50),
                rec("urgent", 50, seq=5, cpus=2))


def test_preemption_picks_the_lowest_priority_most_recently_started_first() -> None:
    s, _ = _crowded()
    out = s.step(cap(4))
    assert [t.id for t in out.preempted] == ["low_new", "low_old"]
    for i in ("low_new", "low_old"):
        t = s.get(i)
        assert t.request is StopRequest.PREEMPT and t.requested_at == T0
        assert t.request_epoch == 0 and t.state is QueueState.RUNNING
        assert t.reason == ("preempted for urgent (priority 50 > 10): stops at its next "
                            "checkpoint (newest now: none)")
        assert changed(out, i).request is StopRequest.PREEMPT
    assert s.get("mid").request is None and s.get("high").request is None
    assert started(out) == [] and stops(out) == []  # no checkpoint yet: nothing stopped
    assert s.get("urgent").state is QueueState.PENDING


def test_preemption_takes_just_enough_victims() -> None:
    s, _ = make(running("low", 10, seq=1, cpus=2), running("lowish", 20, seq=2, cpus=2),
                rec("urgent", 50, seq=3, cpus=2))
    out = s.step(cap(4))
    assert [t.id for t in out.preempted] == ["low"]
    assert s.get("lowish").request is None


def test_never_preempts_non_preemptible_or_equal_or_higher_priority_tasks() -> None:
    s, _ = make(running("pinned", 10, seq=1, cpus=2, preemptible=False),
                running("peer", 50, seq=2, cpus=2), running("boss", 90, seq=3, cpus=2),
                rec("urgent", 50, seq=4, cpus=2))
    out = s.step(cap(6))
    assert out.preempted == [] and out.actions == [] and out.changed == []
    assert all(s.get(i).request is None for i in ("pinned", "peer", "boss"))


def test_never_preempts_when_all_candidates_together_would_not_make_room() -> None:
    s, _ = make(running("low", 10, seq=1, cpus=1), running("pinned", 10, seq=2, cpus=3,
                                                            preemptible=False),
                rec("urgent", 50, seq=3, cpus=2))
    out = s.step(cap(4))
    assert out.preempted == [] and s.get("low").request is None
    # one more low-priority task in the way makes it possible: then both are asked
    s, _ = make(running("low", 10, seq=1, cpus=1), running("pinned", 10, seq=2, cpus=2,
                                                            preemptible=False),
                running("low2", 20, seq=3, cpus=1), rec("urgent", 50, seq=4, cpus=2))
    out = s.step(cap(4))
    assert sorted(t.id for t in out.preempted) == ["low", "low2"]


def test_no_further_preemption_while_stops_are_in_flight() -> None:
    s, clock = _crowded()
    assert [t.id for t in s.step(cap(4)).preempted] == ["low_new", "low_old"]
    for _ in range(3):
        clock.advance(5)
        still_running(s, "low_old", "low_new", "mid", "high")
        out = s.step(cap(4))
        assert out.preempted == [] and out.actions == [] and out.changed == []
        assert s.get("mid").request is None
    # a second urgent task arrives: the first is still the one waited for, and the two
    # stops in flight make room for it, so no one else is asked to stop
    s.submit(rec("urgent2", 50, seq=6, cpus=2))
    still_running(s, "low_old", "low_new", "mid", "high")
    out = s.step(cap(4))
    assert out.preempted == [] and s.get("mid").request is None


def test_no_backfill_by_runtime_while_the_room_is_being_freed_by_preemption() -> None:
    # other's limit ends in 100 s, but the victim being stopped frees the room any moment:
    # short (limit 50 s) would delay urgent, so it waits
    s, _ = make(running("victim", 10, seq=1, cpus=2), running("other", 50, seq=2, cpus=2,
                                                               max_runtime_s=100.0),
                rec("urgent", 80, seq=3, cpus=3), rec("short", 50, seq=4,
                                                        max_runtime_s=50.0))
    out = s.step(cap(5))
    assert [t.id for t in out.preempted] == ["victim"]
    assert started(out) == [] and s.get("short").state is QueueState.PENDING
    # without the preemption (nothing below urgent's priority) short may run: it ends
    # before other's limit frees the room urgent waits for
    s, _ = make(running("victim", 90, seq=1, cpus=2), running("other", 90, seq=2, cpus=2,
                                                               max_runtime_s=100.0),
                rec("urgent", 80, seq=3, cpus=3), rec("short", 50, seq=4,
                                                        max_runtime_s=50.0))
    out = s.step(cap(5))
    assert out.preempted == [] and started(out) == ["short"]


def _preempt_one(checkpointed: bool = True, grace: float = 600.0,
                 report: Progress | None = None) -> tuple[Scheduler, Clock]:
    """``victim`` (priority 10, 2 CPUs) is asked to stop for ``urgent`` (priority 80)."""
    s, clock = make(running("victim", 10, seq=1, cpus=2, started=T0 - 100,
                            checkpointed=checkpointed),
                    running("other", 50, seq=2, cpus=2, started=T0 - 100),
                    rec("urgent", 80, seq=3, cpus=2),
                    policy=SchedulerPolicy(preempt_grace_s=grace))
    if report is not None:
        s.observe("victim", JobReport(JobStatus.RUNNING, report))
    return s, clock


def test_a_preempted_task_is_stopped_at_its_next_checkpoint_then_requeued() -> None:
    s, clock = _preempt_one(report=progress(2, ckpt=2))
    out = s.step(cap(4))
    assert [t.id for t in out.preempted] == ["victim"] and stops(out) == []
    victim = s.get("victim")
    assert victim.request_epoch == 2 and victim.progress == progress(2, ckpt=2)
    assert victim.reason.endswith("(newest now: epoch 2)")
    clock.advance(20)  # epoch 3 done, still no newer checkpoint
    s.observe("victim", JobReport(JobStatus.RUNNING, progress(3, ckpt=2)))
    still_running(s, "other")
    out = s.step(cap(4))
    assert out.actions == []
    clock.advance(20)  # a checkpoint of epoch 4: now
    s.observe("victim", JobReport(JobStatus.RUNNING, progress(4, ckpt=4)))
    out = s.step(cap(4))
    assert [(a.task.id, a.task.job_id, a.reason) for a in stops(out)] == [
        ("victim", "mtp-victim-1", "preempted at its checkpoint of epoch 4")]
    assert started(out) == []
    clock.advance(5)  # the stop is sent once
    s.observe("victim", JobReport(JobStatus.RUNNING, progress(4, ckpt=4)))
    out = s.step(cap(4))
    assert out.actions == [] and out.preempted == []
    clock.advance(5)
    end(s, "victim", 143, message="stopped by SIGTERM")
    out = s.step(cap(4))
    victim = changed(out, "victim")
    assert victim.state is QueueState.PREEMPTED and victim.preemptions == 1
    assert victim.attempts == 1 and victim.request is None and victim.requested_at is None
    assert victim.reason == "preempted after attempt 1; resumes from its checkpoint of epoch 4"
    assert victim.ran_s == pytest.approx(150.0) and victim.ended_at is None
    assert started(out) == ["urgent"]  # the room it left is taken in the same step
    assert s.get("victim").waiting


def test_a_task_without_checkpoints_is_stopped_at_once() -> None:
    s, _ = _preempt_one(checkpointed=False)
    out = s.step(cap(4))
    assert [t.id for t in out.preempted] == ["victim"]
    assert [(a.task.id, a.reason) for a in stops(out)] == [
        ("victim", "preempted (it writes no checkpoints)")]


def test_a_preempted_task_without_a_new_checkpoint_is_stopped_after_the_grace() -> None:
    s, clock = _preempt_one(grace=30.0, report=progress(1, ckpt=1))
    assert [t.id for t in s.step(cap(4)).preempted] == ["victim"]
    clock.advance(30)  # not more than the grace yet
    still_running(s, "victim", "other")
    assert s.step(cap(4)).actions == []
    clock.advance(1)
    still_running(s, "victim", "other")
    out = s.step(cap(4))
    assert [(a.task.id, a.reason) for a in stops(out)] == [
        ("victim", "preempted: no new checkpoint within preempt_grace_s=30; it resumes from "
         "its newest")]


def test_a_preempted_task_at_its_last_epoch_is_left_to_finish() -> None:
    s, clock = _preempt_one(grace=30.0, report=progress(10, epochs=10, ckpt=9))
    assert [t.id for t in s.step(cap(4)).preempted] == ["victim"]
    for _ in range(3):
        clock.advance(40)  # past the grace too
        s.observe("victim", JobReport(JobStatus.RUNNING, progress(10, epochs=10, ckpt=10)))
        still_running(s, "other")
        out = s.step(cap(4))
        assert out.actions == [] and out.preempted == []
    end(s, "victim", 0, result={"val_loss": 0.25})
    out = s.step(cap(4))
    victim = changed(out, "victim")
    assert victim.state is QueueState.SUCCEEDED and victim.preemptions == 0
    assert victim.result == {"val_loss": 0.25}
    assert victim.reason == ("succeeded in attempt 1 (it finished before the preempt took "
                             "effect)")
    assert started(out) == ["urgent"]


def test_a_preempted_task_resumes_before_later_tasks_of_its_priority() -> None:
    s, clock = _preempt_one(checkpointed=False)
    out = s.step(cap(4))
    assert stopped(out) == ["victim"]
    s.submit(rec("later", 10, seq=9, cpus=2))
    clock.advance(10)
    end(s, "victim", 143)
    still_running(s, "other")
    out = s.step(cap(4))
    assert started(out) == ["urgent"]
    assert [t.id for t in s.waiting()] == ["victim", "later"]  # seq 1 before seq 9
    first_start = s.get("victim").started_at
    clock.advance(100)
    end(s, "urgent", 0)
    still_running(s, "other")
    out = s.step(cap(4))
    assert started(out) == ["victim"]
    victim = s.get("victim")
    assert victim.attempts == 2 and victim.job_id == "mtp-victim-2"
    assert victim.preemptions == 1 and victim.seq == 1
    assert victim.started_at == first_start and victim.attempt_started_at == T0 + 110
    assert victim.progress is None and victim.request is None
    assert victim.reason.endswith("(attempt 2)")
    assert s.get("later").state is QueueState.PENDING


# -- how an attempt ends ---------------------------------------------------------------------------


def _one_running(**fields: Any) -> tuple[Scheduler, Clock]:
    s, clock = make(rec("t", 50, seq=1, **fields))
    assert started(s.step(cap(2))) == ["t"]
    return s, clock


def test_outcome_zero_is_succeeded_with_its_result() -> None:
    s, clock = _one_running()
    clock.advance(42)
    end(s, "t", 0, message="done", result={"final_metrics": {"val_loss": 0.5}})
    out = s.step(cap(2))
    t = changed(out, "t")
    assert t.state is QueueState.SUCCEEDED and t.result == {"final_metrics": {"val_loss": 0.5}}
    assert t.reason == "succeeded in attempt 1" and t.error is None
    assert t.ran_s == pytest.approx(42.0) and t.ended_at == T0 + 42
    assert t.attempt_started_at is None and t.attempts == 1
    assert "t" not in s.tasks and s.running() == []
    with pytest.raises(SchedulerError, match="no active task 't'"):
        s.get("t")


def test_outcome_one_is_failed_with_its_message_and_not_retried() -> None:
    s, clock = _one_running(max_attempts=5)
    clock.advance(3)
    end(s, "t", 1, message="ValueError: bad learning rate")
    out = s.step(cap(2))
    t = changed(out, "t")
    assert t.state is QueueState.FAILED and t.attempts == 1
    assert t.reason == "failed in attempt 1 (exit 1): ValueError: bad learning rate"
    assert t.error == "ValueError: bad learning rate"
    assert started(out) == [] and "t" not in s.tasks


def test_a_driver_that_died_without_an_outcome_is_retried_up_to_max_attempts() -> None:
    s, clock = _one_running(max_attempts=2)
    clock.advance(10)
    end(s, "t", None, status=JobStatus.FAILED, job_message="node lost")
    out = s.step(cap(2))
    requeued = [r for r in out.changed if r.id == "t"]
    assert requeued[0].state is QueueState.PENDING and requeued[0].attempts == 1
    assert requeued[0].reason == ("the driver of attempt 1 died (node lost); queued again "
                                  "(scheduling.max_attempts=2)")
    assert started(out) == ["t"]  # room is free: started again in the same step
    t = s.get("t")
    assert t.attempts == 2 and t.job_id == "mtp-t-2" and t.ran_s == pytest.approx(10.0)
    clock.advance(5)
    end(s, "t", None, status=JobStatus.FAILED)
    out = s.step(cap(2))
    t = changed(out, "t")
    assert t.state is QueueState.FAILED and started(out) == []
    assert t.reason == ("the driver of attempt 2 died (job FAILED); no attempts left "
                        "(scheduling.max_attempts=2)")
    assert t.error == "the driver of attempt 2 died (job FAILED)"
    assert t.ran_s == pytest.approx(15.0)


def test_a_job_never_submitted_is_submitted_again_with_the_same_id() -> None:
    # stored RUNNING, then the scheduler stopped before submitting: Ray has no such job and
    # the attempt never reported; the same job id is submitted again, a few times at most
    s, _ = _one_running(max_attempts=1)
    for _ in range(3):
        end(s, "t", None, status=JobStatus.UNKNOWN, job_message="Ray has no such job")
        out = s.step(cap(2))
        assert [(a.kind, a.task.job_id) for a in out.actions] == [
            (ActionKind.START_JOB, "mtp-t-1")]
        assert out.changed == [] and s.get("t").attempts == 1
    end(s, "t", None, status=JobStatus.UNKNOWN, job_message="Ray has no such job")
    t = changed(s.step(cap(2)), "t")
    assert t.state is QueueState.FAILED and "(Ray has no such job)" in t.reason


def test_a_job_that_vanished_after_reporting_counts_as_a_dead_driver() -> None:
    s, _ = _one_running(max_attempts=1)
    s.observe("t", JobReport(JobStatus.RUNNING, progress(2, ckpt=2)))
    s.step(cap(2))
    end(s, "t", None, status=JobStatus.UNKNOWN, job_message="Ray has no such job")
    t = changed(s.step(cap(2)), "t")
    assert t.state is QueueState.FAILED and "(Ray has no such job)" in t.reason


def test_a_job_that_succeeded_without_its_drivers_report_succeeded() -> None:
    s, _ = _one_running(max_attempts=1)
    end(s, "t", None, status=JobStatus.SUCCEEDED)
    t = changed(s.step(cap(2)), "t")
    assert t.state is QueueState.SUCCEEDED and t.result is None


def test_an_interrupted_outcome_without_a_request_is_cancelled_outside_the_scheduler() -> None:
    s, _ = _one_running(max_attempts=3)
    end(s, "t", 143, message="terminated by SIGTERM")
    out = s.step(cap(2))
    t = changed(out, "t")
    assert t.state is QueueState.CANCELLED and started(out) == []
    assert t.reason == "its Ray job was stopped outside the scheduler (terminated by SIGTERM)"


# -- cancel, priority, start failures --------------------------------------------------------------


def test_cancel_of_a_waiting_task_removes_it_at_once() -> None:
    s, clock = make(running("r", 50, seq=1, cpus=2), rec("w", 50, seq=2))
    clock.advance(7)
    t = s.cancel("w", who="alice")
    assert t.state is QueueState.CANCELLED and t.ended_at == T0 + 7 and t.attempts == 0
    assert t.reason == "cancelled by alice while PENDING"
    assert "w" not in s.tasks
    out = s.step(cap(4))  # room for it now: it never starts
    assert started(out) == [] and out.changed == []
    with pytest.raises(SchedulerError):
        s.cancel("w")


def test_cancel_of_a_running_task_stops_its_job_and_ends_cancelled() -> None:
    s, clock = _one_running()
    clock.advance(5)
    t = s.cancel("t", who="bob")
    assert t.state is QueueState.RUNNING and t.request is StopRequest.CANCEL
    assert t.reason == "cancel requested by bob: stopping its job"
    still_running(s, "t")
    out = s.step(cap(2))
    assert [(a.task.id, a.reason) for a in stops(out)] == [
        ("t", "cancel requested by bob: stopping its job")]
    still_running(s, "t")
    assert s.step(cap(2)).actions == []  # asked once
    clock.advance(2)
    end(s, "t", 143)
    out = s.step(cap(2))
    t = changed(out, "t")
    assert t.state is QueueState.CANCELLED and t.request is None and t.ended_at == T0 + 7
    assert t.reason == "cancelled while RUNNING; its checkpoints are kept"
    assert t.ran_s == pytest.approx(7.0) and "t" not in s.tasks


@pytest.mark.parametrize("request_kind", ["cancel", "preempt"])
def test_a_task_that_finishes_while_asked_to_stop_is_succeeded(request_kind: str) -> None:
    s, _ = _preempt_one(checkpointed=False)
    if request_kind == "cancel":
        s.cancel("victim")
    else:
        assert [t.id for t in s.step(cap(4)).preempted] == ["victim"]
    end(s, "victim", 0, result={"acc": 1.0})
    still_running(s, "other")
    out = s.step(cap(4))
    t = changed(out, "victim")
    assert t.state is QueueState.SUCCEEDED and t.result == {"acc": 1.0}
    assert t.preemptions == 0
    assert t.reason == (f"succeeded in attempt 1 (it finished before the {request_kind} took "
                        "effect)")


def test_max_runtime_counts_the_earlier_attempts() -> None:
    s, clock = make(rec("t", 50, seq=1, max_runtime_s=100.0, ran_s=80.0, attempts=1,
                        preemptions=1, state=QueueState.PREEMPTED))
    out = s.step(cap(2))
    assert started(out) == ["t"] and s.get("t").job_id == "mtp-t-2"
    clock.advance(15)  # 95 s in all
    still_running(s, "t")
    assert s.step(cap(2)).actions == []
    clock.advance(10)  # 105 s
    still_running(s, "t")
    out = s.step(cap(2))
    assert [(a.task.id, a.reason) for a in stops(out)] == [
        ("t", "ran 105.0 s > training.max_runtime_s=100: stopping its job")]
    assert changed(out, "t").request is StopRequest.TIME_LIMIT
    clock.advance(1)
    still_running(s, "t")
    assert s.step(cap(2)).actions == []  # asked once
    end(s, "t", 143)
    out = s.step(cap(2))
    t = changed(out, "t")
    assert t.state is QueueState.FAILED and t.error == "max runtime exceeded"
    assert t.reason == "stopped after 106.0 s: over training.max_runtime_s=100"
    assert t.ran_s == pytest.approx(106.0)


def test_set_priority_checks_its_range_and_reorders_the_queue() -> None:
    s, _ = make(rec("a", 50, seq=1), rec("b", 50, seq=2))
    for bad in (0, 100, -5):
        with pytest.raises(SchedulerError, match=f"priority {bad} is out of range"):
            s.set_priority("b", bad)
    with pytest.raises(SchedulerError, match="no active task 'zz'"):
        s.set_priority("zz", 60)
    assert s.get("b").priority == 50
    t = s.set_priority("b", 60)
    assert t.priority == 60 and t.reason == "priority 50 -> 60 (still PENDING)"
    assert [x.id for x in s.waiting()] == ["b", "a"]
    assert started(s.step(cap(1))) == ["b"]
    assert s.get("a").state is QueueState.PENDING


def test_start_failed_queues_the_task_again_without_counting_the_attempt() -> None:
    s, _ = make(rec("t", 50, seq=1))
    assert started(s.step(cap(1))) == ["t"]
    back = s.start_failed("t", "job agent not up")
    assert back is not None and back.state is QueueState.PENDING
    assert back.attempts == 0 and back.job_id is None and back.started_at is None
    assert back.attempt_started_at is None
    assert back.reason == "its job could not be started (job agent not up); queued again"
    assert s.free(cap(1)) == Resources(cpu=1)
    assert s.start_failed("t", "again") is None  # not running: nothing to undo
    assert s.start_failed("nope", "x") is None
    out = s.step(cap(1))
    assert started(out) == ["t"] and s.get("t").job_id == "mtp-t-1"
    assert s.get("t").attempts == 1


def test_start_failed_of_a_resumed_task_keeps_it_preempted() -> None:
    s, clock = make(rec("t", 50, seq=1, state=QueueState.PREEMPTED, attempts=1,
                        preemptions=1, started_at=T0 - 500, job_id="mtp-t-1", ran_s=40.0))
    out = s.step(cap(1))
    assert [a.task.job_id for a in out.actions] == ["mtp-t-2"]
    back = s.start_failed("t", "boom")
    assert back is not None and back.state is QueueState.PREEMPTED
    assert (back.attempts, back.job_id, back.started_at) == (1, "mtp-t-1", T0 - 500)
    assert back.ran_s == 40.0


# -- restart, capacity ---------------------------------------------------------------------------


def test_load_keeps_running_tasks_and_rederives_what_is_free() -> None:
    done = rec("done", 50, seq=1, state=QueueState.SUCCEEDED, attempts=1)
    gone = rec("gone", 50, seq=2, state=QueueState.CANCELLED)
    s, _ = make(done, gone, running("r", 50, seq=3, cpus=3, started=T0 - 50),
                rec("w", 50, seq=4, cpus=2), rec("tiny", 40, seq=5, cpus=1))
    assert sorted(s.tasks) == ["r", "tiny", "w"]
    assert [t.id for t in s.running()] == ["r"]
    assert s.allocated() == Resources(cpu=3)
    assert s.free(cap(4)) == Resources(cpu=1)
    out = s.step(cap(4))
    # w (2 CPUs) waits for r (no time limit): the 1 free CPU stays for w, tiny waits
    assert started(out) == [] and s.get("tiny").state is QueueState.PENDING
    assert s.get("r").attempts == 1 and s.get("r").job_id == "mtp-r-1"  # not started again
    # after a restart a task being cancelled is asked to stop again
    s2, _ = make(running("r", 50, seq=3, cpus=3, request=StopRequest.CANCEL,
                         requested_at=T0 - 5, reason="cancel requested by a user: stopping "
                         "its job"))
    assert stopped(s2.step(cap(4))) == ["r"]


def test_free_resources_never_exceed_what_ray_reports_available() -> None:
    # 8 CPUs, nothing of ours running, but work outside the scheduler holds 5
    c = cap(8, available=Resources(cpu=3))
    s, _ = make(rec("four", 50, seq=1, cpus=4), rec("three", 40, seq=2, cpus=3))
    assert s.free(c) == Resources(cpu=3)
    out = s.step(c)
    assert started(out) == []  # four is the reservation; three would take its room
    s2, _ = make(rec("three", 50, seq=1, cpus=3), rec("one", 50, seq=2))
    assert started(s2.step(c)) == ["three"]
    assert s2.get("one").state is QueueState.PENDING
    # and the scheduler's own allocations count even before Ray's available shows them
    assert s2.free(c) == Resources(cpu=3)
    assert s2.free(cap(8, available=Resources(cpu=7))) == Resources(cpu=5)
    # a node that left while its tasks were counted: never below zero
    assert s2.free(Capacity((Resources(cpu=2),), Resources(cpu=2))) == Resources()


def test_gpu_and_memory_demands_are_honoured() -> None:
    c = cap(16, gpu=2, memory=32 * GIB)
    s, _ = make(running("g_run", 95, seq=1, gpus=1.0, memory=4 * GIB),
                rec("gpu2", 90, seq=2, workers=2, gpus=1.0),
                rec("gpu1", 80, seq=3, gpus=1.0),
                rec("mem", 70, seq=4, workers=2, memory=12 * GIB),
                rec("mem_big", 60, seq=5, memory=20 * GIB),
                rec("cpu", 50, seq=6, cpus=2))
    assert s.free(c) == Resources(cpu=15, gpu=1, memory=28 * GIB)
    out = s.step(c)
    # gpu2 needs 2 GPUs, 1 is free: it waits for g_run's. gpu1 fits in what is free but
    # would take that GPU; mem (24 GiB) and cpu need none; mem_big's 20 GiB are not left
    assert started(out) == ["mem", "cpu"]
    for i in ("gpu2", "gpu1", "mem_big"):
        assert s.get(i).state is QueueState.PENDING
    assert s.free(c) == Resources(cpu=11, gpu=1, memory=4 * GIB)
    assert "needs 2 CPU, 0 GPU, 24.0 GiB memory" in s.get("mem").reason
    end(s, "g_run", 0)
    still_running(s, "mem", "cpu")
    out = s.step(c)
    assert started(out) == ["gpu2"]  # gpu1 now waits for a GPU, mem_big for memory
    assert s.free(c) == Resources(cpu=10, gpu=0, memory=8 * GIB)


def test_gpu_tasks_wait_for_gpus_in_queue_order() -> None:
    c = cap(16, gpu=2, memory=32 * GIB)
    s, _ = make(rec("g2", 50, seq=1, workers=2, gpus=1.0),
                rec("g1", 50, seq=2, gpus=1.0), rec("m", 50, seq=3, memory=40 * GIB))
    out = s.step(c)
    assert started(out) == ["g2"]
    assert s.free(c) == Resources(cpu=14, gpu=0, memory=32 * GIB)
    assert s.get("g1").state is QueueState.PENDING
    end(s, "g2", 0)
    out = s.step(c)
    assert started(out) == ["g1"]  # m (40 GiB of 32) does not fit
    assert s.get("m").state is QueueState.PENDING


def test_progress_reports_update_the_record_without_persisting_it() -> None:
    s, _ = _one_running()
    s.observe("t", JobReport(JobStatus.RUNNING, progress(3, ckpt=3)))
    out = s.step(cap(2))
    assert out.changed == [] and s.get("t").progress == progress(3, ckpt=3)
    s.observe("unknown", JobReport(JobStatus.FAILED))  # not in the queue: ignored
    assert s.step(cap(2)).changed == []


# -- found by review: victims that free nothing, retries used up by preemptions -----------------


def test_preemption_spares_a_task_that_frees_nothing_the_waiting_one_lacks() -> None:
    # CPUs are plenty (2 free); only the GPU is short, and only gpu_mid holds one
    s, _ = make(running("cpu_low", 10, seq=1), running("gpu_mid", 20, seq=2, gpus=1.0),
                rec("head", 50, seq=3, gpus=1.0))
    out = s.step(cap(4, gpu=1))
    assert [t.id for t in out.preempted] == ["gpu_mid"]
    assert s.get("cpu_low").request is None


def test_preemptions_do_not_use_up_the_retries_of_a_dead_driver() -> None:
    # preempted twice, then its driver dies once: max_attempts=3 allows 2 more starts
    s, _ = make(rec("t", 50, seq=1, state=QueueState.PREEMPTED, attempts=2, preemptions=2,
                    max_attempts=3))
    assert started(s.step(cap(1))) == ["t"]
    end(s, "t", None, status=JobStatus.FAILED, job_message="node lost")
    out = s.step(cap(1))
    assert [r.state for r in out.changed if r.id == "t"][0] is QueueState.PENDING


def test_a_driver_that_fails_with_an_error_while_asked_to_stop_is_failed_not_requeued() -> None:
    s, _ = make(running("low", 10, seq=1), rec("high", 90, seq=2))
    s.observe("low", JobReport(JobStatus.RUNNING, progress(2, ckpt=2)))
    assert [t.id for t in s.step(cap(1)).preempted] == ["low"]
    end(s, "low", 1, message="mtp: training failed: worker died")
    low = changed(s.step(cap(1)), "low")
    assert low.state is QueueState.FAILED and low.preemptions == 0
    assert "exit 1" in low.reason and "worker died" in low.reason


def test_a_task_larger_than_the_cluster_as_it_is_now_blocks_nothing() -> None:
    # a node left: "big" (4 CPUs) no longer fits the 2-CPU cluster; it waits without a
    # reservation, so the small task behind it starts
    s, _ = make(rec("big", 90, seq=1, cpus=4.0), rec("small", 10, seq=2))
    out = s.step(cap(2))
    assert started(out) == ["small"]
    assert s.get("big").state is QueueState.PENDING


def test_a_preemption_no_longer_needed_is_withdrawn_before_its_stop() -> None:
    s, _ = make(running("low", 10, seq=1), rec("high", 90, seq=2))
    s.observe("low", JobReport(JobStatus.RUNNING, progress(2, ckpt=2)))
    assert [t.id for t in s.step(cap(1)).preempted] == ["low"]
    s.cancel("high")  # the urgent task went away before low reached a checkpoint
    still_running(s, "low")
    out = s.step(cap(1))
    low = changed(out, "low")
    assert low.request is None and low.reason.startswith("preemption withdrawn")
    s.observe("low", JobReport(JobStatus.RUNNING, progress(3, ckpt=3)))
    assert stops(s.step(cap(1))) == []  # its next checkpoint no longer stops it


def test_no_second_victim_while_rays_available_resources_lag_behind_the_first() -> None:
    s, _ = make(running("v1", 10, seq=1), running("v2", 20, seq=2), rec("high", 90, seq=3))
    for v in ("v1", "v2"):
        s.observe(v, JobReport(JobStatus.RUNNING, progress(2, ckpt=2)))
    assert [t.id for t in s.step(cap(2, available=Resources())).preempted] == ["v1"]
    s.observe("v1", JobReport(JobStatus.RUNNING, progress(3, ckpt=3)))
    assert stopped(s.step(cap(2, available=Resources()))) == ["v1"]
    end(s, "v1", 143)
    still_running(s, "v2")
    # v1 has ended; Ray still shows its CPU busy: high waits, v2 is not asked to stop
    out = s.step(cap(2, available=Resources()))
    assert out.preempted == [] and s.get("v2").request is None
    assert s.get("high").state is QueueState.PENDING
    out = s.step(cap(2, available=Resources(cpu=1)))
    assert started(out) == ["high"]


def test_a_task_whose_workers_fit_no_node_now_waits_although_the_sum_fits() -> None:
    # two nodes of 4 CPUs with 2 free on each: 4 CPUs free in total, but no node holds a
    # 4-CPU worker
    nodes = (Resources(cpu=4), Resources(cpu=4))
    two_free = Capacity(nodes, Resources(cpu=4), (Resources(cpu=2), Resources(cpu=2)))
    s, _ = make(rec("wide", 50, seq=1, cpus=4), rec("pair", 40, seq=2, cpus=2, workers=2))
    out = s.step(two_free)
    assert "wide" not in started(out) and s.get("wide").state is QueueState.PENDING
    one_free = Capacity(nodes, Resources(cpu=4), (Resources(cpu=4), Resources()))
    s2, _ = make(rec("wide", 50, seq=1, cpus=4))
    assert started(s2.step(one_free)) == ["wide"]


def test_a_cancel_that_comes_while_its_job_could_not_start_ends_it() -> None:
    s, _ = make(rec("t", 50, seq=1))
    assert started(s.step(cap(1))) == ["t"]
    s.cancel("t")
    back = s.start_failed("t", "No available agent")
    assert back is not None and back.state is QueueState.CANCELLED
    assert "t" not in s.tasks


def test_a_stop_that_was_not_delivered_is_sent_again() -> None:
    s, _ = _one_running()
    s.cancel("t")
    still_running(s, "t")
    assert stopped(s.step(cap(2))) == ["t"]
    still_running(s, "t")
    assert stopped(s.step(cap(2))) == []  # sent once
    s.stop_failed("mtp-t-1")
    still_running(s, "t")
    assert stopped(s.step(cap(2))) == ["t"]


def test_fractional_cpus_fit_as_ray_places_them() -> None:
    from mtp_core.resources import capacity_problem

    # 0.6 / 0.2 is 2.9999999999999996 in floating point: still three workers
    assert capacity_problem(TaskResources(3, 0.2, 0.0), [Resources(cpu=0.6)]) is None
    # the sum is enough, but a 0.4-CPU worker fits only once on each 0.6-CPU node
    assert "only 2 fit" in (capacity_problem(TaskResources(3, 0.4, 0.0),
                                             [Resources(cpu=0.6), Resources(cpu=0.6)]) or "")
