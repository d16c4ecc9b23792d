"""The gRPC API (``mtp serve``): ``GetTask`` calls per second and latency from 1 and from 16
concurrent clients on loopback, and the time from a state change in the scheduler to its
arrival on a ``WatchTask`` stream, each against the same operation through the Python API
in-process (:mod:`mtp.queue`).

One run, on a real local cluster: ``ray start --head --num-cpus=2`` on loopback with its
dashboard (its own temp dir and ports, ``RAY_AUTH_MODE=disabled``; its processes are ended at
the end, and only its), the platform's services (``mtp.platform.start_services``, what ``mtp
cluster start`` does), and the API server started in this process
(``mtp.api.server.start_server``) on a free loopback port with a random token, plaintext. One
task is queued and runs for the whole benchmark, so every read is of a real, changing record (a
RUNNING task with per-epoch progress): the digits MLP, 1 worker x 2 CPUs, ``--epochs`` (100,000)
epochs, the result cache and sharing off. It is cancelled at the end. **The task trains on both
of the head's CPUs while everything is measured** (as a server on a busy head would be).

1. ``GetTask`` of that task for ``--duration-s`` after ``--warmup-s`` untimed, per round, in
   ``--rounds`` rounds, the four configurations interleaved in each round:

   - API: ``mtp.client.Client(target, token=...).get(id)``, from 1 thread, and from 16 threads
     each with its own ``Client`` (its own channel; grpc-python's global subchannel pool may
     still carry them over one connection). The client threads, the server and its Ray driver
     share this process (and its GIL).
   - baseline: ``mtp.queue.get_task(id)`` in this process (a named-actor lookup and one call of
     the scheduler actor), from 1 and from 16 threads.

   A call counts if it ends inside the timed window; calls/s = calls / window (summed over the
   rounds); p50/p99 of those calls' latencies.

2. State change -> observed, ``--changes`` times per path, alternating: the task's priority is
   changed with ``mtp.queue.set_priority`` (a change the watch reports as a ``task`` event; a new
   priority every time), timed from just before the call to:

   - API: the arrival of the ``task`` event carrying the new priority on a ``WatchTask`` stream
     (``Client.watch(id)``, opened once, read by its own thread). The server looks at its task
     every 0.25 s (``WATCH_POLL_S``), so this is expected around 0.1-0.3 s. Also reported: the
     event's own ``at`` (when the server saw the change, from the same clock).
   - baseline: the first ``mtp.queue.get_task(id)`` showing it, from a thread polling in a
     loop every ``--poll-s`` (0.01 s) in this process.

   A random pause of 0.2-0.5 s before each change puts it at a random phase of the polls.
   Median and p90 of each; the ratio API / baseline.

Ratios API / in-process are printed last. Cleanup (cancel the task, stop the watch and the
server, stop the services, end the Ray processes) runs on failure too; every wait is bounded.

Usage::

    python scripts/bench_api.py [--duration-s 5] [--warmup-s 1] [--rounds 2] [--changes 30]
        [--threads 16] [--epochs 100000] [--json OUT]
"""

from __future__ import annotations

import os

os.environ["RAY_AUTH_MODE"] = "disabled"  # a local, loopback-only Ray: no token to set up
os.environ.pop("RAY_ADDRESS", None)  # the cluster is the one started below

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import queue as stdqueue  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from bench_common import (  # noqa: E402
    load_average,
    machine,
    machine_line,
    median,
    ratio,
    wait_until,
    write_json,
)
from bench_scheduler import ray_head  # noqa: E402

logger = logging.getLogger("bench_api")

HEAD_CPUS = 2
CHANGE_TIMEOUT_S = 10.0  # the longest wait for one change to be seen
RUNNING_TIMEOUT_S = 300.0  # for the task to run and report its first epoch
CALL_TIMEOUT_S = 30.0  # one GetTask
ORIGINAL_PRIORITY = 50


