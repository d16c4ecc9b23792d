"""The real job path: `ray start --head`, then `ray job submit` of the example driver script.

The job trains the golden reference ``digits_mlp_ws2`` (tests/golden/), so its numbers are
checked against the golden file too: the job path trains exactly what ``trainer.train`` does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.golden.reference import WS2, Numerics, check
from tests.support.ray_head import RAY, ray_head
from tests.support.wait import wait_for
from trainer import load_result

pytestmark = pytest.mark.ray

@pytest.fixture
def head_node() -> Iterator[tuple[str, dict[str, str]]]:
    with ray_head() as head:
        yield head.dashboard_url, head.env


def test_ray_job_submit_runs_the_driver_script(
    head_node: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = head_node
    cmd = [RAY, "job", "submit", "--address", url, "--working-dir", str(REPO), "--",
           sys.executable, "scripts/train_driver.py", WS2.config,
           *(a for o in WS2.overrides for a in ("--set", o)), "--storage-path", str(tmp_path)]

    def submit() -> subprocess.CompletedProcess[str] | None:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
        # the dashboard answers a few seconds before its job agent accepts submissions
        return None if "No available agent" in p.stderr else p

    proc = wait_for(submit, 90, interval_s=2, what="the job agent to accept the job")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout + proc.stderr
    result = load_result(tmp_path / "digits-mlp")
    assert result.epochs_completed == 3 and result.world_size == 2
    assert f"weights sha256: {result.weights_hash}" in proc.stdout
    check(WS2, Numerics.from_result(result))
