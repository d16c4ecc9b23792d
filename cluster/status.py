"""What ``mtp cluster status`` shows: nodes with health, resources, heartbeat age and tasks, and
the recent failures and migrations, read from the detector and migrator actors."""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from cluster.actors import DETECTOR_NAME, MIGRATOR_NAME
from cluster.detector import EventKind
from cluster.migrator import MigrationTrigger
from cluster.scheduler_actor import SCHEDULER_NAME
from mtp_core.ray_env import NAMESPACE
from mtp_core.resources import Resources, format_bytes

__all__ = ["collect_status", "format_duration", "format_progress", "format_queue", "format_status"]


#: Seconds an actor gets to answer for its snapshot before the status says it does not.
SNAPSHOT_TIMEOUT_S = 30.0


def collect_status() -> dict[str, Any]:
    """Snapshots of the running actors (Ray must be connected); absent actors give None.

    An actor that exists but cannot answer (it died, say on a state file it could not load,
    or is restarting, or is too busy for ``SNAPSHOT_TIMEOUT_S``) also gives None, and one line
    saying why under ``<key>_error``: the status shows what it can rather than a traceback.
    """
    import ray
    from ray.exceptions import GetTimeoutError, RayError

    out: dict[str, Any] = {"detector": None, "migrator": None, "scheduler": None,
                           "ray_nodes": ray.nodes()}
    for key, name in (("detector", DETECTOR_NAME), ("migrator", MIGRATOR_NAME),
                      ("scheduler", SCHEDULER_NAME)):
        try:
            handle = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            continue
        try:
            out[key] = ray.get(handle.snapshot.remote(), timeout=SNAPSHOT_TIMEOUT_S)
        except GetTimeoutError:
            out[f"{key}_error"] = f"no answer within {SNAPSHOT_TIMEOUT_S:g} s"
        except RayError as err:  # died (its constructor raised, say) or its snapshot raised
            out[f"{key}_error"] = _actor_failure(err)
    return out


def _actor_failure(err: BaseException) -> str:
    """One line for an actor that cannot answer: the exception its constructor or its
    snapshot raised (the last line of Ray's text, which holds the remote traceback), else the
    first line of Ray's own account (e.g. "The actor died unexpectedly ...")."""
    from ray.exceptions import RayTaskError

    lines = [line.strip() for line in _ANSI.sub("", str(err)).splitlines() if line.strip()]
    if not lines:
        line = type(err).__name__
    elif getattr(err, "actor_init_failed", False):
        line = f"its constructor raised {lines[-1]}"
    elif isinstance(err, RayTaskError):
        line = f"its snapshot raised {lines[-1]}"
    else:
        line = lines[0]
    return line if len(line) <= 300 else line[:297] + "..."


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the actor's name in its error text


def _ts(t: float | None) -> str:
    if t is None:
        return "-"
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%H:%M:%S")


def _res(r: dict[str, float]) -> str:
    parts = [f"{r[k]:g} {k}" for k in ("CPU", "GPU") if r.get(k)]
    return ", ".join(parts) or "-"


def format_duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = max(s, 0.0)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s // 60:.0f}m{s % 60:02.0f}s"
    return f"{s // 3600:.0f}h{s % 3600 // 60:02.0f}m"


def format_progress(rec: Any) -> str:
    p = rec.progress
    if p is None:
        return "-"
    if p.epochs is None:
        return "fitted"
    return f"{p.epoch}/{p.epochs} {p.percent:.0f}%"


def _resources(r: Resources) -> str:
    parts = [f"{r.cpu:g} CPU"]
    if r.gpu:
        parts.append(f"{r.gpu:g} GPU")
    if r.memory:
        parts.append(format_bytes(r.memory))
    return " ".join(parts)


def format_queue(snap: dict[str, Any], finished: list[Any] | None = None) -> str:
    """The scheduler's snapshot: cluster resources, then running and waiting tasks (and
    ``finished`` ones) with id, name, priority, state, progress, resources, waited, ran."""
    now = snap["now"]
    rows = [*snap["running"], *snap["waiting"], *(finished or [])]
    lines = [f"cluster    {snap['nodes']} node{'s' if snap['nodes'] != 1 else ''}: total "
             f"{snap['total'].describe()}",
             f"           allocated to tasks {snap['allocated'].describe()}; free "
             f"{snap['free'].describe()}"]
    if snap.get("last_error"):
        lines.append(f"scheduler  last step failed: {snap['last_error']}")
    if not rows:
        lines.append("queue      empty")
        return "\n".join(lines)
    head = (f"{'ID':<13} {'NAME':<24} {'PRI':>3} {'STATE':<10} {'PROGRESS':<12} "
            f"{'RESOURCES':<18} {'WAITED':>7} {'RAN':>7}")
    lines += ["", head]
    for r in rows:
        state = r.state.value + ("*" if r.request is not None else "")
        lines.append(f"{r.id:<13} {r.name[:24]:<24} {r.priority:>3} {state:<10} "
                     f"{format_progress(r):<12} {_resources(r.demand):<18} "
                     f"{format_duration(r.waited_at(now)):>7} {format_duration(r.ran_at(now)):>7}")
    if any(r.request is not None for r in rows):
        lines.append("* stopping: " + "; ".join(f"{r.id} {r.request.value.lower()}"
                                                for r in rows if r.request is not None))
    return "\n".join(lines)


