"""The command line pays only for what it uses: a cached rerun, ``mtp show`` and ``--help``
import neither torch nor Ray (nor scikit-learn, once a built-in dataset was read), and a cached
rerun answers without starting Ray. Each command runs in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from mtp_core.spec import parse_task
from tests.conftest import REPO, iris_task_dict
from trainer.api import Executor, train

HEAVY = ("torch", "ray", "sklearn", "scipy")

_PROBE = """
import json, sys
from mtp.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))


def _run(*args: str) -> tuple[int, list[str], str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    probe = json.loads(proc.stderr.strip().splitlines()[-1])
    return probe["code"], probe["heavy"], proc.stdout


def test_a_cached_rerun_show_and_help_load_neither_torch_nor_ray(tmp_path: Path) -> None:
    raw = iris_task_dict("cached-iris")
    raw["consistency"] = {"sharing": {"enabled": False}}  # the local cache only
    cfg = tmp_path / "task.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    trained = train(parse_task(raw), storage_path=tmp_path, executor=Executor.IN_PROCESS)
    assert trained.cache_hit is None and trained.timings.phases["first_epoch"] > 0

    code, heavy, out = _run("run", str(cfg), "--storage-path", str(tmp_path))
    assert code == 0, out
    assert "reused from the local result cache" in out
    assert trained.weights_hash[:16] in out
    assert heavy == [], f"a cached rerun imported {heavy}"

    code, heavy, out = _run("show", trained.run_dir)
    assert code == 0 and trained.weights_hash in out
    assert heavy == [], f"mtp show imported {heavy}"

    code, heavy, out = _run("--help")
    assert code == 0 and "usage: mtp" in out
    assert heavy == [], f"mtp --help imported {heavy}"