class BenchError(RuntimeError):
    """A step of the benchmark failed or did not finish in time."""


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def task_dict(epochs: int) -> dict[str, Any]:
    return {
        "name": "bench-api",
        "model": {"type": "mlp", "hidden_sizes": [128, 64], "dropout": 0.1},
        "dataset": {"source": "sklearn", "name": "digits"},
        "training": {"epochs": epochs, "batch_size": 32, "learning_rate": 0.002,
                     "checkpoint": {"every_n_epochs": 50}},
        "resources": {"num_workers": 1, "cpus_per_worker": 2},
        "scheduling": {"priority": ORIGINAL_PRIORITY},
        "consistency": {"cache": {"enabled": False}, "sharing": {"enabled": False}},
    }


# ---------------------------------------------------------------------------------------------
# 1. GetTask throughput and latency


@dataclass
class Load:
    """One configuration of one round: calls that ended inside the window, their latencies."""

    path: str  # "api" or "python"
    threads: int
    round: int
    window_s: float
    calls: int = 0
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""


def hammer(path: str, threads: int, rnd: int, make: Callable[[], tuple[Callable[[], Any],
                                                                        Callable[[], None]]],
           check: Callable[[Any], bool], warmup_s: float, duration_s: float) -> Load:
    """``threads`` threads, each with the call ``make()`` gives it, calling it in a loop for
    ``warmup_s`` (not counted) then ``duration_s``."""
    load = Load(path, threads, rnd, duration_s)
    lock = threading.Lock()
    window: dict[str, float] = {}

    def start_window() -> None:
        now = time.perf_counter()
        window.update(begin=now + warmup_s, end=now + warmup_s + duration_s)

    barrier = threading.Barrier(threads, action=start_window, timeout=120.0)

    def worker() -> None:
        call, close = make()
        mine: list[float] = []
        errors, first = 0, ""
        try:
            barrier.wait()
            begin, end = window["begin"], window["end"]
            while True:
                t0 = time.perf_counter()
                try:
                    ok = check(call())
                    if not ok:
                        raise BenchError("GetTask answered another task")
                except Exception as err:  # noqa: BLE001 - counted, reported
                    errors += 1
                    first = first or f"{type(err).__name__}: {err}"[:300]
                    if errors > 100:
                        break
                t1 = time.perf_counter()
                if t1 > end:
                    break
                if t1 >= begin:
                    mine.append(t1 - t0)
        finally:
            close()
            with lock:
                load.calls += len(mine)
                load.latencies_s.extend(mine)
                load.errors += errors
                load.first_error = load.first_error or first

    pool = [threading.Thread(target=worker, name=f"bench-{path}-{i}", daemon=True)
            for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=warmup_s + duration_s + 180.0)
        if t.is_alive():
            raise BenchError(f"{path} x{threads}: a client thread did not finish")
    if load.errors:
        logger.warning("%s x%d: %d failed call(s), the first: %s", path, threads, load.errors,
                       load.first_error)
    logger.info("%s x%d round %d: %d calls in %.1f s = %.0f/s, p50 %.2f ms, p99 %.2f ms",
                path, threads, rnd, load.calls, duration_s, load.calls / duration_s,
                pct(load.latencies_s, 50) * 1e3, pct(load.latencies_s, 99) * 1e3)
    return load


def summarize(loads: list[Load]) -> dict[str, Any]:
    lat = [x for w in loads for x in w.latencies_s]
    window = sum(w.window_s for w in loads)
    return {"calls": sum(w.calls for w in loads), "window_s": window,
            "calls_per_s": ratio(sum(w.calls for w in loads), window),
            "per_round_calls_per_s": [ratio(w.calls, w.window_s) for w in loads],
            "p50_ms": pct(lat, 50) * 1e3, "p90_ms": pct(lat, 90) * 1e3,
            "p99_ms": pct(lat, 99) * 1e3, "max_ms": max(lat) * 1e3 if lat else math.nan,
            "errors": sum(w.errors for w in loads),
            "first_error": next((w.first_error for w in loads if w.first_error), "")}


