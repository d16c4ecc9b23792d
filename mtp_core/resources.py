"""What a task needs from the cluster: the one place that turns ``resources`` (and the
parameter server's shards) into CPUs, GPUs and memory.

Used by the capacity check before a run, Ray Train's scaling config, the parameter server's
actors, the task migrator's placements and consensus verification's node choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtp_core.spec import Strategy, TrainingTask

__all__ = ["Resources", "TaskResources", "capacity_problem", "format_bytes"]


@dataclass(frozen=True)
class TaskResources:
    """Per-worker and total resources of a task (crosses actor boundaries as is)."""

    num_workers: int
    cpus_per_worker: float
    gpus_per_worker: float  # effective: a GPU task with gpus_per_worker unset takes one each
    shard_cpus: float = 0.0  # all parameter-server shards together
    memory_per_worker: float = 0.0  # bytes of Ray's ``memory`` resource

    @classmethod
    def of(cls, task: TrainingTask) -> TaskResources:
        res = task.resources
        shards = 0.0
        if task.strategy is Strategy.PARAMETER_SERVER:
            shards = task.ps_spec.num_shards * task.ps_spec.cpus_per_shard
        return cls(res.num_workers, res.cpus_per_worker,
                   (res.gpus_per_worker or 1.0) if res.use_gpu else 0.0, shards,
                   float(res.memory_per_worker or 0))

    @property
    def total_cpus(self) -> float:
        return self.num_workers * self.cpus_per_worker + self.shard_cpus

    @property
    def total_gpus(self) -> float:
        return self.num_workers * self.gpus_per_worker

    @property
    def total_memory(self) -> float:
        return self.num_workers * self.memory_per_worker

    def worker_bundle(self) -> dict[str, float]:
        """One worker's Ray resource request."""
        bundle = {"CPU": self.cpus_per_worker}
        if self.gpus_per_worker > 0:
            bundle["GPU"] = self.gpus_per_worker
        if self.memory_per_worker > 0:
            bundle["memory"] = self.memory_per_worker
        return bundle

    def fits(self, free: dict[str, float]) -> bool:
        """Whether one worker fits in ``free`` (a node's CPU/GPU, and memory when it has a
        ``memory`` entry)."""
        return (free.get("CPU", 0.0) >= self.cpus_per_worker
                and free.get("GPU", 0.0) >= self.gpus_per_worker
                and ("memory" not in free or free["memory"] >= self.memory_per_worker))


def format_bytes(n: float) -> str:
    """``12.5 GiB``: memory as a person reads it."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Resources:
    """An amount of CPUs, GPUs and memory (bytes): a demand, a node's size, what is free."""

    cpu: float = 0.0
    gpu: float = 0.0
    memory: float = 0.0

    @classmethod
    def of_task(cls, needs: TaskResources) -> Resources:
        return cls(needs.total_cpus, needs.total_gpus, needs.total_memory)

    @classmethod
    def from_ray(cls, ray_resources: dict[str, float]) -> Resources:
        """From Ray's resource dict (``CPU``, ``GPU``, ``memory``)."""
        return cls(float(ray_resources.get("CPU", 0.0)), float(ray_resources.get("GPU", 0.0)),
                   float(ray_resources.get("memory", 0.0)))

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.gpu + other.gpu, self.memory + other.memory)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu - other.cpu, self.gpu - other.gpu, self.memory - other.memory)

    def fits_in(self, room: Resources) -> bool:
        """Whether this demand fits in ``room`` (a tiny tolerance for float sums)."""
        eps = 1e-9
        return (self.cpu <= room.cpu + eps and self.gpu <= room.gpu + eps
                and self.memory <= room.memory + eps)

    def floor(self) -> Resources:
        """Negative parts (a node that left while its tasks were counted) as zero."""
        return Resources(max(self.cpu, 0.0), max(self.gpu, 0.0), max(self.memory, 0.0))

    def minimum(self, other: Resources) -> Resources:
        return Resources(min(self.cpu, other.cpu), min(self.gpu, other.gpu),
                         min(self.memory, other.memory))

    def describe(self) -> str:
        return f"{self.cpu:g} CPU, {self.gpu:g} GPU, {format_bytes(self.memory)} memory"


def capacity_problem(needs: TaskResources, nodes: list[Resources]) -> str | None:
    """Why a task can never run on a cluster of ``nodes`` (their totals), or None.

    Each worker is one placement-group bundle, so it must fit on one node: counting how many
    workers fit on each node catches a worker larger than every node even when the cluster's
    sum is enough. Parameter-server shards are counted against the sum.
    """
    total = Resources()
    for n in nodes:
        total = total + n
    demand = Resources.of_task(needs)
    problems = []
    if demand.cpu > total.cpu + 1e-9:
        problems.append(f"{demand.cpu:g} CPUs (resources.num_workers={needs.num_workers} x "
                        f"cpus_per_worker={needs.cpus_per_worker:g}"
                        + (f" + {needs.shard_cpus:g} for parameter-server shards"
                           if needs.shard_cpus else "")
                        + f") but the cluster has {total.cpu:g}")
    if demand.gpu > total.gpu + 1e-9:
        problems.append(f"{demand.gpu:g} GPUs but the cluster has {total.gpu:g}")
    if demand.memory > total.memory + 1e-9:
        problems.append(f"{format_bytes(demand.memory)} of memory (resources.num_workers="
                        f"{needs.num_workers} x memory_per_worker="
                        f"{format_bytes(needs.memory_per_worker)}) but the cluster has "
                        f"{format_bytes(total.memory)}")
    if not problems and nodes:
        placeable = sum(_workers_on(needs, n) for n in nodes)
        if placeable < needs.num_workers:
            problems.append(f"{needs.num_workers} workers of {needs.worker_bundle()} each but "
                            f"only {placeable} fit on the cluster's {len(nodes)} node"
                            f"{'s' if len(nodes) != 1 else ''} (largest: "
                            f"{max(nodes, key=lambda n: (n.cpu, n.gpu)).describe()})")
    return "the task needs " + "; ".join(problems) if problems else None


def _workers_on(needs: TaskResources, node: Resources) -> int:
    # the tolerance before the floor: 0.6 CPUs hold three workers of 0.2 (0.6 / 0.2 is
    # 2.9999999999999996 in floating point)
    counts = ([math.floor(node.cpu / needs.cpus_per_worker + 1e-9)]
              if needs.cpus_per_worker else [])
    if needs.gpus_per_worker:
        counts.append(math.floor(node.gpu / needs.gpus_per_worker + 1e-9))
    if needs.memory_per_worker:
        counts.append(math.floor(node.memory / needs.memory_per_worker + 1e-9))
    return min(counts) if counts else needs.num_workers
