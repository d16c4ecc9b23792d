"""The task queue's scheduler: decisions per second at 10,000 queued tasks, and the time from a
submit to the task's first epoch against a plain ``ray job submit`` of the same command.

One run, two measurements:

1. **Scheduling decisions** (no Ray, no training): the plain :class:`cluster.scheduler.Scheduler`
   with an injected fake clock, on a simulated cluster of ``--nodes`` nodes of ``--node-cpus``
   CPUs and 64 GiB each. The queue holds ``--queued`` waiting ``TaskRecord``\\ s of mixed
   priorities (1-99, uniform) and sizes (1-4 workers x 1-4 CPUs, 0-4 GiB per worker; 90%
   preemptible; half with a ``max_runtime_s``). Only ``step()`` is timed. Decisions are logged
   at INFO to a file, as the actor's are to its worker log (``--no-decision-log``: not logged).

   - submit: ``Scheduler.submit`` of ``--queued`` prebuilt records into an empty scheduler,
     and the same with each record built in the loop (medians of 5).
   - (a) nothing fits: the cluster is full of running, non-preemptible tasks with a
     ``max_runtime_s`` (so the reservation's shadow time is computed); every step sorts and
     scans the whole queue and computes the reservation of its head; nothing changes.
   - (b) steady state: from an empty cluster (the first step, which fills it, is reported on
     its own), the fake clock moves 0.5 s per step (the actor's interval). Before each step the
     ``--ends-per-step`` longest-running jobs end (``observe`` with ``JobReport(SUCCEEDED,
     outcome=Outcome(0))``), a task asked to make room reports a newer checkpoint (a RUNNING
     report with progress), and a job asked to stop ends (STOPPED, exit 143); the capacity's
     ``available`` is the total minus what the running tasks hold, as Ray would report it.
     After each step, new tasks are submitted so that ``--queued`` tasks wait again (not timed).
     Reported: steps/s, p50/p99 step latency, admissions/s (the decisions to start a job) and
     all decisions/s (admissions, ends, preemption requests, stops).

2. **Submit to first epoch** on an idle local cluster: a real ``ray start --head --num-cpus=2``
   on loopback with its dashboard (its own temp dir and ports, ``RAY_AUTH_MODE=disabled``;
   ended at the end by killing only its own processes). The platform's services are started
   with ``mtp.platform.start_services`` (what ``mtp cluster start`` does) on one storage path,
   used by both paths, so both see the same platform database. The task: the sklearn digits MLP,
   1 worker x 2 CPUs, 3 epochs, the result cache and sharing off (nothing is reused); every run
   has a fresh run name. "First epoch" = the moment ``epoch   1/`` appears in the job's logs
   (``JobSubmissionClient.get_job_logs`` polled every 0.2 s), the same for both paths:

   - platform: ``mtp.queue.submit(task)`` (the task's data is checked in the call, as ``mtp
     submit`` does); the scheduler starts the job ``mtp-<id>-1`` (``mtp run <task.json>
     --storage-path S --run-name R`` with ``MTP_QUEUE_TASK`` set). Timed from the call.
   - baseline: ``JobSubmissionClient.submit_job`` (what ``ray job submit --no-wait`` does) of
     ``mtp run <config> --storage-path S --run-name R``, ``entrypoint_num_cpus=0`` as the
     scheduler's. Timed from the call.

   First the job agent is waited for (a trivial job), then ``--warmup`` untimed pairs, then
   ``--repeats`` pairs, alternating platform / baseline; each job is waited for until it has
   ended (and the queue's record too) and the cluster is idle again before the next. Medians;
   the ratio platform / baseline is printed last.

Usage::

    python scripts/bench_scheduler.py [--queued 10000] [--steps 300] [--repeats 3]
        [--warmup 1] [--only 12] [--job-timeout-s 300] [--json OUT]
"""

from __future__ import annotations

import os

os.environ["RAY_AUTH_MODE"] = "disabled"  # a local, loopback-only Ray: no token to set up
os.environ.pop("RAY_ADDRESS", None)  # the cluster is the one started below

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import asdict, dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from bench_common import (  # noqa: E402
    end_processes_with,
    load_average,
    machine,
    machine_line,
    median,
    processes_with,
    ratio,
    wait_until,
    write_json,
)

