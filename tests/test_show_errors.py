"""``mtp show`` on anything that is not a stored run: exit 2, one line naming the folder or
file, no traceback, nothing changed. A stored run (also a diverged one) reads back."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mtp.cli import main
from tests.support.files import snapshot


def _result(d: Path, data: bytes) -> Path:
    run = d / "run"
    run.mkdir()
    (run / "result.json").write_bytes(data)
    return run


def _missing_folder(d: Path) -> Path:
    return d / "nowhere"


def _empty_folder(d: Path) -> Path:
    (d / "run").mkdir()
    return d / "run"


def _result_is_a_folder(d: Path) -> Path:
    (d / "run" / "result.json").mkdir(parents=True)
    return d / "run"


def _fifo(d: Path) -> Path:
    (d / "run").mkdir()
    os.mkfifo(d / "run" / "result.json")  # reading it would block forever
    return d / "run"


VALID_START = json.dumps({"task_id": "x", "run_name": "x"}).encode()

CASES: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = [
    ("missing-folder", _missing_folder, ("nowhere", "no result.json")),
    ("empty-folder", _empty_folder, ("no result.json",)),
    ("result-is-a-folder", _result_is_a_folder, ("result.json",)),
    ("result-is-a-fifo", _fifo, ("result.json",)),
    ("empty-file", lambda d: _result(d, b""), ("result.json", "not valid JSON")),
    ("whitespace", lambda d: _result(d, b"  \n\t"), ("result.json", "not valid JSON")),
    ("truncated", lambda d: _result(d, VALID_START[:-9]), ("result.json", "not valid JSON")),
    ("binary", lambda d: _result(d, bytes(range(256))), ("result.json",)),
    ("utf16", lambda d: _result(d, '{"a": 1}'.encode("utf-16")), ("result.json",)),
    ("null", lambda d: _result(d, b"null"), ("result.json", "not a training result")),
    ("list", lambda d: _result(d, b"[1, 2]"), ("result.json", "not a training result")),
    ("number", lambda d: _result(d, b"42"), ("result.json", "not a training result")),
    ("foreign-object", lambda d: _result(d, json.dumps({"hello": 1}).encode()),
     ("result.json", "not a training result")),
    ("partial-result", lambda d: _result(d, VALID_START), ("result.json", "training result")),
    ("nan-literal", lambda d: _result(d, b'{"task_id": NaN}'), ("result.json",)),
]


@pytest.mark.parametrize(("case", "make", "words"), CASES, ids=[c[0] for c in CASES])
def test_show_on_what_is_not_a_run_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str,
        make: Callable[[Path], Path], words: tuple[str, ...]) -> None:
    target = make(tmp_path)
    before = snapshot(tmp_path) if case != "result-is-a-fifo" else None
    code = main(["show", str(target)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("mtp: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])
    if before is not None:
        assert snapshot(tmp_path) == before
