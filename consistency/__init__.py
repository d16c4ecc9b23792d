"""Identity of training work and its reuse: content hashes, seeds, the result cache, the
cluster-wide result registry, and consensus verification across nodes.

Plain logic: :mod:`~consistency.hashing`, :mod:`~consistency.identity`,
:mod:`~consistency.cache`, :mod:`~consistency.store`, :mod:`~consistency.consensus`,
:mod:`~consistency.config`. Ray: :mod:`consistency.actors` (the ``mtp-result-registry`` actor)
and :mod:`consistency.verify` (``verify(task, replicas)``, which trains through ``trainer``).
"""

from consistency.cache import CacheStats, ResultCache
from consistency.config import (
    CacheSpec,
    ConsensusSpec,
    ConsistencySpec,
    DeterministicSpec,
    SharingSpec,
)
from consistency.consensus import ConsistencyReport, MetricComparison, compare_results
from consistency.errors import ConsistencyError, EntryNotFoundError, RegistryCorruptError
from consistency.hashing import canonical_json, data_hash, deterministic_seed, state_dict_hash
from consistency.identity import cache_key, task_params_for_key
from consistency.store import ClaimOutcome, RegistryEntry, RegistryStore

__all__ = [
    "CacheSpec",
    "CacheStats",
    "ClaimOutcome",
    "ConsensusSpec",
    "ConsistencyError",
    "ConsistencyReport",
    "ConsistencySpec",
    "DeterministicSpec",
    "EntryNotFoundError",
    "MetricComparison",
    "RegistryCorruptError",
    "RegistryEntry",
    "RegistryStore",
    "ResultCache",
    "SharingSpec",
    "cache_key",
    "canonical_json",
    "compare_results",
    "data_hash",
    "deterministic_seed",
    "state_dict_hash",
    "task_params_for_key",
]
