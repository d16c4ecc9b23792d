"""Identity of training work and its reuse: weight hashes, cache keys, the result cache, the
cluster-wide result registry, and the comparison of replicas.

Plain logic: :mod:`~consistency.hashing` (weights), :mod:`~consistency.identity` (cache keys),
:mod:`~consistency.cache`, :mod:`~consistency.store`, :mod:`~consistency.consensus`. Ray:
:mod:`consistency.actors` (the ``mtp-result-registry`` actor). Content hashes and seeds are
the vocabulary layer's (:mod:`mtp_core.hashing`), the ``consistency`` config section is
:mod:`mtp_core.consistency_spec`, and ``verify(task, replicas)``, which trains, is
:mod:`trainer.verify`.
"""

from consistency.cache import CacheStats, ResultCache
from consistency.consensus import ConsistencyReport, MetricComparison, compare_results
from consistency.errors import ConsistencyError, EntryNotFoundError, RegistryCorruptError
from consistency.hashing import state_dict_hash
from consistency.identity import cache_key, task_params_for_key
from consistency.store import ClaimOutcome, RegistryEntry, RegistryStore

__all__ = [
    "CacheStats",
    "ClaimOutcome",
    "ConsistencyError",
    "ConsistencyReport",
    "EntryNotFoundError",
    "MetricComparison",
    "RegistryCorruptError",
    "RegistryEntry",
    "RegistryStore",
    "ResultCache",
    "cache_key",
    "compare_results",
    "state_dict_hash",
    "task_params_for_key",
]
