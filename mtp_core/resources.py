"""What a task needs from the cluster: the one place that turns ``resources`` (and the
parameter server's shards) into CPUs and GPUs.

Used by the capacity check before a run, Ray Train's scaling config, the parameter server's
actors, the task migrator's placements and consensus verification's node choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtp_core.spec import Strategy, TrainingTask

__all__ = ["TaskResources"]


@dataclass(frozen=True)
class TaskResources:
    """Per-worker and total resources of a task (crosses actor boundaries as is)."""

    num_workers: int
    cpus_per_worker: float
    gpus_per_worker: float  # effective: a GPU task with gpus_per_worker unset takes one each
    shard_cpus: float = 0.0  # all parameter-server shards together

    @classmethod
    def of(cls, task: TrainingTask) -> TaskResources:
        res = task.resources
        shards = 0.0
        if task.strategy is Strategy.PARAMETER_SERVER:
            shards = task.ps_spec.num_shards * task.ps_spec.cpus_per_shard
        return cls(res.num_workers, res.cpus_per_worker,
                   (res.gpus_per_worker or 1.0) if res.use_gpu else 0.0, shards)

    @property
    def total_cpus(self) -> float:
        return self.num_workers * self.cpus_per_worker + self.shard_cpus

    @property
    def total_gpus(self) -> float:
        return self.num_workers * self.gpus_per_worker

    def worker_bundle(self) -> dict[str, float]:
        """One worker's Ray resource request."""
        bundle = {"CPU": self.cpus_per_worker}
        if self.gpus_per_worker > 0:
            bundle["GPU"] = self.gpus_per_worker
        return bundle

    def fits(self, free: dict[str, float]) -> bool:
        """Whether one worker fits in ``free`` (a node's CPU/GPU)."""
        return (free.get("CPU", 0.0) >= self.cpus_per_worker
                and free.get("GPU", 0.0) >= self.gpus_per_worker)