def bench_get(task_id: str, target: str, token: str, args: argparse.Namespace
              ) -> dict[str, Any]:
    import mtp.queue as q
    from mtp.client import Client

    def api() -> tuple[Callable[[], Any], Callable[[], None]]:
        client = Client(target, token=token, timeout_s=CALL_TIMEOUT_S)
        return (lambda: client.get(task_id)), client.close

    def python() -> tuple[Callable[[], Any], Callable[[], None]]:
        return (lambda: q.get_task(task_id, CALL_TIMEOUT_S)), (lambda: None)

    def same(found: Any) -> bool:
        return bool(found.id == task_id)

    loads: dict[tuple[str, int], list[Load]] = {}
    for rnd in range(1, args.rounds + 1):
        for threads in (1, args.threads):
            for path, make in (("python", python), ("api", api)):
                loads.setdefault((path, threads), []).append(
                    hammer(path, threads, rnd, make, same, args.warmup_s, args.duration_s))
    out: dict[str, Any] = {"duration_s": args.duration_s, "warmup_s": args.warmup_s,
                           "rounds": args.rounds, "threads": [1, args.threads]}
    for (path, threads), runs in loads.items():
        out[f"{path}_{threads}"] = summarize(runs)
    for threads in (1, args.threads):
        a, p = out[f"api_{threads}"], out[f"python_{threads}"]
        out[f"ratio_calls_per_s_{threads}"] = ratio(a["calls_per_s"], p["calls_per_s"])
        out[f"ratio_p50_{threads}"] = ratio(a["p50_ms"], p["p50_ms"])
        out[f"ratio_p99_{threads}"] = ratio(a["p99_ms"], p["p99_ms"])
    return out


# ---------------------------------------------------------------------------------------------
# 2. A state change -> its arrival


class Watcher:
    """A ``WatchTask`` stream read by its own thread: (arrival perf_counter, event)."""

    def __init__(self, target: str, token: str, task_id: str, bound_s: float) -> None:
        from mtp.client import Client

        self.client = Client(target, token=token, timeout_s=CALL_TIMEOUT_S)
        self.task_id = task_id
        self.bound_s = bound_s
        self.events: stdqueue.Queue[tuple[float, Any]] = stdqueue.Queue()
        self.count = 0
        self.error = ""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, name="bench-watch", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.client.watch(self.task_id, timeout_s=self.bound_s):
                self.events.put((time.perf_counter(), event))
                self.count += 1
        except Exception as err:  # noqa: BLE001 - reported (and expected once closed)
            self.error = f"{type(err).__name__}: {err}"[:300]
        finally:
            self.done.set()

    def drain(self) -> None:
        while True:
            try:
                self.events.get_nowait()
            except stdqueue.Empty:
                return

    def wait_priority(self, priority: int, deadline: float) -> tuple[float, float]:
        """(arrival perf_counter, the event's ``at``) of the first ``task`` event with
        ``priority``."""
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise BenchError(f"no task event with priority {priority} on the watch within "
                                 f"{CHANGE_TIMEOUT_S:g} s (stream: {self.error or 'open'})")
            try:
                arrived, event = self.events.get(timeout=min(left, 0.5))
            except stdqueue.Empty:
                if self.done.is_set():
                    raise BenchError(f"the watch ended: {self.error}") from None
                continue
            if event.WhichOneof("event") == "task" and event.task.priority == priority:
                return arrived, float(event.at)

    def close(self) -> None:
        self.client.close()  # ends the stream (CANCELLED on this side)
        self.thread.join(timeout=10.0)


