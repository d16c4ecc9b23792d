"""Recovery from a lost node: Ray Train's own restart against the platform's detector+migrator.

One run on a local multi-node ``ray.cluster_utils.Cluster`` (a head with 1 CPU and worker nodes
with 1 CPU each, all on this machine). For each kind of node failure and each mode, several
times: a 2-worker digits task starts, and once its first checkpoint is on disk a worker node
that hosts one of its ranks fails; a fresh node is added afterwards so every trial has the
same spare capacity. Two kinds of failure:

- ``kill``: ``remove_node(allow_graceful=False)``; the node's processes die, and their peers
  see refused connections at once (a crashed process; Ray notices within seconds);
- ``freeze``: the node's processes are stopped (SIGSTOP), as on a hung machine or behind a
  network partition: nothing answers and nothing is refused, so only timeouts reveal it.

(a) Ray Train alone: ``fault_tolerance.enable_auto_recovery=false``, ``failure.max_failures=3``:
    Ray Train restarts its worker group wherever the placement group fits.
(b) the platform: the fault detector (1 s heartbeats, FAILED after 2 s) and the task migrator
    (Ray Train's restarts off; the migrator picks healthy nodes and the run resumes there).

Measured per failure:
- detection: (a) until Ray's node table reports the node dead (polled every 50 ms);
  (b) until the fault detector's FAILED event for the node;
- resumed: until rank 0 of the new attempt has loaded its checkpoint and starts training
  (the ``start`` event the run writes to ``events.jsonl``);
- steps redone: the furthest step any rank of the failed attempt reported (workers send their
  step with every heartbeat; a survivor keeps reporting the step it is blocked at), polled
  from the failure until the new attempt starts, minus the steps in the checkpoint resumed
  from.

Usage::

    python scripts/bench_recovery.py [--kills 3] [--failures kill,freeze] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
from bench_common import load_average, machine, machine_line, wait_until, write_json
from node_faults import freeze_node, kill_frozen
from ray.cluster_utils import Cluster

from trainer import TrainingResult, parse_task, train

logger = logging.getLogger("bench_recovery")

HEARTBEAT_S = 1.0
FAILURE_TIMEOUT_S = 2.0
BATCH = 8
WORKERS = 2


def task_dict(auto_recovery: bool) -> dict[str, Any]:
    return {
        "name": "bench-recovery",
        "model": {"type": "mlp", "hidden_sizes": [64], "dropout": 0.1},
        "dataset": {"source": "sklearn", "name": "digits"},
        "training": {"epochs": 10, "batch_size": BATCH, "learning_rate": 0.001,
                     "checkpoint": {"every_n_epochs": 1}},
        "resources": {"num_workers": WORKERS, "cpus_per_worker": 1},
        "failure": {"max_failures": 3},
        "fault_tolerance": {
            "heartbeat_interval_s": HEARTBEAT_S, "node_failure_timeout_s": FAILURE_TIMEOUT_S,
            "warning_missed_heartbeats": 1, "critical_missed_heartbeats": 1,
            "retry_backoff_s": 0.0, "enable_auto_recovery": auto_recovery,
        },
    }


@dataclass
class Trial:
    failure: str
    mode: str
    detection_s: float
    resume_s: float
    steps_redone: int
    resumed_from_epoch: int
    steps_per_epoch: int
    weights_hash: str
    # (b) only, from the migrator's record, seconds after the kill: when the migration was
    # planned (the stopped attempt had ended), and what stopped the attempt
    planned_s: float = math.nan
    trigger: str = ""


def _starts_after(run_dir: Path, t: float) -> list[dict[str, Any]]:
    """The run's ``start`` events (an attempt's rank 0 begins training) after time ``t``."""
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "start" and e["time_unix"] > t]


def _steps_per_epoch(result: TrainingResult) -> int:
    per_rank = math.ceil(result.history[0].train_samples / WORKERS)
    return math.ceil(per_rank / BATCH)


def fail_node(cluster: Cluster, node: Any, failure: str, frozen: list[int]) -> None:
    """``kill``: the node's processes die (peers see refused connections at once).
    ``freeze``: they are stopped (:func:`node_faults.freeze_node`), as on a hung machine
    or behind a network partition; their pids go to ``frozen``, killed once the trial is over
    (removing the node does not kill its stopped workers, which never run again to notice)."""
    if failure == "kill":
        cluster.remove_node(node, allow_graceful=False)
    else:
        frozen.extend(freeze_node(node))


def run_trial(cluster: Cluster, workers: list[Any], mode: str, storage: Path,
              failure: str, frozen: list[int]) -> Trial:
    out: dict[str, Any] = {}

    def go() -> None:
        try:
            out["result"] = train(parse_task(task_dict(mode == "b")), storage_path=storage,
                                  use_cache=False)
        except Exception as err:  # noqa: BLE001 - reported below
            out["error"] = err

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    run_dir = storage / "bench-recovery"
    wait_until(lambda: (run_dir / "checkpoints" / "ckpt-000001").is_dir(), 300, "first checkpoint")
    det = ray.get_actor("mtp-fault-detector", namespace="mtp")
    ours = {n.node_id for n in workers}

    def victim() -> str | None:
        nodes = ray.get(det.task_progress.remote("bench-recovery")).nodes.values()
        hit = [n for n in nodes if n in ours]
        return hit[0] if hit else None

    node_id = str(wait_until(victim, 60, "a rank on a worker node"))
    node = next(n for n in workers if n.node_id == node_id)
    workers.remove(node)
    killed_at = time.time()
    fail_node(cluster, node, failure, frozen)
    logger.info("mode %s: %s node %s", mode, failure, node_id[:12])

    table_dead_at: list[float] = []

    def poll_table() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            entry = next((n for n in ray.nodes() if n["NodeID"] == node_id), None)
            if entry is not None and not entry.get("Alive"):
                table_dead_at.append(time.time())
                return
            time.sleep(0.05)

    last_step: list[int] = [0]

    def poll_progress() -> None:
        # until the new attempt starts, every step reported is the failed attempt's
        while not _starts_after(run_dir, killed_at) and thread.is_alive():
            step = int(ray.get(det.task_progress.remote("bench-recovery")).step)
            last_step[0] = max(last_step[0], step)
            time.sleep(0.1)

    poller = threading.Thread(target=poll_table, daemon=True)
    poller.start()
    progress = threading.Thread(target=poll_progress, daemon=True)
    progress.start()
    thread.join(timeout=600)
    poller.join(timeout=120)
    progress.join(timeout=60)
    if failure == "freeze":
        cluster.remove_node(node, allow_graceful=False)
        kill_frozen(frozen)
        frozen.clear()
    if "error" in out:
        raise RuntimeError(f"mode {mode}: training failed: {out['error']}")
    result: TrainingResult = out["result"]
    resumed = _starts_after(run_dir, killed_at)
    if not resumed:
        raise RuntimeError(f"mode {mode}: no restart after the kill")
    spe = _steps_per_epoch(result)
    if mode == "b":
        events = ray.get(det.snapshot.remote())["events"]
        # the first FAILED after the kill: on a loaded machine a live node can miss a beat,
        # be marked FAILED and recover earlier, which is no detection of this kill
        hit = [e["time"] for e in events if e["kind"] == "node" and e["node_id"] == node_id
               and e["time"] >= killed_at]
        detection = min(hit) - killed_at if hit else math.nan
    else:
        detection = table_dead_at[0] - killed_at if table_dead_at else math.nan
    from_epoch = int(resumed[0]["from_epoch"])
    trial = Trial(failure, mode, detection, resumed[0]["time_unix"] - killed_at,
                  max(0, last_step[0] - from_epoch * spe), from_epoch, spe, result.weights_hash)
    if mode == "b":
        moves = [m for m in ray.get(ray.get_actor("mtp-task-migrator", namespace="mtp")
                                    .snapshot.remote())["migrations"]
                 if m["task_id"] == "bench-recovery" and m["planned_at"] >= killed_at]
        if moves:
            trial.planned_s, trial.trigger = moves[0]["planned_at"] - killed_at, moves[0]["trigger"]
    return trial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3, help="node failures per kind and mode")
    parser.add_argument("--failures", default="kill,freeze",
                        help="kinds of node failure, comma-separated: kill, freeze")
    parser.add_argument("--json", default=None, help="write every trial here")
    args = parser.parse_args()
    failures = args.failures.split(",")
    unknown = sorted(set(failures) - {"kill", "freeze"})
    if unknown:
        parser.error(f"--failures: unknown kinds {unknown}; allowed: kill, freeze")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("trainer").setLevel(logging.WARNING)

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="mtp", logging_level="WARNING")
    trials: list[Trial] = []
    frozen: list[int] = []  # a trial that fails leaves its frozen node's pids here
    report_machine, load_before = machine(), load_average()
    try:
        for failure in failures:
            for k in range(args.kills):
                for mode in ("a", "b"):  # interleaved: drift in machine load hits both alike
                    with tempfile.TemporaryDirectory(prefix="mtp-bench-recovery-") as tmp:
                        trial = run_trial(cluster, workers, mode, Path(tmp), failure,
                                          frozen)
                    trials.append(trial)
                    logger.info("%s %d mode %s: %s", failure, k + 1, mode, trial)
                    workers.append(cluster.add_node(num_cpus=1))  # restore spare capacity
                    cluster.wait_for_nodes()
    finally:
        ray.shutdown()
        kill_frozen(frozen)
        cluster.shutdown()

    load_after = load_average()
    if args.json:
        write_json(Path(args.json), {"machine": report_machine, "load_before": load_before,
                                     "load_after": load_after,
                                     "trials": [asdict(t) for t in trials]})

    def med(failure: str, mode: str, attr: str) -> float:
        return float(statistics.median(getattr(t, attr) for t in trials
                                       if t.mode == mode and t.failure == failure))

    hashes = {t.weights_hash for t in trials}
    print(f"\n{machine_line(report_machine, load_before, load_after)}")
    print(f"{args.kills} node failures per kind and mode; heartbeat {HEARTBEAT_S:g} s, FAILED "
          f"after {FAILURE_TIMEOUT_S:g} s; checkpoint every epoch "
          f"({trials[0].steps_per_epoch} steps per epoch per rank); medians")
    print(f"{'failure':<8}{'mode':<40}{'detection s':>12}{'resumed s':>11}{'steps redone':>14}")
    for failure in failures:
        for mode, label in (("a", "(a) Ray Train restart alone"),
                            ("b", "(b) mtp fault detector + task migrator")):
            print(f"{failure:<8}{label:<40}{med(failure, mode, 'detection_s'):>12.2f}"
                  f"{med(failure, mode, 'resume_s'):>11.2f}"
                  f"{med(failure, mode, 'steps_redone'):>14.0f}")
    print("(a) detection = Ray's node table reports the node dead; (b) = the detector's FAILED")
    print(f"final weights identical across all {len(trials)} runs: {len(hashes) == 1}")
    for failure in failures:
        ratio = med(failure, "b", "resume_s") / med(failure, "a", "resume_s")
        print(f"{failure}: resume time ratio (b)/(a) = {ratio:.2f}; detection (b) = "
              f"{med(failure, 'b', 'detection_s'):.2f} s (target <= 3 s); (b) planned "
              f"{med(failure, 'b', 'planned_s'):.2f} s after the failure")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
