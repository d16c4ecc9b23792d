"""From a ``search.space`` to Ray Tune's parameter space, and from a trial's values to a task."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from hpo.errors import SearchConfigError
from hpo.spec import ChoiceParam, FloatParam, GridParam, IntParam, SearchSpec
from mtp_core.errors import ConfigError
from mtp_core.spec import SklearnModel, declared_kind, parse_task, set_dotted
from trainer.classical import check_estimator

__all__ = ["apply_params", "check_space", "tune_space"]


def apply_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The base task's raw dict with each dotted ``params`` path set to its value."""
    raw: dict[str, Any] = json.loads(json.dumps(base))
    for path, value in params.items():
        set_dotted(raw, path, value, where=f"search.space.{path}")
    return raw


def check_space(spec: SearchSpec, base: Mapping[str, Any]) -> None:
    """Every parameter must be a value field of the task, and every value it can take valid
    there: both bounds and a fractional value inside a float range (a whole-number field
    takes no ``uniform``), the integers of an int range (or a spread of them when there are
    many: a field may take only some, like an odd kernel size), every choice and grid value."""
    shape = parse_task(base, origin="the study's task").canonical_dict()
    for path, p in spec.space.items():
        if not path or any(not part for part in path.split(".")):
            raise SearchConfigError(f"search.space: {path!r} is not a dotted task field path")
        _check_is_value_field(path, shape)
        for value in _values_to_check(p):
            try:
                task = parse_task(apply_params(base, {path: value}),
                                  origin=f"search.space.{path}")
                if isinstance(task.model, SklearnModel) and path.startswith("model."):
                    # free-form estimator params: scikit-learn's own rules say what is valid
                    check_estimator(task, declared_kind(task.dataset))
            except ConfigError as err:
                raise _bad_value(path, p, value, str(err)) from None
    if spec.metric in spec.space:
        raise SearchConfigError(f"search.metric={spec.metric!r} is a searched parameter")


def _check_is_value_field(path: str, task: Mapping[str, Any]) -> None:
    """A path through a value, or to a whole section, names no field a number can go in."""
    node: Any = task
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping):
            where = ".".join(parts[:i])
            raise SearchConfigError(
                f"search.space.{path}: not a task field: {where} is a value, not a section")
        if part not in node:
            return  # an unknown field: parse_task names it
        node = node[part]
    if isinstance(node, Mapping) and node:
        numbers = [k for k, v in node.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)]
        example = (numbers or list(node))[0]
        raise SearchConfigError(
            f"search.space.{path}: {path} is a section of the task, not a value; name a field "
            f"in it, e.g. {path}.{example}")


_INT_SPREAD = 64  # int values checked at most per parameter


def _values_to_check(p: Any) -> list[Any]:
    if isinstance(p, FloatParam):
        # a value strictly inside, not a whole number: what most samples look like
        inside = p.low + (p.high - p.low) * 0.382
        if inside == int(inside):
            inside = math.nextafter(inside, p.high)
        return [p.low, p.high, inside]
    if isinstance(p, IntParam):
        n = p.high - p.low + 1
        if n <= _INT_SPREAD:
            return list(range(p.low, p.high + 1))
        step = (p.high - p.low) / (_INT_SPREAD - 1)
        return sorted({p.low + round(i * step) for i in range(_INT_SPREAD)} | {p.high})
    return list(p.values)


def _bad_value(path: str, p: Any, value: Any, msg: str) -> SearchConfigError:
    if "unknown field" in msg:
        return SearchConfigError(
            f"search.space.{path}: unknown parameter name: the task has no field {path!r} "
            "(names are dotted task paths, e.g. training.learning_rate)")
    detail = msg.removeprefix(f"invalid task config search.space.{path}:").splitlines()[-1]
    detail = detail.strip()
    if isinstance(p, FloatParam) and value not in (p.low, p.high):
        return SearchConfigError(
            f"search.space.{path}: type {p.type} samples fractional values such as {value:.4g}, "
            f"which the field does not take ({detail}); allowed: type int for a whole-number "
            "field")
    return SearchConfigError(
        f"search.space.{path}: value {value!r} is not valid for the task: {detail}")


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
