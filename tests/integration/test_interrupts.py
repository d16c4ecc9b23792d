"""Runs that end early end clearly, through the real ``mtp`` command on Ray:

- a diverged run (learning rate 10, SGD with momentum) exits 3 with one line naming the epoch
  and the metric; it is stored, reads back with ``mtp show`` and is never cached;
- Ctrl-C (SIGINT to the process group) exits 130 and SIGTERM 143, each with
  ``mtp: interrupted`` and the command that resumes; the resumed run's weights are
  bit-identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consistency.cache import ResultCache
from mtp.cli import main
from mtp_core.spec import load_raw_config, parse_task
from tests.conftest import REPO
from tests.golden import reference as golden
from tests.support.wait import wait_for
from trainer.api import prepare
from trainer.result import load_result
from trainer.reuse import cache_dir


def _write(d: Path, task: dict[str, Any]) -> str:
    path = d / f"{task['name']}.json"
    path.write_text(json.dumps(task))
    return str(path)


def test_diverged_run_exits_3_is_stored_and_never_cached(
        tmp_path: Path, ray_session: None, capsys: pytest.CaptureFixture[str]) -> None:
    task = {"name": "diverges", "model": {"type": "mlp", "hidden_sizes": [32]},
            "dataset": {"source": "sklearn", "name": "digits"},
            "training": {"epochs": 3, "batch_size": 32, "learning_rate": 10,
                         "optimizer": "sgd"},
            "hyperparameters": {"momentum": 0.9},
            "resources": {"num_workers": 1},
            "consistency": {"sharing": {"enabled": False}}}  # the local cache stays on
    storage = tmp_path / "storage"
    code = main(["run", _write(tmp_path, task), "--storage-path", str(storage), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    ours = [line for line in err if line.startswith("mtp")]
    assert len(ours) == 1 and ours[0].startswith("mtp: training diverged: "), err
    assert "train_loss is nan at epoch 1" in ours[0] and "learning_rate=10" in ours[0]
    run = storage / "diverges"
    result = load_result(run)
    assert result.diverged is not None and result.diverged.epoch == 1
    assert result.epochs_completed == 1
    spec = parse_task(task)
    assert ResultCache.from_spec(spec.consistency.cache, cache_dir(storage)).get(
        prepare(spec).cache_key) is None
    assert main(["show", str(run)]) == 0
    assert "DIVERGED: train_loss is nan at epoch 1" in capsys.readouterr().out


def _long_task() -> dict[str, Any]:
    """Epochs of about a second each on one worker: a signal lands mid-run (the file says
    more; its uninterrupted weights are golden)."""
    task: dict[str, Any] = load_raw_config(REPO / golden.INTERRUPTED.config)
    return task


def _mtp(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-m", "mtp.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a shell's job


def _interrupt_after_first_epoch(tmp_path: Path, sig: signal.Signals, config: str,
                                 storage: Path) -> tuple[int, str]:
    proc = _mtp(["run", config, "--storage-path", str(storage)], tmp_path)
    manifests = storage / "interrupted" / "checkpoints"
    try:
        wait_for(lambda: any(manifests.glob("ckpt-*/manifest.json")) or proc.poll() is not None,
                 timeout_s=240, what="the first checkpoint")
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, sig)  # the whole group, as Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_exits_with_the_signal_and_resumes_bit_identically(
        tmp_path: Path, sig: signal.Signals) -> None:
    config = _write(tmp_path, _long_task())
    storage = tmp_path / "storage"
    code, err = _interrupt_after_first_epoch(tmp_path, sig, config, storage)
    assert code == 128 + sig, err
    ours = [line for line in err.splitlines() if line.startswith("mtp")]
    assert ours == [f"mtp: interrupted ({sig.name}); rerun `mtp run {config} --storage-path "
                    f"{storage}` to resume from the latest checkpoint"], err
    assert "Traceback" not in err and "SIGTERM received" not in err, err
    if sig is signal.SIGINT:
        return  # one resume check is enough (below, after SIGTERM)
    resumed = subprocess.run([sys.executable, "-m", "mtp.cli", "run", config, "--storage-path",
                              str(storage), "--json", "-q"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=300, check=False,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["resumed_from_epoch"] is not None and result["resumed_from_epoch"] >= 1
    assert result["weights_hash"] == golden.current(golden.INTERRUPTED)["weights_hash"]
