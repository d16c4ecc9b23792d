"""Identity of a training result: the cache key and the checksum of stored JSON.

A result can be reused when everything that determines the trained weights is the same: the
task identity (it seeds the RNGs), the task's result-relevant parameters, the content hash of
the data, and the versions of the model code and the platform. :func:`cache_key` hashes exactly
those, as sha256 over sorted-key JSON, so equal inputs give equal keys in every process and on
every node (Python's ``hash()`` is salted per process and never used).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from consistency.errors import ConsistencyError
from mtp_core.hashing import canonical_json

__all__ = ["CACHE_KEY_SCHEMA", "RESULT_NEUTRAL_FIELDS", "cache_key", "task_params_for_key"]

#: Bumped when the meaning of a key changes, so old cache entries stop matching.
CACHE_KEY_SCHEMA = "mtp-cache-key-v1"

#: Dotted paths of task fields that never change the trained weights or metrics (see
#: :func:`task_params_for_key` for the reasoning). ``resources`` is handled separately: only
#: the fields in ``_RESULT_RESOURCES`` are kept.
RESULT_NEUTRAL_FIELDS: tuple[str, ...] = (
    "name",
    "id",
    "description",
    "failure",
    "fault_tolerance",
    "training.checkpoint",
    "dataset.path",
    "model.code_dir",
    "dataset.code_dir",
    "ps.cpus_per_shard",
    "consistency.cache",
    "consistency.sharing",
    "consistency.consensus",
    "tracking",
    "registry",
    "training.init_from",
    "training.max_runtime_s",
    "scheduling",
)
_RESULT_RESOURCES = frozenset({"num_workers", "use_gpu"})


def _require_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConsistencyError(f"cache_key: {name} must be a non-empty string, got {value!r}")
    return value


def cache_key(task_identity: str, params: Mapping[str, Any], data_hash: str,
              model_version: str, code_version: str) -> str:
    """sha256 (hex) over the canonical JSON of everything that determines a trained result.

    ``params`` is usually ``task_params_for_key(task.canonical_dict())``; key order inside it
    (at any depth) does not matter, any changed value does. Raises :class:`ConsistencyError`
    when ``params`` is not JSON data or an identity string is empty.
    """
    payload = {
        "schema": CACHE_KEY_SCHEMA,
        "task": _require_text("task_identity", task_identity),
        "data": _require_text("data_hash", data_hash),
        "model_version": _require_text("model_version", model_version),
        "code_version": _require_text("code_version", code_version),
        "params": dict(params),
    }
    try:
        raw = canonical_json(payload)
    except (TypeError, ValueError) as err:
        raise ConsistencyError(
            f"cache_key: params must be JSON data (dicts, lists, str, numbers, bool, None); "
            f"{err}. Pass task.canonical_dict(), not the pydantic model."
        ) from None
    return hashlib.sha256(raw).hexdigest()


def _drop_path(node: Any, parts: list[str]) -> None:
    if not isinstance(node, dict):
        return
    head, rest = parts[0], parts[1:]
    if not rest:
        node.pop(head, None)
    else:
        _drop_path(node.get(head), rest)


def task_params_for_key(task_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a task's canonical dict that can change the trained result.

    Dropped, because they change how or where a run is executed but not what it computes:

    * ``name``, ``id``: the task identity is its own argument of :func:`cache_key` (pass
      ``task.task_id``); it matters because it seeds the RNGs, the display name does not.
    * ``description``.
    * ``resources`` except ``num_workers`` and ``use_gpu``: the world size changes the global
      batch and the data sharding, and GPU kernels give other floating-point results than CPU
      ones; CPUs per worker and fractional GPU shares only change scheduling.
    * ``failure``, ``fault_tolerance``: restarts resume from checkpoints to the same result.
    * ``training.checkpoint``: when and how checkpoints are written, not what is trained.
    * ``dataset.path``: the data's content is in the ``data_hash`` argument, and relative paths
      are resolved to absolute ones that differ between machines.
    * ``model.code_dir``, ``dataset.code_dir``: where custom code was found; a model's source
      hash is part of the code versions (``trainer.prepare``), a loader's output is in
      ``data_hash``.
    * ``ps.cpus_per_shard``: scheduling only.
    * ``consistency.cache``, ``consistency.sharing``, ``consistency.consensus``: how results
      are reused and compared. ``consistency.deterministic`` is KEPT: ``global_seed`` and
      ``use_task_based_seed`` change the seed and so the weights.
    * ``tracking``, ``registry``: where the run is recorded and registered.
    * ``scheduling``, ``training.max_runtime_s``: when the scheduler runs the task and how long
      it may; a stopped task resumes bit-identically from its checkpoint.
    * ``training.init_from``: a reference (an alias can move); the caller puts the hash of the
      starting weights it resolves to into the params instead.

    Everything else (model, dataset options, hyperparameters, epochs, early stopping, monitor,
    strategy, ps mode/shards) is kept. The input is not modified.
    """
    try:
        out: dict[str, Any] = json.loads(canonical_json(dict(task_dict)))
    except (TypeError, ValueError) as err:
        raise ConsistencyError(
            f"task_params_for_key: the task dict must be JSON data ({err}); "
            "use TrainingTask.canonical_dict()"
        ) from None
    for path in RESULT_NEUTRAL_FIELDS:
        _drop_path(out, path.split("."))
    resources = out.get("resources")
    if isinstance(resources, dict):
        out["resources"] = {k: v for k, v in resources.items() if k in _RESULT_RESOURCES}
    if isinstance(out.get("consistency"), dict) and not out["consistency"]:
        del out["consistency"]  # a section with only neutral parts equals no section
    return out