class Poller:
    """``mtp.queue.get_task`` in a loop every ``poll_s``, by its own thread, until it sees
    ``priority``."""

    def __init__(self, task_id: str, priority: int, poll_s: float) -> None:
        self.task_id = task_id
        self.priority = priority
        self.poll_s = poll_s
        self.seen_at = math.nan
        self.polls = 0
        self.error = ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="bench-poll", daemon=True)

    def _poll(self) -> None:
        import mtp.queue as q

        try:
            while not self.stop.is_set():
                rec = q.get_task(self.task_id, CALL_TIMEOUT_S)
                self.polls += 1
                if rec.priority == self.priority:
                    self.seen_at = time.perf_counter()
                    return
                self.stop.wait(self.poll_s)
        except Exception as err:  # noqa: BLE001 - reported
            self.error = f"{type(err).__name__}: {err}"[:300]


def priorities() -> Iterator[int]:
    """A new priority for every change (1..99 but the task's own, over and over)."""
    values = [p for p in range(1, 100) if p != ORIGINAL_PRIORITY]
    while True:
        yield from values


def bench_watch(task_id: str, target: str, token: str, args: argparse.Namespace
                ) -> dict[str, Any]:
    import mtp.queue as q
    from mtp.api.server import WATCH_POLL_S

    rng = random.Random(args.seed)
    prio = priorities()
    api: list[dict[str, float]] = []
    polled: list[dict[str, float]] = []
    watcher = Watcher(target, token, task_id, bound_s=args.changes * 2 * CHANGE_TIMEOUT_S + 120)
    try:
        # the first event is the task as it is: the stream is open and read
        wait_until(lambda: watcher.count > 0 or watcher.done.is_set(), 60.0,
                   "the watch's first event")
        if watcher.done.is_set():
            raise BenchError(f"the watch ended at once: {watcher.error}")
        for i in range(args.changes):
            for path in ("api", "python"):
                p = next(prio)
                time.sleep(rng.uniform(0.2, 0.5))
                if path == "api":
                    watcher.drain()
                    t0_wall, t0 = time.time(), time.perf_counter()
                    q.set_priority(task_id, p, CALL_TIMEOUT_S)
                    call_s = time.perf_counter() - t0
                    arrived, at = watcher.wait_priority(p, t0 + CHANGE_TIMEOUT_S)
                    api.append({"seen_s": arrived - t0, "call_s": call_s,
                                "server_at_s": at - t0_wall,
                                "delivery_s": (arrived - t0) - (at - t0_wall)})
                else:
                    poller = Poller(task_id, p, args.poll_s)
                    poller.thread.start()
                    time.sleep(rng.uniform(0.0, args.poll_s))  # any phase of its polls
                    t0 = time.perf_counter()
                    q.set_priority(task_id, p, CALL_TIMEOUT_S)
                    call_s = time.perf_counter() - t0
                    poller.thread.join(timeout=CHANGE_TIMEOUT_S)
                    poller.stop.set()
                    if poller.error or math.isnan(poller.seen_at):
                        raise BenchError(f"polling did not see priority {p}: "
                                         f"{poller.error or 'timed out'}")
                    polled.append({"seen_s": poller.seen_at - t0, "call_s": call_s,
                                   "polls": float(poller.polls)})
            logger.info("change %d: watch %.3f s (server saw it at %.3f s), polling %.3f s",
                        i + 1, api[-1]["seen_s"], api[-1]["server_at_s"], polled[-1]["seen_s"])
    finally:
        watcher.close()

    def stats(rows: list[dict[str, float]], key: str) -> dict[str, float]:
        v = [r[key] for r in rows]
        return {"median_s": median(v), "p90_s": pct(v, 90), "min_s": min(v) if v else math.nan,
                "max_s": max(v) if v else math.nan}

    out: dict[str, Any] = {
        "changes": args.changes, "watch_poll_s": WATCH_POLL_S, "poll_s": args.poll_s,
        "api": stats(api, "seen_s"), "api_server_at": stats(api, "server_at_s"),
        "api_delivery": stats(api, "delivery_s"), "api_call": stats(api, "call_s"),
        "python": stats(polled, "seen_s"), "python_call": stats(polled, "call_s"),
        "api_trials": api, "python_trials": polled, "watch_events": watcher.count,
        "watch_end": watcher.error}
    out["ratio_median"] = ratio(out["api"]["median_s"], out["python"]["median_s"])
    out["ratio_p90"] = ratio(out["api"]["p90_s"], out["python"]["p90_s"])
    return out


