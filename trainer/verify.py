"""Consensus verification: train one task on several distinct nodes and compare the results.

``verify(task, replicas=N)`` picks N alive nodes that can each hold the whole task, trains a
replica on each (every rank pinned to that node through Ray's node-id label, result reuse off,
run directories ``<task>-verify-<i>``), and compares them with
:func:`consistency.consensus.compare_results`. When the registry already holds a result for
the task's cache key, that stored result is the reference the replicas are compared against,
so a stored result that was altered after training (metrics edited, weights swapped) is caught.
When enough replicas agree the registry entry is marked verified; a disagreement is logged
with the metric, both values and the difference, and counted (``mtp_consistency_violations``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from consistency.consensus import ConsistencyReport, compare_results
from mtp_core.errors import ConfigError
from mtp_core.names import derived_name
from mtp_core.ray_env import connect
from mtp_core.resources import TaskResources
from mtp_core.spec import RegistrySpec, Strategy, TrainingTask
from trainer.api import prepare, resolve_storage, train
from trainer.registration import mark_versions_verified
from trainer.result import TrainingResult
from trainer.reuse import registry_entry, usable_result

__all__ = ["pick_nodes", "verify"]

logger = logging.getLogger(__name__)


def pick_nodes(per_node: dict[str, dict[str, float]], cpus: float, gpus: float,
               replicas: int) -> list[str]:
    """``replicas`` distinct nodes with at least ``cpus``/``gpus`` free, most CPUs first."""
    fit = [nid for nid, res in per_node.items()
           if res.get("CPU", 0.0) >= cpus and res.get("GPU", 0.0) >= gpus]
    fit.sort(key=lambda nid: (-per_node[nid].get("CPU", 0.0), nid))
    if len(fit) < replicas:
        raise ConfigError(
            f"--replicas {replicas} needs {replicas} distinct nodes that can each hold the whole "
            f"task ({cpus:g} CPUs, {gpus:g} GPUs), but only {len(fit)} of {len(per_node)} alive "
            "nodes can; lower --replicas or resources.num_workers / cpus_per_worker")
    return fit[:replicas]


def verify(task: TrainingTask, replicas: int = 2, *, storage_path: str | Path | None = None,
           address: str | None = None) -> ConsistencyReport:
    """Run ``task`` on ``replicas`` distinct nodes and report whether the results agree."""
    import ray

    from cluster.actors import free_resources_per_node
    from consistency.actors import get_result_registry

    if replicas < 1:
        raise ConfigError(f"--replicas {replicas}: must be at least 1")
    if task.strategy is not Strategy.DDP:
        raise ConfigError(f"strategy={task.strategy.value}: verify pins every rank to one node, "
                          "which only the ddp strategy supports; verify with strategy: ddp")
    storage = resolve_storage(storage_path)
    prepared = prepare(task)
    connect(address)
    needs = TaskResources.of(task)
    nodes = pick_nodes(free_resources_per_node(), needs.total_cpus, needs.total_gpus, replicas)
    registry = get_result_registry(storage) if task.consistency.sharing.enabled else None
    stored = ray.get(registry.lookup.remote(prepared.cache_key)) if registry else None

    results: list[dict[str, Any]] = []
    names: list[str] = []
    replicas_trained: list[TrainingResult] = []
    if stored is not None:
        # the stored result, as published: its metrics as written, and (checked here) a model
        # file that still hashes to its weights_hash; a swapped model makes it unusable
        if usable_result(stored, "registry") is None:
            logger.warning("verify %s: the registry's result for this task is unusable (model "
                           "missing or altered); it counts as a disagreeing replica",
                           task.task_id)
            results.append({**stored["result"], "final_metrics": {}, "weights_hash": "altered"})
        else:
            results.append(stored["result"])
        names.append(f"registry:{stored.get('node_id', '?')[:12]}")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    # replicas are checks, not versions: registry.register_as applies to the task's own run
    replica_task = task.model_copy(update={"registry": RegistrySpec()})
    for i, node in enumerate(nodes):
        logger.info("verify %s: replica %d on node %s", task.task_id, i, node[:12])
        # a new run directory per call: an old replica's final checkpoint must not be resumed
        r = train(replica_task, storage_path=storage,
                  run_name=derived_name(task.task_id, f"-verify-{stamp}-{i}"),
                  use_cache=False, node_ids=[node] * needs.num_workers)
        replicas_trained.append(r)
        results.append(r.model_dump(mode="json"))
        names.append(node)
    spec = task.consistency.consensus
    report = compare_results(results, names, spec.tolerance_percentage,
                             spec.min_consensus_nodes, spec.confidence_threshold)
    if registry is not None:
        if stored is None and report.is_consistent:
            # nothing shared yet: the first replica becomes the shared result
            entry = registry_entry(prepared.cache_key, replicas_trained[0], node_id=nodes[0],
                                   ttl_s=task.consistency.cache.ttl_s)
            stored = ray.get(registry.register.remote(prepared.cache_key, entry))
        if stored is not None:
            ray.get(registry.mark_verified.remote(prepared.cache_key,
                                                  report.to_json_dict()))
        else:  # nothing to mark, but the disagreement is counted
            ray.get(registry.record_report.remote(report.to_json_dict()))
    mark_versions_verified(storage, prepared.cache_key, report.is_consistent, task.tracking.uri)
    return report
