"""The registry entry of a trained result (one builder for publish and verify) and the
cache-hit kinds a reused result carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consistency.store import RegistryEntry, RegistryStore
from trainer.errors import ResultFileError
from trainer.result import CacheHit, Timings, TrainingResult, load_result
from trainer.reuse import registry_entry

KEY = "a" * 64


def _result(tmp_path: Path, **update: Any) -> TrainingResult:
    fields: dict[str, Any] = {
        "task_id": "t1", "task_name": "t1", "run_name": "t1", "run_dir": str(tmp_path / "t1"),
        "data_hash": "d" * 64, "task_kind": "classification", "num_classes": 3,
        "sample_shape": [4], "seed": 7, "world_size": 1, "num_parameters": 15,
        "epochs_completed": 1, "stopped_early": False, "monitor_metric": "val_accuracy",
        "monitor_mode": "max", "best_epoch": 1, "best_metrics": {"val_accuracy": 0.9},
        "final_metrics": {"val_accuracy": 0.9}, "history": [], "weights_hash": "w" * 64,
        "model_path": str(tmp_path / "t1" / "model.safetensors"),
        "checkpoint_dir": str(tmp_path / "t1" / "checkpoints"), "best_checkpoint": None,
        "latest_checkpoint": None, "cache_key": KEY,
        "timings": Timings(wall_time_s=1.0, startup_s=0.5, train_time_s=0.4,
                           samples_per_s=100.0, steady_samples_per_s=100.0),
        "versions": {"mtp": "0"}, "created_at": "2026-01-01T00:00:00Z", "task": {"name": "t1"},
    }
    return TrainingResult(**{**fields, **update})


def test_registry_entry_is_what_the_store_registers(tmp_path: Path) -> None:
    reused = _result(tmp_path, cache_hit=CacheHit.LOCAL)
    entry = registry_entry(KEY, reused, node_id="n1", ttl_s=60.0, now=1000.0)
    assert isinstance(entry, RegistryEntry)
    assert (entry.key, entry.task_id, entry.node_id) == (KEY, "t1", "n1")
    assert (entry.shared_at, entry.expires_at) == (1000.0, 1060.0)
    assert entry.model_path == reused.model_path and entry.run_dir == reused.run_dir
    # the shared copy is the result as trained: no cache-hit mark of the driver that had it
    assert entry.result["cache_hit"] is None
    assert TrainingResult.model_validate(entry.result) == reused.model_copy(
        update={"cache_hit": None})
    from database import open_database

    store = RegistryStore(open_database(tmp_path), clock=lambda: 1000.0)
    stored = store.register(KEY, entry)
    assert stored == entry.model_dump(mode="json")
    assert store.lookup(KEY, now=1059.0) is not None and store.lookup(KEY, now=1061.0) is None


def test_cache_hit_kinds_keep_their_stored_values(tmp_path: Path) -> None:
    for kind in ("local", "registry", "waited"):
        raw = json.loads(_result(tmp_path).model_dump_json())
        raw["cache_hit"] = kind  # as stored by earlier versions
        loaded = TrainingResult.model_validate(raw)
        assert loaded.cache_hit is CacheHit(kind) and loaded.cache_hit.source
        assert json.loads(loaded.model_dump_json())["cache_hit"] == kind
    raw["cache_hit"] = "remote"
    with pytest.raises(ValueError, match="cache_hit"):
        TrainingResult.model_validate(raw)


def test_load_result_names_the_file_for_every_kind_of_bad_run_dir(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match="no result.json in .*nowhere"):
        load_result(tmp_path / "nowhere")
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ResultFileError, match="result.json' is not a training result: not "
                                              "valid JSON"):
        load_result(run)
    raw = json.loads(_result(tmp_path).model_dump_json())
    raw["seed"] = "seven"
    (run / "result.json").write_text(json.dumps(raw))
    with pytest.raises(ResultFileError, match=r"invalid training result '.*result.json': "
                                              r"seed: got \"seven\""):
        load_result(run)
    (run / "result.json").write_text("[]")
    with pytest.raises(ResultFileError, match="not a training result: expected a JSON "
                                              "object, got list"):
        load_result(run)
    _result(tmp_path).save(run)
    assert load_result(run).task_id == "t1"