from cluster.queue import Outcome, Progress, QueueState, StopRequest, TaskRecord  # noqa: E402
from cluster.scheduler import (  # noqa: E402
    ActionKind,
    Capacity,
    JobReport,
    JobStatus,
    Scheduler,
    SchedulerPolicy,
    StepResult,
)
from mtp_core.resources import Resources, TaskResources  # noqa: E402

logger = logging.getLogger("bench_scheduler")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
GIB = float(2**30)
STEP_S = 0.5  # the fake clock's advance per step: the actor's interval
EPOCH_MARK = "epoch   1/"  # mtp run's first epoch line (mtp.cli.format_epoch)
POLL_S = 0.2
HEAD_CPUS = 2
SIZES = [(w, c) for w in (1, 2, 4) for c in (1, 2, 4)]  # (workers, CPUs per worker)
WORKER_MEMORY = (0.0, 1 * GIB, 2 * GIB, 4 * GIB)
RUNTIME_LIMITS = (600.0, 1800.0, 3600.0)


class BenchError(RuntimeError):
    """A step of the benchmark failed or did not finish in time."""


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


# ---------------------------------------------------------------------------------------------
# 1. Scheduling decisions: the plain class


class FakeClock:
    """The scheduler's clock: moves only when told."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Records:
    """Queued tasks of mixed priorities and sizes, in submit order (ids and seqs unique)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seq = 0

    def make(self, now: float, *, preemptible: bool | None = None,
             max_runtime_s: float | None | str = "random",
             size: tuple[int, int] | None = None) -> TaskRecord:
        rng = self.rng
        self.seq += 1
        workers, cpus = size or rng.choice(SIZES)
        limit = (rng.choice(RUNTIME_LIMITS) if rng.random() < 0.5 else None) \
            if max_runtime_s == "random" else max_runtime_s
        assert limit is None or isinstance(limit, float)
        qid = f"t-{self.seq:010x}"
        return TaskRecord(
            id=qid, name=f"bench-{self.seq % 97}", task_id=f"bench-{self.seq % 97}",
            priority=rng.randint(1, 99),
            resources=TaskResources(workers, float(cpus), 0.0, 0.0, rng.choice(WORKER_MEMORY)),
            config="{}", config_path=f"/nonexistent/_queue/{qid}/task.json",
            storage="/nonexistent", run_name=f"bench-{qid}", submitter="bench@localhost",
            submitted_at=now, seq=self.seq,
            preemptible=(rng.random() < 0.9) if preemptible is None else preemptible,
            max_runtime_s=limit, reason="submitted by bench@localhost", updated_at=now)


def sim_nodes(nodes: int, cpus: int) -> tuple[Resources, ...]:
    return tuple(Resources(float(cpus), 0.0, 64 * GIB) for _ in range(nodes))


def latency(times: Sequence[float]) -> dict[str, float]:
    total = float(sum(times))
    return {"n": len(times), "total_s": total, "steps_per_s": ratio(len(times), total),
            "p50_ms": pct(times, 50) * 1e3, "p99_ms": pct(times, 99) * 1e3,
            "max_ms": max(times) * 1e3 if times else math.nan}


def bench_submit(queued: int, seed: int, rounds: int = 5) -> dict[str, Any]:
    clock = FakeClock()
    per_s, built_per_s = [], []
    for r in range(rounds):
        gen = Records(seed + r)
        recs = [gen.make(clock()) for _ in range(queued)]
        sched = Scheduler(clock=clock)
        t0 = time.perf_counter()
        for rec in recs:
            sched.submit(rec)
        per_s.append(queued / (time.perf_counter() - t0))
        gen = Records(seed + r)
        sched = Scheduler(clock=clock)
        t0 = time.perf_counter()
        for _ in range(queued):
            sched.submit(gen.make(clock()))
        built_per_s.append(queued / (time.perf_counter() - t0))
    return {"n": queued, "rounds": rounds, "submit_per_s": median(per_s),
            "build_and_submit_per_s": median(built_per_s)}


