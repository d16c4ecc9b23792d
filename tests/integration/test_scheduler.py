"""The scheduler on a real multi-node ``ray.cluster_utils.Cluster``: every task a real Ray job.

One cluster for the module: a head node with no CPUs (the platform's services and the jobs'
drivers) and one worker node with one CPU, so the cluster holds one training at a time (each
task is one worker with one CPU). The services start with ``mtp cluster start`` as on a real
cluster. Each test starts with an idle queue and waits for its tasks with bounded waits.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.queue import QueueState, TaskRecord
from mtp.cli import main
from mtp_core.spec import parse_task
from tests.conftest import REPO
from tests.support.ray_head import free_port
from tests.support.wait import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RUN_TIMEOUT_S = 420.0  # one task from submit to its end on a loaded 2-core machine


def digits(name: str, epochs: int, **extra: Any) -> dict[str, Any]:
    """A digits MLP (dropout: the RNG state matters on resume), one worker, one CPU, a
    checkpoint every epoch."""
    task: dict[str, Any] = {
        "name": name,
        "model": {"type": "mlp", "hidden_sizes": [32], "dropout": 0.1},
        "dataset": {"source": "sklearn", "name": "digits"},
        "training": {"epochs": epochs, "batch_size": 32, "learning_rate": 0.003},
        "resources": {"num_workers": 1, "cpus_per_worker": 1},
        "consistency": {"cache": {"enabled": False}, "sharing": {"enabled": False}},
    }
    for key, value in extra.items():
        section, _, field = key.partition("__")
        task.setdefault(section, {})[field] = value
    return task


class SchedCluster:
    def __init__(self, storage: Path) -> None:
        import ray
        from ray.cluster_utils import Cluster

        if ray.is_initialized():
            ray.shutdown()
        self.storage = storage
        # the cluster's processes (and so the tasks' jobs) inherit this environment: the jobs
        # do not track to MLflow (tests/tracking covers that), as the suite's other runs
        self._tracking = os.environ.get("MTP_TRACKING")
        os.environ["MTP_TRACKING"] = "off"
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1",
            "dashboard_port": free_port(),
            # not Ray's default 52365: another Ray on the host may hold it (jobs would then
            # fail with "No available agent to submit job")
            "dashboard_agent_listen_port": free_port()})
        self.worker = self.cluster.add_node(num_cpus=1)
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address, namespace="mtp", logging_level="WARNING")
        assert main(["cluster", "start", "--storage-path", str(storage)]) == 0

    def shutdown(self) -> None:
        import ray

        try:
            main(["cluster", "stop"])
        finally:
            ray.shutdown()
            self.cluster.shutdown()
            if self._tracking is None:
                os.environ.pop("MTP_TRACKING", None)
            else:
                os.environ["MTP_TRACKING"] = self._tracking


@pytest.fixture(scope="module")
def sched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedCluster]:
    c = SchedCluster(tmp_path_factory.mktemp("sched"))
    try:
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def idle(sched: SchedCluster) -> SchedCluster:
    """The module's cluster with nothing queued or running (a failed test's leftovers are
    cancelled and waited for)."""
    from mtp import queue

    for rec in queue.tasks([QueueState.PENDING, QueueState.PREEMPTED, QueueState.RUNNING]):
        queue.cancel(rec.id)
    wait_for(lambda: not queue.tasks([QueueState.PENDING, QueueState.PREEMPTED,
                                      QueueState.RUNNING]), RUN_TIMEOUT_S,
             interval_s=0.5, what="an idle queue")
    return sched


def submit(raw: dict[str, Any], tmp: Path, *extra: str) -> str:
    """``mtp submit`` of ``raw`` in this process (connected already): the printed id."""
    path = tmp / f"{raw['name']}.json"
    path.write_text(json.dumps(raw))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["submit", str(path), *extra]) == 0
    return buf.getvalue().strip()


def get(task_id: str) -> TaskRecord:
    from mtp import queue

    return queue.get_task(task_id)


def wait_state(task_id: str, *states: QueueState, timeout_s: float = RUN_TIMEOUT_S
               ) -> TaskRecord:
    def reached() -> TaskRecord | None:
        rec = get(task_id)
        if rec.state in (QueueState.FAILED, QueueState.CANCELLED) and rec.state not in states:
            pytest.fail(f"task {task_id} ended {rec.state.value}: {rec.reason}")
        return rec if rec.state in states else None

    found: TaskRecord = wait_for(reached, timeout_s, interval_s=0.5,
                                 what=f"task {task_id} to be {'/'.join(states)}")
    return found


def wait_epoch(task_id: str, epoch: int) -> TaskRecord:
    def reached() -> TaskRecord | None:
        rec = get(task_id)
        assert rec.state in (QueueState.PENDING, QueueState.RUNNING), rec.reason
        return rec if rec.progress is not None and rec.progress.epoch >= epoch else None

    found: TaskRecord = wait_for(reached, RUN_TIMEOUT_S, interval_s=0.3,
                                 what=f"task {task_id} to report epoch {epoch}")
    return found


def jobs_of(task_ids: set[str]) -> list[str]:
    """The Ray jobs (submission ids) started for these tasks."""
    return sorted(j.submission_id for j in _job_client().list_jobs()
                  if (j.metadata or {}).get("mtp_task") in task_ids)


def _job_client() -> Any:
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get
    from ray.job_submission import JobSubmissionClient

    url = _internal_kv_get(ray_constants.DASHBOARD_ADDRESS,
                           namespace=ray_constants.KV_NAMESPACE_DASHBOARD).decode()
    return JobSubmissionClient(f"http://{url}")


def test_cluster_start_shows_node_health_and_the_queue_at_once(
        sched: SchedCluster, capsys: pytest.CaptureFixture[str]) -> None:
    """Right after `mtp cluster start` (the fixture's), before any task: both nodes with a
    health level, the empty queue; a second start starts nothing."""
    from cluster.status import collect_status

    def healthy() -> dict[str, Any] | None:
        det = collect_status()["detector"]
        return det if det and [n["health"] for n in det["nodes"]] == ["HEALTHY"] * 2 else None

    wait_for(healthy, 60, interval_s=0.5, what="two HEALTHY nodes in the detector")
    capsys.readouterr()
    assert main(["cluster", "status"]) == 0
    out = capsys.readouterr().out
    assert out.count("HEALTHY") == 2 and "queue      empty" in out, out
    assert "scheduler: " + str(sched.storage / "_db" / "mtp.db") in out, out
    assert main(["cluster", "status", "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["scheduler"]["nodes"] == 2 and as_json["scheduler"]["waiting"] == []
    assert as_json["scheduler"]["cluster"]["total"]["cpu"] == 1
    assert main(["cluster", "start", "--storage-path", str(sched.storage)]) == 0
    again = capsys.readouterr().out
    assert again.count("already running") == 4 and "started" not in again, again


def test_priority_order_preemption_and_a_scheduler_restart(idle: SchedCluster,
                                                           tmp_path: Path) -> None:
    """A priority-10 task runs; 50 and then 90 are submitted: 90 preempts 10 at a checkpoint,
    the scheduler actor is killed while 90 runs, and then 90, 50, 10 finish in that order,
    each started exactly as often as it should be, 10 resumed with the weights of an
    uninterrupted run."""
    import ray

    from mtp.queue import scheduler
    from trainer import train_local

    low = digits("low", 30, scheduling__priority=10)
    low_id = submit(low, tmp_path)
    wait_epoch(low_id, 2)
    mid_id = submit(digits("mid", 3), tmp_path, "--priority", "50")
    high_id = submit(digits("high", 3), tmp_path, "--priority", "90")

    wait_state(high_id, QueueState.RUNNING)
    assert get(low_id).state is QueueState.PREEMPTED
    assert get(mid_id).state is QueueState.PENDING
    actor = scheduler(create=False)
    pid_before = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))
    ray.kill(actor, no_restart=False)  # the actor restarts and reloads the queue
    done = {t: wait_state(t, QueueState.SUCCEEDED) for t in (high_id, mid_id, low_id)}
    pid_after = ray.get(scheduler(create=False).__ray_call__.remote(lambda self: os.getpid()))
    assert pid_after != pid_before

    ends = sorted(done, key=lambda t: done[t].ended_at or 0)
    assert ends == [high_id, mid_id, low_id], [(t, done[t].ended_at) for t in ends]
    assert done[low_id].preemptions == 1 and done[low_id].attempts == 2
    assert done[high_id].attempts == 1 and done[mid_id].attempts == 1
    resumed = "\n".join(text for _, _, text in _logs(low_id))
    assert "resumed from" in resumed, resumed[-2000:]
    # every attempt is one Ray job, none started twice across the scheduler's restart
    assert jobs_of({low_id, mid_id, high_id}) == sorted(
        [f"mtp-{low_id}-1", f"mtp-{low_id}-2", f"mtp-{mid_id}-1", f"mtp-{high_id}-1"])

    reference = train_local(parse_task(low), storage_path=tmp_path / "reference")
    assert done[low_id].result is not None
    assert done[low_id].result["weights_hash"] == reference["weights_hash"]
    assert done[low_id].result["epochs_completed"] == 30


def _logs(task_id: str) -> list[tuple[int, str, str]]:
    from mtp.queue import task_logs

    return task_logs(task_id)


_DRIVER = textwrap.dedent("""
    import json, sys
    import ray
    import mtp
    from mtp import queue
    ray.init(address=sys.argv[1], namespace="mtp", logging_level="WARNING")
    task = mtp.load_task(sys.argv[2])
    ids = [queue.submit(task, priority=1 + i % 20).id for i in range(int(sys.argv[3]))]
    print(json.dumps(ids))
""")


def test_cancel_queued_and_running_and_two_drivers_submitting_at_once(
        idle: SchedCluster, tmp_path: Path) -> None:
    """A running task that is not preemptible holds the cluster; two driver processes each
    submit 50 tasks at once: all 100 are queued, none lost or doubled, none started; each is
    cancelled while queued (never started); then the running task is cancelled: its job stops
    and its checkpoints stay."""
    from mtp import queue

    blocker = digits("blocker", 2000, scheduling__priority=99, scheduling__preemptible=False)
    blocker_id = submit(blocker, tmp_path)
    wait_epoch(blocker_id, 1)

    config = tmp_path / "small.json"
    config.write_text(json.dumps(digits("small", 2)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", _DRIVER, idle.cluster.address,
                               str(config), "50"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for _ in range(2)]
    outs = [p.communicate(timeout=RUN_TIMEOUT_S) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    ids = [i for out, _ in outs for i in json.loads(out.strip().splitlines()[-1])]
    assert len(ids) == 100 and len(set(ids)) == 100
    waiting = {r.id: r for r in queue.tasks([QueueState.PENDING])}
    assert set(ids) <= set(waiting), len(set(ids) - set(waiting))
    assert len({waiting[i].seq for i in ids}) == 100
    assert get(blocker_id).state is QueueState.RUNNING  # lower priorities never preempt it

    for task_id in ids:
        assert queue.cancel(task_id).state is QueueState.CANCELLED
    cancelled = {r.id: r for r in queue.tasks([QueueState.CANCELLED])}
    assert all(cancelled[i].attempts == 0 and cancelled[i].job_id is None for i in ids)

    rec = queue.cancel(blocker_id)
    assert rec.request is not None and rec.state is QueueState.RUNNING
    done = wait_state(blocker_id, QueueState.CANCELLED)
    assert "checkpoints are kept" in done.reason
    run_dir = Path(done.storage) / done.run_name
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(
        "ckpt-")), run_dir
    assert _job_client().get_job_status(f"mtp-{blocker_id}-1").value == "STOPPED"
    assert jobs_of(set(ids)) == []


def test_max_runtime_fails_the_task_naming_the_limit(idle: SchedCluster,
                                                     tmp_path: Path) -> None:
    task_id = submit(digits("too-long", 5000, training__max_runtime_s=6), tmp_path)
    done = wait_state(task_id, QueueState.FAILED)
    assert "training.max_runtime_s=6" in done.reason, done.reason
    assert done.ran_s > 6
    assert done.error == "max runtime exceeded"


def test_a_task_that_can_never_fit_is_refused_at_submit(idle: SchedCluster, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(digits("big", 1, resources__cpus_per_worker=4)))
    assert main(["submit", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtp: error: task 'big' can never run on this cluster"), err
    assert "4 CPUs" in err and "the cluster has 1" in err, err
    assert main(["status", "t-0000000000"]) == 2
    assert "no task 't-0000000000'" in capsys.readouterr().err
    # the data is checked at submit, not when the task starts
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({**digits("no-data", 1), "dataset": {
        "source": "csv", "path": str(tmp_path / "nowhere.csv"), "target": "y"}}))
    assert main(["submit", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "nowhere.csv" in err and "does not exist" in err, err
    from mtp import queue

    assert not queue.tasks(name="no-data") and not queue.tasks(name="big")


def _scrape() -> str:
    import urllib.request

    import ray

    text = ""
    for node in ray.nodes():
        if node.get("Alive") and node.get("MetricsExportPort"):
            url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    text += r.read().decode()
            except OSError:
                continue
    return text


def _value(text: str, name: str, **tags: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in tags.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_scheduler_metrics_reach_the_prometheus_endpoint(idle: SchedCluster, tmp_path: Path
                                                         ) -> None:
    """A refused submit is counted, and the idle queue's gauge reads zero running tasks, on
    the head's Prometheus endpoint (``ray.util.metrics``)."""
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(digits("huge", 1, resources__num_workers=8)))
    assert main(["submit", str(path)]) == 2

    def scraped() -> str | None:
        text = _scrape()
        refused = _value(text, "ray_mtp_admissions_refused_total")
        return text if refused is not None and refused >= 1 else None

    text = wait_for(scraped, 120, interval_s=2,
                    what="ray_mtp_admissions_refused_total >= 1 on a node's metrics endpoint")
    assert _value(text, "ray_mtp_running_tasks") == 0
