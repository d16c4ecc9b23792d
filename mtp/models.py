"""The model registry's use cases: register a finished run, branch a version, compare two.

Each composes the trainer (results, training, evaluation) with the registry service
(:mod:`tracking.models`: MLflow's registry plus the platform database's lineage and alias
history). The CLI's ``mtp models ...`` commands and driver scripts call these.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtp_core.errors import ConfigError
from mtp_core.hashing import canonical_json
from mtp_core.spec import TrainingTask, apply_overrides, parse_task
from tracking.models import LineageRelation, ModelVersion, VersionRef
from trainer.registration import open_model_registry, register_run, version_tags

if TYPE_CHECKING:
    from trainer.api import Executor
    from trainer.compare import Comparison
    from trainer.result import TrainingResult

__all__ = ["branch_version", "compare_versions", "open_model_registry", "register_run",
           "task_changes", "version_tags"]

#: task fields that name or place a run, not what it trains: never an edge's change
_NOT_CHANGES = ("name", "id", "description", "tracking", "registry", "training.init_from")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def task_changes(parent: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{dotted field: [parent value, child value]}`` for every setting that differs."""
    a, b = _flat(dict(parent)), _flat(dict(child))
    out = {}
    for key in sorted(set(a) | set(b)):
        if any(key == n or key.startswith(n + ".") for n in _NOT_CHANGES):
            continue
        if a.get(key) != b.get(key):
            out[key] = [a.get(key), b.get(key)]
    return out


def branch_version(ref: str, overrides: Sequence[str], *, storage: str | Path,
                   tracking_uri: str | None = None, address: str | None = None,
                   register_as: str | None = None,
                   on_epoch: Callable[[dict[str, Any]], None] | None = None,
                   executor: Executor | None = None) -> tuple[ModelVersion, TrainingResult]:
    """Train a child of version ``ref`` (``NAME@VERSION`` or ``NAME@ALIAS``) from its weights
    with ``overrides`` (``key=value``) applied to its task, then register the child as a new
    version of the same model (or ``register_as``) with the parent recorded.

    The child keeps the parent's task identity (so its seed and data split are the parent's)
    under a run name of its own; it is a training run like any other: deterministic, cached,
    fault tolerant. Changing the model section is refused (a branch keeps the architecture).
    """
    from trainer.api import Executor, train
    from trainer.result import load_result

    if not overrides:
        raise ConfigError("mtp models branch: give at least one --set KEY=VALUE (e.g. "
                          "training.learning_rate=0.0005): a branch changes something")
    parsed = VersionRef.parse(ref)  # a malformed reference fails before MLflow loads
    registry = open_model_registry(storage, tracking_uri)
    parent = registry.resolve(parsed)
    parent_result = load_result(parent.run_dir)
    raw = parent_result.task  # as stored: relative code/data paths already resolved
    child_raw = apply_overrides(raw, list(overrides))  # a deep copy
    model_change = task_changes({"model": raw["model"]}, {"model": child_raw.get("model")})
    if model_change:
        where, (old, new) = next(iter(model_change.items()))
        raise ConfigError(f"--set {where}={new!r}: a branch keeps the parent's architecture "
                          f"({where} is {old!r} in {parent.ref}); train a new model with "
                          "`mtp run` instead")
    digest = hashlib.sha256(canonical_json(list(overrides))).hexdigest()[:8]
    child_raw["id"] = parent_result.task_id  # the parent's seed and data split
    child_raw["name"] = f"{parent_result.task_name}-v{parent.version}-{digest}"[:128]
    child_raw["training"] = {**child_raw.get("training", {}),
                             "init_from": str(Path(parent.run_dir).resolve())}
    child_raw["registry"] = {"register_as": None}
    task: TrainingTask = parse_task(child_raw)
    result = train(task, storage_path=storage, address=address, on_epoch=on_epoch,
                   run_name=task.name, executor=executor or Executor.RAY_TRAIN)
    changes = task_changes(parent_result.task, result.task)
    version = register_run(result.run_dir, register_as or parent.name, storage=storage,
                           tracking_uri=tracking_uri, parent=parent.version,
                           relation=LineageRelation.BRANCH, changes=changes)
    return version, result


def compare_versions(ref_a: str, ref_b: str, *, storage: str | Path,
                     tracking_uri: str | None = None, data: Path | None = None) -> Comparison:
    """Evaluate two registered versions on the same held-out data now (see
    :func:`trainer.compare.compare_runs`): A's test split, or ``data``."""
    from trainer.compare import compare_runs

    registry = open_model_registry(storage, tracking_uri)
    a, b = registry.resolve(ref_a), registry.resolve(ref_b)
    labels = (a.ref, b.ref) if a.ref != b.ref else (f"{a.ref} (A)", f"{b.ref} (B)")
    return compare_runs(Path(a.run_dir), Path(b.run_dir), data=data, labels=labels)