def bench_nothing_fits(queued: int, steps: int, nodes: tuple[Resources, ...],
                       seed: int) -> dict[str, Any]:
    """(a): the cluster full of non-preemptible running tasks, ``queued`` waiting."""
    clock = FakeClock()
    gen = Records(seed)
    total = Capacity(nodes, Resources()).total
    running: list[TaskRecord] = []
    used = Resources()
    while used.cpu < total.cpu:
        room = total.cpu - used.cpu
        size = SIZES[-1] if room >= 16 else (1, 1)
        rec = gen.make(clock(), preemptible=False, max_runtime_s=86_400.0, size=size)
        rec = replace(rec, state=QueueState.RUNNING, attempts=1, started_at=clock(),
                      attempt_started_at=clock(), job_id=rec.job_id_for(1))
        if not rec.demand.fits_in(total - used):
            break
        running.append(rec)
        used = used + rec.demand
    sched = Scheduler(SchedulerPolicy(), clock=clock)
    sched.load(running + [gen.make(clock()) for _ in range(queued)])
    capacity = Capacity(nodes, (total - sched.allocated()).floor())
    times = []
    for _ in range(steps):
        clock.advance(STEP_S)
        t0 = time.perf_counter()
        out = sched.step(capacity)
        times.append(time.perf_counter() - t0)
        if out.actions or out.changed or out.admitted:
            raise BenchError(f"(a): a step decided something: {out.actions[:3]}")
    waiting = len(sched.waiting())
    if waiting != queued:
        raise BenchError(f"(a): {waiting} tasks waiting, {queued} expected")
    return {"queued": queued, "running": len(running), "free_cpus": capacity.available.cpu,
            **latency(times)}


@dataclass
class _Sim:
    """The simulated cluster's side of (b): which jobs run, which were asked to stop."""

    started: dict[str, float] = field(default_factory=dict)  # task id -> start (fake clock)
    stop_sent: set[str] = field(default_factory=set)
    waiting: int = 0


def _report_jobs(sched: Scheduler, sim: _Sim, ends: int, now: float) -> int:
    """What the job API and the drivers would report before a step; returns the ends."""
    stopped = set(sim.stop_sent)
    for tid in stopped:  # a job asked to stop has ended by the next step
        sched.observe(tid, JobReport(JobStatus.STOPPED, outcome=Outcome(143, "stopped"),
                                     message="Job was intentionally stopped."))
    sim.stop_sent.clear()
    ended = len(stopped)
    for tid in sim.started:  # a task asked to make room reaches a new checkpoint
        rec = sched.tasks.get(tid)
        if rec is not None and rec.request is StopRequest.PREEMPT and tid not in stopped:
            ckpt = (rec.request_epoch or 0) + 1
            sched.observe(tid, JobReport(JobStatus.RUNNING, progress=Progress(
                ckpt, 100, {"val_loss": 0.5}, ckpt, now)))
    oldest = sorted((kv for kv in sim.started.items() if kv[0] not in stopped),
                    key=lambda kv: kv[1])
    for tid, _ in oldest[:ends]:
        sched.observe(tid, JobReport(JobStatus.SUCCEEDED, outcome=Outcome(0, "ok", {})))
        ended += 1
    return ended


def _apply(out: StepResult, sim: _Sim, now: float) -> dict[str, int]:
    """The step's actions on the simulated cluster; counts of its decisions."""
    counts = {"admitted": len(out.admitted), "preempted": len(out.preempted), "stops": 0,
              "ended": 0, "requeued": 0}
    for action in out.actions:
        if action.kind is ActionKind.START_JOB:
            sim.started[action.task.id] = now
        else:
            sim.stop_sent.add(action.task.id)
            counts["stops"] += 1
    for rec in out.changed:
        if rec.state is QueueState.RUNNING:
            continue
        sim.started.pop(rec.id, None)
        if rec.waiting:
            counts["requeued"] += 1
        elif rec.state in (QueueState.SUCCEEDED, QueueState.FAILED, QueueState.CANCELLED):
            counts["ended"] += 1
    sim.waiting += counts["requeued"] - counts["admitted"]
    return counts


