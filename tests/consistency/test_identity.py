from __future__ import annotations

import copy
from typing import Any

import pytest

from consistency.errors import ConsistencyError
from consistency.identity import cache_key, task_params_for_key
from mtp_core.hashing import json_checksum
from mtp_core.spec import TrainingTask

DATA = "d" * 64


def _task(**updates: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "digits-mlp",
        "description": "first try",
        "model": {"type": "mlp", "hidden_sizes": [64]},
        "dataset": {"source": "sklearn", "name": "digits"},
        "training": {"epochs": 3, "learning_rate": 0.01},
        "resources": {"num_workers": 2, "cpus_per_worker": 1},
    }
    for dotted, value in updates.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return TrainingTask.model_validate(raw).canonical_dict()


def _key(task_dict: dict[str, Any], data: str = DATA) -> str:
    task = TrainingTask.model_validate(task_dict)
    return cache_key(task.task_id, task_params_for_key(task_dict), data, "mlp-v1", "0.1.0")


def test_cache_key_is_sha256_hex_and_ignores_key_order() -> None:
    params = {"lr": 0.1, "model": {"type": "mlp", "hidden": [64, 32]}, "epochs": 3}
    reordered = {"epochs": 3, "model": {"hidden": [64, 32], "type": "mlp"}, "lr": 0.1}
    key = cache_key("t1", params, DATA, "m1", "c1")
    assert len(key) == 64 and int(key, 16) >= 0
    assert cache_key("t1", reordered, DATA, "m1", "c1") == key


@pytest.mark.parametrize("change", ["param", "nested", "list_order", "data", "task", "model",
                                    "code"])
def test_cache_key_changes_with_every_input(change: str) -> None:
    params: dict[str, Any] = {"lr": 0.1, "model": {"hidden": [64, 32]}}
    args: dict[str, Any] = {"task_identity": "t1", "params": params, "data_hash": DATA,
                            "model_version": "m1", "code_version": "c1"}
    base = cache_key(**args)
    changed = copy.deepcopy(args)
    if change == "param":
        changed["params"]["lr"] = 0.2
    elif change == "nested":
        changed["params"]["model"]["hidden"] = [64, 33]
    elif change == "list_order":
        changed["params"]["model"]["hidden"] = [32, 64]
    elif change == "data":
        changed["data_hash"] = "e" * 64
    elif change == "task":
        changed["task_identity"] = "t2"
    elif change == "model":
        changed["model_version"] = "m2"
    else:
        changed["code_version"] = "c2"
    assert cache_key(**changed) != base


def test_cache_key_rejects_non_json_params_and_empty_identity() -> None:
    with pytest.raises(ConsistencyError, match="params must be JSON data"):
        cache_key("t1", {"x": object()}, DATA, "m", "c")
    with pytest.raises(ConsistencyError, match="data_hash must be a non-empty string"):
        cache_key("t1", {}, "", "m", "c")


def test_result_neutral_fields_do_not_change_the_key() -> None:
    base = _key(_task())
    assert _key(_task(description="second try, same thing")) == base
    assert _key(_task(fault_tolerance__heartbeat_interval_s=0.5,
                      fault_tolerance__node_failure_timeout_s=10.0)) == base
    assert _key(_task(failure__max_failures=7)) == base
    assert _key(_task(training__checkpoint={"every_n_epochs": 5, "keep_last": 9})) == base
    assert _key(_task(resources__cpus_per_worker=4)) == base


def test_result_relevant_fields_change_the_key() -> None:
    base = _key(_task())
    assert _key(_task(resources__num_workers=3)) != base  # world size changes the result
    assert _key(_task(training__learning_rate=0.02)) != base
    assert _key(_task(training__epochs=4)) != base
    assert _key(_task(model__hidden_sizes=[65])) != base
    assert _key(_task(name="other-name")) != base  # the task id seeds the RNGs
    assert _key(_task(), data="e" * 64) != base


def test_task_params_for_key_keeps_what_matters_and_leaves_input_alone() -> None:
    d = _task()
    d["consistency"] = {"deterministic": {"global_seed": 7}, "cache": {"ttl_hours": 1},
                        "sharing": {"enabled": False}, "consensus": {}}
    before = copy.deepcopy(d)
    params = task_params_for_key(d)
    assert d == before
    assert params["resources"] == {"num_workers": 2, "use_gpu": False}
    assert params["consistency"] == {"deterministic": {"global_seed": 7}}
    for dropped in ("name", "id", "description", "failure", "fault_tolerance"):
        assert dropped not in params
    assert "checkpoint" not in params["training"]
    assert params["training"]["learning_rate"] == 0.01
    assert params["model"]["hidden_sizes"] == [64]


def test_task_params_for_key_drops_file_path_but_keeps_columns() -> None:
    d = {"name": "t", "dataset": {"source": "csv", "path": "/a/b.csv", "target": "y"}}
    assert task_params_for_key(d)["dataset"] == {"source": "csv", "target": "y"}


def test_json_checksum_is_order_independent_and_content_sensitive() -> None:
    assert json_checksum({"a": 1, "b": [1, 2]}) == json_checksum({"b": [1, 2], "a": 1})
    assert json_checksum({"a": 1, "b": [1, 2]}) != json_checksum({"a": 1, "b": [2, 1]})
