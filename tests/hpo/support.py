"""What the study hardening tests share: a tiny study config, an in-process ``mtp`` run that
returns its exit code and output, and a storage folder whose files must survive untouched."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from mtp.cli import main
from tests.conftest import NO_REUSE
from tests.support.files import snapshot


def iris_study(**search: Any) -> dict[str, Any]:
    """A study over a 1-epoch, 1-worker iris task: the smallest real training trial."""
    return {
        "name": "iris-study",
        "model": {"type": "mlp", "hidden_sizes": [8]},
        "dataset": {"source": "sklearn", "name": "iris"},
        "training": {"epochs": 1, "batch_size": 16},
        "resources": {"num_workers": 1, "cpus_per_worker": 1},
        "consistency": copy.deepcopy(NO_REUSE),
        "search": {"space": {"training.learning_rate": {"type": "loguniform", "low": 1e-3,
                                                        "high": 1e-1}},
                   "searcher": "random", "metric": "val_accuracy", "num_samples": 2,
                   "max_concurrent_trials": 1, **search},
    }


def write_config(d: Path, raw: Any, name: str = "study.json") -> str:
    path = d / name
    path.write_text(json.dumps(raw))
    return str(path)


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``mtp`` in this process: (exit code, stdout, stderr); argparse's exit counts too."""
    try:
        code = main(argv)
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def seeded_storage(root: Path) -> Path:
    """A storage folder that already holds a file of its own and another study's files."""
    storage = root / "storage"
    other = storage / "_studies" / "other-study"
    (other / "trainable_0000abcd_1_x=0.5").mkdir(parents=True)
    (storage / "keep.txt").write_bytes(b"not the study's\n")
    (other / "mtp-study.json").write_text('{"search": {"metric": "loss"}, "task": null}')
    (other / "study.json").write_text('{"name": "other-study"}')
    (other / "trainable_0000abcd_1_x=0.5" / "result.json").write_bytes(b'{"loss": 0.5}\n')
    return storage


def assert_still_there(before: dict[str, bytes], root: Path) -> None:
    """Every file of ``before`` is still under ``root`` with the same bytes."""
    after = snapshot(root)
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    assert not changed, f"files changed or gone: {changed}"


def assert_one_line(code: int, expected: int, out: str, err: str, *needles: str) -> str:
    """The command exited ``expected`` with one ``mtp:`` error line naming ``needles``, and no
    traceback anywhere; returns that line."""
    assert code == expected, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = [line for line in err.splitlines() if line.startswith("mtp")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