def bench_steady(queued: int, steps: int, ends_per_step: int, nodes: tuple[Resources, ...],
                 seed: int) -> dict[str, Any]:
    """(b): jobs end and tasks are admitted every step, ``queued`` waiting throughout."""
    clock = FakeClock()
    gen = Records(seed)
    sched = Scheduler(SchedulerPolicy(), clock=clock)
    sched.load(gen.make(clock()) for _ in range(queued))
    sim = _Sim(waiting=queued)
    total = Capacity(nodes, Resources()).total

    def capacity() -> Capacity:
        held = Resources()
        for tid in sim.started:
            held = held + sched.tasks[tid].demand
        return Capacity(nodes, (total - held).floor())

    t0 = time.perf_counter()
    out = sched.step(capacity())
    first_s = time.perf_counter() - t0
    first = _apply(out, sim, clock())
    for _ in range(queued - sim.waiting):
        sched.submit(gen.make(clock()))
    sim.waiting = queued

    times: list[float] = []
    sums = {"admitted": 0, "preempted": 0, "stops": 0, "ended": 0, "requeued": 0}
    running_seen: list[int] = []
    for _ in range(steps):
        clock.advance(STEP_S)
        _report_jobs(sched, sim, ends_per_step, clock())
        cap = capacity()
        t0 = time.perf_counter()
        out = sched.step(cap)
        times.append(time.perf_counter() - t0)
        for k, v in _apply(out, sim, clock()).items():
            sums[k] += v
        running_seen.append(len(sim.started))
        for _ in range(queued - sim.waiting):  # new submissions: the queue stays full
            sched.submit(gen.make(clock()))
        sim.waiting = queued
    lat = latency(times)
    decisions = sums["admitted"] + sums["ended"] + sums["preempted"] + sums["stops"]
    waiting = len(sched.waiting())
    if waiting != queued:
        raise BenchError(f"(b): {waiting} tasks waiting, {queued} expected")
    if sums["admitted"] == 0:
        raise BenchError("(b): no task was admitted in the steady state")
    return {"queued": queued, "ends_per_step": ends_per_step, **lat,
            "first_step": {"seconds": first_s, **first},
            **sums, "admissions_per_step": sums["admitted"] / max(steps, 1),
            "admissions_per_s": ratio(sums["admitted"], lat["total_s"]),
            "decisions": decisions, "decisions_per_s": ratio(decisions, lat["total_s"]),
            "running_median": median([float(n) for n in running_seen])}


@contextmanager
def decision_log(enabled: bool) -> Iterator[str | None]:
    """The scheduler's INFO lines to a file (as the actor's go to its worker log), or off."""
    log = logging.getLogger("cluster.scheduler")
    before, propagate = log.level, log.propagate
    handler: logging.Handler | None = None
    path = None
    if enabled:
        fd, path = tempfile.mkstemp(prefix="mtp-bench-scheduler-", suffix=".log")
        os.close(fd)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    else:
        log.setLevel(logging.WARNING)
    log.propagate = False
    try:
        yield path
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        log.setLevel(before)
        log.propagate = propagate
        if path is not None:
            Path(path).unlink(missing_ok=True)


def bench_decisions(args: argparse.Namespace) -> dict[str, Any]:
    nodes = sim_nodes(args.nodes, args.node_cpus)
    with decision_log(not args.no_decision_log) as log_path:
        logger.info("1: decisions logged to %s", log_path or "nowhere (--no-decision-log)")
        submit = bench_submit(args.queued, args.seed)
        logger.info("1: submit %s", submit)
        nothing = bench_nothing_fits(args.queued, args.steps, nodes, args.seed)
        logger.info("1 (a): %s", nothing)
        steady = bench_steady(args.queued, args.steps, args.ends_per_step, nodes, args.seed)
        logger.info("1 (b): %s", steady)
    return {"nodes": args.nodes, "node_cpus": args.node_cpus, "queued": args.queued,
            "steps": args.steps, "decision_log": not args.no_decision_log,
            "submit": submit, "nothing_fits": nothing, "steady": steady}


# ---------------------------------------------------------------------------------------------
# 2. Submit to first epoch on a real local cluster


def task_dict() -> dict[str, Any]:
    return {
        "name": "bench-sched",
        "model": {"type": "mlp", "hidden_sizes": [128, 64], "dropout": 0.1},
        "dataset": {"source": "sklearn", "name": "digits"},
        "training": {"epochs": 3, "batch_size": 32, "learning_rate": 0.002,
                     "checkpoint": {"every_n_epochs": 1}},
        "resources": {"num_workers": 1, "cpus_per_worker": 2},
        "consistency": {"cache": {"enabled": False}, "sharing": {"enabled": False}},
    }


