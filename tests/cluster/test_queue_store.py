"""The scheduler queue's rows (``cluster.queue.QueueStore``), run against every database the
platform supports (SQLite and a real PostgreSQL server)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text

from cluster.queue import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    Outcome,
    Progress,
    QueueState,
    QueueStore,
    StopRequest,
    TaskRecord,
    _row,
)
from database import Database
from database.schema import TASKS
from mtp_core.resources import TaskResources

T0 = 1_000_000.0


def rec(id: str, *, name: str | None = None, priority: int = 50, **fields: Any) -> TaskRecord:
    return TaskRecord(
        id=id, name=name or f"name-{id}", task_id=f"task-{id}", priority=priority,
        resources=TaskResources(2, 1.5, 0.5, 1.0, 1024.0), config='{"name": "x"}',
        config_path=f"/q/{id}/task.json", storage="/storage", run_name=f"run-{id}",
        submitter="tester", submitted_at=T0, updated_at=T0, **fields)


def progress(epoch: int, ckpt: int | None = None) -> Progress:
    return Progress(epoch, 10, {"loss": 0.5, "accuracy": 0.75}, ckpt, at=T0 + epoch)


def running(rec_: TaskRecord, attempt: int) -> TaskRecord:
    return replace(rec_, state=QueueState.RUNNING, attempts=attempt,
                   job_id=rec_.job_id_for(attempt), attempt_started_at=T0 + attempt,
                   started_at=rec_.started_at or T0 + attempt)


def same(a: TaskRecord | None, b: TaskRecord) -> None:
    """Equal records but for ``updated_at`` (the store stamps it on each write)."""
    assert a is not None
    assert replace(a, updated_at=0.0) == replace(b, updated_at=0.0)


def test_reading_a_record_never_changes_it_so_another_thread_can_pickle_it_meanwhile() -> None:
    """The scheduler's loop reads records while an actor call pickles the same record for its
    caller: a value cached on first read (``demand`` was a ``cached_property``) changed the dict
    being pickled, and a submit failed with "dictionary changed size during iteration"."""
    import pickle

    r = rec("a")
    before = dict(r.__dict__)
    assert (r.demand.cpu, r.demand.gpu, r.demand.memory) == (2 * 1.5 + 1.0, 2 * 0.5, 2 * 1024.0)
    assert r.__dict__ == before
    back = pickle.loads(pickle.dumps(r))
    assert back == r and back.demand == r.demand
    moved = replace(r, resources=TaskResources(4, 1.0, 0.0, 1.0, 0.0))
    assert (moved.demand.cpu, moved.demand.gpu) == (4 * 1.0 + 1.0, 0.0)


def test_insert_assigns_increasing_seq_and_reads_back_equal(platform_db: Database) -> None:
    store = QueueStore(platform_db)
    out = [store.insert(rec(f"t{i}", request_id=f"req-{i}" if i % 2 else None))
           for i in range(5)]
    seqs = [r.seq for r in out]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5 and seqs[0] > 0
    for r in out:
        assert r.seq != 0
        assert store.get(r.id) == r  # every column, updated_at included
    assert store.get("missing") is None
    assert [r.id for r in store.list()] == [f"t{i}" for i in range(5)]


def test_insert_with_a_used_request_id_returns_the_first_task(platform_db: Database) -> None:
    store = QueueStore(platform_db)
    first = store.insert(rec("a", request_id="req-1", priority=20))
    again = store.insert(rec("b", request_id="req-1", name="other"))
    assert again == first and again.id == "a" and again.name == "name-a"
    assert store.get("b") is None and len(store.list()) == 1
    assert store.find_request("req-1") == first and store.find_request("req-2") is None
    other = store.insert(rec("c", request_id="req-2"))
    assert other.id == "c" and other.seq > first.seq


def test_a_concurrent_insert_of_the_same_request_returns_the_first_task(
    platform_db: Database,
) -> None:
    store = QueueStore(platform_db)
    out: dict[str, Any] = {}
    # another submit of the same request has inserted its row but not yet committed
    with platform_db.engine.connect() as conn:
        tx = conn.begin()
        conn.execute(TASKS.insert().values(**_row(rec("first", request_id="req"))))

        def second() -> None:
            try:
                out["rec"] = store.insert(rec("second", request_id="req"))
            except Exception as err:  # noqa: BLE001 - handed to the test thread
                out["error"] = err

        thread = threading.Thread(target=second)
        thread.start()
        if platform_db.is_sqlite:
            time.sleep(0.3)  # it waits for the write lock (either way it sees the row)
        else:  # until the second insert waits on the first one's unique key
            deadline = time.monotonic() + 30
            while not platform_db.read(lambda c: c.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            )).scalar()):
                assert time.monotonic() < deadline, "the second insert never blocked"
                time.sleep(0.02)
        tx.commit()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert "error" not in out, out.get("error")
    assert out["rec"].id == "first"
    assert [r.id for r in store.list()] == ["first"]


def test_concurrent_inserts_lose_and_duplicate_nothing(platform_db: Database) -> None:
    threads, per_thread = 8, 25
    barrier = threading.Barrier(threads)
    got: dict[int, list[TaskRecord]] = {}
    errors: list[BaseException] = []

    def submit(n: int) -> None:
        db = Database(platform_db.url)  # its own engine, as another process would have
        try:
            store = QueueStore(db)
            barrier.wait(timeout=30)
            got[n] = [store.insert(rec(f"t{n}-{i}", request_id=f"req-{n}-{i}"))
                      for i in range(per_thread)]
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            errors.append(err)
        finally:
            db.close()

    workers = [threading.Thread(target=submit, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors, errors
    assert not any(w.is_alive() for w in workers)
    returned = [r for n in range(threads) for r in got[n]]
    assert len(returned) == threads * per_thread
    assert len({r.id for r in returned}) == threads * per_thread
    assert len({r.seq for r in returned}) == threads * per_thread
    for n in range(threads):  # one submitter's tasks are in its own submit order
        seqs = [r.seq for r in got[n]]
        assert seqs == sorted(seqs)
    rows = QueueStore(platform_db).list()
    assert len(rows) == threads * per_thread
    assert {(r.id, r.seq) for r in rows} == {(r.id, r.seq) for r in returned}
    assert QueueStore(platform_db).counts() == {QueueState.PENDING: threads * per_thread}


def test_save_writes_the_state_columns_only(platform_db: Database) -> None:
    store = QueueStore(platform_db)
    base = store.insert(rec("t", max_runtime_s=3600.0, max_attempts=4, preemptible=False,
                            checkpointed=False, request_id="req"))
    assert store.record_progress("t", 0, progress(0))  # the driver's column
    state = replace(
        base, priority=70, state=QueueState.RUNNING, started_at=T0 + 1,
        attempt_started_at=T0 + 2, ended_at=None, attempts=0, ran_s=12.5, preemptions=2,
        reason="admitted in queue order", request=StopRequest.PREEMPT, requested_at=T0 + 3,
        request_epoch=4, job_id="mtp-t-0", progress=None, result=None, error=None)
    store.save(state)
    got = store.get("t")
    assert got is not None and got.updated_at > T0
    same(got, replace(state, progress=progress(0)))  # progress is not overwritten
    # columns that are not the scheduler's state stay as inserted
    store.save(replace(state, name="renamed", config="{}", max_attempts=9, submitter="x",
                       resources=TaskResources(1, 1.0, 0.0), seq=999))
    same(store.get("t"), replace(state, progress=progress(0)))
    ended = replace(state, state=QueueState.SUCCEEDED, ended_at=T0 + 9, request=None,
                    requested_at=None, request_epoch=None,
                    result={"final_metrics": {"val_loss": 0.25}, "epochs": 3},
                    error="a note", reason="succeeded in attempt 0")
    store.save(ended)
    same(store.get("t"), replace(ended, progress=progress(0)))


def test_save_many_writes_every_record_in_one_go(platform_db: Database) -> None:
    store = QueueStore(platform_db)
    recs = [store.insert(rec(f"t{i}")) for i in range(4)]
    store.save_many([])  # nothing to do
    new = [running(recs[0], 1),
           replace(recs[1], state=QueueState.PREEMPTED, attempts=1, preemptions=1, ran_s=3.0,
                   reason="preempted after attempt 1"),
           replace(recs[2], state=QueueState.FAILED, attempts=2, ended_at=T0 + 5,
                   error="boom", reason="failed in attempt 2 (exit 1): boom")]
    store.save_many(new)
    for r in new:
        same(store.get(r.id), r)
    same(store.get("t3"), recs[3])


def test_progress_and_outcome_only_for_the_current_attempt(platform_db: Database) -> None:
    store = QueueStore(platform_db)
    store.save(running(store.insert(rec("t")), 2))
    assert store.record_progress("t", 1, progress(5, 5)) is False  # a late write of attempt 1
    assert store.record_outcome("t", 1, Outcome(1, "old")) is False
    got = store.get("t")
    assert got is not None and got.progress is None
    assert store.outcome("t", 1) is None and store.outcome("t", 2) is None
    assert store.running_reports() == {"t": (None, None)}
    assert store.record_progress("t", 2, progress(3, 2)) is True
    got = store.get("t")
    assert got is not None and got.progress == progress(3, 2)
    assert store.record_outcome("t", 2, Outcome(0, "ok", {"val_loss": 0.1})) is True
    assert store.outcome("t", 2) == Outcome(0, "ok", {"val_loss": 0.1})
    assert store.outcome("t", 1) is None
    assert store.record_progress("t", 1, progress(9)) is False  # still changes nothing
    got = store.get("t")
    assert got is not None and got.progress == progress(3, 2)
    assert store.record_progress("missing", 1, progress(1)) is False
    assert store.record_outcome("missing", 1, Outcome(0)) is False
    # the next attempt starts: what attempt 2 wrote is no longer the task's progress
    store.save(running(got, 3))
    got = store.get("t")
    assert got is not None and got.progress is None and got.attempts == 3
    assert store.outcome("t", 3) is None
    assert store.running_reports() == {"t": (None, None)}


def test_running_reports_are_those_of_running_tasks_current_attempts(
    platform_db: Database
) -> None:
    store = QueueStore(platform_db)
    a = running(store.insert(rec("a")), 1)
    b = running(store.insert(rec("b")), 1)
    c = running(store.insert(rec("c")), 1)
    d = store.insert(rec("d"))
    store.save_many([a, b, c])
    assert store.record_progress("a", 1, progress(4, 4))
    assert store.record_outcome("a", 1, Outcome(143, "stopped"))
    assert store.record_progress("b", 1, progress(1))
    assert store.record_progress("c", 1, progress(2, 2))
    assert store.record_progress("d", 0, progress(7))  # not running
    store.save(running(b, 2))  # b's attempt 1 progress is stale now
    store.save(replace(c, state=QueueState.SUCCEEDED, ended_at=T0 + 9))
    assert store.running_reports() == {
        "a": (progress(4, 4), Outcome(143, "stopped")),
        "b": (None, None),
    }
    assert d.state is QueueState.PENDING


def test_active_list_filters_and_counts(platform_db: Database) -> None:
    store = QueueStore(platform_db)
    states = [QueueState.PENDING, QueueState.RUNNING, QueueState.SUCCEEDED, QueueState.FAILED,
              QueueState.CANCELLED, QueueState.PREEMPTED, QueueState.PENDING]
    names = ["alpha", "beta", "alpha", "beta", "alpha", "beta", "gamma"]
    recs = [store.insert(rec(f"t{i}", name=n)) for i, n in enumerate(names)]
    store.save_many(replace(r, state=s) for r, s in zip(recs, states, strict=True))
    assert [r.id for r in store.active()] == ["t0", "t1", "t5", "t6"]
    assert all(r.state in ACTIVE_STATES for r in store.active())
    assert [r.id for r in store.list(states=TERMINAL_STATES)] == ["t2", "t3", "t4"]
    assert [r.id for r in store.list(states=[QueueState.PENDING])] == ["t0", "t6"]
    assert [r.id for r in store.list(name="alpha")] == ["t0", "t2", "t4"]
    assert [r.id for r in store.list(states=[QueueState.FAILED, QueueState.PREEMPTED],
                                     name="beta")] == ["t3", "t5"]
    assert store.list(name="nobody") == [] and store.list(states=[]) == []
    assert [r.id for r in store.list(limit=2)] == ["t0", "t1"]
    assert [r.id for r in store.list(after_seq=recs[4].seq)] == ["t5", "t6"]
    assert store.counts() == {QueueState.PENDING: 2, QueueState.RUNNING: 1,
                              QueueState.SUCCEEDED: 1, QueueState.FAILED: 1,
                              QueueState.CANCELLED: 1, QueueState.PREEMPTED: 1}


def test_an_empty_queue(platform_db: Database) -> None:
    store = QueueStore(platform_db)
    assert store.list() == [] and store.active() == []
    assert store.counts() == {} and store.running_reports() == {}


@pytest.mark.parametrize("code", [0, 1])
def test_outcome_round_trips_through_json(platform_db: Database, code: int) -> None:
    store = QueueStore(platform_db)
    store.save(running(store.insert(rec("t")), 1))
    out = Outcome(code, "msg with \"quotes\" and ünïcode", {"nested": {"a": [1, 2.5]}}
                  if code == 0 else None)
    assert store.record_outcome("t", 1, out)
    assert store.outcome("t", 1) == out
