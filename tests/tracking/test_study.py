"""A study is a parent run with one child run per trial; 8 trials logging at once to the
default SQLite store lose no run, metric or trial row (issue 13's acceptance test)."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from hpo.names import trial_run_name
from hpo.spec import SearchSpec
from hpo.study import run_study
from tests.hpo.support import iris_study
from tests.tracking.support import default_store, tracking_on

TRIALS, EPOCHS = 8, 2


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_eight_concurrent_trials_lose_no_run_metric_or_trial_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tracking_on(monkeypatch)
    raw = iris_study(num_samples=TRIALS, max_concurrent_trials=2)
    raw["training"]["epochs"] = EPOCHS
    search = raw.pop("search")
    spec = SearchSpec.model_validate(search)
    study = run_study(spec, name="iris-tracked-study", storage=tmp_path, base_task=raw)
    assert len(study.trials) == TRIALS

    from mlflow import MlflowClient

    client = MlflowClient(default_store(tmp_path))
    exp = client.get_experiment_by_name("iris-study")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("mtp.run_kind") == "study"]
    assert parent.info.status == "FINISHED" and parent.info.run_name == study.name
    tags = parent.data.tags
    assert (tags["mtp.study"], tags["mtp.searcher"], tags["mtp.metric"], tags["mtp.mode"]) == (
        study.name, "random", "val_accuracy", "max")
    assert tags["mtp.best_trial"] == study.best_trial
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(study.best_value)
    assert {"trials.csv", "study.json", "progress.png"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)}

    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 1 + TRIALS and len(children) == TRIALS
    by_name = {c.info.run_name: c for c in children}
    # the study's trial table (trials.csv) and its children match one to one
    with open(study.files["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == TRIALS
    assert set(by_name) == {trial_run_name(study.name, row["trial_id"]) for row in rows}
    for row in rows:
        child = by_name[trial_run_name(study.name, row["trial_id"])]
        assert child.info.status == "FINISHED"
        assert child.data.tags["mtp.run_kind"] == "training"
        for key in ("train_loss", "val_loss", "val_accuracy"):
            steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, key))
            assert steps == list(range(1, EPOCHS + 1)), (row["trial_id"], key, steps)
        best = max(m.value for m in client.get_metric_history(child.info.run_id,
                                                               "val_accuracy"))
        assert best == pytest.approx(float(row["val_accuracy"]))
        lr = float(child.data.params["training.learning_rate"])
        assert lr == pytest.approx(float(row["param.training.learning_rate"]))

    # and in the database itself: every epoch row of every child, none twice
    con = sqlite3.connect(tmp_path / "_db" / "mtp.db")
    try:
        counts = dict(con.execute(
            "select run_uuid, count(*) from metrics where key = 'val_accuracy' and step > 0 "
            "group by run_uuid").fetchall())
    finally:
        con.close()
    assert {c.info.run_id: counts.get(c.info.run_id) for c in children} == {
        c.info.run_id: EPOCHS for c in children}

    # and the platform's study index in the same database: the study and its 8 trial rows
    from database import open_database
    from hpo.index import StudyIndex, StudyStatus

    index = StudyIndex(open_database(tmp_path))
    indexed = index.get(study.name)
    assert indexed is not None and indexed.status is StudyStatus.FINISHED
    assert indexed.trials == TRIALS and indexed.best_trial == study.best_trial
    assert indexed.run_id == parent.info.run_id
    trial_rows = index.trials(study.name)
    assert sorted(t.trial_id for t in trial_rows) == sorted(r["trial_id"] for r in rows)
    assert {t.trial_id: t.value for t in trial_rows} == pytest.approx(
        {r["trial_id"]: float(r["val_accuracy"]) for r in rows})
