"""``training.init_from``: a run that starts from another model's weights (a branch).

The reference is resolved on the driver before the task is identified: ``models:/NAME/3`` or
``models:/NAME@champion`` through the model registry (:func:`resolve_init_from`, which replaces
it with the version's run directory), a run directory as it is. :class:`InitWeights` then reads
that run's result: its weights hash enters the checkpoint fingerprint and the cache key (an
alias that moves later changes neither a finished result nor a resumable checkpoint), and its
model section must equal the task's (a branch keeps the architecture; what may change is
everything else: learning rate, epochs, optimizer, data). Every rank loads the weights before
its first epoch (:func:`load_initial_weights`), checked against that hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtp_core.errors import ConfigError
from mtp_core.layout import RunLayout
from mtp_core.spec import SklearnModel, TrainingTask
from trainer.result import load_result

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODELS_PREFIX", "InitWeights", "load_initial_weights", "resolve_init_from"]

MODELS_PREFIX = "models:/"
FIELD = "training.init_from"


@dataclass(frozen=True)
class InitWeights:
    """The starting weights of a task: the run directory they come from and their hash."""

    run_dir: Path
    weights_hash: str

    @classmethod
    def of(cls, task: TrainingTask) -> InitWeights | None:
        """The task's starting weights, checked against its model; None without
        ``training.init_from``. Raises :class:`ConfigError` naming the field."""
        ref = task.training.init_from
        if ref is None:
            return None
        if ref.startswith(MODELS_PREFIX):
            raise ConfigError(f"{FIELD}={ref!r} is a registry reference that was not "
                              "resolved: run the task with `mtp run` / trainer.train, which "
                              "resolve it through the model registry")
        if isinstance(task.model, SklearnModel):
            raise ConfigError(f"{FIELD} does not apply to model.type=sklearn: an estimator "
                              "is fitted from scratch; remove it")
        run_dir = Path(ref).expanduser().resolve()
        try:
            parent = load_result(run_dir)
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001 - ResultFileError and friends: one line
            raise ConfigError(f"{FIELD}={ref!r}: {err}") from None
        if not RunLayout.of(run_dir).model.is_file():
            raise ConfigError(f"{FIELD}={ref!r}: the run has no model.safetensors (a "
                              "scikit-learn estimator, or a run that did not finish)")
        mine = json.loads(task.model.model_dump_json())
        theirs = parent.task.get("model", {})
        if mine != theirs:
            where, a, b = _first_difference(theirs, mine, "model")
            raise ConfigError(
                f"{FIELD}={ref!r}: the model differs from the one the weights come from "
                f"({where}: {a!r} there, {b!r} here); a run started from another model's "
                "weights keeps its architecture")
        return cls(run_dir=run_dir, weights_hash=parent.weights_hash)

    def key(self) -> dict[str, Any]:
        """What the fingerprint and the cache key hold of it (the hash, not the path)."""
        return {"init_weights": self.weights_hash}


def _first_difference(a: Any, b: Any, where: str) -> tuple[str, Any, Any]:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}")
    return where, a, b


def load_initial_weights(module: nn.Module, init: InitWeights) -> None:
    """Load ``init``'s weights into ``module`` (every rank, before the first epoch), checked
    against the hash its run recorded. Raises :class:`ConfigError` when the file changed or
    does not fit the model (e.g. other input features or classes)."""
    from safetensors.torch import load as st_load

    from consistency.hashing import state_dict_hash

    path = RunLayout.of(init.run_dir).model
    state = st_load(path.read_bytes())
    if state_dict_hash(state) != init.weights_hash:
        raise ConfigError(f"{FIELD}: {path} does not hold the weights its run recorded "
                          f"(hash {init.weights_hash[:12]}...): the file changed after "
                          "training; use another version")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ConfigError(f"{FIELD}: the weights of {init.run_dir} do not fit this task's "
                          f"model ({' '.join(first[1:2] or first[:1]).strip()}): the data "
                          "must have the same features and classes") from None


def resolve_init_from(task: TrainingTask, storage: Path | None,
                      tracking_uri: str | None = None) -> TrainingTask:
    """``task`` with a ``models:/`` reference in ``training.init_from`` replaced by the run
    directory of the version it names now (through the model registry of ``storage``)."""
    ref = task.training.init_from
    if ref is None or not ref.startswith(MODELS_PREFIX):
        return task
    from database import open_database
    from tracking.models import ModelRegistry, VersionRef
    from tracking.target import resolve_target

    version = ModelRegistry(resolve_target(tracking_uri, storage, source="--tracking-uri"),
                            open_database(storage)).resolve(VersionRef.parse(ref, FIELD))
    training = task.training.model_copy(update={"init_from": str(version.run_dir)})
    return task.model_copy(update={"training": training})
