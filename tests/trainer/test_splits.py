"""The three-way split (stratified for classification, or in time order with
``dataset.order_by``) and the held-out test evaluation of the best model, without Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import torch

from mtp.cli import main
from mtp_core.spec import parse_task
from tests.support.user_code import fresh_user_code, write_loaders  # noqa: F401 - fixture
from trainer import load_model, train_local
from trainer.api import Executor, train
from trainer.checkpoint import CheckpointStore
from trainer.data import split_indices, split_rows, task_split
from trainer.errors import ConfigError, DataError
from trainer.models import build_model
from trainer.prepare import identify


def test_stratified_splits_keep_every_class_share_and_cover_the_rows() -> None:
    labels = np.array([0] * 500 + [1] * 300 + [2] * 150 + [3] * 50)
    np.random.default_rng(0).shuffle(labels)
    split = split_rows(1000, 0.2, 0.1, seed=3, labels=labels)
    assert (len(split.train), len(split.validation), len(split.test)) == (700, 200, 100)
    rows = np.concatenate([split.train, split.validation, split.test])
    assert np.array_equal(np.sort(rows), np.arange(1000))  # disjoint and covering
    for part, size in ((split.validation, 200), (split.test, 100)):
        share = np.bincount(labels[part], minlength=4) / size
        assert np.abs(share - np.array([0.5, 0.3, 0.15, 0.05])).max() <= 1 / size
    again = split_rows(1000, 0.2, 0.1, seed=3, labels=labels)
    assert all(np.array_equal(a, b) for a, b in zip(
        (split.train, split.validation, split.test),
        (again.train, again.validation, again.test), strict=True))
    other = split_rows(1000, 0.2, 0.1, seed=4, labels=labels)
    assert not np.array_equal(split.validation, other.validation)


def test_an_unstratified_two_way_split_is_the_old_split() -> None:
    """Regression tasks split as before the three-way split (their goldens did not move)."""
    n, seed = 1000, 11
    perm = np.random.default_rng(seed).permutation(n)
    train, val = split_indices(n, 0.2, seed)
    assert np.array_equal(val, np.sort(perm[:200])) and np.array_equal(train,
                                                                       np.sort(perm[200:]))


def test_a_rare_class_stays_in_training_and_tiny_data_is_refused() -> None:
    labels = np.array([0] * 8 + [1, 2])
    split = split_rows(10, 0.2, 0.1, seed=1, labels=labels)
    assert {1, 2} <= set(labels[split.train].tolist())
    with pytest.raises(DataError, match="has 2 rows: a three-way split needs at least 3"):
        split_rows(2, 0.2, 0.1, seed=1)
    with pytest.raises(ConfigError, match=r"validation_split \+ test_split = 1 leaves no rows"):
        parse_task({"name": "x", "model": {"type": "linear"},
                    "dataset": {"source": "sklearn", "name": "iris"},
                    "training": {"validation_split": 0.5, "test_split": 0.5}})


def _series(tmp_path: Path, n: int = 120) -> Path:
    """A CSV whose rows are out of time order (the time column is shuffled)."""
    rng = np.random.default_rng(0)
    t = rng.permutation(n)
    table = pa.table({"day": [f"2025-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in t],
                      "t": t.astype(np.int64), "x": rng.normal(size=n), "y": rng.normal(size=n)})
    path = tmp_path / "series.csv"
    pacsv.write_csv(table, path)
    return path


def _series_task(path: Path, **dataset: Any) -> dict[str, Any]:
    return {"name": "series", "model": {"type": "linear"},
            "dataset": {"source": "csv", "path": str(path), "target": "y", **dataset},
            "training": {"epochs": 2, "validation_split": 0.2, "test_split": 0.1},
            "resources": {"num_workers": 1}}


def test_a_time_ordered_split_trains_on_the_past_and_tests_on_the_future(tmp_path: Path) -> None:
    raw = _series_task(_series(tmp_path), order_by="day", features=["t", "x"])
    task = parse_task(raw)
    prepared = identify(task)
    times = prepared.dataset.features[:, 0]
    assert np.array_equal(times, np.sort(times))  # the rows were sorted by day
    split = task_split(task, prepared.dataset.targets, prepared.dataset.kind, prepared.seed)
    assert times[split.train].max() < times[split.validation].min()
    assert times[split.validation].max() < times[split.test].min()
    assert (len(split.train), len(split.validation), len(split.test)) == (84, 24, 12)
    # the order column is not a feature unless listed
    assert identify(parse_task(_series_task(_series(tmp_path), order_by="day"))
                    ).dataset.feature_names == ("t", "x")


def test_bad_order_columns_exit_2_naming_dataset_order_by(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _series(tmp_path)
    holes = tmp_path / "holes.csv"
    holes.write_text("day,x,y\n2025-01-02,1,2\n,2,3\n2025-01-01,3,4\n")
    cases = [(_series_task(path, order_by="when"), "dataset.order_by 'when' is not a column"),
             (_series_task(holes, order_by="day"),
              "dataset.order_by 'day' in '" + str(holes) + "' has 1 missing value (first: row 2)"),
             (_series_task(path, order_by="y"), "order_by is the target column 'y'")]
    for raw, words in cases:
        cfg = tmp_path / "task.json"
        cfg.write_text(json.dumps(raw))
        assert main(["validate", str(cfg)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


@pytest.mark.usefixtures("fresh_user_code")
def test_a_loader_gives_time_order_through_its_table(tmp_path: Path) -> None:
    write_loaders(tmp_path)
    raw = {"name": "ordered", "model": {"type": "linear"},
           "dataset": {"source": "custom", "loader": "user_data:iris_table",
                       "code_dir": str(tmp_path), "order_by": "f0"},
           "training": {"test_split": 0.2}}
    prepared = identify(parse_task(raw))
    assert prepared.dataset.feature_names == ("f1", "f2", "f3")
    arrays = {**raw, "dataset": {**raw["dataset"], "loader": "user_data:iris"}}
    with pytest.raises(DataError, match="dataset.order_by 'f0' needs a column"):
        identify(parse_task(arrays))


def _digits(**training: Any) -> dict[str, Any]:
    return {"name": "held-out", "model": {"type": "mlp", "hidden_sizes": [32]},
            "dataset": {"source": "sklearn", "name": "digits"},
            "training": {"epochs": 6, "batch_size": 64, "learning_rate": 0.003,
                         "test_split": 0.2, **training},
            "resources": {"num_workers": 1}}


def test_the_test_split_evaluates_the_best_epochs_checkpoint(tmp_path: Path) -> None:
    task = parse_task(_digits())
    summary = train_local(task, storage_path=tmp_path)
    test = summary["test"]
    assert test["epoch"] == summary["best_epoch"] and test["weights"] == "best"
    assert test["rows"] == 359 and test["metrics"]["test_accuracy"] >= 0.85
    inference = test["inference"]
    assert inference["batch_size"] == 64 and inference["threads"] == 1
    assert inference["throughput_samples_per_s"] > 0 and inference["latency_ms_per_sample"] > 0
    # the same number from the best checkpoint, evaluated by hand on the test rows
    prepared = identify(task)
    ds = prepared.dataset
    split = task_split(task, ds.targets, ds.kind, prepared.seed)
    best = CheckpointStore(tmp_path / "held-out" / "checkpoints").best()
    assert best is not None and best.epoch == test["epoch"]
    model = build_model(task.model, ds.sample_shape, ds.kind, ds.num_classes,
                        np.zeros(ds.sample_shape, np.float32), np.ones(ds.sample_shape,
                                                                       np.float32))
    state = CheckpointStore(tmp_path / "held-out" / "checkpoints").load(best)
    assert state is not None
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(ds.features[split.test])).argmax(-1).numpy()
    assert float(np.mean(pred == ds.targets[split.test])) == test["metrics"]["test_accuracy"]


def test_without_the_best_checkpoint_the_final_weights_are_tested_and_said_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a learning rate so high the best epoch (3 of 5: the run is deterministic) comes early;
    # only the last checkpoint is kept
    raw = _digits(epochs=5, learning_rate=0.05,
                  checkpoint={"keep_best": False, "on_best": False, "keep_last": 1})
    result = train(parse_task(raw), storage_path=tmp_path, use_cache=False,
                   executor=Executor.IN_PROCESS)
    assert (result.best_epoch, result.epochs_completed) == (3, 5)
    assert result.test is not None and result.test_metrics
    assert result.test.weights == "final" and result.test.epoch == 5
    assert main(["show", result.run_dir]) == 0
    out = capsys.readouterr().out
    test_line = next(line for line in out.splitlines() if line.startswith("test "))
    assert f"epoch {result.test.epoch}" in test_line and "359 rows" in test_line
    assert "test_accuracy" in test_line
    assert any(line.startswith("inference  ") and "samples/s in batches of 64" in line
               for line in out.splitlines())


def test_an_estimator_is_tested_on_the_same_rows(tmp_path: Path) -> None:
    raw = {"name": "forest", "model": {"type": "sklearn",
                                       "estimator": "sklearn.ensemble.RandomForestClassifier",
                                       "params": {"n_estimators": 20}},
           "dataset": {"source": "sklearn", "name": "digits"},
           "training": {"test_split": 0.2}}
    result = train(parse_task(raw), storage_path=tmp_path, use_cache=False,
                   executor=Executor.IN_PROCESS)
    prepared = identify(parse_task(raw))
    ds = prepared.dataset
    split = task_split(parse_task(raw), ds.targets, ds.kind, prepared.seed)
    pred = load_model(result.run_dir).predict(ds.features[split.test].reshape(len(split.test),
                                                                               -1))
    assert result.test is not None and result.test.rows == len(split.test) == 359
    assert float(np.mean(pred == ds.targets[split.test])) == result.test_metrics[
        "test_accuracy"]
