"""A run directory holds one task's run and is never overwritten, mislabelled or written outside
the storage path: every refusal is one ``mtp: error:`` line naming the run directory (or the
argument), exit code 2, and every file that was there before is byte-identical after.

The refusals happen in the driver before Ray starts, so these tests run ``mtp`` in-process
without Ray, on real run directories trained in-process (``tests.support.runs``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mtp.cli import main
from mtp_core.errors import ConfigError
from tests.support.files import snapshot
from tests.support.runs import finished_run


def _task(name: str = "rundir", epochs: int = 2, **training: Any) -> dict[str, Any]:
    return {"name": name, "model": {"type": "linear"},
            "dataset": {"source": "sklearn", "name": "iris"},
            "training": {"epochs": epochs, "batch_size": 16, **training},
            "resources": {"num_workers": 1},
            "consistency": {"cache": {"enabled": False}, "sharing": {"enabled": False}}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch run of ``_task()`` (checkpoints, model, result.json)."""
    storage = tmp_path_factory.mktemp("trained")
    return finished_run(_task(), storage)


def _cli(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


def _assert_one_line(err: str, *words: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mtp: error: ") or lines[0].startswith("mtp run: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _config(d: Path, task: dict[str, Any]) -> str:
    path = d / "task.json"
    path.write_text(json.dumps(task))
    return str(path)


# --- what the run directory may hold --------------------------------------------------------


def _keep(run: Path) -> None:
    pass


def _drop_checkpoints(run: Path) -> None:
    shutil.rmtree(run / "checkpoints")


def _only_task_json(run: Path) -> None:
    for p in run.iterdir():
        if p.name != "task.json":
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def _only_model(run: Path) -> None:
    for p in run.iterdir():
        if p.name not in ("model.safetensors", "final.json"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def _truncate_result(run: Path) -> None:
    _drop_checkpoints(run)
    data = (run / "result.json").read_bytes()
    (run / "result.json").write_bytes(data[: len(data) // 2])


def _foreign_result(run: Path) -> None:
    _drop_checkpoints(run)
    (run / "result.json").write_text(json.dumps({"hello": "world"}))


def _write_task_json(run: Path, task: dict[str, Any]) -> None:
    from mtp_core.spec import parse_task

    (run / "task.json").write_text(json.dumps(parse_task(task).canonical_dict()))


CASES: list[tuple[str, Callable[[Path], None], dict[str, Any], tuple[str, ...]]] = [
    # a shorter rerun would train nothing and relabel the stored 2-epoch run as 1 epoch
    ("shorter-rerun", _keep, _task(epochs=1), ("trained for 2 epochs", "training.epochs=1")),
    ("shorter-rerun-no-checkpoints", _drop_checkpoints, _task(epochs=1),
     ("trained for 2 epochs", "training.epochs=1")),
    # another configuration of the same task id (the checkpoints are gone, the result is not)
    ("other-settings-result", _drop_checkpoints, _task(learning_rate=0.5),
     ("other settings", "training")),
    ("other-model-result", _drop_checkpoints,
     {**_task(), "model": {"type": "mlp", "hidden_sizes": [8]}}, ("other settings", "model")),
    ("other-data-result", _drop_checkpoints,
     {**_task(), "dataset": {"source": "sklearn", "name": "wine"}}, ("dataset",)),
    # the checkpoints themselves belong to another configuration
    ("other-settings-checkpoints", _keep, _task(learning_rate=0.5), ("different task",)),
    ("truncated-result", _truncate_result, _task(), ("result.json", "cannot be read")),
    ("foreign-result", _foreign_result, _task(), ("result.json",)),
    ("only-model-files", _only_model, _task(), ("unknown run", "model.safetensors")),
]


@pytest.mark.parametrize(("case", "damage", "task", "words"), CASES, ids=[c[0] for c in CASES])
def test_run_directory_of_another_run_is_refused_untouched(
        tmp_path: Path, trained: Path, capsys: pytest.CaptureFixture[str], case: str,
        damage: Callable[[Path], None], task: dict[str, Any], words: tuple[str, ...]) -> None:
    storage = tmp_path / "storage"
    run = storage / "rundir"
    shutil.copytree(trained, run)
    damage(run)
    before = snapshot(storage)
    code, err = _cli(capsys, ["run", _config(tmp_path, task), "--storage-path", str(storage)])
    assert code == 2, err
    _assert_one_line(err, str(run), *words)
    assert snapshot(storage) == before


def test_task_json_of_another_task_is_refused(tmp_path: Path, trained: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    storage = tmp_path / "storage"
    run = storage / "shared-name"
    shutil.copytree(trained, run)
    _only_task_json(run)
    _write_task_json(run, _task(name="someone-else"))
    before = snapshot(storage)
    code, err = _cli(capsys, ["run", _config(tmp_path, _task()), "--storage-path", str(storage),
                              "--run-name", "shared-name"])
    assert code == 2, err
    _assert_one_line(err, "another task ('someone-else')")
    assert snapshot(storage) == before


def test_run_directory_that_is_a_file_is_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "rundir").write_text("not a folder")
    before = snapshot(storage)
    code, err = _cli(capsys, ["run", _config(tmp_path, _task()), "--storage-path", str(storage)])
    assert code == 2, err
    _assert_one_line(err, "is a file")
    assert snapshot(storage) == before


# --- names: a plain folder name, never a path or a platform folder --------------------------

BAD_NAMES = ["../outside", "a/b", "/abs/path", ".", "..", "_cache", "_registry", "_studies",
             "_cluster", "-dash", ".hidden", "x" * 129, "", "sp ace", "a\\b"]


@pytest.mark.parametrize("flag", ["--run-name", "--name"])
@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_are_not_plain_folder_names_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, name: str) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "keep.txt").write_text("user data")
    config = _config(tmp_path, _task())
    before = snapshot(tmp_path)
    command = "run" if flag == "--run-name" else "tune"
    code, err = _cli(capsys, [command, config, "--storage-path", str(storage), f"{flag}={name}"])
    assert code == 2, err
    line = err.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in err, err
    assert f"argument {flag}" in line and repr(name) in line, line
    if name in ("_cache", "_registry", "_studies", "_cluster"):
        assert "reserved" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["../outside", "_cache", "a/b"])
def test_facade_refuses_the_same_names(tmp_path: Path, name: str) -> None:
    from mtp_core.spec import parse_task
    from trainer import train

    with pytest.raises(ConfigError, match="run name"):
        train(parse_task(_task()), storage_path=tmp_path, run_name=name)
    assert list(tmp_path.iterdir()) == []


# --- storage paths ------------------------------------------------------------------------


def _storage_is_file(tmp: Path) -> Path:
    (tmp / "afile").write_text("x")
    return tmp / "afile"


def _storage_under_file(tmp: Path) -> Path:
    (tmp / "afile").write_text("x")
    return tmp / "afile" / "sub"


def _storage_read_only(tmp: Path) -> Path:
    # sysfs refuses new files even to root (a chmod'ed folder would not stop root)
    return Path("/sys/kernel")


STORAGE_CASES = [("is-a-file", _storage_is_file, "is a file"),
                 ("under-a-file", _storage_under_file, "cannot be created"),
                 ("read-only", _storage_read_only, "not writable")]


@pytest.mark.parametrize("command", ["run", "tune"])
@pytest.mark.parametrize(("case", "make", "words"), STORAGE_CASES, ids=[c[0] for c in
                                                                        STORAGE_CASES])
def test_unusable_storage_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           command: str, case: str,
                                           make: Callable[[Path], Path], words: str) -> None:
    storage = make(tmp_path)
    if case == "read-only" and not storage.is_dir():
        pytest.skip("no read-only sysfs on this machine")
    task = _task()
    if command == "tune":
        task["search"] = {"space": {"training.learning_rate": {
            "type": "uniform", "low": 0.01, "high": 0.1}}, "num_samples": 1}
    config = _config(tmp_path, task)
    before = snapshot(tmp_path)
    code, err = _cli(capsys, [command, config, "--storage-path", str(storage)])
    assert code == 2, err
    _assert_one_line(err, "--storage-path", str(storage), words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("length", [1, 60, 103, 104, 128])
def test_derived_run_names_stay_plain_names(length: int) -> None:
    from mtp_core.names import derived_name, name_problem

    task_id = "t" * length
    name = derived_name(task_id, "-verify-20261129-083000-1")
    assert name_problem(name) is None and len(name) <= 128
    assert name.endswith("-verify-20261129-083000-1")
    if len(task_id) + 25 <= 128:
        assert name == task_id + "-verify-20261129-083000-1"
    else:  # two long ids never share a name
        assert derived_name("u" + task_id[1:], "-verify-20261129-083000-1") != name