def mtp_command() -> list[str]:
    """The ``mtp`` of this environment, as the scheduler's job launcher resolves it."""
    script = BIN / "mtp"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mtp.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dashboard_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2) as r:
            return bool(json.load(r).get("ray_version"))
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class Head:
    gcs_address: str
    dashboard_url: str
    temp_dir: str
    start_s: float


@contextmanager
def ray_head(num_cpus: int, timeout_s: float, markers: list[str]) -> Iterator[Head]:
    """``ray start --head`` on loopback with the dashboard, its own ports and temp dir, token
    auth off; afterwards its processes (and those naming any of ``markers``) are ended (``ray
    stop`` would stop every Ray on the host)."""
    temp_dir = tempfile.mkdtemp(prefix="mtpbs", dir="/tmp")  # short: unix socket paths
    gcs_port, dash_port, agent_port = _free_port(), _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p))
    try:
        t0 = time.perf_counter()
        cmd = [RAY, "start", "--head", f"--num-cpus={num_cpus}", f"--port={gcs_port}",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
               "--include-dashboard=true", f"--dashboard-agent-listen-port={agent_port}",
               f"--temp-dir={temp_dir}", "--disable-usage-stats"]
        logger.info("%s", " ".join(cmd))
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s,
                           cwd=REPO)
        if p.returncode != 0:
            raise BenchError(f"ray start --head exited with {p.returncode}: "
                             f"{p.stderr[-2000:]}")
        url = f"http://127.0.0.1:{dash_port}"
        wait_until(lambda: _dashboard_up(url), 90.0, "the Ray dashboard", interval_s=0.5)
        head = Head(f"127.0.0.1:{gcs_port}", url, temp_dir, time.perf_counter() - t0)
        logger.info("Ray head at %s (dashboard %s) up in %.1f s", head.gcs_address, url,
                    head.start_s)
        yield head
    finally:
        n = sum(end_processes_with(m) for m in (temp_dir, *markers))
        logger.info("ended %d process(es) of the benchmark's Ray", n)
        left = [pid for m in (temp_dir, *markers) for pid in processes_with(m)]
        if left:
            logger.warning("processes of the benchmark's Ray still there: %s", left)
        shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass
class Trial:
    path: str  # "platform" or "baseline"
    repeat: int  # 0: warm-up (not in the medians)
    job_id: str
    run_name: str
    first_epoch_s: float  # the call's start -> "epoch   1/" in the job's logs
    submit_call_s: float  # the submit call itself
    job_created_s: float  # -> Ray's job record (its start_time)
    job_ended_s: float  # -> Ray's job record's end_time
    admitted_s: float = math.nan  # platform: -> the scheduler's admission (started_at)
    queue_state: str = ""
    job_status: str = ""
    epochs_completed: int = 0
    log_polls: int = 0


