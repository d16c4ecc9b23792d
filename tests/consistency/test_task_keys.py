"""Cache keys of real tasks (no Ray): one changed data byte or parameter misses; order does not."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import digits_task_dict
from trainer import parse_task, prepare


def _csv_task(path: Path) -> dict:
    return {"name": "csv-task", "model": {"type": "logistic_regression"},
            "dataset": {"source": "csv", "path": str(path), "target": "y"},
            "resources": {"num_workers": 1}}


def test_one_changed_data_byte_changes_the_key(tmp_path: Path) -> None:
    rows = "".join(f"{i}.0,{i % 3}.5,{i % 2}\n" for i in range(40))
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("x1,x2,y\n" + rows)
    b.write_text("x1,x2,y\n" + rows.replace("7.0,1.5", "7.0,1.6", 1))  # one byte
    pa, pb = prepare(parse_task(_csv_task(a))), prepare(parse_task(_csv_task(b)))
    assert pa.data_hash != pb.data_hash and pa.cache_key != pb.cache_key
    same = prepare(parse_task(_csv_task(a)))
    assert same.cache_key == pa.cache_key


def test_one_changed_parameter_changes_the_key_and_key_order_does_not() -> None:
    base = digits_task_dict()
    key = prepare(parse_task(base)).cache_key
    tweaked = {**base, "training": {**base["training"], "learning_rate": 0.0031}}
    assert prepare(parse_task(tweaked)).cache_key != key
    reordered = yaml.safe_load(yaml.safe_dump(dict(reversed(list(base.items()))),
                                              sort_keys=False))
    assert list(reordered) != list(base)
    assert prepare(parse_task(reordered)).cache_key == key
    # settings that do not change the trained weights keep the key
    calm = {**base, "description": "again", "fault_tolerance": {"heartbeat_interval_s": 0.5,
                                                                "node_failure_timeout_s": 3}}
    assert prepare(parse_task(calm)).cache_key == key
