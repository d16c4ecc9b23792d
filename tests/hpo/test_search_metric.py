"""``search.metric`` must be one the study's trials report (``train_loss`` and the validation
metrics of the task's kind), and ``search.mode`` the way it improves: both are refused before
any trial starts (exit 2, one line naming the field, the value and what is allowed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpo.errors import SearchConfigError
from hpo.metrics import TRIAL_METRICS, check_trial_metric, metric_direction, task_kind
from hpo.spec import SearchSpec
from mtp_core.direction import Direction
from mtp_core.spec import TaskKind, parse_task
from tests.conftest import EXAMPLES
from tests.hpo.support import (
    assert_one_line,
    cli,
    iris_study,
    seeded_storage,
    snapshot,
    write_config,
)

CLASSIFICATION = ("train_loss, val_loss, val_accuracy, val_precision, val_recall, val_f1")
REGRESSION = "train_loss, val_loss, val_mse, val_r2"


def _csv(d: Path, float_target: bool) -> str:
    rows = ["f1,f2,y"] + [f"{i * 0.1:.1f},{(i % 3) * 0.5:.1f},"
                          + (f"{i * 0.25:.2f}" if float_target else str(i % 2))
                          for i in range(12)]
    path = d / ("float.csv" if float_target else "int.csv")
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _dataset(kind: str, d: Path) -> dict[str, Any]:
    datasets: dict[str, dict[str, Any]] = {
        "iris": {"source": "sklearn", "name": "iris"},
        "digits": {"source": "sklearn", "name": "digits"},
        "diabetes": {"source": "sklearn", "name": "diabetes"},
        "synthetic-regression": {"source": "synthetic", "kind": "regression",
                                 "n_samples": 50, "n_features": 3},
        "synthetic-classification": {"source": "synthetic", "n_samples": 50,
                                     "n_features": 3},
        "csv-float": {"source": "csv", "path": _csv(d, True), "target": "y"},
        "csv-int": {"source": "csv", "path": _csv(d, False), "target": "y"},
        "csv-float-as-classes": {"source": "csv", "path": _csv(d, True), "target": "y",
                                 "kind": "classification"},
        "csv-int-as-regression": {"source": "csv", "path": _csv(d, False), "target": "y",
                                  "kind": "regression"},
    }
    return datasets[kind]


# (dataset, metric, kind the message names, allowed list)
REFUSED = [
    ("iris", "val_acc", "classification", CLASSIFICATION),
    ("iris", "accuracy", "classification", CLASSIFICATION),
    ("iris", "VAL_ACCURACY", "classification", CLASSIFICATION),
    ("iris", "val_accuracy ", "classification", CLASSIFICATION),
    ("iris", "val_mse", "classification", CLASSIFICATION),
    ("iris", "val_r2", "classification", CLASSIFICATION),
    ("iris", "epoch", "classification", CLASSIFICATION),
    ("digits", "loss", "classification", CLASSIFICATION),
    ("diabetes", "val_accuracy", "regression", REGRESSION),
    ("diabetes", "val_f1", "regression", REGRESSION),
    ("synthetic-regression", "val_precision", "regression", REGRESSION),
    ("synthetic-classification", "val_r2", "classification", CLASSIFICATION),
    ("csv-float", "val_accuracy", "regression", REGRESSION),
    ("csv-int", "val_mse", "classification", CLASSIFICATION),
    ("csv-float-as-classes", "val_r2", "classification", CLASSIFICATION),
    ("csv-int-as-regression", "val_recall", "regression", REGRESSION),
]


@pytest.mark.parametrize(("dataset", "metric", "kind", "allowed"), REFUSED)
def test_a_metric_the_trials_never_report_is_refused_before_any_trial(
    dataset: str, metric: str, kind: str, allowed: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    storage = seeded_storage(tmp_path)
    raw = iris_study(metric=metric)
    raw["dataset"] = _dataset(dataset, tmp_path)
    if dataset.startswith("csv") or dataset == "diabetes" or "regression" in dataset:
        raw["model"] = {"type": "linear"}
    cfg = write_config(tmp_path, raw)
    before = snapshot(tmp_path)
    code, out, err = cli(["tune", cfg, "--storage-path", str(storage)], capsys)
    line = assert_one_line(code, 2, out, err, "search.metric", repr(metric),
                           f"this {kind} task", f"allowed: {allowed}")
    assert line.startswith("mtp: error: "), line
    assert snapshot(tmp_path) == before  # no study folder, nothing moved


@pytest.mark.parametrize("override", ["search.metric=val_acc", "search.metric=val_r2",
                                      "search.metric=val_accuracy_"])
def test_the_example_study_with_a_metric_typo_exits_2(
    override: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(["tune", str(EXAMPLES / "digits_mlp_tune.yaml"), "--storage-path",
                          str(tmp_path), "--set", override], capsys)
    assert_one_line(code, 2, out, err, "search.metric", override.split("=")[1],
                    "classification")
    assert not (tmp_path / "_studies").exists()


# (metric, mode given): each contradicts the way the metric improves
MISMATCHED = [("val_accuracy", "min", "max"), ("val_f1", "min", "max"),
              ("val_precision", "min", "max"), ("val_r2", "min", "max"),
              ("val_loss", "max", "min"), ("train_loss", "max", "min"),
              ("val_mse", "max", "min")]


@pytest.mark.parametrize(("metric", "mode", "right"), MISMATCHED)
def test_a_mode_against_the_metric_is_refused(
    metric: str, mode: str, right: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = seeded_storage(tmp_path)
    raw = iris_study(metric=metric, mode=mode)
    if metric in ("val_mse", "val_r2"):
        raw["dataset"] = _dataset("diabetes", tmp_path)
        raw["model"] = {"type": "linear"}
    cfg = write_config(tmp_path, raw)
    before = snapshot(tmp_path)
    code, out, err = cli(["tune", cfg, "--storage-path", str(storage)], capsys)
    assert_one_line(code, 2, out, err, "search.mode", repr(mode), repr(metric),
                    f"allowed: mode {right!r}")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("metric", "mode"), [
    ("val_loss", Direction.MINIMIZE), ("train_loss", Direction.MINIMIZE),
    ("val_mse", Direction.MINIMIZE), ("val_accuracy", Direction.MAXIMIZE),
    ("val_r2", Direction.MAXIMIZE), ("val_f1", Direction.MAXIMIZE),
    ("loss", Direction.MAXIMIZE),  # a plain objective's metric: mode as given (default max)
])
def test_mode_left_out_follows_the_metric(metric: str, mode: Direction) -> None:
    spec = SearchSpec.model_validate({"space": {"x": {"type": "uniform", "low": 0, "high": 1}},
                                      "metric": metric})
    assert spec.mode is mode


def test_a_plain_objectives_metric_takes_either_mode() -> None:
    for mode in ("min", "max"):
        spec = SearchSpec.model_validate({
            "space": {"x": {"type": "uniform", "low": 0, "high": 1}}, "metric": "loss",
            "mode": mode})
        assert spec.mode.value == mode
    assert metric_direction("loss") is None


@pytest.mark.parametrize("kind", list(TaskKind))
def test_every_reported_metric_is_accepted(kind: TaskKind) -> None:
    for metric in TRIAL_METRICS[kind]:
        check_trial_metric(metric, kind)
        assert metric_direction(metric) is not None
    with pytest.raises(SearchConfigError, match=f"this {kind.value} task"):
        check_trial_metric("val_nothing", kind)


@pytest.mark.parametrize(("dataset", "kind"), [
    ("iris", TaskKind.CLASSIFICATION), ("diabetes", TaskKind.REGRESSION),
    ("synthetic-regression", TaskKind.REGRESSION),
    ("synthetic-classification", TaskKind.CLASSIFICATION),
    ("csv-float", TaskKind.REGRESSION), ("csv-int", TaskKind.CLASSIFICATION),
    ("csv-float-as-classes", TaskKind.CLASSIFICATION),
    ("csv-int-as-regression", TaskKind.REGRESSION),
])
def test_the_kind_comes_from_the_config_or_the_data(dataset: str, kind: TaskKind,
                                                    tmp_path: Path) -> None:
    raw = {k: v for k, v in iris_study().items() if k != "search"}
    raw["dataset"] = _dataset(dataset, tmp_path)
    assert task_kind(parse_task(raw)) is kind


def test_the_trials_report_what_the_platform_says(tmp_path: Path) -> None:
    """The lists agree with the training loop: one epoch of each kind, in this process."""
    from trainer.api import train_local

    for dataset, kind in (("iris", TaskKind.CLASSIFICATION),
                          ("synthetic-regression", TaskKind.REGRESSION)):
        raw = {k: v for k, v in iris_study().items() if k != "search"}
        raw["dataset"] = _dataset(dataset, tmp_path)
        raw["model"] = {"type": "linear"}
        summary = train_local(parse_task(raw), storage_path=tmp_path / dataset)
        epoch = summary["history"][0]
        reported = {k for k in epoch if k == "train_loss" or k.startswith("val_")}
        assert reported == set(TRIAL_METRICS[kind]), epoch