class Cluster:
    """The benchmark's view of its cluster: job API client, the submit paths, the waits."""

    def __init__(self, head: Head, storage: Path, config: Path, timeout_s: float) -> None:
        from ray.job_submission import JobSubmissionClient

        self.head = head
        self.storage = storage
        self.config = config
        self.timeout_s = timeout_s
        self.client = JobSubmissionClient(head.dashboard_url)
        self.jobs: list[str] = []  # every job this benchmark started (stopped on failure)

    def status(self, job_id: str) -> str | None:
        try:
            s = self.client.get_job_status(job_id)
        except Exception:  # noqa: BLE001 - no such job (yet)
            return None
        return str(s.value if hasattr(s, "value") else s)

    def logs(self, job_id: str) -> str:
        try:
            return str(self.client.get_job_logs(job_id))
        except Exception:  # noqa: BLE001 - no such job yet: the scheduler has not started it
            return ""

    def wait_agent(self) -> float:
        """Until the job agent runs a job (the dashboard answers a few seconds before it
        accepts submissions); seconds."""
        t0 = time.perf_counter()

        def submitted() -> str | None:
            try:
                return str(self.client.submit_job(entrypoint="echo ready",
                                                  submission_id=f"bench-ready-{uuid.uuid4().hex[:8]}",
                                                  entrypoint_num_cpus=0))
            except Exception as err:  # noqa: BLE001 - "No available agent" until it is up
                logger.info("job agent not ready: %s", str(err).splitlines()[0][:200])
                return None

        job_id = wait_until(submitted, 120.0, "the job agent to accept a job", interval_s=1.0)
        self.jobs.append(job_id)
        self.wait_job_end(job_id, 120.0)
        return time.perf_counter() - t0

    def wait_job_end(self, job_id: str, timeout_s: float) -> str:
        ended = {"SUCCEEDED", "FAILED", "STOPPED"}
        return str(wait_until(lambda: (s := self.status(job_id)) in ended and s, timeout_s,
                              f"job {job_id} to end", interval_s=0.5))

    def wait_idle(self) -> None:
        import ray

        wait_until(lambda: ray.available_resources().get("CPU", 0.0) >= HEAD_CPUS - 1e-9,
                   120.0, "the cluster's CPUs to be free", interval_s=0.2)

    def first_epoch(self, job_id: str, t0: float, check: Callable[[], None]) -> tuple[float,
                                                                                     int]:
        """Seconds from ``t0`` until the job's logs show the first epoch, and the polls."""
        deadline = t0 + self.timeout_s
        polls = 0
        while True:
            logs = self.logs(job_id)
            polls += 1
            if EPOCH_MARK in logs:
                return time.perf_counter() - t0, polls
            if polls % 5 == 0:  # about once a second: has it failed?
                check()
                status = self.status(job_id)
                if status in ("FAILED", "STOPPED", "SUCCEEDED"):
                    raise BenchError(f"job {job_id} {status} without a first epoch line; "
                                     f"logs: {logs[-3000:]}")
            if time.perf_counter() > deadline:
                raise BenchError(f"job {job_id}: no first epoch line after "
                                 f"{self.timeout_s:g} s (status {self.status(job_id)}); "
                                 f"logs: {logs[-2000:]}")
            time.sleep(POLL_S)

    def _finish(self, trial: Trial, t0_wall: float) -> Trial:
        from trainer import load_result

        trial.job_status = self.wait_job_end(trial.job_id, self.timeout_s)
        info = self.client.get_job_info(trial.job_id)
        trial.job_created_s = info.start_time / 1e3 - t0_wall if info.start_time else math.nan
        trial.job_ended_s = info.end_time / 1e3 - t0_wall if info.end_time else math.nan
        if trial.job_status != "SUCCEEDED":
            raise BenchError(f"job {trial.job_id} {trial.job_status}: {info.message}; logs: "
                             f"{self.logs(trial.job_id)[-3000:]}")
        trial.epochs_completed = load_result(self.storage / trial.run_name).epochs_completed
        self.wait_idle()
        return trial

    def platform(self, task: Any, repeat: int) -> Trial:
        import mtp.queue as q

        t0_wall, t0 = time.time(), time.perf_counter()
        rec = q.submit(task, storage=self.storage)
        call_s = time.perf_counter() - t0
        job_id = rec.job_id_for(1)
        self.jobs.append(job_id)

        def check() -> None:
            now = q.get_task(rec.id)
            if now.state in (QueueState.FAILED, QueueState.CANCELLED) or now.attempts > 1:
                raise BenchError(f"task {rec.id} {now.state.value} (attempt {now.attempts}): "
                                 f"{now.reason}")

        first, polls = self.first_epoch(job_id, t0, check)
        trial = Trial("platform", repeat, job_id, rec.run_name, first, call_s, math.nan,
                      math.nan, log_polls=polls)
        self._finish(trial, t0_wall)
        final = q.wait(rec.id, timeout_s=60.0, poll_s=0.2)
        trial.queue_state = final.state.value
        trial.admitted_s = (final.started_at - t0_wall) if final.started_at else math.nan
        if final.state is not QueueState.SUCCEEDED or final.attempts != 1:
            raise BenchError(f"task {rec.id} {final.state.value} after {final.attempts} "
                             f"attempt(s): {final.reason}")
        return trial

    def baseline(self, repeat: int) -> Trial:
        tag = uuid.uuid4().hex[:10]
        run_name, job_id = f"bench-sched-base-{tag}", f"bench-base-{tag}"
        entrypoint = shlex.join([*mtp_command(), "run", str(self.config), "--storage-path",
                                 str(self.storage), "--run-name", run_name])
        t0_wall, t0 = time.time(), time.perf_counter()
        self.client.submit_job(entrypoint=entrypoint, submission_id=job_id,
                               entrypoint_num_cpus=0)
        call_s = time.perf_counter() - t0
        self.jobs.append(job_id)
        first, polls = self.first_epoch(job_id, t0, lambda: None)
        trial = Trial("baseline", repeat, job_id, run_name, first, call_s, math.nan, math.nan,
                      log_polls=polls)
        return self._finish(trial, t0_wall)

    def stop_jobs(self) -> None:
        for job_id in self.jobs:
            if self.status(job_id) in ("PENDING", "RUNNING"):
                try:
                    self.client.stop_job(job_id)
                except Exception as err:  # noqa: BLE001 - it ended meanwhile
                    logger.info("job %s not stopped: %s", job_id, err)