def format_status(status: dict[str, Any]) -> str:
    text = _format_health(status)
    if status.get("scheduler") is not None:
        text += "\n\nscheduler: " + status["scheduler"]["database"] + "\n" + format_queue(
            status["scheduler"])
    elif status.get("scheduler_error"):
        text += f"\n\nscheduler: not answering ({status['scheduler_error']})"
    else:
        text += "\n\nscheduler: not running (start the services with `mtp cluster start`)"
    return text


def _format_health(status: dict[str, Any]) -> str:
    det, mig = status["detector"], status["migrator"]
    lines: list[str] = []
    if det is None:
        if status.get("detector_error"):
            lines.append(f"fault detector: not answering ({status['detector_error']}); "
                         "nodes from Ray's node table:")
        else:
            lines.append("fault detector: not running (`mtp cluster start` starts it, or the "
                         "first `mtp run`); nodes from Ray's node table:")
        lines.append(f"{'node':<14}{'address':<17}{'alive':<7}resources")
        for n in status["ray_nodes"]:
            lines.append(f"{n['NodeID'][:12]:<14}{n.get('NodeManagerAddress', ''):<17}"
                         f"{'yes' if n.get('Alive') else 'no':<7}{_res(n.get('Resources', {}))}")
        return "\n".join(lines)
    th = det.get("thresholds", {})
    lines.append(f"fault detector: {len(det['nodes'])} nodes, heartbeats received "
                 f"{det['heartbeats_received']:,}, interval {th.get('heartbeat_interval_s')} s, "
                 f"FAILED after {th.get('node_failure_timeout_s')} s")
    lines.append(f"{'node':<14}{'address':<17}{'health':<10}{'heartbeat':>10}  "
                 f"{'resources':<16}tasks")
    for n in det["nodes"]:
        age = n.get("heartbeat_age_s")
        age_s = "-" if age is None else f"{age:.1f}s ago"
        lines.append(f"{n['node_id'][:12]:<14}{n['address']:<17}{n['health']:<10}{age_s:>10}  "
                     f"{_res(n['resources']):<16}{', '.join(n['tasks']) or '-'}")
    events = det["events"][-10:]
    lines.append("")
    lines.append(f"recent failures ({len(events)}):" if events else "recent failures: none")
    for e in events:
        who = f"node {e['node_id'][:12]}" if e["kind"] == EventKind.NODE else (
            f"worker rank {e['rank']} on {e['node_id'][:12]}")
        lines.append(f"  {_ts(e['time'])}  {who}: {e['cause']}"
                     + (f"  tasks: {', '.join(e['task_ids'])}" if e["task_ids"] else ""))
    if mig is None and status.get("migrator_error"):
        lines.append("")
        lines.append(f"task migrator: not answering ({status['migrator_error']})")
    if mig is not None:
        lines.append("")
        tasks = mig["tasks"]
        lines.append(f"tasks ({len(tasks)}):" if tasks else "tasks: none")
        for t in tasks:
            lines.append(f"  {t['task_id']:<24}{t['state']:<10}attempt {t['attempt']}  "
                         f"{t['world_size']} workers  {t['message']}".rstrip())
        ms = mig["migrations"][-10:]
        lines.append("")
        lines.append(f"recent migrations ({len(ms)}):" if ms else "recent migrations: none")
        for m in ms:
            resumed = ("not resumed yet" if m["time_to_resume_s"] is None else
                       f"resumed {m['time_to_resume_s']:.1f}s after the failure from epoch "
                       f"{m['checkpoint_epoch']}, {m['steps_redone']} steps redone")
            lines.append(f"  {_ts(m['planned_at'])}  {m['task_id']} attempt {m['attempt']}: "
                         f"{[n[:12] for n in m['from_nodes']]} -> "
                         f"{[n[:12] for n in m['to_nodes']]}; {resumed}"
                         + ("; stopped on the detector's verdict"
                            if m.get("trigger") == MigrationTrigger.DETECTOR else ""))
    return "\n".join(lines)