# ---------------------------------------------------------------------------------------------
# The cluster, the services, the server and the task


@contextmanager
def running_task(storage: Path, config: Path) -> Iterator[str]:
    """The benchmark's task, queued, RUNNING with a first epoch reported; cancelled after."""
    import mtp
    import mtp.queue as q
    from cluster.queue import TERMINAL_STATES, QueueState

    rec = q.submit(mtp.load_task(config), storage=storage)
    logger.info("task %s queued", rec.id)
    try:
        def running() -> bool:
            now = q.get_task(rec.id)
            if now.state in TERMINAL_STATES:
                raise BenchError(f"task {rec.id} {now.state.value}: {now.reason} {now.error}")
            return now.state is QueueState.RUNNING and now.progress is not None

        t0 = time.perf_counter()
        wait_until(running, RUNNING_TIMEOUT_S, f"task {rec.id} to run its first epoch", 0.5)
        logger.info("task %s running (first epoch after %.1f s)", rec.id,
                    time.perf_counter() - t0)
        yield rec.id
    finally:
        try:
            q.cancel(rec.id, "bench_api", CALL_TIMEOUT_S)
            end = q.wait(rec.id, timeout_s=90.0, poll_s=0.5)
            logger.info("task %s %s", rec.id, end.state.value)
        except Exception as err:  # noqa: BLE001 - the Ray processes are ended anyway
            logger.warning("task %s not cancelled cleanly: %s", rec.id, err)


@contextmanager
def api_server(storage: Path, token: str) -> Iterator[str]:
    from mtp.api.server import ServerConfig, start_server

    server = start_server(ServerConfig(host="127.0.0.1", port=0, token=token,
                                       storage=str(storage)))
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop(grace_s=5.0)
        logger.info("API server stopped (%d watch(es) still open)", server.active_watches)


