from __future__ import annotations

import json
import math
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from mtp.cli import main
from mtp_core.direction import Direction
from mtp_core.spec import (
    SKLEARN_KINDS,
    CNNModel,
    CustomDataset,
    CustomModel,
    FileDataset,
    MLPModel,
    OptimizerName,
    TaskKind,
    TrainingTask,
    apply_overrides,
    declared_kind,
    metric_direction,
    metrics_for_kind,
    set_dotted,
)
from tests.conftest import EXAMPLES, digits_task_dict
from trainer import ConfigError, load_task, parse_task


def write(tmp_path: Path, data: object, name: str = "task.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if name.endswith((".yaml", ".yml")) else json.dumps(data))
    return p


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_is_valid(path: Path) -> None:
    task = load_task(path)
    assert task.name and task.training.epochs >= 1


def test_yaml_and_json_load_the_same_task(tmp_path: Path) -> None:
    d = digits_task_dict()
    assert load_task(write(tmp_path, d)) == load_task(write(tmp_path, d, "task.json"))


def test_defaults_and_task_id() -> None:
    t = parse_task(digits_task_dict())
    assert t.task_id == "digits-test"
    assert t.training.optimizer is OptimizerName.ADAM
    assert isinstance(t.model, MLPModel) and t.model.hidden_sizes == [64]
    assert parse_task({**digits_task_dict(), "id": "abc-1"}).task_id == "abc-1"


def test_overrides_parse_values_as_yaml(tmp_path: Path) -> None:
    t = load_task(write(tmp_path, digits_task_dict()), [
        "training.epochs=3", "model.hidden_sizes=[8, 4]", "training.optimizer=sgd",
        "hyperparameters.momentum=0.5", "dataset.standardize=false"])
    assert t.training.epochs == 3
    assert isinstance(t.model, MLPModel) and t.model.hidden_sizes == [8, 4]
    assert t.training.optimizer is OptimizerName.SGD
    assert t.hyperparameters.momentum == 0.5
    assert t.dataset.standardize is False


@pytest.mark.parametrize("override", ["training.epochs", "=3", "training..epochs=3"])
def test_malformed_override_is_rejected(override: str) -> None:
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_overrides(digits_task_dict(), [override])


def test_override_into_a_value_is_rejected() -> None:
    with pytest.raises(ConfigError, match="'name' is a value"):
        apply_overrides(digits_task_dict(), ["name.x=1"])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("training.epochz=3", r"training\.epochz: unknown field"),
        ("training.epochs=many", r'training\.epochs: got "many": Input should be a valid integer'),
        ("training.learning_rate=-1", r"training\.learning_rate: got -1: .*greater than 0"),
        ("training.optimizer=lbfgs", r"training\.optimizer: got \"lbfgs\": .*'sgd', 'adam'"),
        ("training.validation_split=1.5", r"training\.validation_split: got 1\.5"),
        ("model.dropout=1.0", r"model\.dropout: got 1\.0: .*less than 1"),
        ("model.type=transformer", r"model: .*'linear', 'logistic_regression', 'mlp', 'cnn'"),
        ("resources.num_workers=0", r"resources\.num_workers: got 0"),
        ("resources.gpus_per_worker=1", r"gpus_per_worker=1.0 needs use_gpu=true"),
        ("hyperparameters.nesterov=true", r"nesterov=true needs momentum > 0"),
        ("dataset.name=mnist", r"dataset\.name: got \"mnist\": .*'digits'"),
        ("name=has space", r"name: got \"has space\": .*not allowed"),
        ("training.monitor.metric=auc", r"unknown metric 'auc'"),
        ("failure.max_failures=-2", r"failure\.max_failures: got -2"),
        ("fault_tolerance.node_failure_timeout_s=0.5",
         r"node_failure_timeout_s=0.5 must be longer than heartbeat_interval_s=1"),
        ("fault_tolerance.heartbeat_interval_s=-1",
         r"fault_tolerance\.heartbeat_interval_s: got -1: .*greater than 0"),
        ("fault_tolerance.critical_missed_heartbeats=9",
         r"critical_missed_heartbeats x heartbeat_interval_s = 9 s must be shorter"),
        ("fault_tolerance.migration_strategy=random",
         r"migration_strategy: got \"random\": .*'load_balanced' or 'round_robin'"),
        ("fault_tolerance.max_retry_attempts=-1", r"max_retry_attempts: got -1"),
        # NaN and infinity are refused for every float field, naming the range allowed
        ("training.checkpoint.every_minutes=.inf",
         r"training\.checkpoint\.every_minutes: got inf: NaN and infinity are not allowed; "
         r"allowed: a finite number >= 0 and <= 1000000 \(0 disables the time rule\)$"),
        ("training.learning_rate=.nan",
         r"training\.learning_rate: got nan: .*allowed: a finite number > 0 and <= 10$"),
        ("model.dropout=-.inf", r"model\.dropout: got -inf: .*a finite number >= 0 and < 1"),
        ("hyperparameters.betas=[0.9, .inf]",
         r"hyperparameters\.betas\[1\]: got inf: .*allowed: a finite number$"),
        ("fault_tolerance.retry_backoff_s=.inf",
         r"fault_tolerance\.retry_backoff_s: got inf: .*>= 0 and <= 600"),
        ("consistency.cache.ttl_hours=.nan", r"consistency\.cache\.ttl_hours: got nan"),
    ],
)
def test_bad_values_name_field_value_and_allowed(
    tmp_path: Path, override: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_task(write(tmp_path, digits_task_dict()), [override])


def test_one_problem_is_one_line_several_are_listed_on_it(tmp_path: Path) -> None:
    cfg = write(tmp_path, digits_task_dict())
    with pytest.raises(ConfigError) as one:
        load_task(cfg, ["training.epochs=0"])
    assert str(one.value) == (f"invalid task config {cfg}: training.epochs: got 0: Input "
                              "should be greater than or equal to 1")
    with pytest.raises(ConfigError) as two:
        load_task(cfg, ["training.epochs=0", "training.checkpoint.every_minutes=.inf"])
    assert str(two.value) == (
        f"invalid task config {cfg}: 2 problems: "
        "training.epochs: got 0: Input should be greater than or equal to 1; "
        "training.checkpoint.every_minutes: got inf: NaN and infinity are not allowed; "
        "allowed: a finite number >= 0 and <= 1000000 (0 disables the time rule)")


def test_cnn_needs_image_shape_except_digits() -> None:
    d = digits_task_dict()
    d["model"] = {"type": "cnn"}
    assert isinstance(parse_task(d).model, CNNModel)
    d["dataset"] = {"source": "sklearn", "name": "wine"}
    with pytest.raises(ConfigError, match="needs dataset.image_shape"):
        parse_task(d)


def test_missing_required_field() -> None:
    d = digits_task_dict()
    del d["model"]
    with pytest.raises(ConfigError, match="model: required field is missing"):
        parse_task(d)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_task(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid"):
        load_task(bad)
    (tmp_path / "t.toml").write_text("x=1")
    with pytest.raises(ConfigError, match="unknown extension '.toml'"):
        load_task(tmp_path / "t.toml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_task(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_task(tmp_path / "list.yaml")


def test_relative_dataset_path_resolves_against_config_folder(tmp_path: Path) -> None:
    d = digits_task_dict()
    d["dataset"] = {"source": "csv", "path": "data/t.csv", "target": "y"}
    t = load_task(write(tmp_path, d))
    assert t.dataset.path == (tmp_path / "data" / "t.csv").resolve()  # type: ignore[union-attr]


def test_cli_exits_2_with_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, digits_task_dict())
    assert main(["run", str(cfg), "--set", "training.batch_size=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtp: error: ") and len(err.splitlines()) == 1, err
    assert "training.batch_size: got 0" in err and "greater than or equal to 1" in err
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_cli_exit_2_for_data_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,label\n1,2,0\n3,4,1\n")
    d = digits_task_dict()
    d["dataset"] = {"source": "csv", "path": str(csv), "target": "target"}
    assert main(["run", str(write(tmp_path, d))]) == 2
    err = capsys.readouterr().err
    assert "dataset.target 'target' is not a column" in err and "'label'" in err


def test_parameter_server_example_selects_the_strategy() -> None:
    from mtp_core.spec import PSMode, Strategy

    task = load_task(EXAMPLES / "digits_mlp_ps.yaml")
    assert task.strategy is Strategy.PARAMETER_SERVER
    assert task.ps_spec.mode is PSMode.SYNC and task.ps_spec.num_shards == 2
    ddp = load_task(EXAMPLES / "digits_mlp.yaml")
    assert ddp.strategy is Strategy.DDP and ddp.ps is None
    assert ddp.ps_spec.num_shards == 1  # defaults, never used by ddp


# ---------------------------------------------------------------------------------------------
# Every number field, found by walking the models: NaN, infinity, huge, fractional, boolean
# and text values are refused with a message naming the field, the value and the real cause


def _task_dict() -> dict[str, Any]:
    return {"name": "t", "model": {"type": "linear"},
            "dataset": {"source": "sklearn", "name": "digits"}}


# what a section needs besides its tag to be valid, and what the task needs for a section
_REQUIRED: dict[type[BaseModel], dict[str, Any]] = {FileDataset: {"path": "t.csv", "target": "y"},
                                                    CustomDataset: {"loader": "m:f"},
                                                    CustomModel: {"factory": "m:f"}}
_NEEDS: dict[str, dict[str, Any]] = {"ps": {"strategy": "parameter_server"}}


def _tagged(model: type[BaseModel]) -> dict[str, Any]:
    """A minimal section of ``model``: the first value of each Literal field, the required."""
    out = {name: get_args(f.annotation)[0] for name, f in model.model_fields.items()
           if get_origin(f.annotation) is Literal}
    return {**out, **_REQUIRED.get(model, {})}


def _models(tp: Any) -> list[type[BaseModel]]:
    """The models a field holds (through Annotated, unions and Optional)."""
    if get_origin(tp) is Annotated:
        return _models(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType):
        return [m for a in get_args(tp) for m in _models(a)]
    return [tp] if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _number_type(tp: Any) -> type | None:
    if get_origin(tp) in (Union, types.UnionType):
        found = [a for a in get_args(tp) if a in (int, float)]
        return found[0] if len(found) == 1 else None
    return tp if tp in (int, float) else None


def _number_fields(model: type[BaseModel] = TrainingTask, prefix: str = "",
                   base: dict[str, Any] | None = None) -> list[tuple[str, type, dict[str, Any]]]:
    """(dotted path, int or float, a valid task dict around it) for every number field."""
    base = base if base is not None else _task_dict()
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        number = _number_type(field.annotation)
        if number is not None:
            out.append((path, number, base))
            continue
        members = _models(field.annotation)
        for member in members:
            task = json.loads(json.dumps(base))
            task.update(_NEEDS.get(path, {}))
            node = task
            for part in path.split(".")[:-1]:
                node = node.setdefault(part, {})
            if len(members) > 1 or path.split(".")[-1] not in node:
                node[path.split(".")[-1]] = _tagged(member) if len(members) > 1 else {}
            out += _number_fields(member, f"{path}.", task)
    return out


NUMBER_FIELDS = _number_fields()
FLOATS = [(p, b) for p, t, b in NUMBER_FIELDS if t is float]
# resources.memory_per_worker is a size: its own parser and test (below)
INTS = [(p, b) for p, t, b in NUMBER_FIELDS if t is int and p != "resources.memory_per_worker"]


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    task = json.loads(json.dumps(base))
    set_dotted(task, path, value, where="test")
    return task


def _refusal(task: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        parse_task(task, origin="t.yaml")
    msg = str(err.value)
    assert len(msg.splitlines()) == 1, msg
    return msg.removeprefix("invalid task config t.yaml: ")


def test_the_walk_finds_the_number_fields() -> None:
    paths = {p for p, _, _ in NUMBER_FIELDS}
    assert {"training.learning_rate", "model.dropout", "dataset.n_samples", "ps.num_shards",
            "consistency.cache.ttl_hours", "hyperparameters.grad_clip_norm",
            "training.checkpoint.every_minutes", "dataset.max_samples"} <= paths
    assert len(FLOATS) >= 20 and len(INTS) >= 25


def _ids(cases: list[tuple[str, Any]]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for path, base in cases:
        tag = base.get("dataset", {}).get("source", "") if path.startswith("dataset") else (
            base.get("model", {}).get("type", "") if path.startswith("model") else "")
        name = f"{path}[{tag}]" if tag else path
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


@pytest.mark.parametrize(("path", "base"), FLOATS, ids=_ids(FLOATS))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_float_is_reported_as_such(path: str, base: dict[str, Any],
                                              value: float) -> None:
    msg = _refusal(_with(base, path, value))
    assert msg.startswith(f"{path}: got {value}: NaN and infinity are not allowed; allowed: a "
                          "finite number"), msg


@pytest.mark.parametrize(("path", "base"), FLOATS, ids=_ids(FLOATS))
def test_huge_finite_float_is_out_of_range_not_non_finite(path: str, base: dict[str, Any]
                                                          ) -> None:
    msg = _refusal(_with(base, path, 1e300))
    assert msg.startswith(f"{path}: got 1e+300: Input should be less than"), msg
    assert "NaN" not in msg


@pytest.mark.parametrize(("path", "base"), FLOATS, ids=_ids(FLOATS))
def test_boolean_for_a_float_is_refused(path: str, base: dict[str, Any]) -> None:
    msg = _refusal(_with(base, path, True))
    assert msg.startswith(f"{path}: got true: a boolean is not a number; allowed: a number"), msg


@pytest.mark.parametrize(("path", "base"), INTS, ids=_ids(INTS))
@pytest.mark.parametrize(("value", "expected"), [
    (2.5, "got 2.5: Input should be a valid integer, got a number with a fractional part"),
    (True, "got true: a boolean is not a number; allowed: an integer"),
    ("many", 'got "many": Input should be a valid integer'),
    (2**70, f"got {2**70}: Input should be less than"),
    (1e300, "got 1e+300: too large; allowed: a whole number"),
])
def test_bad_integer_names_field_value_and_cause(path: str, base: dict[str, Any], value: Any,
                                                 expected: str) -> None:
    msg = _refusal(_with(base, path, value))
    assert msg.startswith(f"{path}: {expected}"), msg


@pytest.mark.parametrize(("value", "expected"), [
    (2147483648, 2147483648), ("512MiB", 512 * 2**20), ("4GiB", 4 * 2**30), ("8GB", 8 * 10**9),
    ("1.5 Gi", int(1.5 * 2**30)), (1024.0, 1024),
])
def test_memory_per_worker_takes_bytes_or_a_size_with_a_unit(value: Any, expected: int) -> None:
    task = parse_task(_with(_task_dict(), "resources.memory_per_worker", value), origin="t.yaml")
    assert task.resources.memory_per_worker == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("many", "'many' is not a size"), ("4 parsecs", "'4 parsecs' is not a size"),
    (2.5, "2.5 is not a whole number of bytes"), (1e300, "1e+300 is not a whole number"),
    (True, "got true: a boolean is not a number"), (0, "got 0"),
])
def test_bad_memory_per_worker_names_the_value_and_the_units(value: Any, expected: str) -> None:
    msg = _refusal(_with(_task_dict(), "resources.memory_per_worker", value))
    assert msg.startswith("resources.memory_per_worker: ") and expected in msg, msg
    if isinstance(value, str) or value == 2.5:
        assert "512MiB, 4GiB, 8GB" in msg, msg


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("hyperparameters.betas", [True, 0.9], "hyperparameters.betas[0]: got true: a boolean"),
    ("hyperparameters.betas", [0.9, 1e300], "each beta must be in [0, 1)"),
    ("model.hidden_sizes", [8, False], "model.hidden_sizes[1]: got false: a boolean is not a "
                                       "number; allowed: an integer > 0 and <= 65536"),
    ("model.hidden_sizes", [8] * 65, "model.hidden_sizes: got [8, 8"),
    ("dataset.image_shape", [1, True, 8], "dataset.image_shape[1]: got true"),
])
def test_bad_list_items(path: str, value: Any, expected: str) -> None:
    task = _task_dict()
    task["model"] = {"type": "mlp"}
    assert expected in _refusal(_with(task, path, value))


# ---------------------------------------------------------------------------------------------
# Cross-field checks


@pytest.mark.parametrize(("shape", "expected"), [
    ([1, -8, 8], "dataset.image_shape[1]: got -8: Input should be greater than 0"),
    ([0, 8, 8], "dataset.image_shape[0]: got 0: Input should be greater than 0"),
    ([1, 8, 65537], "dataset.image_shape[2]: got 65537: Input should be less than or equal to "
                    "65536"),
    ([8, 8], "dataset.image_shape: got [8, 8]: expected 3 dimensions [channels, height, width], "
             "got 2"),
    ([1, 2, 3, 4], "expected 3 dimensions [channels, height, width], got 4"),
    ([64, 4096, 4096], "channels x height x width = 1,073,741,824 values per sample; the limit "
                       "is 100,000,000"),
    ("8x8", 'dataset.image_shape: got "8x8": Input should be a valid tuple'),
])
def test_image_shape_has_three_bounded_positive_dims(shape: Any, expected: str) -> None:
    task = _task_dict()
    task["dataset"]["image_shape"] = shape
    assert expected in _refusal(task)


def test_good_image_shape() -> None:
    task = _task_dict()
    task["model"] = {"type": "cnn"}
    task["dataset"] = {"source": "synthetic", "n_features": 48, "image_shape": [3, 4, 4]}
    assert parse_task(task).dataset.image_shape == (3, 4, 4)


_CLASSIFIERS = [{"source": "sklearn", "name": n} for n in ("digits", "breast_cancer", "wine",
                                                           "iris")]
_CLASSIFIERS += [{"source": "synthetic"}, {"source": "synthetic", "kind": "classification"},
                 {"source": "csv", "path": "t.csv", "target": "y", "kind": "classification"}]
_REGRESSORS = [{"source": "sklearn", "name": "diabetes"},
               {"source": "synthetic", "kind": "regression"},
               {"source": "parquet", "path": "t.pq", "target": "y", "kind": "regression"}]


def _monitored(dataset: dict[str, Any], **monitor: str) -> dict[str, Any]:
    task = _task_dict()
    task["dataset"] = dataset
    task["training"] = {"monitor": monitor}
    return task


@pytest.mark.parametrize("dataset", _CLASSIFIERS, ids=lambda d: str(d.get("name") or d))
@pytest.mark.parametrize("metric", ["val_mse", "val_r2"])
def test_classification_never_reports_regression_metrics(dataset: dict[str, Any],
                                                         metric: str) -> None:
    msg = _refusal(_monitored(dataset, metric=metric))
    assert msg.startswith(f"training.monitor.metric={metric} is never reported by a "
                          "classification task ("), msg
    assert msg.endswith("allowed: auto, val_loss, val_accuracy, val_precision, val_recall, "
                        "val_f1"), msg


@pytest.mark.parametrize("dataset", _REGRESSORS, ids=lambda d: str(d.get("name") or d))
@pytest.mark.parametrize("metric", ["val_accuracy", "val_precision", "val_recall", "val_f1"])
def test_regression_never_reports_classification_metrics(dataset: dict[str, Any],
                                                         metric: str) -> None:
    msg = _refusal(_monitored(dataset, metric=metric))
    assert f"training.monitor.metric={metric} is never reported by a regression task" in msg
    assert msg.endswith("allowed: auto, val_loss, val_mse, val_r2"), msg


@pytest.mark.parametrize(("dataset", "metrics"), [
    *((d, metrics_for_kind(TaskKind.CLASSIFICATION)[1:]) for d in _CLASSIFIERS),
    *((d, metrics_for_kind(TaskKind.REGRESSION)[1:]) for d in _REGRESSORS),
])
def test_every_reported_metric_with_its_own_mode_is_allowed(dataset: dict[str, Any],
                                                            metrics: tuple[str, ...]) -> None:
    for metric in ("auto", *metrics):
        for mode in ("auto", metric_direction(metric).value if metric != "auto" else "auto"):
            task = parse_task(_monitored(dataset, metric=metric, mode=mode))
            assert task.training.monitor.metric == metric


@pytest.mark.parametrize(("metric", "mode", "allowed"), [
    ("val_loss", "max", "min"), ("val_mse", "max", "min"), ("val_accuracy", "min", "max"),
    ("val_f1", "min", "max"), ("val_precision", "min", "max"), ("val_recall", "min", "max"),
    ("val_r2", "min", "max"),
])
def test_mode_against_the_metric_is_refused(metric: str, mode: str, allowed: str) -> None:
    dataset = _CLASSIFIERS[0] if metric not in ("val_mse", "val_r2") else _REGRESSORS[0]
    msg = _refusal(_monitored(dataset, metric=metric, mode=mode))
    assert msg == (f"training.monitor: mode={mode} contradicts metric={metric}: {metric} is "
                   f"better when {'lower' if allowed == 'min' else 'higher'}; allowed: mode "
                   f"auto or {allowed}")


def test_mode_against_the_auto_metric_is_refused_once_the_kind_is_known() -> None:
    msg = _refusal(_monitored(_CLASSIFIERS[0], mode="min"))
    assert msg == ("training.monitor.mode=min contradicts training.monitor.metric=auto (that "
                   "is val_accuracy for a classification task): val_accuracy is better when "
                   "higher; allowed: mode auto or max")
    assert parse_task(_monitored(_REGRESSORS[0], mode="min"))  # auto is val_loss there


@pytest.mark.parametrize(("dataset", "loss", "expected"), [
    (_CLASSIFIERS[0], "mse", "training.loss=mse does not fit a classification task (sklearn "
                             "dataset digits); allowed: cross_entropy or auto"),
    (_CLASSIFIERS[-1], "huber", "training.loss=huber does not fit a classification task "
                                "(dataset.kind=classification)"),
    (_REGRESSORS[1], "cross_entropy", "training.loss=cross_entropy does not fit a regression "
                                      "task (dataset.kind=regression); allowed: mse, l1, huber"),
])
def test_loss_for_the_other_kind_is_refused(dataset: dict[str, Any], loss: str,
                                            expected: str) -> None:
    task = _task_dict()
    task["dataset"] = dataset
    task["training"] = {"loss": loss}
    assert _refusal(task).startswith(expected)


def test_check_kind_when_the_data_decides() -> None:
    """A file dataset without ``kind``: the spec cannot know, the caller checks after loading."""
    dataset = {"source": "csv", "path": "t.csv", "target": "y"}
    task = parse_task(_monitored(dataset, metric="val_r2"))
    task.check_kind(TaskKind.REGRESSION)
    with pytest.raises(ConfigError) as err:
        task.check_kind(TaskKind.CLASSIFICATION)
    assert str(err.value) == (
        "invalid task config for task t: training.monitor.metric=val_r2 is never reported by a "
        "classification task (the dataset's target column makes it one; dataset.kind is not "
        "set); allowed: auto, val_loss, val_accuracy, val_precision, val_recall, val_f1")
    auto_min = parse_task(_monitored(dataset, mode="min"))
    auto_min.check_kind(TaskKind.REGRESSION)
    with pytest.raises(ConfigError, match="mode=min contradicts .*val_accuracy"):
        auto_min.check_kind(TaskKind.CLASSIFICATION)
    for kind in TaskKind:
        parse_task(_monitored(dataset)).check_kind(kind)


def test_metrics_for_kind_and_direction() -> None:
    assert metrics_for_kind(TaskKind.CLASSIFICATION) == (
        "train_loss", "val_loss", "val_accuracy", "val_precision", "val_recall", "val_f1")
    assert metrics_for_kind(TaskKind.REGRESSION) == ("train_loss", "val_loss", "val_mse",
                                                     "val_r2")
    assert metric_direction("train_loss") is Direction.MINIMIZE
    assert metric_direction("val_r2") is Direction.MAXIMIZE
    with pytest.raises(ConfigError, match="unknown metric 'auc'"):
        metric_direction("auc")


def test_declared_kind_matches_the_loaders() -> None:
    from trainer.data import load_dataset

    for name, kind in SKLEARN_KINDS.items():
        dataset = parse_task({**_task_dict(), "dataset": {"source": "sklearn", "name": name}}
                             ).dataset
        assert declared_kind(dataset) is kind
        assert load_dataset(dataset).kind is kind, name
    assert declared_kind(parse_task(_task_dict()).dataset) is TaskKind.CLASSIFICATION
    file_task = parse_task(_monitored({"source": "csv", "path": "t.csv", "target": "y"}))
    assert declared_kind(file_task.dataset) is None


@pytest.mark.parametrize(("dataset", "expected"), [
    ({"path": ""}, 'dataset.path: got "": the path is empty'),
    ({"path": "   "}, "the path is empty"),
    ({"path": "a\0b.csv"}, "the path contains a NUL character"),
    ({"path": "a" * 5000}, "the path is 5,000 characters long; the limit is 4,096"),
    ({"target": ""}, "dataset.target: got \"\": String should have at least 1 character"),
    ({"features": []}, "dataset.features: got []: List should have at least 1 item"),
    ({"features": ["a", ""]}, 'dataset.features[1]: got "": String should have at least 1'),
    ({"features": ["a", "b", "a", "b"]}, "dataset: features lists ['a', 'b'] more than once"),
    ({"features": ["a", "y"]}, "dataset: features includes the target column 'y'"),
])
def test_file_dataset_fields(dataset: dict[str, Any], expected: str) -> None:
    task = _task_dict()
    task["dataset"] = {"source": "csv", "path": "t.csv", "target": "y", **dataset}
    assert expected in _refusal(task)


def test_synthetic_data_held_in_memory_is_bounded() -> None:
    task = _task_dict()
    task["dataset"] = {"source": "synthetic", "n_samples": 100_000_000, "n_features": 100}
    assert _refusal(task) == (
        "dataset: n_samples x n_features = 100,000,000 x 100 = 10,000,000,000 values; the "
        "limit is 1,000,000,000 (the generated data is held in memory)")


def test_description_is_bounded() -> None:
    msg = _refusal({**_task_dict(), "description": "x" * 10_001})
    assert msg.startswith("description: got ") and "at most 10000 characters" in msg


@pytest.mark.parametrize("override", [
    "dataset.image_shape=[1,-8,8]", "training.monitor.metric=val_r2",
    "training.monitor.mode=min", "training.loss=mse", "training.epochs=true",
])
def test_cross_field_errors_through_the_cli_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str
) -> None:
    cfg = write(tmp_path, {**_task_dict(), "dataset": {"source": "sklearn", "name": "iris"}})
    assert main(["validate", str(cfg), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mtp: error: invalid task config {cfg}: ") and err.count("\n") == 1
    assert override.split("=")[0].rsplit(".", 1)[-1] in err
