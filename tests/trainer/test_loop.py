"""The training loop driven in-process (world size 1, no Ray), one epoch at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import digits_task_dict
from trainer import parse_task, prepare, train_local
from trainer._collective import SingleProcess
from trainer.checkpoint import CheckpointStore
from trainer.exchange import DDPExchange
from trainer.loop import TrainLoop, build_optimizer


def _loop(task_dict: dict, run_dir: Path) -> TrainLoop:
    task = parse_task(task_dict)
    p = prepare(task)
    return TrainLoop(task, p.dataset.features, p.dataset.targets, p.meta, p.seed, run_dir,
                     p.fingerprint, SingleProcess())


def test_local_training_learns_digits(tmp_path: Path) -> None:
    summary = train_local(parse_task(digits_task_dict(epochs=5)), storage_path=tmp_path)
    assert summary["history"][-1]["val_accuracy"] >= 0.9
    assert summary["history"][-1]["train_loss"] < summary["history"][0]["train_loss"]
    assert (tmp_path / "digits-test" / "model.safetensors").is_file()


def test_same_task_same_weights_other_task_other_weights(tmp_path: Path) -> None:
    task = parse_task(digits_task_dict(epochs=2))
    a = train_local(task, storage_path=tmp_path, run_name="a")
    b = train_local(task, storage_path=tmp_path, run_name="b")
    assert a["weights_hash"] == b["weights_hash"]
    other = parse_task({**digits_task_dict(epochs=2), "id": "another-task"})
    c = train_local(other, storage_path=tmp_path, run_name="c")
    assert c["seed"] != a["seed"] and c["weights_hash"] != a["weights_hash"]


def test_interrupted_run_resumes_to_identical_weights(tmp_path: Path) -> None:
    d = digits_task_dict(epochs=5)
    reference = _loop(d, tmp_path / "ref").run()

    first = _loop(d, tmp_path / "crash")
    for _ in range(3):
        first.run_epoch()
    del first  # the process "dies" after epoch 3's checkpoint

    resumed = _loop(d, tmp_path / "crash")
    assert resumed.resumed_from == 3
    out = resumed.run()
    assert out["weights_hash"] == reference["weights_hash"]
    assert [h["epoch"] for h in out["history"]] == [1, 2, 3, 4, 5]
    assert [h["val_loss"] for h in out["history"]] == [h["val_loss"] for h in reference["history"]]


def test_checkpoint_stores_the_torch_optimizer_state_under_optimizer(tmp_path: Path) -> None:
    """The checkpoint format outlives the exchange refactor: ``"optimizer"`` is the torch
    optimizer's own state dict, loadable into a fresh optimizer of the task."""
    loop = _loop(digits_task_dict(epochs=1), tmp_path / "run")
    loop.run_epoch()
    found = CheckpointStore(loop.layout.checkpoints).load_latest(loop.fingerprint)
    assert found is not None
    saved = found[0]["optimizer"]
    assert saved.keys() == {"state", "param_groups"}
    assert saved["param_groups"][0]["lr"] == 0.003
    assert isinstance(loop.exchange, DDPExchange)
    live = loop.exchange.optimizer.state_dict()
    assert saved["state"].keys() == live["state"].keys()
    for i, s in live["state"].items():
        assert torch.equal(saved["state"][i]["exp_avg"], s["exp_avg"])
    build_optimizer(loop.task, loop.module.parameters()).load_state_dict(saved)


def test_resume_skips_a_corrupt_checkpoint_and_still_matches(tmp_path: Path) -> None:
    d = digits_task_dict(epochs=4, checkpoint={"keep_last": 3})
    reference = _loop(d, tmp_path / "ref").run()
    first = _loop(d, tmp_path / "run")
    for _ in range(3):
        first.run_epoch()
    payload = tmp_path / "run" / "checkpoints" / "ckpt-000003" / "state.pt"
    payload.write_bytes(payload.read_bytes()[:-10])  # torn write
    resumed = _loop(d, tmp_path / "run")
    assert resumed.resumed_from == 2
    assert resumed.run()["weights_hash"] == reference["weights_hash"]


def test_extending_a_finished_run_continues_it(tmp_path: Path) -> None:
    reference = _loop(digits_task_dict(epochs=4), tmp_path / "ref").run()
    _loop(digits_task_dict(epochs=2), tmp_path / "run").run()
    extended = _loop(digits_task_dict(epochs=4), tmp_path / "run")
    assert extended.resumed_from == 2
    assert extended.run()["weights_hash"] == reference["weights_hash"]


def test_early_stopping_stops_and_checkpoints(tmp_path: Path) -> None:
    d = digits_task_dict(epochs=30, early_stopping={"patience": 2, "min_delta": 0.5},
                         monitor={"metric": "val_accuracy"})
    out = _loop(d, tmp_path / "run").run()
    # nothing improves accuracy by 0.5 after epoch 1: stop after 1 + patience epochs
    assert out["stopped_early"] and out["epochs_completed"] == 3 and out["best_epoch"] == 1
    again = _loop(d, tmp_path / "run")
    assert again.resumed_from == 3 and again.state.stopped_early


def test_regression_task_reports_mse_and_r2(tmp_path: Path) -> None:
    d = digits_task_dict(epochs=10, batch_size=32, learning_rate=0.01)
    d["dataset"] = {"source": "synthetic", "kind": "regression", "n_samples": 2000,
                    "n_features": 10, "noise": 5.0}
    d["model"] = {"type": "linear"}
    out = _loop(d, tmp_path / "run").run()
    last = out["history"][-1]
    assert out["monitor_metric"] == "val_loss"
    assert last["val_r2"] > 0.9
    assert last["val_mse"] == pytest.approx(last["val_loss"], rel=1e-5)