def bench(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from mtp.platform import start_services, stop_services
    from mtp_core.ray_env import connect

    root = Path(tempfile.mkdtemp(prefix="mtp-bench-api-"))
    storage = (root / "storage").resolve()
    storage.mkdir()
    config = root / "bench_api.json"
    config.write_text(json.dumps(task_dict(args.epochs), indent=1))
    out: dict[str, Any] = {"task": task_dict(args.epochs), "head_cpus": HEAD_CPUS}
    token = secrets.token_urlsafe(24)
    try:
        with ray_head(HEAD_CPUS, 180.0, [str(root)]) as head:
            out["ray_start_s"] = head.start_s
            connect(head.gcs_address)
            try:
                t0 = time.perf_counter()
                start_services(storage)
                out["services_start_s"] = time.perf_counter() - t0
                with api_server(storage, token) as target, running_task(storage, config) as tid:
                    out["task_id"] = tid
                    out["get_task"] = bench_get(tid, target, token, args)
                    out["watch"] = bench_watch(tid, target, token, args)
                    import mtp.queue as q

                    rec = q.get_task(tid)
                    out["task_progress_at_end"] = (rec.progress.epoch if rec.progress else 0)
                    if rec.state.value != "RUNNING" or rec.attempts != 1:
                        raise BenchError(f"task {tid} {rec.state.value} (attempt "
                                         f"{rec.attempts}) during the benchmark: {rec.reason}")
            finally:
                try:
                    logger.info("services stopped: %s", stop_services())
                except Exception as err:  # noqa: BLE001 - the Ray processes are ended anyway
                    logger.warning("services not stopped: %s", err)
                ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------


def _sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # the finally blocks end the benchmark's Ray


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--duration-s", type=float, default=5.0,
                   help="part 1: timed seconds per configuration and round")
    p.add_argument("--warmup-s", type=float, default=1.0,
                   help="part 1: untimed seconds before each")
    p.add_argument("--rounds", type=int, default=2, help="part 1: rounds (interleaved)")
    p.add_argument("--threads", type=int, default=16, help="part 1: the concurrent clients")
    p.add_argument("--changes", type=int, default=30, help="part 2: changes per path")
    p.add_argument("--poll-s", type=float, default=0.01, help="part 2: the baseline's poll")
    p.add_argument("--epochs", type=int, default=100_000, help="the running task's epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write every measurement here")
    args = p.parse_args(argv)
    if (args.duration_s <= 0 or args.warmup_s < 0 or args.rounds < 1 or args.threads < 2
            or args.changes < 1 or args.poll_s <= 0 or args.epochs < 1):
        p.error("--duration-s, --poll-s positive; --rounds, --changes, --epochs at least 1; "
                "--threads at least 2; --warmup-s at least 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, _sigterm)

    report: dict[str, Any] = {"machine": machine(), "load_before": load_average(),
                              "argv": sys.argv[1:]}
    report["api"] = bench(args)
    report["load_after"] = load_average()
    if args.json:
        write_json(args.json, report)

    r = report["api"]
    g, w = r["get_task"], r["watch"]
    n = args.threads
    print(f"\n{machine_line(report['machine'], report['load_before'], report['load_after'])}")
    print(f"local `ray start --head --num-cpus={r['head_cpus']}` (up in {r['ray_start_s']:.1f} "
          f"s; services {r['services_start_s']:.1f} s); API server in this process on loopback, "
          "plaintext, token; one task RUNNING throughout (digits MLP, 1 worker x 2 CPUs: both "
          f"of the head's CPUs), task {r['task_id']} at epoch {r['task_progress_at_end']} at "
          "the end")
    print(f"1. GetTask of that task: {g['rounds']} round(s) x {g['duration_s']:g} s per "
          f"configuration (after {g['warmup_s']:g} s warm-up), interleaved")
    print(f"   {'path':<52}{'calls/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'calls':>8}{'errors':>7}")
    for threads in (1, n):
        for path, label in (("api", f"API: Client.get, {threads} client(s)"),
                            ("python", f"in-process: mtp.queue.get_task, {threads} thread(s)")):
            m = g[f"{path}_{threads}"]
            print(f"   {label:<52}{m['calls_per_s']:>9,.0f}{m['p50_ms']:>9.2f}"
                  f"{m['p99_ms']:>9.2f}{m['calls']:>8,}{m['errors']:>7}")
    print(f"2. set_priority -> seen, {w['changes']} changes per path (alternating); the "
          f"server's watch polls every {w['watch_poll_s']:g} s, the baseline every "
          f"{w['poll_s']:g} s")
    print(f"   {'path':<52}{'median s':>9}{'p90 s':>9}{'min s':>9}{'max s':>9}")
    for key, label in (("api", "API: task event on a WatchTask stream"),
                       ("api_server_at", "  of which: the server saw it (event's `at`)"),
                       ("api_delivery", "  of which: at -> arrival here"),
                       ("python", "in-process: mtp.queue.get_task polled")):
        m = w[key]
        print(f"   {label:<52}{m['median_s']:>9.3f}{m['p90_s']:>9.3f}{m['min_s']:>9.3f}"
              f"{m['max_s']:>9.3f}")
    print(f"   set_priority call itself: median {w['api_call']['median_s'] * 1e3:.1f} ms")
    for threads in (1, n):
        print(f"ratio API / in-process, GetTask x{threads}: calls/s "
              f"{g[f'ratio_calls_per_s_{threads}']:.2f}, p50 {g[f'ratio_p50_{threads}']:.2f}, "
              f"p99 {g[f'ratio_p99_{threads}']:.2f}")
    print(f"ratio API / in-process, change -> seen: median {w['ratio_median']:.2f}, p90 "
          f"{w['ratio_p90']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
