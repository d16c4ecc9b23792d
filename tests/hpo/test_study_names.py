"""A study's name is one plain folder name under ``<storage>/_studies``: paths, ``..``, the
platform's own folders and names too long for the trials' run names are refused (exit 2,
naming ``--name``), before anything is written; default and trial run names stay plain."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpo.errors import SearchConfigError
from hpo.names import MAX_STUDY_NAME, check_study_name, default_study_name, trial_run_name
from hpo.spec import SearchSpec
from hpo.study import run_study, tune_task
from mtp_core.errors import exit_code_for
from mtp_core.names import name_problem
from tests.hpo.support import (
    assert_one_line,
    assert_still_there,
    cli,
    iris_study,
    seeded_storage,
    snapshot,
    write_config,
)

BAD_NAMES = [
    "../escape", "..", ".", "/tmp/abs-study", "a/b", "a\\b", "nested/../../up",
    "_cache", "_registry", "_studies", "_cluster", "_superseded", "",
    "-dash-first", ".hidden", "with space", "tab\tname", "new\nline", "colon:name",
    "star*", "é-accent", "x" * (MAX_STUDY_NAME + 1), "y" * 128, "z" * 129,
]
GOOD_NAMES = ["a", "9", "Study-1.v2_x", "x" * MAX_STUDY_NAME, "a..b", "a.", "trailing-"]
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def _spec() -> SearchSpec:
    return SearchSpec.model_validate({"space": {"x": {"type": "uniform", "low": 0, "high": 1}},
                                      "metric": "loss", "mode": "min", "num_samples": 1})


@pytest.mark.parametrize("name", BAD_NAMES)
def test_run_study_refuses_a_name_that_is_not_plain(name: str, tmp_path: Path) -> None:
    storage = seeded_storage(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(SearchConfigError) as info:
        run_study(_spec(), name=name, storage=storage, objective=lambda p: {"loss": 0.0})
    msg = str(info.value)
    assert msg.startswith("--name: ") and "\n" not in msg, msg
    assert repr(name)[:15] in msg, msg  # the value, as given (long ones shortened)
    assert "letters, digits" in msg or "reserved" in msg, msg  # what is allowed
    assert exit_code_for(info.value) == 2
    assert_still_there(before, tmp_path)
    assert snapshot(tmp_path) == before  # nothing new either


@pytest.mark.parametrize("name", BAD_NAMES)
def test_tune_task_refuses_the_same_names(name: str, tmp_path: Path) -> None:
    storage = seeded_storage(tmp_path)
    cfg = write_config(tmp_path, iris_study())
    before = snapshot(tmp_path)
    with pytest.raises(SearchConfigError, match=r"^--name: "):
        tune_task(cfg, storage_path=storage, name=name)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", BAD_NAMES)
def test_mtp_tune_bad_name_is_one_line_exit_2(name: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    storage = seeded_storage(tmp_path)
    cfg = write_config(tmp_path, iris_study())
    before = snapshot(tmp_path)
    code, out, err = cli(["tune", cfg, "--storage-path", str(storage), f"--name={name}"], capsys)
    # argparse (the CLI's own check) or the study's check: either way the field is named
    line = assert_one_line(code, 2, out, err, "--name")
    assert "letters, digits" in line or "reserved" in line, line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_plain_names_are_accepted(name: str) -> None:
    assert check_study_name(name) == name


@pytest.mark.parametrize("task_id", ["t", "digits-mlp", "a" * 100, "b" * 101, "c" * 128,
                                     "x.y-z_" * 21])
def test_the_default_name_is_always_a_valid_study_name(task_id: str) -> None:
    assert name_problem(task_id) is None or len(task_id) > 128
    name = default_study_name(task_id[:128])
    assert check_study_name(name) == name
    assert name.endswith("-study") and len(name) <= MAX_STUDY_NAME
    if len(f"{task_id[:128]}-study") <= MAX_STUDY_NAME:
        assert name == f"{task_id}-study"


def test_long_task_ids_keep_distinct_default_names() -> None:
    a, b = "q" * 127 + "a", "q" * 127 + "b"
    assert default_study_name(a) != default_study_name(b)
    assert default_study_name(a) == default_study_name(a)  # stable: resume finds it


@pytest.mark.parametrize("trial_id", ["0a1b2c3d", "ffffffff", "3f2a1_00000", "abcde_99999"])
@pytest.mark.parametrize("study", ["s", "x" * MAX_STUDY_NAME, default_study_name("c" * 128)])
def test_trial_run_names_stay_plain(study: str, trial_id: str) -> None:
    run = trial_run_name(study, trial_id)
    assert _PLAIN.fullmatch(run) and name_problem(run) is None
    assert run == f"{study}-{trial_id}"
