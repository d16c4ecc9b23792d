"""Comparing two real trained runs (trained here, in-process, without Ray) on the same
held-out rows: the numbers are the models' own predictions now, and they agree with what
training stored and with an independent computation from ``load_model``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from mtp_core.spec import parse_task
from tests.trainer.test_preprocess import CHURN, churn_task
from trainer import load_model
from trainer.api import Executor, train
from trainer.compare import (
    DataSource,
    IncomparableRunsError,
    MetricName,
    compare_runs,
    format_comparison,
)
from trainer.errors import DataError
from trainer.prepare import identify
from trainer.result import TrainingResult
from trainer.significance import SignificanceMethod

NO_REUSE = {"cache": {"enabled": False}, "sharing": {"enabled": False}}


def sklearn_task(task_id: str, estimator: str, dataset: dict[str, Any],
                 params: dict[str, Any] | None = None, test_split: float = 0.4
                 ) -> dict[str, Any]:
    """One estimator on a dataset; runs that share ``task_id`` share the seed, so the split."""
    return {"name": task_id, "id": task_id,
            "model": {"type": "sklearn", "estimator": estimator, "params": params or {}},
            "dataset": dataset, "training": {"test_split": test_split},
            "resources": {"cpus_per_worker": 1}, "consistency": NO_REUSE}


def fit(raw: dict[str, Any], storage: Path, run_name: str) -> TrainingResult:
    return train(parse_task(raw), storage_path=storage, run_name=run_name, use_cache=False,
                 executor=Executor.IN_PROCESS)


IRIS = {"source": "sklearn", "name": "iris"}
DIABETES = {"source": "sklearn", "name": "diabetes"}
STUMP: tuple[str, dict[str, Any]] = ("sklearn.tree.DecisionTreeClassifier", {"max_depth": 1})
LOGREG: tuple[str, dict[str, Any]] = ("sklearn.linear_model.LogisticRegression", {})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainingResult]:
    """Small real runs: iris (a depth-1 tree and a logistic regression on one split, and a
    logistic regression with another seed), diabetes (ridge and a mean predictor)."""
    storage = tmp_path_factory.mktemp("runs")
    return {
        "stump": fit(sklearn_task("iris-cmp", STUMP[0], IRIS, STUMP[1]), storage, "stump"),
        "logreg": fit(sklearn_task("iris-cmp", LOGREG[0], IRIS), storage, "logreg"),
        "logreg_other_seed": fit(sklearn_task("iris-other", LOGREG[0], IRIS), storage,
                                 "logreg-other"),
        "ridge": fit(sklearn_task("diabetes-cmp", "sklearn.linear_model.Ridge", DIABETES),
                     storage, "ridge"),
        "mean": fit(sklearn_task("diabetes-cmp", "sklearn.dummy.DummyRegressor", DIABETES),
                    storage, "mean"),
    }


@pytest.fixture(scope="module")
def churn_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainingResult]:
    """The churn CSV (text features and labels, dataset.preprocess): an MLP and a
    most-frequent-class baseline on the same split."""
    storage = tmp_path_factory.mktemp("churn")
    raw = churn_task()
    raw["id"] = "churn-cmp"
    baseline = copy.deepcopy(raw)
    baseline["model"] = {"type": "sklearn", "estimator": "sklearn.dummy.DummyClassifier"}
    baseline["resources"] = {"cpus_per_worker": 1}
    return {"mlp": fit(raw, storage, "mlp"), "baseline": fit(baseline, storage, "baseline")}


def test_a_run_compared_with_itself_differs_by_nothing(runs: dict[str, TrainingResult]
                                                       ) -> None:
    stump = runs["stump"]
    c = compare_runs(stump.run_dir, stump.run_dir)
    assert [m.metric for m in c.metrics] == [MetricName.ACCURACY, MetricName.MACRO_F1,
                                             MetricName.LOG_LOSS]
    assert all(m.difference == 0.0 and m.a == m.b for m in c.metrics)
    assert c.test.discordant == (0, 0) and c.test.p_value == 1.0 and not c.test.significant
    # 40% of iris's 150 rows, re-derived: the numbers training stored on its test split
    assert c.source is DataSource.TEST_SPLIT and c.rows == 60 and c.notes == ()
    assert c.metric(MetricName.ACCURACY).a == stump.test_metrics["test_accuracy"]
    assert c.metric(MetricName.LOG_LOSS).a == pytest.approx(stump.test_metrics["test_loss"],
                                                            rel=1e-12)
    ridge = runs["ridge"]
    r = compare_runs(ridge.run_dir, ridge.run_dir)
    assert [m.metric for m in r.metrics] == [MetricName.MSE, MetricName.MAE, MetricName.R2]
    assert all(m.difference == 0.0 for m in r.metrics)
    assert r.test.method is SignificanceMethod.PAIRED_BOOTSTRAP
    assert r.test.interval == (0.0, 0.0) and not r.test.significant


def test_a_stump_and_a_logistic_regression_differ_significantly(
        runs: dict[str, TrainingResult]) -> None:
    stump, logreg = runs["stump"], runs["logreg"]
    c = compare_runs(stump.run_dir, logreg.run_dir, labels=("stump", "logreg"))
    acc = c.metric(MetricName.ACCURACY)
    assert acc.a == stump.test_metrics["test_accuracy"]
    assert acc.b == logreg.test_metrics["test_accuracy"]
    assert acc.difference == pytest.approx(acc.b - acc.a) and acc.difference > 0.2
    assert acc.b_is_better and c.metric(MetricName.LOG_LOSS).b_is_better
    assert c.metric(MetricName.MACRO_F1).b == pytest.approx(logreg.test_metrics["test_f1"])
    # McNemar's counts from the two models' predictions, computed here independently
    prepared = identify(parse_task(sklearn_task("iris-cmp", STUMP[0], IRIS, STUMP[1])))
    test = prepared.split.test
    rows = {name: prepared.loaded.features[test, i]
            for i, name in enumerate(prepared.loaded.feature_names)}
    y = prepared.loaded.targets[test]
    right_a = load_model(stump.run_dir).predict(rows) == y
    right_b = load_model(logreg.run_dir).predict(rows) == y
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    assert c.test.discordant == (only_a, only_b) and only_b > only_a
    assert c.test.p_value == pytest.approx(binomtest(only_a, only_a + only_b).pvalue)
    assert c.test.p_value is not None and c.test.p_value < 0.01 and c.test.significant
    text = format_comparison(c)
    lines = text.splitlines()
    assert lines[0] == f"stump: {stump.run_dir}" and lines[1] == f"logreg: {logreg.run_dir}"
    assert "held-out test split of run stump's task 'iris-cmp', 60 rows" in lines[2]
    assert lines[3].split() == ["metric", "stump", "logreg", "logreg-stump"]
    assert lines[4].split() == ["accuracy", f"{acc.a:.4f}", f"{acc.b:.4f}",
                                f"{acc.difference:+.4f}"]
    assert lines[-1].startswith(f"McNemar exact test: {only_a} vs {only_b} discordant rows "
                                "(right only in stump vs only in logreg), p = ")
    assert lines[-1].endswith("< 0.05: significant (on per-row correctness)")


def test_a_regression_pair_is_tested_by_paired_bootstrap_of_squared_error(
        runs: dict[str, TrainingResult]) -> None:
    ridge, mean = runs["ridge"], runs["mean"]
    c = compare_runs(ridge.run_dir, mean.run_dir)
    mse, r2 = c.metric(MetricName.MSE), c.metric(MetricName.R2)
    assert mse.a == pytest.approx(ridge.test_metrics["test_mse"], rel=1e-9)
    assert mse.b == pytest.approx(mean.test_metrics["test_mse"], rel=1e-9)
    assert r2.a == pytest.approx(ridge.test_metrics["test_r2"], rel=1e-9)
    assert r2.b == pytest.approx(mean.test_metrics["test_r2"], rel=1e-9)
    assert mse.difference > 0 and not mse.b_is_better and r2.difference < 0
    assert c.rows == 177  # round(0.4 * 442)
    t = c.test
    assert t.method is SignificanceMethod.PAIRED_BOOTSTRAP and t.p_value is None
    assert t.statistic == pytest.approx(mse.difference, rel=1e-9)  # mean of per-row diffs
    assert t.interval is not None and 0 < t.interval[0] < t.statistic < t.interval[1]
    assert t.significant
    assert compare_runs(ridge.run_dir, mean.run_dir).test == t  # seeded: the same interval
    # swapped: the difference and the interval change sign
    back = compare_runs(mean.run_dir, ridge.run_dir)
    assert back.metric(MetricName.MSE).difference == -mse.difference
    assert back.test.interval is not None and back.test.interval[1] < 0


def test_a_data_file_is_scored_by_both_models(churn_runs: dict[str, TrainingResult]) -> None:
    mlp, baseline = churn_runs["mlp"], churn_runs["baseline"]
    c = compare_runs(mlp.run_dir, baseline.run_dir, data=CHURN)
    assert c.source is DataSource.FILE and c.rows == 600 and c.target == "churned"
    assert repr(str(CHURN)) in c.data_source
    table = pd.read_csv(CHURN)
    truth = table["churned"].to_numpy()
    acc_a = float(np.mean(load_model(mlp.run_dir).predict(table) == truth))
    acc_b = float(np.mean(truth == "no"))  # the baseline always says the majority class
    acc = c.metric(MetricName.ACCURACY)
    assert acc.a == pytest.approx(acc_a) and acc.b == pytest.approx(acc_b)
    assert c.test.significant
    # the default rows: the MLP's test split, on which training stored its metrics
    held = compare_runs(mlp.run_dir, baseline.run_dir)
    assert held.source is DataSource.TEST_SPLIT and held.rows == 120
    assert held.metric(MetricName.ACCURACY).a == pytest.approx(mlp.test_metrics["test_accuracy"])
    assert held.metric(MetricName.LOG_LOSS).a == pytest.approx(mlp.test_metrics["test_loss"],
                                                               rel=1e-5)
    assert held.metric(MetricName.LOG_LOSS).b == pytest.approx(
        baseline.test_metrics["test_loss"], rel=1e-9)


@pytest.mark.parametrize(("drop", "role"), [("region", "feature column"),
                                            ("churned", "target column")])
def test_a_data_file_without_a_column_is_refused_naming_it(
        churn_runs: dict[str, TrainingResult], tmp_path: Path, drop: str, role: str) -> None:
    path = tmp_path / "rows.parquet"
    pd.read_csv(CHURN).drop(columns=[drop]).to_parquet(path)
    with pytest.raises(DataError) as err:
        compare_runs(churn_runs["mlp"].run_dir, churn_runs["baseline"].run_dir, data=path)
    assert (f"data file {str(path)!r} has no column {drop!r} (the runs' {role})"
            in str(err.value))
    with pytest.raises(DataError, match=r"expected a \.parquet or \.csv file"):
        compare_runs(churn_runs["mlp"].run_dir, churn_runs["mlp"].run_dir,
                     data=tmp_path / "rows.json")


def test_runs_of_other_kinds_or_targets_are_refused(runs: dict[str, TrainingResult],
                                                    tmp_path: Path) -> None:
    with pytest.raises(IncomparableRunsError) as err:
        compare_runs(runs["stump"].run_dir, runs["ridge"].run_dir)
    assert "their task kinds differ (A: 'classification', B: 'regression')" in str(err.value)
    assert err.value.exit_code == 2
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=80), rng.normal(size=80)
    path = tmp_path / "two_targets.csv"
    pd.DataFrame({"f1": f1, "f2": f2, "y1": (f1 > 0).astype(int),
                  "y2": (f2 > 0).astype(int)}).to_csv(path, index=False)
    by_target = {t: fit(sklearn_task(f"cmp-{t}", STUMP[0], {
        "source": "csv", "path": str(path), "target": t, "features": ["f1", "f2"]}, STUMP[1]),
        tmp_path / "runs", t) for t in ("y1", "y2")}
    with pytest.raises(IncomparableRunsError) as err:
        compare_runs(by_target["y1"].run_dir, by_target["y2"].run_dir, labels=("one", "two"))
    assert "their target columns differ (one: 'y1', two: 'y2')" in str(err.value)
    with pytest.raises(IncomparableRunsError, match="feature columns"):
        compare_runs(by_target["y1"].run_dir, runs["stump"].run_dir)
    # the data file changed after training: its held-out rows cannot be re-derived
    changed = pd.read_csv(path)
    changed.loc[0, "f1"] += 1.0
    changed.to_csv(path, index=False)
    with pytest.raises(DataError, match="its task's data has changed since the run was trained"):
        compare_runs(by_target["y1"].run_dir, by_target["y1"].run_dir)


def test_without_a_test_split_the_validation_split_is_used_and_said(tmp_path: Path) -> None:
    no_test = fit(sklearn_task("iris-val", LOGREG[0], IRIS, test_split=0.0), tmp_path, "val")
    c = compare_runs(no_test.run_dir, no_test.run_dir)
    assert c.source is DataSource.VALIDATION_SPLIT and c.rows == 30  # 20% of 150
    assert "validation split of run A's task 'iris-val'" in c.data_source
    assert "training.test_split is 0" in c.data_source
    assert c.metric(MetricName.ACCURACY).a == no_test.final_metrics["val_accuracy"]
    assert any("optimistic" in n for n in c.notes)
    assert "note: run A selected its best epoch" in format_comparison(c)


def test_rows_run_b_trained_on_are_counted_in_a_note(runs: dict[str, TrainingResult]) -> None:
    stump, other = runs["stump"], runs["logreg_other_seed"]
    c = compare_runs(stump.run_dir, other.run_dir)
    a_split = identify(parse_task(sklearn_task("iris-cmp", STUMP[0], IRIS, STUMP[1]))).split
    b_split = identify(parse_task(sklearn_task("iris-other", LOGREG[0], IRIS))).split
    seen = int(np.isin(a_split.test, b_split.train).sum())
    assert 0 < seen < 60
    assert c.notes == (f"{seen} of these 60 rows were in run B's training split (its task "
                       "split the same data otherwise): its numbers on them are optimistic",)
