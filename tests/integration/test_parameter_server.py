"""The parameter-server strategy on a local Ray: accuracy against DDP, determinism (a run
with a killed shard or worker equals the uninterrupted reference bit for bit), failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtp_core.spec import load_raw_config
from tests.conftest import REPO, ensure_local_ray, train_in_thread
from tests.golden import reference as golden
from tests.support.wait import wait_for
from trainer import TrainingResult, load_result, parse_task
from trainer import train as mtp_train

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

# batch 16: about 45 steps per rank per epoch, long enough to kill an actor mid-run (the file
# says more); DDP's numbers on it are golden
BASE = load_raw_config(REPO / golden.PARAMETER_SERVER.config)
SYNC = {**BASE, "strategy": "parameter_server", "ps": {"mode": "sync", "num_shards": 2}}
ASYNC = {**BASE, "strategy": "parameter_server",
         "ps": {"mode": "async", "num_shards": 2, "max_staleness": 4}}


@pytest.fixture(scope="module")
def ddp_accuracy() -> float:
    """DDP's final val_accuracy on BASE, from its golden file (tests/golden: a stale file says
    to regenerate it)."""
    return float(golden.current(golden.PARAMETER_SERVER)["epochs"][-1]["val_accuracy"])


@pytest.fixture(scope="module")
def sync_ref(tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    ensure_local_ray()
    return mtp_train(parse_task(SYNC), storage_path=tmp_path_factory.mktemp("ps-sync"))


def test_sync_ps_matches_ddp_accuracy(ddp_accuracy: float, sync_ref: TrainingResult) -> None:
    assert sync_ref.strategy == "parameter_server"
    assert sync_ref.world_size == 2 and sync_ref.epochs_completed == 6
    acc_ps = sync_ref.final_metrics["val_accuracy"]
    acc_ddp = ddp_accuracy
    assert acc_ps >= 0.9
    assert abs(acc_ps - acc_ddp) <= 0.01, (acc_ps, acc_ddp)
    # the same per-epoch record as DDP: metrics, throughput, checkpoints with server state
    assert sync_ref.history[0].samples_per_s > 0 and sync_ref.latest_checkpoint is not None
    assert load_result(sync_ref.run_dir).weights_hash == sync_ref.weights_hash


def test_async_ps_converges(tmp_path: Path) -> None:
    result = mtp_train(parse_task(ASYNC), storage_path=tmp_path)
    assert result.final_metrics["val_accuracy"] >= 0.9
    assert result.epochs_completed == 6


def _kill_actor_after(run_dir: Path, epoch: int, name: str) -> None:
    import ray

    wait_for(lambda: (run_dir / "checkpoints" / f"ckpt-{epoch:06d}").is_dir(), 180,
             what=f"checkpoint of epoch {epoch}")
    ray.kill(ray.get_actor(name, namespace="mtp"), no_restart=False)


@pytest.mark.parametrize("victim", ["shard-1", "worker-1"])
def test_killed_actor_mid_run_completes_with_identical_weights(
    victim: str, sync_ref: TrainingResult, tmp_path: Path
) -> None:
    thread, out = train_in_thread(SYNC, tmp_path)
    _kill_actor_after(tmp_path / "digits-test", 2, f"mtp-ps-digits-test-{victim}")
    thread.join(timeout=300)
    assert not thread.is_alive(), f"training did not finish after {victim} was killed"
    assert "error" not in out, out.get("error")
    result: TrainingResult = out["result"]
    assert result.attempts >= 2, "the kill did not cause a restart"
    assert result.resumed_from_epoch is not None and result.resumed_from_epoch >= 2
    # bit-reproducible across runs (and a restart): the weights and every epoch's metrics
    assert result.weights_hash == sync_ref.weights_hash
    assert [h.metrics for h in result.history] == [h.metrics for h in sync_ref.history]
