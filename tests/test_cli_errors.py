"""Every ``mtp`` subcommand, run as a real process with a bad argument: exit code 2 for input
errors (1 for a failed study), one line on stderr naming what is wrong, and no traceback."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtp.cli import build_parser
from tests.conftest import REPO, iris_task_dict

BAD_ADDRESS = "127.0.0.1:1"  # nothing listens on port 1: refused at once


def _mtp(args: list[str], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "mtp.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def _task() -> dict[str, Any]:
    return iris_task_dict("cli-errors")


def _write(d: Path, name: str, text: str) -> str:
    (d / name).write_text(text)
    return str(d / name)


def _write_bytes(d: Path, name: str, data: bytes) -> str:
    (d / name).write_bytes(data)
    return str(d / name)


def _ok(d: Path) -> str:
    return _write(d, "ok.json", json.dumps(_task()))


def _inf_yaml(d: Path) -> str:
    # YAML's own spelling of infinity, as a user would write it
    text = yaml.safe_dump(_task()).replace("  epochs: 1\n",
                                           "  epochs: 1\n  checkpoint:\n    every_minutes: .inf\n")
    assert "every_minutes: .inf" in text
    return _write(d, "inf.yaml", text)


def _bad_field(d: Path) -> str:
    task = _task()
    task["training"]["epochz"] = 3
    return _write(d, "typo.json", json.dumps(task))


def _study(d: Path) -> str:
    task = _task()
    task["search"] = {"space": {"training.learning_rate": {"type": "uniform", "low": 0.001,
                                                           "high": 0.1}},
                      "num_samples": 0}
    return _write(d, "study.json", json.dumps(task))


def _run_dir(d: Path, result_json: str) -> str:
    run = d / "run"
    run.mkdir()
    (run / "result.json").write_text(result_json)
    return str(run)


Args = Callable[[Path], list[str]]

# (id, argv builder, exit code, words the error line must contain)
CASES: list[tuple[str, Args, int, list[str]]] = [
    ("run-missing-config", lambda d: ["run", str(d / "nope.yaml")], 2,
     ["nope.yaml", "does not exist"]),
    ("run-bad-field", lambda d: ["run", _bad_field(d)], 2,
     ["training.epochz", "unknown field"]),
    ("run-inf", lambda d: ["run", _inf_yaml(d), "--storage-path", str(d)], 2,
     ["training.checkpoint.every_minutes", "got inf", "allowed: a finite number >= 0"]),
    ("run-set-nan", lambda d: ["run", _ok(d), "--set", "training.learning_rate=nan"], 2,
     ["training.learning_rate", "nan", "allowed: a finite number > 0 and <= 10"]),
    ("run-bad-set", lambda d: ["run", _ok(d), "--set", "training.epochs"], 2,
     ["--set 'training.epochs'", "expected key.sub=value"]),
    ("run-unknown-flag", lambda d: ["run", _ok(d), "--bogus"], 2,
     ["mtp run", "unrecognized arguments: --bogus"]),
    ("run-bad-run-name", lambda d: ["run", _ok(d), "--run-name", "../elsewhere"], 2,
     ["mtp run", "--run-name", "'../elsewhere' is a path"]),
    ("run-bad-address", lambda d: ["run", _ok(d), "--address", BAD_ADDRESS, "--storage-path",
                                   str(d)], 2, [BAD_ADDRESS, "cannot connect"]),
    ("show-no-run", lambda d: ["show", str(d / "nowhere")], 2,
     ["nowhere", "no result.json"]),
    ("show-corrupt-json", lambda d: ["show", _run_dir(d, "{not json")], 2,
     ["result.json", "not valid JSON"]),
    ("show-not-a-result", lambda d: ["show", _run_dir(d, json.dumps({"task_id": "x"}))], 2,
     ["result.json", "not a training result", "missing or invalid"]),
    ("show-missing-argument", lambda d: ["show"], 2,
     ["mtp show", "required", "run_dir"]),
    ("validate-bad-value", lambda d: ["validate", _ok(d), "--set", "training.epochs=0"], 2,
     ["training.epochs", "got 0", "greater than or equal to 1"]),
    ("validate-not-utf8", lambda d: ["validate", _write_bytes(d, "bin.yaml", b"\xff\xfe")], 2,
     ["bin.yaml", "cannot be read", "utf-8"]),
    ("validate-not-yaml", lambda d: ["validate", _write(d, "t.toml", "x = 1")], 2,
     ["t.toml", "unknown extension"]),
    ("cluster-status-bad-address", lambda d: ["cluster", "status", "--address", BAD_ADDRESS],
     2, [BAD_ADDRESS, "cannot connect"]),
    ("cluster-status-no-address", lambda d: ["cluster", "status"], 2,
     ["cluster status", "--address"]),
    ("cluster-missing-subcommand", lambda d: ["cluster"], 2, ["mtp cluster", "status"]),
    ("cluster-start-no-address", lambda d: ["cluster", "start"], 2,
     ["cluster start", "--address"]),
    ("cluster-stop-bad-address", lambda d: ["cluster", "stop", "--address", BAD_ADDRESS], 2,
     [BAD_ADDRESS, "cannot connect"]),
    ("submit-bad-field", lambda d: ["submit", _bad_field(d), "--address", BAD_ADDRESS], 2,
     ["training.epochz", "unknown field"]),
    ("submit-priority-out-of-range", lambda d: ["submit", _ok(d), "--priority", "100"], 2,
     ["mtp submit", "--priority", "priority 100 is out of range", "1 to 99"]),
    ("submit-no-address", lambda d: ["submit", _ok(d)], 2, ["mtp submit needs a cluster"]),
    ("submit-bad-scheduling", lambda d: ["submit", _ok(d), "--set",
                                         "scheduling.max_attempts=0"], 2,
     ["scheduling.max_attempts", "got 0"]),
    ("submit-bad-memory", lambda d: ["submit", _ok(d), "--set",
                                     "resources.memory_per_worker=lots"], 2,
     ["resources.memory_per_worker", "'lots' is not a size"]),
    ("queue-bad-address", lambda d: ["queue", "--address", BAD_ADDRESS], 2,
     [BAD_ADDRESS, "cannot connect"]),
    ("status-not-an-id", lambda d: ["status", "../x"], 2,
     ["mtp status", "'../x' is not a task id"]),
    ("logs-no-address", lambda d: ["logs", "t-0123456789"], 2, ["mtp logs needs a cluster"]),
    ("cancel-missing-id", lambda d: ["cancel"], 2, ["mtp cancel", "required", "id"]),
    ("priority-not-a-number", lambda d: ["priority", "t-0123456789", "high"], 2,
     ["mtp priority", "expected a whole number, got 'high'"]),
    ("serve-no-token", lambda d: ["serve"], 2, ["mtp serve needs a token", "MTP_API_TOKEN"]),
    ("serve-bad-port", lambda d: ["serve", "--port", "70000"], 2,
     ["mtp serve", "port 70000 is out of range"]),
    ("serve-short-token-file", lambda d: ["serve", "--token-file", _write(d, "tok", "short\n")],
     2, ["--token-file", "the token has 5 characters", "at least 16"]),
    ("queue-bad-limit", lambda d: ["queue", "--all", "--limit", "0"], 2,
     ["mtp queue", "--limit", "must be at least 1, got 0"]),
    ("verify-bad-replicas", lambda d: ["verify", _ok(d), "--replicas", "0"], 2,
     ["mtp verify", "--replicas", "at least 1, got 0"]),
    ("verify-not-a-number", lambda d: ["verify", _ok(d), "--replicas", "two"], 2,
     ["mtp verify", "--replicas", "'two'"]),
    ("verify-bad-address", lambda d: ["verify", _ok(d), "--address", BAD_ADDRESS,
                                      "--storage-path", str(d)], 2, [BAD_ADDRESS]),
    ("tune-no-search-section", lambda d: ["tune", _ok(d), "--storage-path", str(d)], 2,
     ["ok.json", "no search section"]),
    ("tune-not-a-mapping", lambda d: ["tune", _write(d, "list.yaml", "- 1\n")], 2,
     ["list.yaml", "expected a mapping", "got list"]),
    ("tune-bad-search-field", lambda d: ["tune", _study(d), "--storage-path", str(d)], 2,
     ["search.num_samples", "got 0"]),
    ("tune-bad-address", lambda d: ["tune", _study(d), "--set", "search.num_samples=2",
                                    "--address", BAD_ADDRESS], 2, [BAD_ADDRESS]),
    ("registry-stats-bad-address", lambda d: ["registry", "stats", "--address", BAD_ADDRESS],
     2, [BAD_ADDRESS, "cannot connect"]),
    ("registry-stats-unknown-flag", lambda d: ["registry", "stats", "--verbose-ish"], 2,
     ["mtp registry stats", "--verbose-ish"]),
    ("predict-no-run", lambda d: ["predict", str(d / "nowhere"), "--input", _ok(d),
                                  "--output", str(d / "out.parquet")], 2,
     ["nowhere", "no result.json"]),
    ("predict-no-input", lambda d: ["predict", str(d)], 2,
     ["mtp predict", "required", "--input"]),
    ("experiments-show-unknown", lambda d: ["experiments", "show", "nope", "--storage-path",
                                            str(d)], 2, ["experiment 'nope' not found"]),
    ("experiments-list-bad-uri", lambda d: ["experiments", "list", "--tracking-uri",
                                            "foo://x"], 2,
     ["--tracking-uri='foo://x'", "scheme 'foo'"]),
    ("models-list-bad-uri", lambda d: ["models", "list", "--tracking-uri", "foo://x"], 2,
     ["--tracking-uri='foo://x'", "scheme 'foo'"]),
    ("models-show-unknown", lambda d: ["models", "show", "nope@1", "--storage-path", str(d)],
     2, ["no registered model 'nope'"]),
    ("models-register-no-run", lambda d: ["models", "register", str(d / "nowhere"), "--name",
                                          "m", "--storage-path", str(d)], 2,
     ["nowhere", "no result.json"]),
    ("models-alias-bad-version", lambda d: ["models", "alias", "m", "two", "champion"], 2,
     ["mtp models alias", "'two' is not a version number"]),
    ("models-history-bad-alias", lambda d: ["models", "history", "m", "--alias", "latest",
                                            "--storage-path", str(d)], 2,
     ["alias 'latest' is not allowed"]),
    ("models-compare-malformed", lambda d: ["models", "compare", "a@1", "b",
                                            "--storage-path", str(d)], 2,
     ["B 'b' names no version"]),
    ("models-rollback-no-alias", lambda d: ["models", "rollback", "m"], 2,
     ["mtp models rollback", "--alias"]),
    ("models-lineage-bad-name", lambda d: ["models", "lineage", "../x", "--storage-path",
                                           str(d)], 2, ["model name '../x' is a path"]),
    ("models-branch-no-version", lambda d: ["models", "branch", "m", "--set",
                                            "training.epochs=2", "--storage-path", str(d)],
     2, ["'m' names no version", "NAME@VERSION"]),
    ("database-url-bad-driver", lambda d: ["--database-url", "mysql://u@h/db", "models",
                                           "list", "--storage-path", str(d)], 2,
     ["--database-url", "database driver 'mysql' is not supported"]),
    ("no-command", lambda d: [], 2, ["mtp", "required", "command"]),
]


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mtp"), lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "code", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_argument_exits_with_one_clear_line(tmp_path: Path, args: Args, code: int,
                                                words: list[str]) -> None:
    t0 = time.monotonic()
    proc = _mtp(args(tmp_path), cwd=tmp_path, timeout_s=60)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    line = _one_error_line(proc)
    prefix = "error:" if code == 2 else "failed:"
    assert prefix in line, line
    for word in words:
        assert word in line, (word, line)
    # an unreachable --address fails at once, not after Ray's minutes of retries
    assert time.monotonic() - t0 < 45


def _leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
                   ) -> set[tuple[str, ...]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix}
    return {leaf for name, p in subs[0].choices.items()
            for leaf in _leaf_commands(p, (*prefix, name))}


def test_every_subcommand_has_a_bad_argument_case(tmp_path: Path) -> None:
    leaves = _leaf_commands(build_parser())
    assert ("cluster", "status") in leaves and ("run",) in leaves
    covered = set()
    for i, (_, args, _, _) in enumerate(CASES):
        (tmp_path / str(i)).mkdir()
        argv = tuple(args(tmp_path / str(i)))
        covered |= {leaf for leaf in leaves if argv[:len(leaf)] == leaf}
    assert covered == leaves


@pytest.mark.ray
def test_study_whose_every_trial_fails_exits_1_with_one_line(tmp_path: Path) -> None:
    """Every trial trains the task with a target column the data does not have: the search
    space is valid (checked before the study) but each trial fails when it loads its data."""
    rows = ["a,b,label", *(f"{i % 7},{i % 5},{i % 2}" for i in range(40))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    task = _task()
    task["name"] = "allfail"
    task["dataset"] = {"source": "csv", "path": "t.csv", "target": "label"}
    task["search"] = {"space": {"dataset.target": {"type": "grid",
                                                   "values": ["nope1", "nope2"]}},
                      "searcher": "grid", "max_failures": 0, "metric": "val_accuracy"}
    cfg = _write(tmp_path, "study.json", json.dumps(task))
    proc = _mtp(["tune", cfg, "--storage-path", str(tmp_path / "store")], cwd=tmp_path,
                timeout_s=150)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    mtp_lines = [line for line in proc.stderr.splitlines() if line.startswith("mtp")]
    assert len(mtp_lines) == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == mtp_lines[0]
    line = mtp_lines[0]
    assert line.startswith("mtp: failed: study allfail-study: all 2 trials failed"), line
    assert "DataError: dataset.target 'nope1' is not a column" in line, line


def test_main_in_a_callers_process_leaves_its_signal_handlers_and_environment(
    tmp_path: Path,
) -> None:
    """A driver script (or a test) that calls ``mtp.cli.main`` gets back its own SIGINT and
    SIGTERM handlers and no Tune settings meant for one command."""
    import signal

    from mtp.cli import main

    def mine(signum: int, frame: Any) -> None:
        raise AssertionError("not called")

    env = dict(os.environ)
    before = {s: signal.signal(s, mine) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # a tune command that fails on its config, after the handlers are installed
        assert main(["tune", str(tmp_path / "missing.yaml")]) == 2
        assert signal.getsignal(signal.SIGINT) is mine
        assert signal.getsignal(signal.SIGTERM) is mine
        assert {k: v for k, v in os.environ.items() if k.startswith("TUNE_")} == {
            k: v for k, v in env.items() if k.startswith("TUNE_")}
    finally:
        for s, h in before.items():
            signal.signal(s, h)
