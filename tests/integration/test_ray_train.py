"""Training on a local Ray through Ray Train: accuracy, determinism, worker death, resume."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from mtp.cli import main
from tests.conftest import EXAMPLES, digits_task_dict, ensure_local_ray, train_in_thread
from tests.support.wait import wait_for
from trainer import TrainingFailedError, TrainingResult, load_model, load_result, parse_task
from trainer import train as mtp_train

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

# batch 16 makes each epoch long enough (~100 steps per rank) to kill a worker mid-run
TASK = digits_task_dict(epochs=8, batch_size=16, learning_rate=0.002)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    """One uninterrupted 2-worker run that the other tests compare against."""
    ensure_local_ray()
    return mtp_train(parse_task(TASK), storage_path=tmp_path_factory.mktemp("ref"))


def test_two_workers_reach_accuracy(reference: TrainingResult) -> None:
    assert reference.world_size == 2
    assert reference.final_metrics["val_accuracy"] >= 0.9
    assert reference.epochs_completed == 8 and len(reference.history) == 8
    assert reference.attempts == 1 and reference.resumed_from_epoch is None
    assert reference.timings.steady_samples_per_s > 0
    stored = load_result(reference.run_dir)
    assert stored.weights_hash == reference.weights_hash


def test_stored_model_reloads_and_predicts(reference: TrainingResult) -> None:
    import torch
    from sklearn.datasets import load_digits

    predictor = load_model(reference.run_dir)  # verifies the weight hash
    digits = load_digits()
    x = torch.tensor(digits.data[:200], dtype=torch.float32).reshape(-1, 1, 8, 8)
    assert predictor.module is not None
    acc = (predictor.module(x).argmax(-1).numpy() == digits.target[:200]).mean()
    assert acc >= 0.9
    # the predictor takes the rows by column name, as the run's data named them
    columns = {name: digits.data[:200, i] for i, name in enumerate(digits.feature_names)}
    assert np.array_equal(predictor.predict(columns), predictor.module(x).argmax(-1).numpy())


def test_second_run_has_bit_identical_weights(reference: TrainingResult, tmp_path: Path) -> None:
    again = mtp_train(parse_task(TASK), storage_path=tmp_path)
    assert again.weights_hash == reference.weights_hash
    assert again.seed == reference.seed and again.data_hash == reference.data_hash
    assert [h.metrics for h in again.history] == [h.metrics for h in reference.history]


def _kill_a_worker_after(run_dir: Path, epoch: int) -> list[int]:
    """SIGKILL the run's Ray Train worker processes once checkpoint ``epoch`` exists.

    Every worker the state API lists as alive is killed, not one picked from the list: under
    load the list can still hold a worker of an earlier run whose process is gone, and killing
    only that one would disturb nothing."""
    from ray.util.state import list_actors

    wait_for(lambda: (run_dir / "checkpoints" / f"ckpt-{epoch:06d}").is_dir(), 180,
             what=f"checkpoint of epoch {epoch}")

    import ray

    # this cluster's, named: with no address the state API refuses to pick among several Rays
    address = ray.get_runtime_context().gcs_address

    def kill_alive() -> list[int]:
        killed = []
        for w in list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker"),
                                                       ("state", "=", "ALIVE")]):
            try:
                os.kill(int(w["pid"]), signal.SIGKILL)
                killed.append(int(w["pid"]))
            except ProcessLookupError:
                continue
        return killed

    killed: list[int] = wait_for(kill_alive, 30, what="a live Ray Train worker to kill")
    return killed


def test_killed_worker_is_restarted_and_weights_match(
    reference: TrainingResult, tmp_path: Path
) -> None:
    thread, out = train_in_thread(TASK, tmp_path)
    _kill_a_worker_after(tmp_path / "digits-test", epoch=2)
    thread.join(timeout=300)
    assert not thread.is_alive(), "training did not finish after the worker was killed"
    assert "error" not in out, out.get("error")
    result: TrainingResult = out["result"]
    assert result.attempts >= 2, "the kill did not cause a restart"
    assert result.resumed_from_epoch is not None and result.resumed_from_epoch >= 2
    assert result.weights_hash == reference.weights_hash


def test_failed_run_resumes_on_rerun_with_same_name(
    reference: TrainingResult, tmp_path: Path
) -> None:
    no_retry = {**TASK, "failure": {"max_failures": 0},
                "fault_tolerance": {"enable_auto_recovery": False}}
    thread, out = train_in_thread(no_retry, tmp_path)
    _kill_a_worker_after(tmp_path / "digits-test", epoch=3)
    thread.join(timeout=300)
    assert isinstance(out.get("error"), TrainingFailedError)
    assert "rerun with the same --run-name" in str(out["error"])
    rerun = mtp_train(parse_task(no_retry), storage_path=tmp_path)
    assert rerun.resumed_from_epoch is not None and rerun.resumed_from_epoch >= 3
    assert rerun.weights_hash == reference.weights_hash


def test_cli_run_prints_epochs_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(EXAMPLES / "breast_cancer_logreg.yaml"), "--storage-path",
                 str(tmp_path), "--set", "training.epochs=4"])
    out = capsys.readouterr().out
    assert code == 0, out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 4 and "val_accuracy" in epoch_lines[0]
    assert "samples/s" in epoch_lines[0]
    result = load_result(tmp_path / "breast-cancer-logreg")
    assert result.final_metrics["val_accuracy"] >= 0.9
    assert f"weights    sha256 {result.weights_hash}" in out
    assert main(["show", str(tmp_path / "breast-cancer-logreg")]) == 0
    shown = capsys.readouterr().out
    assert result.weights_hash in shown and shown.count("epoch ") >= 4


def test_more_workers_than_cpus_is_a_clear_error(tmp_path: Path) -> None:
    from trainer import ConfigError

    with pytest.raises(ConfigError, match=r"needs 8 CPUs .*num_workers=8.* cluster has 2"):
        mtp_train(parse_task({**TASK, "resources": {"num_workers": 8}}), storage_path=tmp_path)


def _process_group_probe(config: dict[str, str]) -> None:
    """In a worker: the process group the lean backend set up, and whether the run's
    controller (its pid from Ray's state API; its memory map from /proc: one machine) has
    loaded torch's library; each rank
    writes what it saw to ``<out>/rank-<r>.json``."""
    import json

    import torch
    import torch.distributed as dist

    total = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(total)
    import ray
    from ray.util.state import list_actors

    # this cluster's live controllers (another Ray on the host may run its own)
    controllers = {}
    for actor in list_actors(address=ray.get_runtime_context().gcs_address,
                             filters=[("class_name", "=", "TrainController"),
                                      ("state", "=", "ALIVE")]):
        pid = str(actor["pid"])
        try:
            controllers[pid] = "libtorch" in Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
    seen = {"rank": dist.get_rank(), "world": dist.get_world_size(),
            "backend": dist.get_backend(), "sum": total.item(),
            "env": [os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")],
            "master": bool(os.environ.get("MASTER_ADDR")), "controllers": controllers}
    Path(config["out"], f"rank-{dist.get_rank()}.json").write_text(json.dumps(seen))


def test_the_lean_trainer_sets_up_the_process_group_without_torch_in_its_controller(
        tmp_path: Path) -> None:
    import json

    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig

    from trainer._ray_train import LeanTorchTrainer

    LeanTorchTrainer(_process_group_probe, train_loop_config={"out": str(tmp_path)},
                     torch_config=TorchConfig(backend="gloo"),
                     scaling_config=ScalingConfig(num_workers=2)).fit()
    for rank in (0, 1):
        m = json.loads((tmp_path / f"rank-{rank}.json").read_text())
        assert (m["rank"], m["world"], m["backend"], m["sum"]) == (rank, 2, "gloo", 3.0), m
        # one machine, so the local rank is the rank
        assert m["env"] == [str(rank), "2", str(rank)] and m["master"], m
        assert len(m["controllers"]) == 1 and not any(m["controllers"].values()), m
