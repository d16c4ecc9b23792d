"""``mtp submit | queue | status | logs | cancel | priority``: the scheduler on the command line
(see :mod:`mtp.queue`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["add_queue_parser", "format_task"]

EXIT_OK = 0
_TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def _priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 99:
        raise argparse.ArgumentTypeError(f"priority {value} is out of range; allowed: 1 to 99")
    return value


def _connect(args: argparse.Namespace, what: str) -> None:
    from mtp_core.ray_env import connect

    connect(args.address, require_cluster=what)


def _remote(args: argparse.Namespace) -> Any:
    """A client of the API server given with ``--server`` (None: talk to the cluster)."""
    if not getattr(args, "server", None):
        return None
    from mtp.api.auth import load_token
    from mtp.client import Client

    return Client(args.server, token=load_token(args.token_file), tls_ca=args.tls_ca)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def format_task(rec: Any, now: float) -> str:
    from cluster.status import format_duration, format_progress

    lines = [f"task       {rec.id}  {rec.name}  (task id {rec.task_id})",
             f"state      {rec.state.value}: {rec.reason}",
             f"priority   {rec.priority}{'' if rec.preemptible else '  (not preemptible)'}",
             f"resources  {rec.demand.describe()}  ({rec.resources.num_workers} workers)",
             f"submitted  {_when(rec.submitted_at)} by {rec.submitter}",
             f"started    {_when(rec.started_at)}   ended {_when(rec.ended_at)}",
             f"waited     {format_duration(rec.waited_at(now))}   "
             f"ran {format_duration(rec.ran_at(now))}"
             f"   attempts {rec.attempts}/{rec.max_attempts}   preemptions {rec.preemptions}"]
    if rec.max_runtime_s is not None:
        lines.append(f"limit      training.max_runtime_s={rec.max_runtime_s:g}")
    if rec.job_id:
        lines.append(f"ray job    {rec.job_id}  (ray job logs {rec.job_id})")
    lines.append(f"run dir    {rec.storage}/{rec.run_name}")
    if rec.progress is not None:
        p = rec.progress
        metrics = "  ".join(f"{k} {v:.4g}" for k, v in sorted(p.metrics.items())
                            if k.startswith(("val_", "train_loss")))
        lines.append(f"progress   {format_progress(rec)}  checkpoint epoch "
                     f"{p.checkpoint_epoch if p.checkpoint_epoch is not None else '-'}"
                     + (f"  {metrics}" if metrics else ""))
    if rec.result:
        r = rec.result
        best = "  ".join(f"{k} {v:.4g}" for k, v in sorted((r.get("best_metrics") or {}).items()))
        lines.append(f"result     weights {str(r.get('weights_hash', ''))[:16]}  {best}"
                     + ("  (cache hit)" if r.get("cache_hit") else ""))
    if rec.error:
        lines.append(f"error      {rec.error}")
    return "\n".join(lines)


def _cmd_submit(args: argparse.Namespace) -> int:
    from mtp_core.spec import load_task

    task = load_task(args.config, args.set or [])  # a bad config fails before Ray or torch
    api = _remote(args)
    if api is not None:
        from mtp.api.convert import record_of

        with api:
            rec = record_of(api.submit(task, priority=args.priority or 0,
                                       request_id=args.request_id or ""))
        _print_submitted(rec, args.json)
        return EXIT_OK
    if args.priority is not None:
        task = task.model_copy(update={"scheduling": task.scheduling.model_copy(
            update={"priority": args.priority})})
    _connect(args, "submit")
    from mtp.queue import submit

    rec = submit(task, storage=args.storage_path, request_id=args.request_id)
    _print_submitted(rec, args.json)
    return EXIT_OK


def _print_submitted(rec: Any, as_json: bool) -> None:
    if as_json:
        from cluster.scheduler_actor import summarize

        print(json.dumps(summarize(rec, time.time()), indent=1, default=str))
    else:
        print(rec.id)


def _cmd_queue(args: argparse.Namespace) -> int:
    from cluster.queue import QueueState
    from cluster.scheduler_actor import snapshot_json
    from cluster.status import format_queue

    ended_states = [QueueState.SUCCEEDED, QueueState.FAILED, QueueState.CANCELLED]
    api = _remote(args)
    if api is not None:
        from mtp.api.convert import record_of, resources_of, state_pb

        with api:
            q = api.queue()
            snap = {"running": [record_of(t) for t in q.running],
                    "waiting": [record_of(t) for t in q.waiting],
                    **{k: resources_of(getattr(q, k))
                       for k in ("total", "allocated", "free", "available")},
                    "nodes": q.nodes, "now": time.time(), "database": f"server {args.server}",
                    "storage": "", "last_error": q.last_error}
            finished = ([record_of(t) for t in api.tasks([state_pb(s) for s in ended_states])]
                        if args.all else [])
    else:
        _connect(args, "queue")
        from mtp.queue import snapshot, tasks

        snap = snapshot()
        finished = tasks(ended_states) if args.all else []
    finished = finished[-args.limit:] if args.all else []
    if args.json:
        print(json.dumps(snapshot_json(snap, finished), indent=1, default=str))
    else:
        print(format_queue(snap, finished))
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    api = _remote(args)
    if api is not None:
        from mtp.api.convert import record_of

        with api:
            rec = record_of(api.get(args.id))
    else:
        _connect(args, "status")
        from mtp.queue import get_task

        rec = get_task(args.id)
    if args.json:
        from cluster.scheduler_actor import summarize

        print(json.dumps(summarize(rec, time.time()), indent=1, default=str))
    else:
        print(format_task(rec, time.time()))
    return EXIT_OK


def _cmd_logs(args: argparse.Namespace) -> int:
    api = _remote(args)
    if api is not None:
        return _remote_logs(api, args)
    _connect(args, "logs")
    from mtp.queue import get_task, task_logs

    shown: dict[int, int] = {}
    while True:
        rec = get_task(args.id)
        for attempt, job_id, text in task_logs(args.id):
            if attempt not in shown and (len(text) or rec.attempts > 1):
                if rec.attempts > 1 or attempt > 1:
                    print(f"--- attempt {attempt} (ray job {job_id}) ---", flush=True)
                shown[attempt] = 0
            if attempt in shown and len(text) > shown[attempt]:
                sys.stdout.write(text[shown[attempt]:])
                sys.stdout.flush()
                shown[attempt] = len(text)
        if not args.follow or rec.state.value in _TERMINAL:
            break
        time.sleep(1.0)
    if not shown:
        print(f"task {rec.id} is {rec.state.value}: no logs yet ({rec.reason})",
              file=sys.stderr)
    return EXIT_OK


def _remote_logs(api: Any, args: argparse.Namespace) -> int:
    """The task's log lines through the server's WatchTask stream (to the task's end with
    --follow)."""
    with api:
        for event in api.watch(args.id, logs=True, once=not args.follow):
            if event.WhichOneof("event") == "log":
                for line in event.log.lines:
                    print(line, flush=True)
    return EXIT_OK


def _cmd_cancel(args: argparse.Namespace) -> int:
    api = _remote(args)
    if api is not None:
        from mtp.api.convert import record_of

        with api:
            rec = record_of(api.cancel(args.id))
        print(f"{rec.id} {rec.state.value}: {rec.reason}")
        return EXIT_OK
    _connect(args, "cancel")
    from mtp.queue import cancel

    rec = cancel(args.id)
    print(f"{rec.id} {rec.state.value}: {rec.reason}")
    return EXIT_OK


def _cmd_priority(args: argparse.Namespace) -> int:
    api = _remote(args)
    if api is not None:
        from mtp.api.convert import record_of

        with api:
            rec = record_of(api.set_priority(args.id, args.priority))
        print(f"{rec.id} priority {rec.priority} ({rec.state.value})")
        return EXIT_OK
    _connect(args, "priority")
    from mtp.queue import set_priority

    rec = set_priority(args.id, args.priority)
    print(f"{rec.id} priority {rec.priority} ({rec.state.value})")
    return EXIT_OK


def _task_id(text: str) -> str:
    if not text or len(text) > 64 or not all(c.isalnum() or c in "-_" for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a task id (as `mtp submit` prints, "
                                         "e.g. t-1a2b3c4d5e)")
    return text


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="talk to an `mtp serve` API server instead of the cluster (token: "
                   "$MTP_API_TOKEN or --token-file)")
    p.add_argument("--token-file", default=None, help="a file holding the API token")
    p.add_argument("--tls-ca", default=None, metavar="PEM",
                   help="with --server: use TLS, trusting this CA certificate")


def add_queue_parser(sub: Any, address_arg: Callable[[argparse.ArgumentParser, bool], None],
                     at_least_one: Callable[[str], int]) -> None:
    p = sub.add_parser("submit", help="queue a task on the cluster's scheduler; prints its id "
                       "and returns at once")
    p.add_argument("config", help="task config file (.yaml, .yml or .json)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field (repeatable)")
    p.add_argument("--priority", type=_priority, default=None,
                   help="1 (lowest) to 99 (highest); default: scheduling.priority (50)")
    p.add_argument("--request-id", default=None, metavar="KEY",
                   help="a key of yours: a retried submit with the same key queues nothing new")
    p.add_argument("--storage-path", default=None,
                   help="where the scheduler stores runs, when this submit starts it "
                   "(default: $MTP_STORAGE_PATH or ./mtp_results; shared by all nodes)")
    address_arg(p, False)
    p.add_argument("--json", action="store_true", help="print the queued task as JSON")
    _server_args(p)
    p.set_defaults(func=_cmd_submit, parser=p)

    q = sub.add_parser("queue", help="the queue, the running tasks and the cluster's total, "
                       "allocated and free resources")
    q.add_argument("--all", action="store_true", help="also the tasks that have ended")
    q.add_argument("--limit", type=at_least_one, default=20, help="ended tasks shown with --all")
    address_arg(q, False)
    q.add_argument("--json", action="store_true")
    _server_args(q)
    q.set_defaults(func=_cmd_queue, parser=q)

    s = sub.add_parser("status", help="one task: state and why, times, progress, result")
    s.add_argument("id", type=_task_id)
    address_arg(s, False)
    s.add_argument("--json", action="store_true")
    _server_args(s)
    s.set_defaults(func=_cmd_status, parser=s)

    lg = sub.add_parser("logs", help="a task's output (every attempt's Ray job)")
    lg.add_argument("id", type=_task_id)
    lg.add_argument("-f", "--follow", action="store_true", help="until the task ends")
    address_arg(lg, False)
    _server_args(lg)
    lg.set_defaults(func=_cmd_logs, parser=lg)

    c = sub.add_parser("cancel", help="remove a waiting task, or stop a running one (its "
                       "checkpoints are kept)")
    c.add_argument("id", type=_task_id)
    address_arg(c, False)
    _server_args(c)
    c.set_defaults(func=_cmd_cancel, parser=c)

    pr = sub.add_parser("priority", help="change a queued or running task's priority")
    pr.add_argument("id", type=_task_id)
    pr.add_argument("priority", type=_priority)
    address_arg(pr, False)
    _server_args(pr)
    pr.set_defaults(func=_cmd_priority, parser=pr)
