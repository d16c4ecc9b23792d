"""A task as MLflow parameters: dotted keys, JSON leaves, values and keys within the limits."""

from __future__ import annotations

import hashlib

from tracking.params import MAX_KEY, MAX_VALUE, flatten_params, param_value


def test_a_nested_task_flattens_to_dotted_keys_with_json_leaves() -> None:
    flat = flatten_params({"name": "t", "training": {"epochs": 2, "lr": 0.5},
                           "model": {"hidden_sizes": [64, 32], "dropout": None},
                           "flags": {"on": True}, "empty": {}})
    assert flat == {"name": "t", "training.epochs": "2", "training.lr": "0.5",
                    "model.hidden_sizes": "[64, 32]", "model.dropout": "null",
                    "flags.on": "true", "empty": "{}"}


def test_a_long_value_is_cut_to_the_limit_and_names_the_whole_values_hash() -> None:
    text = "x" * 10_000
    cut = param_value(text)
    assert len(cut) == MAX_VALUE
    assert cut.startswith("x" * 5000)
    assert cut.endswith(f"[10000 chars, sha256 {hashlib.sha256(text.encode()).hexdigest()}]")
    assert param_value("y" * MAX_VALUE) == "y" * MAX_VALUE  # at the limit: as is
    assert param_value(text) != param_value(text[:-1] + "y")


def test_keys_mlflow_refuses_are_made_acceptable() -> None:
    flat = flatten_params({"model": {"kwargs": {"a*b": 1, "c" * 300: 2}}})
    assert flat["model.kwargs.a_b"] == "1"
    long_key = next(k for k in flat if k != "model.kwargs.a_b")
    assert len(long_key) == MAX_KEY and "~" in long_key
