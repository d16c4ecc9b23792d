"""A training run is one MLflow run logged from the driver: the task's parameters, every
epoch's metrics with its step, the platform's tags, the dataset input whose digest is the data
hash, the run directory's files, its end state; a cache hit is a run that points at the run
that trained it. Real ``trainer.train`` (iris, in-process), real SQLite store in tmp_path."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtp_core.spec import parse_task
from tests.hpo.support import assert_one_line, cli
from tests.tracking.support import default_store, iris_tracked, tracking_on
from trainer.api import Executor, train
from trainer.errors import TrainingDivergedError
from trainer.result import CacheHit, TrainingResult, load_result

EPOCHS = 3


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One tracked run trained in this process, then the same task again: a local cache hit."""
    storage = tmp_path_factory.mktemp("tracked")
    raw = iris_tracked("iris-tracked", epochs=EPOCHS)
    raw["consistency"] = {"sharing": {"enabled": False}}  # the local cache only: no Ray
    seen: list[dict[str, Any]] = []
    with pytest.MonkeyPatch.context() as mp:
        tracking_on(mp)
        trained = train(parse_task(raw), storage_path=storage, executor=Executor.IN_PROCESS,
                        on_epoch=seen.append)
        hit = train(parse_task(raw), storage_path=storage, executor=Executor.IN_PROCESS)
    from mlflow import MlflowClient

    yield {"storage": storage, "trained": trained, "hit": hit, "epochs_seen": seen,
           "client": MlflowClient(default_store(storage))}


