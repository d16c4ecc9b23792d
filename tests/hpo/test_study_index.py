"""The study index in the platform database: a study's row and its trials' rows, written by
the study itself, readable with SQL (SQLite here; the table contract is the database's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from database import open_database
from hpo.index import StudyIndex, StudyStatus, TrialRow
from hpo.spec import SearchSpec
from hpo.study import run_study

pytestmark = pytest.mark.ray


def test_a_study_indexes_itself_and_every_trial(tmp_path: Path, ray_session: None) -> None:
    spec = SearchSpec.model_validate({
        "space": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}, "searcher": "random",
        "metric": "loss", "mode": "min", "num_samples": 4, "max_concurrent_trials": 2,
        "seed": 5})
    result = run_study(spec, name="indexed", storage=tmp_path,
                       objective=lambda p: {"loss": (p["x"] - 0.3) ** 2})
    index = StudyIndex(open_database(tmp_path))
    study = index.get("indexed")
    assert study is not None and study.status is StudyStatus.FINISHED
    assert (study.searcher, study.metric, study.mode) == ("random", "loss", "min")
    assert study.trials == 4 and study.best_trial == result.best_trial
    assert study.best_value == pytest.approx(result.best_value)
    assert study.best_params == result.best_params
    assert study.study_dir == result.study_dir
    rows = index.trials("indexed")
    assert [r.trial_id for r in rows] == [t.trial_id for t in result.trials]
    for row, rec in zip(rows, result.trials, strict=True):
        assert row.value == pytest.approx((rec.params["x"] - 0.3) ** 2)
        assert row.params == rec.params and row.status == "TERMINATED"
    assert [s.name for s in index.studies()] == ["indexed"]


def test_the_index_keeps_one_row_per_trial_and_records_failures(
        platform_db: object) -> None:
    from database import Database

    assert isinstance(platform_db, Database)
    index = StudyIndex(platform_db)
    index.started("s", study_dir="/d", searcher="tpe", metric="val_loss", mode="min")
    row = TrialRow(trial_id="t1", position=0, status="TERMINATED", params={"lr": 0.1},
                   value=0.5, metrics={"val_loss": 0.5}, iterations=3, time_s=1.0,
                   reused=False)
    index.trial("s", row)
    index.trial("s", row)  # reported again (e.g. at the end): replaced, not duplicated
    index.ended("s", StudyStatus.FAILED, error="StudyFailedError: no trial reported")
    got = index.get("s")
    assert got is not None and got.status is StudyStatus.FAILED and got.trials == 1
    assert got.error == "StudyFailedError: no trial reported"
    index.started("s", study_dir="/d", searcher="tpe", metric="val_loss", mode="min")
    again = index.get("s")
    assert again is not None and again.status is StudyStatus.RUNNING and again.error is None
    assert index.trials("s") == [row]  # a resumed study keeps its trial rows
