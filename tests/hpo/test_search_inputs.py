"""``mtp tune`` on a bad study config, in this process: every case ends in one line naming the
field (and the value and what is allowed where there is one), exit code 2, no traceback, and
no file under the storage path is created or changed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.hpo.support import (
    assert_one_line,
    cli,
    iris_study,
    seeded_storage,
    snapshot,
    write_config,
)

Patch = Callable[[dict[str, Any]], None]


def _search(**fields: Any) -> Patch:
    def patch(raw: dict[str, Any]) -> None:
        raw["search"].update(fields)
    return patch


def _space(space: Any) -> Patch:
    return _search(space=space)


def _param(path: str, spec: Any) -> Patch:
    return _space({path: spec})


def _task(section: str, **fields: Any) -> Patch:
    def patch(raw: dict[str, Any]) -> None:
        if fields:
            raw.setdefault(section, {}).update(fields)
        else:
            raw.pop(section)
    return patch


def _whole_search(value: Any) -> Patch:
    def patch(raw: dict[str, Any]) -> None:
        raw["search"] = value
    return patch


def _uniform(low: float, high: float) -> dict[str, Any]:
    return {"type": "uniform", "low": low, "high": high}


NAN, INF = float("nan"), float("inf")

# (case id, change to the tiny iris study, words the error line must hold)
CASES: list[tuple[str, Patch, tuple[str, ...]]] = [
    ("space empty", _space({}), ("search.space", "at least 1 item")),
    ("space null", _space(None), ("search.space: got null",)),
    ("space a list", _space([1, 2]), ("search.space: got [1, 2]",)),
    ("search a list", _whole_search([1, 2]), ("search: got list: expected a mapping",)),
    ("search a string", _whole_search("lr"), ("search: got str: expected a mapping",)),
    ("search null", _whole_search(None), ("no search section",)),
    ("param not a mapping", _param("training.learning_rate", 0.1),
     ("search.space.training.learning_rate: got 0.1",)),
    ("param without type", _param("model.dropout", {"low": 0, "high": 1}),
     ("search.space.model.dropout: got ['high', 'low'] without a type",)),
    ("param type unknown", _param("model.dropout", {"type": "normal", "low": 0, "high": 1}),
     ("search.space.model.dropout",)),
    ("param field unknown", _param("model.dropout", {**_uniform(0, 0.5), "step": 0.1}),
     ("search.space.model.dropout.step: unknown field",)),
    ("unknown param path", _param("training.learnign_rate", _uniform(0.1, 0.2)),
     ("search.space.training.learnign_rate: unknown parameter name",)),
    ("unknown section", _param("trainig.learning_rate", _uniform(0.1, 0.2)),
     ("search.space.trainig.learning_rate: unknown parameter name",)),
    ("empty path part", _param("training..learning_rate", _uniform(0.1, 0.2)),
     ("search.space: 'training..learning_rate' is not a dotted task field path",)),
    ("path through a value", _param("training.epochs.x", _uniform(0.1, 0.2)),
     ("search.space.training.epochs.x: not a task field: training.epochs is a value",)),
    ("path to a section", _param("training", _uniform(0.1, 0.2)),
     ("search.space.training: training is a section of the task, not a value",
      "e.g. training.epochs")),
    ("float on a whole-number field", _param("training.epochs", _uniform(1, 4)),
     ("search.space.training.epochs: type uniform samples fractional values",
      "allowed: type int")),
    ("float on a choice field", _param("training.optimizer", _uniform(1, 4)),
     ("search.space.training.optimizer: value 1.0 is not valid", "'sgd', 'adam' or 'adamw'")),
    ("float on a text field", _param("name", _uniform(1, 4)),
     ("search.space.name: value 1.0 is not valid",)),
    ("int out of the field's range", _param("training.batch_size",
                                            {"type": "int", "low": 0, "high": 8}),
     ("search.space.training.batch_size: value 0 is not valid",
      "greater than or equal to 1")),
    ("int inside, invalid", _param("model.hidden_sizes", {"type": "int", "low": 1, "high": 4}),
     ("search.space.model.hidden_sizes: value 1 is not valid",)),
    ("loguniform from 0", _param("training.learning_rate",
                                 {"type": "loguniform", "low": 0, "high": 0.1}),
     ("search.space.training.learning_rate", "loguniform needs low > 0")),
    ("uniform empty range", _param("model.dropout", _uniform(0.3, 0.3)),
     ("search.space.model.dropout", "empty range")),
    ("uniform NaN bound", _param("model.dropout", _uniform(NAN, 0.3)),
     ("search.space.model.dropout.low: got nan",)),
    ("choice with no values", _param("model.dropout", {"type": "choice", "values": []}),
     ("search.space.model.dropout.values: got []", "at least 1 item")),
    ("choice with a bad value", _param("model.dropout", {"type": "choice",
                                                         "values": [0.1, 1.5]}),
     ("search.space.model.dropout: value 1.5 is not valid",)),
    ("grid on another searcher", _param("model.dropout", {"type": "grid", "values": [0.1]}),
     ("are type grid, which only searcher=grid takes",)),
    ("grid of ranges", _search(searcher="grid", space={"model.dropout": _uniform(0, 0.5)}),
     ("searcher=grid needs finite values",)),
    ("huge grid", _search(searcher="grid", num_samples=1, space={
        "training.batch_size": {"type": "grid", "values": list(range(1, 1001))},
        "model.dropout": {"type": "grid", "values": [i / 1000 for i in range(900)]}}),
     ("search.space: searcher=grid crosses 1000 x 900 values x search.num_samples=1 = "
      "900000 trials; allowed: at most 100000",)),
    ("grid repeated too often", _search(searcher="grid", num_samples=50_000, space={
        "model.dropout": {"type": "grid", "values": [0.1, 0.2, 0.3]}}),
     ("search.num_samples=50000 = 150000 trials",)),
    ("num_samples 0", _search(num_samples=0), ("search.num_samples: got 0",)),
    ("num_samples negative", _search(num_samples=-4), ("search.num_samples: got -4",)),
    ("num_samples huge", _search(num_samples=10**12),
     ("search.num_samples: got 1000000000000", "less than or equal to 100000")),
    ("num_samples text", _search(num_samples="many"), ("search.num_samples: got \"many\"",)),
    ("num_samples float", _search(num_samples=2.5), ("search.num_samples: got 2.5",)),
    ("time_budget_s NaN", _search(time_budget_s=NAN),
     ("search.time_budget_s: got nan", "allowed: a finite number > 0")),
    ("time_budget_s inf", _search(time_budget_s=INF), ("search.time_budget_s: got inf",)),
    ("time_budget_s negative", _search(time_budget_s=-1), ("search.time_budget_s: got -1",)),
    ("time_budget_s 0", _search(time_budget_s=0), ("search.time_budget_s: got 0",)),
    ("max_concurrent_trials 0", _search(max_concurrent_trials=0),
     ("search.max_concurrent_trials: got 0",)),
    ("max_concurrent_trials negative", _search(max_concurrent_trials=-3),
     ("search.max_concurrent_trials: got -3",)),
    ("trial_start_timeout_s 0", _search(trial_start_timeout_s=0),
     ("search.trial_start_timeout_s: got 0",)),
    ("trial_start_timeout_s NaN", _search(trial_start_timeout_s=NAN),
     ("search.trial_start_timeout_s: got nan",)),
    ("trial_start_timeout_s a year", _search(trial_start_timeout_s=3.2e7),
     ("search.trial_start_timeout_s: got 32000000",)),
    ("max_failures forever", _search(max_failures=-1), ("search.max_failures: got -1",)),
    ("max_failures huge", _search(max_failures=1000), ("search.max_failures: got 1000",)),
    ("seed negative", _search(seed=-1), ("search.seed: got -1",)),
    ("grace_period 0", _search(grace_period=0), ("search.grace_period: got 0",)),
    ("reduction_factor 1", _search(reduction_factor=1), ("search.reduction_factor: got 1",)),
    ("reduction_factor NaN", _search(reduction_factor=NAN),
     ("search.reduction_factor: got nan",)),
    ("searcher unknown", _search(searcher="hyperband"), ("search.searcher: got \"hyperband\"",)),
    ("scheduler unknown", _search(scheduler="pbt"), ("search.scheduler: got \"pbt\"",)),
    ("mode unknown", _search(mode="maximize"), ("search.mode: got \"maximize\"",)),
    ("mode against the metric", _search(metric="val_loss", mode="max"),
     ("search.mode 'max' on search.metric 'val_loss'", "allowed: mode 'min'")),
    ("metric empty", _search(metric=""), ("search.metric: got \"\"",)),
    ("metric a number", _search(metric=3), ("search.metric: got 3",)),
    ("metric not reported", _search(metric="val_acc"),
     ("search.metric 'val_acc' is never reported",)),
    ("metric is a parameter", _search(metric="training.learning_rate"),
     ("search.metric='training.learning_rate' is a searched parameter",)),
    ("unknown search field", _search(budget=10), ("search.budget: unknown field",)),
    ("random phase on random", _search(initial_random_trials=3),
     ("initial_random_trials=3 applies to searcher bayesian or tpe, not random",)),
    # the base task itself
    ("task epochs 0", _task("training", epochs=0), ("training.epochs: got 0",)),
    ("task unknown field", _task("trainig", epochs=1), ("trainig: unknown field",)),
    ("task model unknown", _task("model", type="transformer"), ("model",)),
    ("task without dataset", _task("dataset"), ("dataset: required field is missing",)),
    ("task dataset unknown", _task("dataset", name="mnist"), ("dataset.name: got \"mnist\"",)),
    ("task without name", _task("name"), ("name: required field is missing",)),
    ("task name a path", lambda raw: raw.update(name="../x"), ("name: got \"../x\"",)),
    ("task resources NaN", _task("resources", cpus_per_worker=NAN),
     ("resources.cpus_per_worker: got nan",)),
]


@pytest.mark.parametrize(("change", "words"), [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_a_bad_study_config_is_one_line_exit_2(change: Patch, words: tuple[str, ...],
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    storage = seeded_storage(tmp_path)
    raw = iris_study()
    change(raw)
    cfg = write_config(tmp_path, raw)
    before = snapshot(tmp_path)
    code, out, err = cli(["tune", cfg, "--storage-path", str(storage)], capsys)
    assert_one_line(code, 2, out, err, *words)
    assert snapshot(tmp_path) == before


def _missing_csv(raw: dict[str, Any]) -> None:
    raw["dataset"] = {"source": "csv", "path": "no-such.csv", "target": "y"}


@pytest.mark.parametrize(("argv", "words"), [
    (lambda cfg, d: ["tune", str(d / "absent.yaml")], ("absent.yaml", "does not exist")),
    (lambda cfg, d: ["tune", cfg, "--set", "search.space=5"], ("search.space: got 5",)),
    (lambda cfg, d: ["tune", cfg, "--set", "search.num_samples=.nan"],
     ("search.num_samples: got nan",)),
    (lambda cfg, d: ["tune", cfg, "--set", "search..metric=x"], ("--set", "search..metric")),
    (lambda cfg, d: ["tune", cfg, "--set", "search.space.training.epochs.x=1"],
     ("search.space.training: got ['epochs'] without a type", "allowed: a parameter")),
    (lambda cfg, d: ["tune", cfg, "--resume"], ("--resume: there is no study named",)),
    (lambda cfg, d: ["tune", _list_config(d)], ("expected a mapping",)),
    (lambda cfg, d: ["tune", _config_with(d, _missing_csv)], ("no-such.csv",)),
])
def test_bad_arguments_and_files_are_one_line_exit_2(
    argv: Callable[[str, Path], list[str]], words: tuple[str, ...], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    storage = seeded_storage(tmp_path)
    cfg = write_config(tmp_path, iris_study())
    args = argv(cfg, tmp_path)
    before = snapshot(tmp_path)
    code, out, err = cli([*args, "--storage-path", str(storage)], capsys)
    assert_one_line(code, 2, out, err, *words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("below", ["", "sub/dir"])
def test_a_storage_path_that_is_a_file_is_one_line_exit_2(
    below: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, iris_study())
    taken = tmp_path / "a-file"
    taken.write_bytes(b"mine\n")
    before = snapshot(tmp_path)
    code, out, err = cli(["tune", cfg, "--storage-path", str(taken / below)], capsys)
    assert_one_line(code, 2, out, err, "--storage-path", "a-file' is a file")
    assert snapshot(tmp_path) == before


def _list_config(d: Path) -> str:
    path = d / "list.json"
    path.write_text(json.dumps([iris_study()]))
    return str(path)


def _config_with(d: Path, change: Patch) -> str:
    raw = iris_study()
    change(raw)
    return write_config(d, raw, "changed.json")


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_trial_larger_than_the_cluster_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = seeded_storage(tmp_path)
    raw = iris_study()
    raw["resources"] = {"num_workers": 64, "cpus_per_worker": 1}
    cfg = write_config(tmp_path, raw)
    before = snapshot(tmp_path)
    code, out, err = cli(["tune", cfg, "--storage-path", str(storage)], capsys)
    assert_one_line(code, 2, out, err, "one trial needs 64 CPUs (resources.num_workers=64 x "
                    "cpus_per_worker=1)", "the cluster has")
    assert snapshot(tmp_path) == before
