"""What every platform job tells Ray (no Ray started): the Ray Train settings that cut a run's
fixed cost, in the job's environment and in the process that calls ``fit()``; an embedded Ray
without a dashboard unless asked; the user's own values win."""

from __future__ import annotations

import os

import pytest

from mtp_core.ray_env import TRAIN_ENV, apply_train_env, own_cluster_options


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


def test_the_users_values_win(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "1.5")
    clean_env.setenv("RAY_worker_niceness", "10")
    env = own_cluster_options(None, embedded=True)["runtime_env"]["env_vars"]
    assert env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "1.5"
    assert env["RAY_worker_niceness"] == "10"
    apply_train_env()
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "1.5"
    assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
