"""Several Ray instances on one machine: a ``ray start`` cluster runs beside the embedded Ray of
``mtp tune``. Every process of a run is pointed at its own cluster, so Ray Train's
placement-group cleaner never has to guess ("Found multiple active Ray instances") and the
study's trials get their resources back when each trial ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, REPO
from tests.support.ray_head import ray_head

pytestmark = pytest.mark.ray


def test_tune_completes_while_another_ray_cluster_runs(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    with ray_head(num_cpus=1):
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["PYTHONPATH"] = str(REPO)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mtp.cli", "tune", str(EXAMPLES / "digits_mlp_tune.yaml"),
             "--set", "search.num_samples=2", "--set", "training.epochs=2",
             "--storage-path", str(storage), "--json"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        try:
            out, err = proc.communicate(timeout=900)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    assert proc.returncode == 0, out[-3000:] + err[-5000:]
    assert "multiple active Ray instances" not in err, err[-5000:]
    assert "Traceback" not in err, err[-5000:]
    study = json.loads(out)
    assert len(study["trials"]) == 2, study["trials"]
    for trial in study["trials"]:  # every trial trained and reported (none waited forever)
        assert trial["iterations"] >= 1 and 0.0 < trial["value"] <= 1.0, trial
    best = next(t for t in study["trials"] if t["trial_id"] == study["best_trial"])
    assert best["value"] == study["best_value"]
