"""Consensus verification on a two-node ``ray.cluster_utils.Cluster``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import digits_task_dict
from tests.support.wait import wait_for
from trainer import ConfigError, parse_task

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TASK: dict[str, Any] = {**digits_task_dict(epochs=3, batch_size=32), "name": "verify-me",
                        "consistency": {"cache": {"enabled": True},
                                        "sharing": {"enabled": True}}}


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Any]:
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 2, "include_dashboard": False})
    node = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="mtp", logging_level="WARNING")
    yield cluster, node
    ray.shutdown()
    cluster.shutdown()


def test_verify_on_two_nodes_is_bitwise_consistent_and_catches_tampering(
    two_nodes: Any, tmp_path: Path
) -> None:
    import ray

    from trainer import prepare
    from trainer.verify import verify

    cluster, node = two_nodes
    task = parse_task(TASK)
    report = verify(task, replicas=2, storage_path=tmp_path)
    assert report.is_consistent and report.bitwise_equal
    assert report.confidence == 1.0
    assert len(set(report.nodes)) == 2 and node.node_id in report.nodes
    key = prepare(task).cache_key
    registry = ray.get_actor("mtp-result-registry", namespace="mtp")
    entry = ray.get(registry.lookup.remote(key))
    assert entry is not None and entry["verified"] is True

    # tamper with the shared result: its accuracy no longer follows from its weights
    tampered = dict(entry)
    result = dict(entry["result"])
    result["final_metrics"] = {**result["final_metrics"],
                               "val_accuracy": result["final_metrics"]["val_accuracy"] - 0.05}
    tampered["result"] = result
    ray.get(registry.register.remote(key, tampered))
    before = ray.get(registry.stats.remote())["violations"]
    again = verify(task, replicas=1, storage_path=tmp_path)
    assert not again.is_consistent
    bad = [m for m in again.metrics if not m.within_tolerance]
    assert [m.name for m in bad] == ["val_accuracy"] and abs(bad[0].diff - 0.05) < 1e-9
    assert ray.get(registry.stats.remote())["violations"] == before + 1
    assert ray.get(registry.lookup.remote(key))["verified"] is False


def test_an_estimator_fitted_on_two_nodes_agrees_bit_for_bit(two_nodes: Any,
                                                              tmp_path: Path) -> None:
    """An estimator's replica is one Ray task pinned to its node: the saved bytes agree, and
    the registered version of the task's result is tagged verified."""
    from mtp.models import open_model_registry, register_run
    from tests.trainer.test_sklearn_models import rf_task
    from trainer.api import train
    from trainer.verify import verify

    _, node = two_nodes
    raw = rf_task(name="verify-forest")
    raw["resources"]["cpus_per_worker"] = 2
    trained = train(parse_task(raw), storage_path=tmp_path)
    version = register_run(trained.run_dir, "forest", storage=tmp_path)
    assert version.tags["verified"] == "false"
    report = verify(parse_task(raw), replicas=2, storage_path=tmp_path)
    assert report.is_consistent and report.bitwise_equal
    assert len(set(report.nodes)) == 2 and node.node_id in report.nodes
    assert len(set(report.weights_hashes)) == 1 and report.weights_hashes[0]
    assert report.weights_hashes[0] == trained.weights_hash
    assert open_model_registry(tmp_path).get("forest", 1).tags["verified"] == "true"


def test_more_replicas_than_nodes_is_a_clear_error(two_nodes: Any, tmp_path: Path) -> None:
    import ray

    from trainer.verify import verify

    # the capacity counted is what is free now: the earlier test's runs must have let go
    wait_for(lambda: ray.available_resources().get("CPU", 0)
             >= ray.cluster_resources().get("CPU", 0), 120, what="the earlier runs' CPUs")

    with pytest.raises(ConfigError, match=r"--replicas 3 needs 3 distinct nodes .* only 2 of 2"):
        verify(parse_task(TASK), replicas=3, storage_path=tmp_path)
