"""A custom PyTorch model on Ray Train (2 workers): its code, found in a folder no worker has
on its Python path, is shipped with the run; it trains, survives a killed worker with an equal
weights hash, is served from the cache when unchanged and retrained after a one-character
edit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ensure_local_ray, train_in_thread
from tests.integration.test_ray_train import _kill_a_worker_after
from tests.support.user_code import custom_digits_task, write_package
from trainer import TrainingResult, parse_task
from trainer import train as mtp_train

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def _task(code_dir: Path) -> dict:
    raw = custom_digits_task("custom-ray", code_dir=code_dir, epochs=8, workers=2, hidden=64)
    raw["training"]["batch_size"] = 16  # about 45 steps per rank per epoch: a kill lands
    raw["consistency"] = {"cache": {"enabled": True}, "sharing": {"enabled": False}}
    return raw


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user-code")
    write_package(folder)
    return folder


@pytest.fixture(scope="module")
def reference(code_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    ensure_local_ray()
    return mtp_train(parse_task(_task(code_dir)), storage_path=tmp_path_factory.mktemp("ref"))


def test_a_custom_model_trains_on_two_workers_from_shipped_code(
        reference: TrainingResult) -> None:
    assert reference.world_size == 2 and reference.cache_hit is None
    assert reference.final_metrics["val_accuracy"] >= 0.9
    assert len(reference.versions["model_code_sha256"]) == 64


def test_a_killed_worker_resumes_to_the_same_weights(reference: TrainingResult,
                                                     code_dir: Path, tmp_path: Path) -> None:
    raw = _task(code_dir)
    raw["consistency"] = {"cache": {"enabled": False}, "sharing": {"enabled": False}}
    thread, out = train_in_thread(raw, tmp_path)
    _kill_a_worker_after(tmp_path / "custom-ray", epoch=2)
    thread.join(timeout=300)
    assert not thread.is_alive(), "training did not finish after the worker was killed"
    assert "error" not in out, out.get("error")
    result: TrainingResult = out["result"]
    assert result.attempts >= 2 and result.resumed_from_epoch is not None
    assert result.weights_hash == reference.weights_hash


def test_unchanged_code_is_served_from_the_cache_and_an_edit_retrains(
        reference: TrainingResult, code_dir: Path, tmp_path: Path) -> None:
    storage = Path(reference.run_dir).parent
    again = mtp_train(parse_task(_task(code_dir)), storage_path=storage)
    assert again.cache_hit is not None and again.weights_hash == reference.weights_hash
    edited = tmp_path / "edited"
    write_package(edited, extra="#")  # one character more
    retrained = mtp_train(parse_task(_task(edited)), storage_path=storage, run_name="edited")
    assert retrained.cache_hit is None
    assert retrained.versions["model_code_sha256"] != reference.versions["model_code_sha256"]
    assert retrained.weights_hash == reference.weights_hash  # a comment changes no weight


def test_the_parameter_server_trains_a_custom_model(code_dir: Path, tmp_path: Path) -> None:
    raw = _task(code_dir)
    raw.update(strategy="parameter_server", ps={"mode": "sync", "num_shards": 2})
    raw["training"]["epochs"] = 4
    raw["consistency"] = {"cache": {"enabled": False}, "sharing": {"enabled": False}}
    result = mtp_train(parse_task(raw), storage_path=tmp_path)
    assert result.strategy == "parameter_server" and result.world_size == 2
    assert result.final_metrics["val_accuracy"] >= 0.9
    assert result.versions["model_code_sha256"] == load_code_sha(code_dir)


def load_code_sha(code_dir: Path) -> str:
    from trainer.prepare import identify

    sha = identify(parse_task(_task(code_dir))).model_code_sha256
    assert sha is not None
    return sha
