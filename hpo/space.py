"""From a ``search.space`` to Ray Tune's parameter space, and from a trial's values to a task."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hpo.errors import SearchConfigError
from hpo.spec import ChoiceParam, FloatParam, GridParam, IntParam, SearchSpec
from mtp_core.errors import ConfigError
from mtp_core.spec import parse_task, set_dotted

__all__ = ["apply_params", "check_space", "tune_space"]


def apply_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The base task's raw dict with each dotted ``params`` path set to its value."""
    raw: dict[str, Any] = json.loads(json.dumps(base))
    for path, value in params.items():
        set_dotted(raw, path, value, where=f"search.space.{path}")
    return raw


def check_space(spec: SearchSpec, base: Mapping[str, Any]) -> None:
    """Every parameter must be a field of the task, and every listed value valid there."""

    for path, p in spec.space.items():
        if not path or any(not part for part in path.split(".")):
            raise SearchConfigError(f"search.space: {path!r} is not a dotted task field path")
        values = ([p.low, p.high] if isinstance(p, FloatParam | IntParam)
                  else list(p.values))
        for value in values:
            try:
                parse_task(apply_params(base, {path: value}), origin=f"search.space.{path}")
            except ConfigError as err:
                msg = str(err)
                if "unknown field" in msg:
                    raise SearchConfigError(
                        f"search.space.{path}: unknown parameter name: the task has no field "
                        f"{path!r} (names are dotted task paths, e.g. training.learning_rate)"
                    ) from None
                detail = msg.removeprefix(f"invalid task config search.space.{path}:")
                raise SearchConfigError(
                    f"search.space.{path}: value {value!r} is not valid for the task: "
                    f"{detail.splitlines()[-1].strip()}") from None
    if spec.metric in spec.space:
        raise SearchConfigError(f"search.metric={spec.metric!r} is a searched parameter")


def tune_space(spec: SearchSpec) -> dict[str, Any]:
    """Tune's param_space: one flat entry per dotted path (Tune nests on dicts, not dots)."""
    from ray import tune

    out: dict[str, Any] = {}
    for path, p in spec.space.items():
        if isinstance(p, FloatParam):
            out[path] = (tune.loguniform(p.low, p.high) if p.type == "loguniform"
                         else tune.uniform(p.low, p.high))
        elif isinstance(p, IntParam):
            # Tune's randint excludes its upper bound; the spec's high is included
            out[path] = (tune.lograndint(p.low, p.high + 1) if p.log
                         else tune.randint(p.low, p.high + 1))
        elif isinstance(p, ChoiceParam):
            if spec.searcher.value == "grid":
                out[path] = tune.grid_search(list(p.values))
            else:
                out[path] = tune.choice(_hashable(p.values))
        elif isinstance(p, GridParam):
            out[path] = tune.grid_search(list(p.values))
    return out


def _hashable(values: list[Any]) -> list[Any]:
    """Optuna's categorical takes None, bool, int, float and str: encode lists as JSON."""
    if all(v is None or isinstance(v, bool | int | float | str) for v in values):
        return list(values)
    return [json.dumps(v) for v in values]


def decode(spec: SearchSpec, config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial config back to task values (JSON-encoded choices decoded)."""
    out: dict[str, Any] = {}
    for path, p in spec.space.items():
        value = config[path]
        if (isinstance(p, ChoiceParam) and isinstance(value, str)
                and value not in p.values and _hashable(p.values) != list(p.values)):
            value = json.loads(value)
        if isinstance(p, IntParam):
            value = int(value)
        out[path] = value
    return out
