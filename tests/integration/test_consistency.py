"""Result reuse on a local Ray: the local cache, the registry actor, one training for two
identical submissions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from mtp.cli import main
from tests.conftest import REPO, digits_task_dict, ensure_local_ray
from tests.support.wait import wait_for
from trainer import TrainingResult, parse_task
from trainer import train as mtp_train

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

REUSE = {"cache": {"enabled": True}, "sharing": {"enabled": True}}


def _task(name: str, **training: Any) -> dict[str, Any]:
    return {**digits_task_dict(epochs=3, **training), "name": name, "consistency": REUSE}


def _starts(run_dir: Path) -> int:
    events = run_dir / "events.jsonl"
    lines = events.read_text().splitlines() if events.is_file() else []
    return sum(1 for line in lines if json.loads(line)["event"] == "start")


def test_second_identical_run_is_served_from_the_local_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = parse_task(_task("reuse-local"))
    first = mtp_train(task, storage_path=tmp_path)
    assert first.cache_hit is None and first.cache_key
    second = mtp_train(task, storage_path=tmp_path)
    assert second.cache_hit == "local"
    assert second.weights_hash == first.weights_hash and second.run_dir == first.run_dir
    assert _starts(Path(first.run_dir)) == 1, "the cache hit started training workers"
    # the CLI says so, and --no-cache trains anyway (resuming the finished run: no new epochs)
    cfg = tmp_path / "task.json"
    cfg.write_text(json.dumps(_task("reuse-local")))
    assert main(["run", str(cfg), "--storage-path", str(tmp_path), "--quiet"]) == 0
    assert "reused from the local result cache: no training was started" in capsys.readouterr().out
    assert _starts(Path(first.run_dir)) == 1


def test_registry_serves_other_storage_survives_its_restart_and_a_new_driver(
    tmp_path: Path
) -> None:
    import ray

    task = parse_task(_task("reuse-registry"))
    first = mtp_train(task, storage_path=tmp_path / "a")
    registry = ray.get_actor("mtp-result-registry", namespace="mtp")
    ray.kill(registry, no_restart=False)  # it restarts and reloads its file
    wait_for(lambda: _pings(registry), 60, what="the registry actor to come back")
    other = mtp_train(task, storage_path=tmp_path / "b")  # empty local cache there
    assert other.cache_hit == "registry" and other.weights_hash == first.weights_hash
    assert not (tmp_path / "b" / "reuse-registry" / "events.jsonl").exists()

    # a new driver process on the same cluster, with a third storage path
    code = (
        "import json, ray\n"
        "from trainer import parse_task, train\n"
        f"ray.init(address={ray.get_runtime_context().gcs_address!r}, namespace='mtp',"
        " logging_level='ERROR')\n"
        f"r = train(parse_task(json.loads({json.dumps(json.dumps(_task('reuse-registry')))})),"
        f" storage_path={str(tmp_path / 'c')!r})\n"
        "print('RESULT', r.cache_hit, r.weights_hash)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert f"RESULT registry {first.weights_hash}" in out.stdout, out.stderr[-3000:]

    stats = ray.get(registry.stats.remote())
    assert stats["entries"] >= 1 and stats["registry_hits"] >= 1


def _pings(handle: Any) -> bool:
    import ray

    try:
        return bool(ray.get(handle.ping.remote(), timeout=5))
    except Exception:  # noqa: BLE001 - restarting
        return False


def test_two_concurrent_identical_submissions_train_once(tmp_path: Path) -> None:
    ensure_local_ray()
    task = parse_task(_task("reuse-concurrent", batch_size=16))
    results: list[TrainingResult] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            results.append(mtp_train(task, storage_path=tmp_path))
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            errors.append(err)

    threads = [threading.Thread(target=go, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert len(results) == 2
    assert sorted(str(r.cache_hit) for r in results) in (["None", "waited"],
                                                          ["None", "registry"],
                                                          ["None", "local"])
    assert results[0].weights_hash == results[1].weights_hash
    assert _starts(tmp_path / "reuse-concurrent") == 1, "the task was trained twice"


def test_registry_stats_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    mtp_train(parse_task(_task("reuse-stats")), storage_path=tmp_path)
    assert main(["registry", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] >= 1 and stats["shared"] >= 1
    assert 0.0 <= stats["hit_rate"] <= 1.0
