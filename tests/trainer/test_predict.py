"""``load_model``'s Predictor without Ray: new rows by column name through the stored
preprocessing and model; a prediction of the training file reproduces the stored metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mtp_core.spec import parse_task
from tests.trainer.test_preprocess import CHURN, churn_task
from trainer import load_model
from trainer.api import Executor, train
from trainer.errors import DataError, TrainerError
from trainer.prepare import identify


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    task = parse_task(churn_task())
    return train(task, storage_path=tmp_path_factory.mktemp("churn"), use_cache=False,
                 executor=Executor.IN_PROCESS)


def test_predicting_the_training_file_reproduces_the_validation_metrics(churn_run: Any) -> None:
    predictor = load_model(churn_run.run_dir)
    assert predictor.columns == ("tenure_months", "plan", "region", "monthly_charge",
                                 "support_calls", "usage_gb")
    table = pd.read_csv(CHURN)
    labels = predictor.predict(table)  # the target column is there too, and ignored
    assert set(labels.tolist()) <= {"no", "yes"}
    prepared = identify(parse_task(churn_task()))
    val = prepared.split.validation
    truth = np.asarray(prepared.dataset.class_names, dtype=object)[prepared.dataset.targets]
    accuracy = float(np.mean(labels[val] == truth[val]))
    assert accuracy == churn_run.final_metrics["val_accuracy"]
    # the same from an Arrow table and from a mapping of columns
    arrow = pa.csv.read_csv(CHURN)
    assert np.array_equal(predictor.predict(arrow), labels)
    columns = {c: table[c].to_numpy() for c in predictor.columns}
    assert np.array_equal(predictor.predict(columns), labels)
    proba = predictor.predict_proba(table)
    assert proba.shape == (600, 2) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # one pass for both (what mtp predict writes): the same numbers
    both_labels, both_proba = predictor.predict_both(table)
    assert np.array_equal(both_labels, labels) and np.array_equal(both_proba, proba)


def test_new_rows_with_unseen_categories_and_gaps_are_scored(churn_run: Any) -> None:
    predictor = load_model(churn_run.run_dir)
    rows = pd.DataFrame({"tenure_months": [3, 60], "plan": ["enterprise", "basic"],
                         "region": [None, "south"], "monthly_charge": [np.nan, 20.0],
                         "support_calls": [4, 0], "usage_gb": [12.0, np.nan]})
    assert predictor.predict(rows).shape == (2,)
    # a batch in which a column has no value at all reads as untyped (Arrow's null type)
    arrow = pa.table({"tenure_months": [3, 60], "plan": ["basic", "premium"],
                      "region": pa.nulls(2), "monthly_charge": pa.nulls(2),
                      "support_calls": [4, 0], "usage_gb": ["12.5", None]})
    assert predictor.predict(arrow).shape == (2,)
    bad = arrow.set_column(5, "usage_gb", pa.array(["12.5", "lots"]))
    with pytest.raises(DataError, match="column 'usage_gb' of the input holds 'lots' at row 2"):
        predictor.predict(bad)


def test_a_missing_column_or_a_bare_array_is_refused_by_name(churn_run: Any) -> None:
    predictor = load_model(churn_run.run_dir)
    table = pd.read_csv(CHURN).drop(columns=["plan"])
    with pytest.raises(DataError, match="has no column 'plan', which the model needs"):
        predictor.predict(table)
    with pytest.raises(DataError, match="give the 6 columns"):
        predictor.predict(np.zeros((3, 4)))


def test_a_changed_preprocessing_file_is_refused(churn_run: Any, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(churn_run.run_dir, run)
    (run / "preprocess.skops").write_bytes((run / "preprocess.skops").read_bytes() + b"\0")
    with pytest.raises(TrainerError, match="does not match the result's preprocess_sha256"):
        load_model(run)


def test_an_estimator_with_preprocessing_predicts_by_name(tmp_path: Path) -> None:
    raw = churn_task()
    raw["model"] = {"type": "sklearn",
                    "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                    "params": {"max_iter": 50}}
    raw["resources"] = {"cpus_per_worker": 1}
    result = train(parse_task(raw), storage_path=tmp_path, use_cache=False,
                   executor=Executor.IN_PROCESS)
    predictor = load_model(result.run_dir)
    assert predictor.estimator is not None and predictor.module is None
    table = pd.read_csv(CHURN)
    labels = predictor.predict(table)
    prepared = identify(parse_task(raw))
    val = prepared.split.validation
    truth = np.asarray(prepared.dataset.class_names, dtype=object)[prepared.dataset.targets]
    assert float(np.mean(labels[val] == truth[val])) == result.final_metrics["val_accuracy"]
    assert result.test_metrics["test_accuracy"] >= 0.75


def test_mtp_predict_refuses_bad_files_and_columns_before_ray_starts(
        churn_run: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mtp.cli import main

    no_plan = tmp_path / "no_plan.csv"
    pd.read_csv(CHURN).drop(columns=["plan"]).to_csv(no_plan, index=False)
    out = tmp_path / "scored.parquet"
    cases = [
        (["--input", str(no_plan), "--output", str(out)],
         f"--input '{no_plan}' has no column 'plan', which the model needs"),
        (["--input", str(CHURN), "--output", str(tmp_path / "scored.json")],
         "--output '" + str(tmp_path / "scored.json") + "': expected a .parquet or .csv file"),
        (["--input", str(tmp_path / "absent.csv"), "--output", str(out)],
         "does not exist"),
        (["--input", str(CHURN), "--output", str(out), "--workers", "0"],
         "--workers 0: must be at least 1"),
    ]
    for args, words in cases:
        assert main(["predict", churn_run.run_dir, *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert not out.exists()
    # the checks need no Ray: a fresh interpreter refuses the file without importing it
    import subprocess
    import sys

    from tests.conftest import REPO

    script = ("import sys; from mtp.cli import main; code = main(sys.argv[1:]); "
              "print(code, 'ray' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script, "predict", churn_run.run_dir,
                           "--input", str(no_plan), "--output", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr


def test_a_run_stored_without_its_input_columns_takes_arrays_only(tmp_path: Path) -> None:
    """Results written before mtp recorded ``feature_columns`` still predict from arrays."""
    import json
    import shutil

    raw = {"name": "old", "model": {"type": "linear"},
           "dataset": {"source": "sklearn", "name": "iris"}, "resources": {"num_workers": 1},
           "training": {"epochs": 2}}
    result = train(parse_task(raw), storage_path=tmp_path / "runs", use_cache=False,
                   executor=Executor.IN_PROCESS)
    run = tmp_path / "old"
    shutil.copytree(result.run_dir, run)
    stored = json.loads((run / "result.json").read_text())
    for field in ("feature_columns", "feature_types", "class_names"):
        del stored[field]
    (run / "result.json").write_text(json.dumps(stored))
    from sklearn.datasets import load_iris

    x = load_iris().data[:10]
    old = load_model(run)
    assert np.array_equal(old.predict(x), load_model(result.run_dir).predict(x))
    with pytest.raises(TrainerError, match="did not record its input columns: give the "
                       r"features as an array of shape \(rows, 4\)"):
        old.predict(pd.DataFrame(x, columns=["a", "b", "c", "d"]))
