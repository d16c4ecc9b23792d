"""A worker's wiring to the control plane (``WorkerWiring``), driven in-process.

The fault detector and the task migrator are Ray actors; here the detector is a handle that
records what the heartbeat thread sends (the path through the real actors is covered by
tests/integration/test_ray_train.py and test_fault_tolerance.py). Progress goes through the
run's ``progress.jsonl``, which the driver tails (``trainer.api._tail_progress``, tested here
against a writer in another thread).
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import digits_task_dict, wait_for
from trainer import parse_task, prepare
from trainer._collective import SingleProcess
from trainer.launch import WorkerLaunch
from trainer.loop import TrainLoop
from trainer.workers import WorkerWiring

pytestmark = pytest.mark.timeout(120)


class _RecordingDetector:
    """Stands in for the detector actor's handle: ``heartbeat.remote(...)`` records."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.heartbeat = self

    def remote(self, *args: Any) -> None:
        self.calls.append(args)


def _launch(tmp_path: Path, **handles: Any) -> tuple[WorkerLaunch, TrainLoop]:
    d = digits_task_dict(epochs=1)
    d["fault_tolerance"] = {"heartbeat_interval_s": 0.05, "node_failure_timeout_s": 1.0}
    d["dataset"] = {"source": "synthetic", "n_samples": 200, "n_features": 4}
    task = parse_task(d)
    p = prepare(task)
    launch = WorkerLaunch(task=task, data=None, meta=p.meta, seed=p.seed,
                          run_dir=str(tmp_path / "run"), fingerprint=p.fingerprint,
                          task_key="run-a", attempt=2, **handles)
    loop = TrainLoop(task, p.dataset.features, p.dataset.targets, p.meta, p.seed,
                     launch.run_dir, p.fingerprint, SingleProcess())
    return launch, loop


def test_progress_lines_reach_the_file_and_a_file_error_never_stops_training(
        tmp_path: Path) -> None:
    launch, _ = _launch(tmp_path, progress=True)
    launch.layout.root.mkdir(parents=True, exist_ok=True)  # the driver made it
    wiring = WorkerWiring(launch, node_id="node-a")
    wiring.progress({"epoch": 1, "val_loss": 0.5})
    wiring.progress({"epoch": 2, "val_loss": float("nan")})  # a diverged epoch still shows
    lines = launch.layout.progress.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    WorkerWiring(replace(launch, progress=False), node_id="node-a").progress({"epoch": 3})
    assert len(launch.layout.progress.read_text().splitlines()) == 2
    # the run directory is gone (or unwritable): display only, training goes on
    gone = replace(launch, run_dir=str(tmp_path / "missing" / "run"))
    WorkerWiring(gone, node_id="node-a").progress({"epoch": 4})


def test_the_driver_shows_every_epoch_once_in_order_also_the_last(tmp_path: Path) -> None:
    from trainer.api import _tail_progress

    path = tmp_path / "progress.jsonl"
    seen: list[int] = []
    stop = threading.Event()
    tail = threading.Thread(target=_tail_progress, args=(path, lambda r: seen.append(r["epoch"]),
                                                         stop))
    tail.start()
    with open(path, "a") as f:  # a partial line is held until its end is written
        f.write('{"epoch": 1}\n{"epo')
        f.flush()
        wait_for(lambda: seen == [1], timeout_s=10, what="epoch 1")
        f.write('ch": 2}\n')
        f.flush()
        wait_for(lambda: seen == [1, 2], timeout_s=10, what="epoch 2")
        f.write('{"epoch": 3}\n')
    stop.set()  # the run ended right after its last epoch: that one is still shown
    tail.join(timeout=10)
    assert not tail.is_alive() and seen == [1, 2, 3]


def test_heartbeat_runs_inside_and_stops_when_the_run_fails(tmp_path: Path) -> None:
    detector = _RecordingDetector()
    launch, loop = _launch(tmp_path, detector=detector)
    wiring = WorkerWiring(launch, node_id="node-a")
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="worker died"), wiring.attach(loop):
        wait_for(lambda: len(detector.calls) >= 3, timeout_s=10, what="three heartbeats")
        loop.state.global_step = 7
        wait_for(lambda: detector.calls[-1][-1] == 7, timeout_s=10, what="the new step")
        raise RuntimeError("worker died")
    assert detector.calls[0] == ("run-a", 2, 0, "node-a", 0)
    wait_for(lambda: not [t for t in threading.enumerate()
                          if t.name == "mtp-heartbeat" and t.ident not in before],
             timeout_s=10, what="the heartbeat thread to end")
