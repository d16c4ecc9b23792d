from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mtp.cli import main
from mtp_core.spec import CNNModel, MLPModel, OptimizerName, apply_overrides
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
         r"allowed: a finite number >= 0 \(0 disables the time rule\)$"),
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


def test_one_problem_is_one_line_several_are_listed(tmp_path: Path) -> None:
    cfg = write(tmp_path, digits_task_dict())
    with pytest.raises(ConfigError) as one:
        load_task(cfg, ["training.epochs=0"])
    assert str(one.value) == (f"invalid task config {cfg}: training.epochs: got 0: Input "
                              "should be greater than or equal to 1")
    with pytest.raises(ConfigError) as two:
        load_task(cfg, ["training.epochs=0", "training.checkpoint.every_minutes=.inf"])
    assert str(two.value).splitlines() == [
        f"invalid task config {cfg}: 2 problems:",
        "  training.epochs: got 0: Input should be greater than or equal to 1",
        "  training.checkpoint.every_minutes: got inf: NaN and infinity are not allowed; "
        "allowed: a finite number >= 0 (0 disables the time rule)"]


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
