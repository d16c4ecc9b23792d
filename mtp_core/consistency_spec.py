"""The ``consistency`` section of a task spec: seeding, result cache, sharing and consensus.

Example (YAML)::

    consistency:
      deterministic: {enabled: true, use_task_based_seed: true}
      cache: {enabled: true, ttl_hours: 168, max_cache_size: 1000}
      sharing: {enabled: true}
      consensus: {tolerance_percentage: 0.1, min_consensus_nodes: 2, confidence_threshold: 0.5}

Every model forbids unknown fields and is frozen, like the rest of the task spec.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from mtp_core.base import StrictModel
from mtp_core.hashing import SEED_LIMIT, deterministic_seed, mixed_seed

__all__ = ["CacheSpec", "ConsensusSpec", "ConsistencySpec", "DeterministicSpec", "SharingSpec"]

class DeterministicSpec(StrictModel):
    """How runs are seeded, so that the same task on the same data gives the same weights.

    * ``enabled=true, use_task_based_seed=true`` (default): the seed is derived from the task id
      and the data hash; with ``global_seed`` set it is mixed in, so one knob changes every
      task's draw reproducibly.
    * ``enabled=true, use_task_based_seed=false``: every task uses ``global_seed`` (required).
    * ``enabled=false``: no seed is forced and results vary between runs; ``global_seed`` is
      then rejected (it would have no effect) and ``use_task_based_seed`` is ignored. Caching
      still works (a stored result is a valid result of the task) but consensus can only
      succeed within the metric tolerance, not bit for bit.
    """

    enabled: bool = Field(True, description="Seed every RNG and use deterministic kernels.")
    global_seed: int | None = Field(
        None, ge=0, lt=SEED_LIMIT,
        description="Seed for every task (use_task_based_seed=false) or mixed into the "
        "task-based seed (use_task_based_seed=true).")
    use_task_based_seed: bool = Field(
        True, description="Derive the seed from the task id and the data's content hash.")

    @model_validator(mode="after")
    def _seed_source(self) -> DeterministicSpec:
        if not self.enabled and self.global_seed is not None:
            raise ValueError(
                f"consistency.deterministic.global_seed={self.global_seed} has no effect when "
                "consistency.deterministic.enabled=false; remove global_seed or set enabled=true")
        if self.enabled and not self.use_task_based_seed and self.global_seed is None:
            raise ValueError(
                "consistency.deterministic.use_task_based_seed=false needs "
                "consistency.deterministic.global_seed (an integer in [0, 2**63)); set "
                "global_seed or use_task_based_seed=true")
        return self

    def resolve_seed(self, task_id: str, data_digest: str) -> int | None:
        """The seed a run of ``task_id`` on data ``data_digest`` uses (None: not seeded)."""
        if not self.enabled:
            return None
        if not self.use_task_based_seed:
            assert self.global_seed is not None  # guaranteed by _seed_source
            return self.global_seed
        if self.global_seed is None:
            return deterministic_seed(task_id, data_digest)
        return mixed_seed(task_id, data_digest, self.global_seed)


class CacheSpec(StrictModel):
    """The node-local result cache (``consistency.cache.ResultCache``)."""

    enabled: bool = Field(True, description="Reuse a stored result of an identical task.")
    ttl_hours: float = Field(
        168.0, gt=0.0, le=24 * 365 * 100,
        description="Hours an entry stays valid (default a week).")
    max_cache_size: int = Field(
        1000, ge=1, le=10_000_000, description="Most entries kept; least recently used go first.")

    @property
    def ttl_s(self) -> float:
        return self.ttl_hours * 3600.0


class SharingSpec(StrictModel):
    """The cluster-wide result registry."""

    enabled: bool = Field(
        True, description="Publish results to, and look them up in, the cluster registry.")


class ConsensusSpec(StrictModel):
    """When replicas of a task count as agreeing (``consistency.consensus.compare_results``)."""

    tolerance_percentage: float = Field(
        0.1, ge=0.0, le=100.0,
        description="Largest relative metric difference, in percent of the reference value.")
    min_consensus_nodes: int = Field(
        2, ge=1, le=4096, description="Replicas (reference included) that must agree.")
    confidence_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Smallest fraction of replicas that must agree.")


class ConsistencySpec(StrictModel):
    """Reproducibility and reuse settings of a task; every part has working defaults."""

    deterministic: DeterministicSpec = Field(default_factory=DeterministicSpec)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    sharing: SharingSpec = Field(default_factory=SharingSpec)
    consensus: ConsensusSpec = Field(default_factory=ConsensusSpec)
