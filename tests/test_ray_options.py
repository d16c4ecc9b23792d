"""What every platform job tells Ray (no Ray started): the Ray Train settings that cut a run's
fixed cost, in the job's environment and in the process that calls ``fit()``; an embedded Ray
without a dashboard unless asked; the user's own values win."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mtp_core.ray_env import (
    TRAIN_ENV,
    WORKER_SETUP_HOOK,
    apply_train_env,
    own_cluster_options,
)
from tests.conftest import REPO


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in (*TRAIN_ENV, "RAY_API_SERVER_ADDRESS", "MTP_RAY_DASHBOARD"):
        monkeypatch.setenv(key, "recorded")  # so that undo restores what was there
        monkeypatch.delenv(key)
    return monkeypatch


def test_an_embedded_ray_has_no_dashboard_normal_niceness_and_the_train_settings(
        clean_env: pytest.MonkeyPatch) -> None:
    opts = own_cluster_options(None, embedded=True)
    assert opts["include_dashboard"] is False
    assert opts["_system_config"] == {"worker_niceness": 0}
    env = opts["runtime_env"]["env_vars"]
    assert env == TRAIN_ENV
    assert opts["runtime_env"]["worker_process_setup_hook"] == WORKER_SETUP_HOOK
    assert env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.2"
    assert env["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"


@pytest.mark.parametrize("how", ["env", "argument"])
def test_a_dashboard_when_asked_is_named_for_the_jobs_processes(
        clean_env: pytest.MonkeyPatch, how: str) -> None:
    if how == "env":
        clean_env.setenv("MTP_RAY_DASHBOARD", "1")
    opts = own_cluster_options(None, embedded=True, dashboard=True if how == "argument" else None)
    assert "include_dashboard" not in opts
    port = opts["dashboard_port"]
    assert opts["runtime_env"]["env_vars"]["RAY_API_SERVER_ADDRESS"] == f"http://127.0.0.1:{port}"


def test_a_joined_cluster_gets_its_address_and_the_train_settings_but_no_system_config(
        clean_env: pytest.MonkeyPatch) -> None:
    opts = own_cluster_options("10.0.0.5:6379", embedded=False)
    assert "_system_config" not in opts and "include_dashboard" not in opts  # Ray refuses them
    assert opts["runtime_env"]["env_vars"] == {**TRAIN_ENV, "RAY_ADDRESS": "10.0.0.5:6379"}
    assert opts["runtime_env"]["worker_process_setup_hook"] == WORKER_SETUP_HOOK


def test_the_users_values_win(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "1.5")
    clean_env.setenv("RAY_worker_niceness", "10")
    env = own_cluster_options(None, embedded=True)["runtime_env"]["env_vars"]
    assert env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "1.5"
    assert env["RAY_worker_niceness"] == "10"
    apply_train_env()
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "1.5"
    assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"


# A SystemExit raised inside a weakref callback (where Ray's SIGTERM handler raises it when
# the signal lands during garbage collection), then an ordinary error in one.
_UNRAISABLE = """
import sys, weakref
{setup}
class Box: pass
def stop(_ref): raise SystemExit(1)
def fail(_ref): raise ValueError("a real finalizer bug")
a, b = Box(), Box()
ra, rb = weakref.ref(a, stop), weakref.ref(b, fail)
del a, b
print("still running")
"""


@pytest.mark.parametrize("hooked", [False, True])
def test_a_stopping_worker_prints_no_traceback_but_real_finalizer_errors_still_show(
        hooked: bool) -> None:
    module, func = WORKER_SETUP_HOOK.rsplit(".", 1)
    setup = f"import {module} as m; m.{func}()" if hooked else ""
    proc = subprocess.run([sys.executable, "-c", _UNRAISABLE.format(setup=setup)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "still running\n", proc
    assert "ValueError: a real finalizer bug" in proc.stderr
    assert ("SystemExit" in proc.stderr) is not hooked, proc.stderr


@pytest.mark.ray
def test_every_worker_of_a_platform_job_runs_the_setup_hook(ray_session: None) -> None:
    import ray

    @ray.remote(num_cpus=0)
    class Probe:
        def hook(self) -> str:
            return sys.unraisablehook.__qualname__

    probe = Probe.remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(probe.hook.remote(), timeout=120).startswith("quiet_worker_stop.")
    finally:
        ray.kill(probe)