def test_a_run_is_one_mlflow_run_with_the_tasks_params_and_every_epoch(
        tracked: dict[str, Any]) -> None:
    r: TrainingResult = tracked["trained"]
    assert r.cache_hit is None and r.tracking is not None
    assert r.tracking.uri == default_store(tracked["storage"])
    client = tracked["client"]
    run = client.get_run(r.tracking.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == r.run_name
    assert client.get_experiment(run.info.experiment_id).name == "iris-tracked"
    params = run.data.params
    assert params["training.epochs"] == str(EPOCHS)
    assert params["model.type"] == "linear" and params["dataset.name"] == "iris"
    assert params["training.batch_size"] == "16"
    # per-epoch metrics with step = epoch, as the driver saw them
    for key in ("train_loss", "val_loss", "val_accuracy"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(
            r.tracking.run_id, key))
        expected = [(h.epoch, h.train_loss if key == "train_loss" else h.metrics[key])
                    for h in r.history]
        assert [s for s, _ in history] == list(range(1, EPOCHS + 1))
        assert [v for _, v in history] == pytest.approx([v for _, v in expected])
    assert [rec["epoch"] for rec in tracked["epochs_seen"]] == [1, 2, 3]  # caller still called
    # the final numbers
    m = run.data.metrics
    assert m["best_val_accuracy"] == pytest.approx(r.best_metrics["val_accuracy"])
    assert m["best_epoch"] == r.best_epoch
    for k, v in r.test_metrics.items():
        assert m[k] == pytest.approx(v)


def test_a_run_carries_the_platforms_tags_and_the_data_hash_as_its_dataset_digest(
        tracked: dict[str, Any]) -> None:
    r: TrainingResult = tracked["trained"]
    assert r.tracking is not None
    run = tracked["client"].get_run(r.tracking.run_id)
    tags = run.data.tags
    expected = {"mtp.data_hash": r.data_hash, "mtp.seed": str(r.seed),
                "mtp.cache_key": r.cache_key, "mtp.weights_hash": r.weights_hash,
                "mtp.world_size": "1", "mtp.strategy": "ddp", "mtp.task_id": r.task_id,
                "mtp.run_dir": r.run_dir, "mtp.storage": str(tracked["storage"].resolve()),
                "mtp.run_kind": "training", "mtp.cache_hit": "false",
                "mtp.monitor_metric": r.monitor_metric, "mtp.monitor_mode": r.monitor_mode}
    assert {k: tags.get(k) for k in expected} == expected
    assert tags["mtp.code_version"].startswith("mtp-")
    assert tags["mtp.model_code_version"].startswith("models-")
    (inp,) = run.inputs.dataset_inputs
    # MLflow keeps 36 characters of a digest: the content hash's first 36 hex digits
    assert inp.dataset.digest == r.data_hash[:36]
    assert json.loads(inp.dataset.source)["tags"]["content_hash"] == r.data_hash
    assert inp.dataset.name == "iris"
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "train"


def test_a_runs_files_are_its_artifacts_and_its_result_names_the_run(
        tracked: dict[str, Any]) -> None:
    r: TrainingResult = tracked["trained"]
    assert r.tracking is not None
    client = tracked["client"]
    names = {a.path for a in client.list_artifacts(r.tracking.run_id)}
    assert {"result.json", "task.json", "data_report.json", "model.safetensors"} <= names
    # under the storage path's artifact folder, and result.json (stored and logged) names
    # the run it was logged as
    art = Path(client.get_run(r.tracking.run_id).info.artifact_uri.removeprefix("file://"))
    assert art.is_relative_to(tracked["storage"].resolve() / "_mlflow" / "artifacts")
    logged = json.loads((art / "result.json").read_text())
    assert logged["tracking"]["run_id"] == r.tracking.run_id
    assert load_result(r.run_dir).tracking == r.tracking


def test_a_cache_hit_is_a_run_that_points_at_the_run_that_trained_it(
        tracked: dict[str, Any]) -> None:
    trained: TrainingResult = tracked["trained"]
    hit: TrainingResult = tracked["hit"]
    assert hit.cache_hit is CacheHit.LOCAL and hit.tracking is not None
    assert trained.tracking is not None and hit.tracking.run_id != trained.tracking.run_id
    run = tracked["client"].get_run(hit.tracking.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mtp.cache_hit"] == "true"
    assert run.data.tags["mtp.run_kind"] == "cache_hit"
    assert run.data.tags["mtp.original_run_id"] == trained.tracking.run_id
    assert run.data.tags["mtp.cache_key"] == trained.cache_key
    original = tracked["client"].get_run(trained.tracking.run_id).data.metrics
    final = {k: v for k, v in original.items() if k.startswith(("best_", "test_"))}
    assert final and {k: run.data.metrics[k] for k in final} == pytest.approx(final)
    assert run.inputs.dataset_inputs[0].dataset.digest == trained.data_hash[:36]


def test_experiments_list_and_show_read_the_store(tracked: dict[str, Any],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    storage = str(tracked["storage"])
    code, out, err = cli(["experiments", "list", "--storage-path", storage], capsys)
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("iris-tracked")]
    assert line.split()[2:4] == ["2", "1"]  # 2 runs, 1 of them trained
    code, out, err = cli(["experiments", "show", "iris-tracked", "--storage-path", storage,
                          "--json"], capsys)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["count"] == 1 and shown["cache_hits"] == 1 and shown["success_rate"] == 1.0
    assert shown["best_run_id"] == tracked["trained"].tracking.run_id
    code, out, err = cli(["experiments", "show", "iris-tracked", "--storage-path", storage],
                         capsys)
    assert code == 0 and "success rate 100%" in out and "1 cache hits" in out


def test_an_unknown_experiment_is_an_input_error_naming_it(
        tracked: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["experiments", "show", "no-such-experiment", "--storage-path",
                          str(tracked["storage"])], capsys)
    assert_one_line(code, 2, out, err, "'no-such-experiment' not found")


def test_a_bad_tracking_uri_fails_at_the_start_with_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    tracking_on(monkeypatch)
    cfg = tmp_path / "task.json"
    cfg.write_text(json.dumps(iris_tracked("bad-uri")))
    code, out, err = cli(["run", str(cfg), "--storage-path", str(tmp_path / "s"), "--set",
                          "tracking.uri=foo://somewhere"], capsys)
    assert_one_line(code, 2, out, err, "tracking.uri='foo://somewhere'", "scheme 'foo'")
    assert not (tmp_path / "s" / "bad-uri").exists()  # nothing trained


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_tracking_server_that_is_down_does_not_fail_the_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    tracking_on(monkeypatch)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    raw = iris_tracked("server-down", epochs=2, uri=f"http://127.0.0.1:{_closed_port()}")
    with caplog.at_level("WARNING", logger="tracking"):
        r = train(parse_task(raw), storage_path=tmp_path, executor=Executor.IN_PROCESS)
    assert r.epochs_completed == 2 and r.tracking is None
    warnings = [rec for rec in caplog.records if rec.name.startswith("tracking")]
    assert len(warnings) == 1 and "not logged" in warnings[0].getMessage()


def test_a_diverged_run_ends_failed_with_its_reason(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tracking_on(monkeypatch)
    raw = {"name": "diverges", "model": {"type": "mlp", "hidden_sizes": [32]},
           "dataset": {"source": "sklearn", "name": "digits"},
           "training": {"epochs": 2, "batch_size": 32, "learning_rate": 10,
                        "optimizer": "sgd"},
           "hyperparameters": {"momentum": 0.9},
           "resources": {"num_workers": 1, "cpus_per_worker": 1},
           "consistency": {"cache": {"enabled": False}, "sharing": {"enabled": False}}}
    with pytest.raises(TrainingDivergedError):
        train(parse_task(raw), storage_path=tmp_path, executor=Executor.IN_PROCESS)
    stored = load_result(tmp_path / "diverges")
    assert stored.tracking is not None
    from mlflow import MlflowClient

    run = MlflowClient(default_store(tmp_path)).get_run(stored.tracking.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["mtp.error"].startswith("diverged: ")
