"""The data pipeline (``dataset.preprocess``), ``dataset.validation`` and the data report,
without Ray: fitted on the training split only, stored with the run, applied identically;
every bad step, rule or column is one line naming it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mtp.cli import main
from mtp_core.spec import TaskKind, parse_task
from tests.conftest import EXAMPLES
from trainer.api import Executor, train
from trainer.errors import DataError
from trainer.prepare import identify
from trainer.preprocess import fit_preprocess, load_preprocess, transform_columns

CHURN = EXAMPLES / "data" / "churn.csv"


def churn_task(steps: list[dict[str, Any]] | None = None, **dataset: Any) -> dict[str, Any]:
    raw = yaml.safe_load((EXAMPLES / "preprocess.yaml").read_text())
    raw["dataset"]["path"] = str(CHURN)
    if steps is not None:
        raw["dataset"]["preprocess"] = steps
    raw["dataset"].update(dataset)
    raw["training"]["epochs"] = 3
    raw["consistency"] = {"cache": {"enabled": False}, "sharing": {"enabled": False}}
    return raw


def _columns(n: int = 40) -> tuple[tuple[str, np.ndarray], ...]:
    rng = np.random.default_rng(1)
    num = rng.normal(10, 2, n)
    num[::7] = np.nan
    city = np.array(["a", "b", "c", None, "a"] * (n // 5), dtype=object)
    skew = rng.lognormal(0, 1, n)
    return (("num", num), ("city", city), ("skew", skew))


STEPS = [{"step": "impute", "strategy": "mean"},
         {"step": "impute", "strategy": "constant", "fill_value": "none", "columns": ["city"]},
         {"step": "clip", "quantiles": [0.05, 0.95], "columns": ["skew"]},
         {"step": "log", "columns": ["skew"]},
         {"step": "one_hot", "columns": ["city"]},
         {"step": "scale", "method": "robust", "columns": ["num", "skew"]}]


def _steps(raw: list[dict[str, Any]]) -> Any:
    return parse_task({"name": "p", "model": {"type": "linear"},
                       "dataset": {"source": "sklearn", "name": "iris", "preprocess": raw}}
                      ).dataset.preprocess


def test_no_validation_or_test_row_influences_a_fitted_statistic() -> None:
    columns = _columns()
    y = np.arange(40) % 2
    train = np.arange(0, 40, 2)  # the even rows
    fitted, features = fit_preprocess(_steps(STEPS), columns, y, train,
                                      TaskKind.CLASSIFICATION, seed=3)
    # every row not in training changed beyond recognition: another number, a new category
    held = np.setdiff1d(np.arange(40), train)
    changed = []
    for name, values in columns:
        v = values.copy()
        v[held] = 1e6 if v.dtype.kind == "f" else "never-seen"
        changed.append((name, v))
    refit, refeatures = fit_preprocess(_steps(STEPS), tuple(changed), y, train,
                                       TaskKind.CLASSIFICATION, seed=3)
    assert refit.sha256 == fitted.sha256  # the saved, fitted pipeline: byte for byte
    assert np.array_equal(refeatures[train], features[train])
    assert fitted.outputs == ("num", "skew", "city_a", "city_b", "city_c", "city_none")
    # the robust scaling was fitted on the training rows: their median is 0
    assert np.allclose(np.median(features[train], axis=0)[:2], 0.0, atol=1e-6)
    # an unseen category one-hot encodes to zeros (unknown: ignore)
    city = refeatures[held][:, 2:]
    assert not city.any()


def test_each_step_does_what_it_says() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = (x[:, 0] + 0.1 * rng.normal(size=200) > 0).astype(np.int64)
    columns = tuple((f"c{i}", x[:, i]) for i in range(6))
    train = np.arange(150)
    for raw, check in [
        ([{"step": "scale", "method": "minmax"}],
         lambda f: np.isclose(f[train].min(axis=0), 0).all()
         and np.isclose(f[train].max(axis=0), 1).all()),
        ([{"step": "select_k_best", "k": 2}], lambda f: f.shape[1] == 2),
        ([{"step": "pca", "n_components": 3}], lambda f: f.shape[1] == 3),
        ([{"step": "clip", "quantiles": [0.1, 0.9]}],
         lambda f: (f[train] <= np.quantile(x[train], 0.9, axis=0) + 1e-6).all()),
    ]:
        fitted, features = fit_preprocess(_steps(raw), columns, y, train,
                                          TaskKind.CLASSIFICATION, seed=1)
        assert check(features), raw
    fitted, _ = fit_preprocess(_steps([{"step": "select_k_best", "k": 1}]), columns, y, train,
                               TaskKind.CLASSIFICATION, seed=1)
    assert fitted.outputs == ("c0",)  # the one column the target depends on
    # ordinal codes, -1 for a category never seen in training
    cats = (("k", np.array(["x", "y", "x", "z"], dtype=object)),)
    fitted, feats = fit_preprocess(_steps([{"step": "ordinal"}]), cats, np.array([0, 1, 0, 1]),
                                   np.arange(3), TaskKind.CLASSIFICATION, seed=1)
    assert feats[:, 0].tolist() == [0.0, 1.0, 0.0, -1.0]


BAD = [
    ([{"step": "scale", "columns": ["city"]}],
     "dataset.preprocess[0] (scale): column 'city' is text and the step takes numbers"),
    ([{"step": "scale"}],
     "dataset.preprocess[0] (scale): column 'num' has 3 missing values in the training split "
     "when this step runs; put an impute step before it"),
    ([{"step": "impute", "columns": ["nope"]}],
     "dataset.preprocess[0] (impute): columns ['nope'] are not there at this step"),
    ([{"step": "impute"}], "column 'city' of the data is still text after dataset.preprocess"),
    ([{"step": "one_hot"}], "column 'num' of the data has 6 missing values after "
                            "dataset.preprocess; add an impute step"),
    ([{"step": "impute"}, {"step": "one_hot"}, {"step": "select_k_best", "k": 99}],
     "k=99 but only 6 columns are there"),
    ([{"step": "impute"}, {"step": "log", "columns": ["num"]}],
     "log(1 + x) needs values above -1"),
]


@pytest.mark.parametrize(("raw", "words"), BAD, ids=[w[:40] for _, w in BAD])
def test_a_step_that_does_not_fit_the_data_names_itself_and_the_column(
        raw: list[dict[str, Any]], words: str) -> None:
    columns = list(_columns())
    if raw[-1].get("columns") == ["num"]:  # values below -1 for the log step
        columns[0] = ("num", columns[0][1] - 100)
    with pytest.raises(DataError) as err:
        fit_preprocess(_steps(raw), tuple(columns), np.arange(40) % 2, np.arange(0, 40, 2),
                       TaskKind.CLASSIFICATION, seed=1)
    assert words in str(err.value)


def test_a_run_stores_the_fitted_steps_and_the_report_and_they_reproduce_its_features(
        tmp_path: Path) -> None:
    task = parse_task(churn_task())
    result = train(task, storage_path=tmp_path, use_cache=False, executor=Executor.IN_PROCESS)
    run = Path(result.run_dir)
    stored = (run / "preprocess.skops").read_bytes()
    import hashlib

    assert hashlib.sha256(stored).hexdigest() == result.versions["preprocess_sha256"]
    prepared = identify(task)
    assert prepared.preprocess is not None
    assert prepared.preprocess.sha256 == result.versions["preprocess_sha256"]  # reproducible
    pipeline = load_preprocess(stored, str(run / "preprocess.skops"))
    import pandas as pd

    frame = pd.read_csv(CHURN).drop(columns=["churned"])
    frame["region"] = frame["region"].astype(object).where(frame["region"].notna(), np.nan)
    again = transform_columns(pipeline, frame, "churn.csv")
    assert np.array_equal(again, prepared.dataset.features)
    report = json.loads((run / "data_report.json").read_text())
    assert report["rows"] == 600 and report["data_hash"] == result.data_hash
    assert report["splits"] == {"train": 360, "validation": 120, "test": 120,
                                "how": "stratified"}
    region = next(c for c in report["columns"] if c["name"] == "region")
    assert region == {"name": "region", "type": "text", "missing": int(frame["region"].isna()
                                                                         .sum()),
                      "infinite": 0, "categories": 4}
    # the training statistics are the training rows' only
    tenure = pd.read_csv(CHURN)["tenure_months"].to_numpy(np.float64)
    assert report["train_feature_stats"]["tenure_months"]["mean"] == pytest.approx(
        tenure[prepared.split.train].mean(), rel=1e-12)
    assert report["preprocess"]["outputs"] == list(prepared.preprocess.outputs)


def test_the_preprocess_example_reaches_its_accuracy(tmp_path: Path) -> None:
    raw = churn_task()
    raw["training"]["epochs"] = 20
    result = train(parse_task(raw), storage_path=tmp_path, use_cache=False,
                   executor=Executor.IN_PROCESS)
    # the majority class is 71% of the rows
    assert result.test_metrics["test_accuracy"] >= 0.78


def test_the_steps_are_part_of_the_cache_key() -> None:
    base = identify(parse_task(churn_task()))
    other_steps = copy.deepcopy(churn_task())
    other_steps["dataset"]["preprocess"][0]["strategy"] = "mean"
    assert identify(parse_task(other_steps)).cache_key != base.cache_key
    assert identify(parse_task(churn_task())).cache_key == base.cache_key


RULES = [
    ({"min_rows": 1000}, "dataset.validation.min_rows=1000: the data has 600 rows"),
    ({"max_missing_fraction": 0.05},
     "dataset.validation.max_missing_fraction=0.05: column 'monthly_charge' misses "),
    ({"columns": {"plan": "number"}},
     "dataset.validation.columns: column 'plan' is text, expected number"),
    ({"columns": {"age": "number"}}, "dataset.validation.columns: column 'age' is missing"),
    ({"min_class_fraction": 0.4},
     "dataset.validation.min_class_fraction=0.4: class 'yes' has 175 of 600 rows (0.292)"),
]


@pytest.mark.parametrize(("rules", "words"), RULES, ids=[w[19:45] for _, w in RULES])
def test_a_broken_rule_exits_2_naming_the_column_the_count_and_the_limit(
        tmp_path: Path, rules: dict[str, Any], words: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "task.json"
    cfg.write_text(json.dumps(churn_task(validation=rules)))
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_infinite_values_are_refused_unless_allowed_and_clipped(tmp_path: Path) -> None:
    csv = tmp_path / "inf.csv"
    csv.write_text("a,b,y\n1,inf,0\n2,3,1\n3,4,0\n4,5,1\n5,6,0\n6,7,1\n")
    raw = {"name": "inf", "model": {"type": "linear"},
           "dataset": {"source": "csv", "path": str(csv), "target": "y",
                       "preprocess": [{"step": "scale"}]}}
    with pytest.raises(DataError, match="column 'b' has 1 infinite value; set "
                       "dataset.validation.allow_infinite: true"):
        identify(parse_task(raw))
    raw["dataset"]["validation"] = {"allow_infinite": True}
    from trainer.prepare import prepare

    with pytest.raises(DataError, match="column 'b' of the data holds infinite values"):
        prepare(parse_task(raw))  # the steps are fitted before anything trains


def test_mtp_validate_prints_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLES / "preprocess.yaml")]) == 0
    out = json.loads(capsys.readouterr().out)
    report = out["data_report"]
    assert report["target"]["balance"]["yes"]["rows"] == 175
    assert [c["name"] for c in report["columns"]][:3] == ["tenure_months", "plan", "region"]
    assert out["sample_shape"] == [len(report["preprocess"]["outputs"])]


def test_a_cached_rerun_does_not_fit_the_steps_again(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    raw = churn_task()
    raw["consistency"] = {"cache": {"enabled": True}, "sharing": {"enabled": False}}
    first = train(parse_task(raw), storage_path=tmp_path, executor=Executor.IN_PROCESS)
    import trainer.preprocess

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the steps were fitted for a result the cache holds")

    monkeypatch.setattr(trainer.preprocess, "fit_preprocess", refuse)
    again = train(parse_task(raw), storage_path=tmp_path, executor=Executor.IN_PROCESS)
    assert again.cache_hit is not None and again.weights_hash == first.weights_hash
