"""The detector's and the migrator's saved state: a file that is JSON but not that state (a hand
edit, another version) is moved aside to ``<name>.corrupt`` with a warning, and the component
starts fresh, rather than its actor dying in its constructor on every restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cluster.actors import _restore
from cluster.detector import FaultDetector, HealthThresholds
from cluster.migrator import TaskMigrator
from mtp_core.atomic import read_json
from mtp_core.spec import MigrationStrategy

DETECTOR_STATES: list[Any] = [{"nodes": 5}, {"nodes": [{}]}, {"workers": [{"x": 1}]},
                              {"nodes": [{"node_id": 3}]}]
MIGRATOR_STATES: list[Any] = [{"tasks": [{}]}, {"rr_cursor": "x"}, {"tasks": 7},
                              {"migrations": [{"task": 1}]}]


def _write(tmp_path: Path, name: str, state: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(state))
    return path


@pytest.mark.parametrize("state", DETECTOR_STATES, ids=json.dumps)
def test_detector_state_of_the_wrong_shape_is_moved_aside(tmp_path: Path, state: Any) -> None:
    path = _write(tmp_path, "fault_detector.json", state)
    core = FaultDetector(HealthThresholds())
    loaded = _restore(path, "fault detector",
                      lambda: core.load_state_dict(read_json(path) or {}, 0.0))
    if loaded:  # a shape the detector accepts (extra or empty fields) is kept as it is
        assert path.exists()
        return
    assert not path.exists()
    assert json.loads((tmp_path / "fault_detector.json.corrupt").read_text()) == state


@pytest.mark.parametrize("state", MIGRATOR_STATES, ids=json.dumps)
def test_migrator_state_of_the_wrong_shape_is_moved_aside(tmp_path: Path, state: Any) -> None:
    path = _write(tmp_path, "task_migrator.json", state)
    core = TaskMigrator(MigrationStrategy.LOAD_BALANCED)
    loaded = _restore(path, "task migrator", lambda: core.load_state_dict(read_json(path) or {}))
    if loaded:
        assert path.exists()
        return
    assert not path.exists()
    assert json.loads((tmp_path / "task_migrator.json.corrupt").read_text()) == state


def test_at_least_the_reported_shapes_are_refused(tmp_path: Path) -> None:
    refused = 0
    for i, state in enumerate([{"nodes": 5}, {"nodes": [{}]}]):
        path = _write(tmp_path, f"d{i}.json", state)
        core = FaultDetector(HealthThresholds())
        refused += not _restore(path, "fault detector",
                                lambda p=path, c=core: c.load_state_dict(read_json(p) or {}, 0.0))
    for i, state in enumerate([{"tasks": [{}]}, {"rr_cursor": "x"}]):
        path = _write(tmp_path, f"m{i}.json", state)
        mig = TaskMigrator(MigrationStrategy.LOAD_BALANCED)
        refused += not _restore(path, "task migrator",
                                lambda p=path, m=mig: m.load_state_dict(read_json(p) or {}))
    assert refused == 4