def bench_first_epoch(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    import mtp
    import trainer.api  # noqa: F401 - imported before the first timed submit, as in a driver
    from mtp.platform import start_services
    from mtp_core.ray_env import connect

    root = Path(tempfile.mkdtemp(prefix="mtp-bench-scheduler-"))
    storage = (root / "storage").resolve()
    storage.mkdir()
    config = root / "bench_sched.json"
    config.write_text(json.dumps(task_dict(), indent=1))
    task = mtp.load_task(config)
    out: dict[str, Any] = {"task": task_dict(), "head_cpus": HEAD_CPUS, "repeats": args.repeats,
                           "warmup": args.warmup, "poll_s": POLL_S, "trials": []}
    cluster: Cluster | None = None
    try:
        with ray_head(HEAD_CPUS, 180.0, [str(root)]) as head:
            out["ray_start_s"] = head.start_s
            t0 = time.perf_counter()
            connect(head.gcs_address)
            out["connect_s"] = time.perf_counter() - t0
            try:
                t0 = time.perf_counter()
                services = start_services(storage)
                out["services_start_s"] = time.perf_counter() - t0
                logger.info("services %s in %.1f s", [(s.name, s.started) for s in services],
                            out["services_start_s"])
                cluster = Cluster(head, storage, config, args.job_timeout_s)
                out["job_agent_wait_s"] = cluster.wait_agent()
                cluster.wait_idle()
                plan = [0] * args.warmup + list(range(1, args.repeats + 1))
                for repeat in plan:
                    for path in ("platform", "baseline"):
                        trial = (cluster.platform(task, repeat) if path == "platform"
                                 else cluster.baseline(repeat))
                        out["trials"].append(asdict(trial))
                        logger.info("%s %s: first epoch %.2f s (call %.2f s, job created "
                                    "%.2f s, admitted %.2f s), job ended %.2f s",
                                    "warm-up" if repeat == 0 else f"repeat {repeat}", path,
                                    trial.first_epoch_s, trial.submit_call_s,
                                    trial.job_created_s, trial.admitted_s, trial.job_ended_s)
            finally:
                if cluster is not None:
                    cluster.stop_jobs()
                ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def med(path: str, attr: str) -> float:
        return median([t[attr] for t in out["trials"] if t["path"] == path and t["repeat"] > 0])

    for path in ("platform", "baseline"):
        out[path] = {a: med(path, a) for a in ("first_epoch_s", "submit_call_s",
                                               "job_created_s", "admitted_s", "job_ended_s")}
    out["ratio"] = ratio(out["platform"]["first_epoch_s"], out["baseline"]["first_epoch_s"])
    return out


# ---------------------------------------------------------------------------------------------


def _sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # the finally blocks end the benchmark's Ray


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--queued", type=int, default=10_000, help="tasks waiting in part 1")
    p.add_argument("--steps", type=int, default=300, help="timed steps per scenario of part 1")
    p.add_argument("--nodes", type=int, default=8, help="simulated nodes (part 1)")
    p.add_argument("--node-cpus", type=int, default=16, help="CPUs per simulated node")
    p.add_argument("--ends-per-step", type=int, default=4,
                   help="(b): jobs that end before each step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-decision-log", action="store_true",
                   help="part 1: do not log the decisions (default: at INFO to a file)")
    p.add_argument("--repeats", type=int, default=3, help="part 2: timed runs per path")
    p.add_argument("--warmup", type=int, default=1, help="part 2: untimed pairs first")
    p.add_argument("--job-timeout-s", type=float, default=300.0,
                   help="part 2: the longest wait for a first epoch, and for a job's end")
    p.add_argument("--only", default="12", help="parts to run: 1, 2 or 12")
    p.add_argument("--json", type=Path, default=None, help="write every measurement here")
    args = p.parse_args(argv)
    if not set(args.only) <= {"1", "2"} or not args.only:
        p.error(f"--only {args.only!r}: give 1, 2 or 12")
    if args.queued < 1 or args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("--queued, --steps and --repeats must be at least 1, --warmup at least 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, _sigterm)

    report: dict[str, Any] = {"machine": machine(), "load_before": load_average(),
                              "argv": sys.argv[1:]}
    if "1" in args.only:
        report["decisions"] = bench_decisions(args)
    if "2" in args.only:
        report["first_epoch"] = bench_first_epoch(args)
    report["load_after"] = load_average()
    if args.json:
        write_json(args.json, report)

    print(f"\n{machine_line(report['machine'], report['load_before'], report['load_after'])}")
    if "decisions" in report:
        d = report["decisions"]
        s, a, b = d["submit"], d["nothing_fits"], d["steady"]
        print(f"1. plain Scheduler, {d['queued']:,} queued tasks, simulated {d['nodes']} nodes "
              f"x {d['node_cpus']} CPUs, fake clock; decisions "
              f"{'logged at INFO to a file' if d['decision_log'] else 'not logged'}")
        print(f"   submit(): {s['submit_per_s']:,.0f}/s (building the record too: "
              f"{s['build_and_submit_per_s']:,.0f}/s)")
        print(f"   (a) nothing fits ({a['running']} running, 0 CPUs free; full scan + "
              f"reservation): {a['steps_per_s']:,.1f} steps/s, p50 {a['p50_ms']:.2f} ms, "
              f"p99 {a['p99_ms']:.2f} ms ({a['n']} steps)")
        f = b["first_step"]
        print(f"   (b) steady state ({b['ends_per_step']} jobs end per step, median "
              f"{b['running_median']:.0f} running): {b['steps_per_s']:,.1f} steps/s, p50 "
              f"{b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} ms ({b['n']} steps)")
        print(f"       admissions {b['admitted']:,} ({b['admissions_per_step']:.2f}/step) = "
              f"{b['admissions_per_s']:,.0f} admissions/s; all decisions {b['decisions']:,} "
              f"(ends {b['ended']:,}, preemption requests {b['preempted']:,}, stops "
              f"{b['stops']:,}) = {b['decisions_per_s']:,.0f}/s; {b['requeued']} preempted "
              "task(s) back in the queue")
        print(f"       first step on the empty cluster: {f['seconds'] * 1e3:.1f} ms, "
              f"{f['admitted']} admitted")
    if "first_epoch" in report:
        e = report["first_epoch"]
        print(f"2. submit -> first epoch line in the job's logs, local `ray start --head "
              f"--num-cpus={e['head_cpus']}` (up in {e['ray_start_s']:.1f} s; services "
              f"{e['services_start_s']:.1f} s); digits MLP 1 worker x 2 CPUs, 3 epochs, cache "
              f"off; medians of {e['repeats']} (after {e['warmup']} warm-up pair(s)), logs "
              f"polled every {e['poll_s']:g} s")
        print(f"   {'path':<44}{'first epoch s':>14}{'call s':>8}{'job made s':>11}"
              f"{'admitted s':>11}{'job end s':>10}")
        for path, label in (("platform", "platform: mtp.queue.submit -> scheduler job"),
                            ("baseline", "baseline: JobSubmissionClient.submit_job")):
            m = e[path]
            print(f"   {label:<44}{m['first_epoch_s']:>14.2f}{m['submit_call_s']:>8.2f}"
                  f"{m['job_created_s']:>11.2f}{m['admitted_s']:>11.2f}"
                  f"{m['job_ended_s']:>10.2f}")
        for path in ("platform", "baseline"):
            runs = [t["first_epoch_s"] for t in e["trials"] if t["path"] == path
                    and t["repeat"] > 0]
            print(f"   {path} per repeat: " + " / ".join(f"{v:.2f}" for v in runs))
        print(f"ratio platform / baseline (submit -> first epoch, medians) = {e['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
