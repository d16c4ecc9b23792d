"""A study whose trials fail: which error is reported, and when the study counts as failed
(without Ray: Tune's results are stood in for by plain records of what the study reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ray.exceptions import RayTaskError
from ray.tune.error import TuneError

from hpo.errors import StudyFailedError
from hpo.study import TrialRecord, TrialStatus, check_study_succeeded, trial_error_message
from mtp_core.errors import DataError, MtpError, exit_code_for
from tests.hpo.test_spec import _spec


@dataclass
class _Result:
    """The fields of ``ray.tune.Result`` the study reads."""

    path: str
    error: BaseException | None = None
    config: dict[str, Any] = field(default_factory=dict)


SPEC = _spec({"model.dropout": {"type": "choice", "values": [0.1, 0.2, 0.3]}})


def _remote(err: Exception) -> BaseException:
    """What Tune hands back for an exception raised in a trial: a Ray task error around it."""
    tb = f"Traceback (most recent call last):\n  File \"study.py\"\n{type(err).__name__}: {err}"
    return RayTaskError("ImplicitFunc.train", tb, err).as_instanceof_cause()


def _trial(counter: int, err: Exception | None, dropout: float = 0.1) -> _Result:
    return _Result(path=f"/s/trainable_{counter:08x}_{counter}_model.dropout={dropout}_2026",
                   error=None if err is None else _remote(err),
                   config={"model.dropout": dropout})


def _record(trial_id: str) -> TrialRecord:
    return TrialRecord(trial_id=trial_id, index=0, params={}, value=0.5, last={},
                       status=TrialStatus.TERMINATED, iterations=1, time_s=1.0)


def test_trial_error_is_the_exception_raised_in_the_trial() -> None:
    assert trial_error_message(_remote(DataError("dataset.target 'y' is not a column"))) == (
        "DataError: dataset.target 'y' is not a column")
    # an error that did not pickle comes back as the text of its traceback
    text = TuneError("Traceback (most recent call last):\n  File \"x.py\", line 3\n"
                     "ZeroDivisionError: division by zero\n")
    assert trial_error_message(text) == "ZeroDivisionError: division by zero"
    assert trial_error_message(RuntimeError("first line\nsecond")) == "RuntimeError: first line"


def test_every_trial_failed_names_study_count_and_first_trial_error() -> None:
    results = [_trial(3, DataError("third"), 0.3), _trial(1, DataError("first"), 0.1),
               _trial(2, DataError("second"), 0.2)]
    with pytest.raises(StudyFailedError) as info:
        check_study_succeeded(SPEC, "s1", Path("/s"), results, [])
    msg = str(info.value)
    assert msg.startswith("study s1: all 3 trials failed; the first (model.dropout=0.1) raised "
                          "DataError: first;"), msg
    assert "\n" not in msg and "/s" in msg
    # a platform failure, not an input error, even though each trial's error was one
    assert isinstance(info.value, MtpError) and exit_code_for(info.value) == 1


def test_every_trial_failed_after_reporting_is_still_a_failed_study() -> None:
    results = [_trial(1, RuntimeError("worker died")), _trial(2, RuntimeError("again"))]
    with pytest.raises(StudyFailedError, match="all 2 trials failed.*RuntimeError: worker died"):
        check_study_succeeded(SPEC, "s2", Path("/s"), results, [_record("a"), _record("b")])


def test_some_usable_trial_is_a_successful_study() -> None:
    results = [_trial(1, DataError("bad")), _trial(2, None)]
    check_study_succeeded(SPEC, "s3", Path("/s"), results, [_record("b")])


def test_no_trial_reported_the_metric() -> None:
    with pytest.raises(StudyFailedError,
                       match=r"none of its 2 trials reported search.metric='val_accuracy'; is "
                             r"it an epoch metric"):
        check_study_succeeded(SPEC, "s4", Path("/s"), [_trial(1, None), _trial(2, None)], [])
    with pytest.raises(StudyFailedError, match=r"\(1 failed; the first .* DataError: gone\)"):
        check_study_succeeded(SPEC, "s5", Path("/s"),
                              [_trial(1, None), _trial(2, DataError("gone"))], [])
    with pytest.raises(StudyFailedError, match="study s6: no trial ran"):
        check_study_succeeded(SPEC, "s6", Path("/s"), [], [])


def test_study_failed_error_pickles() -> None:
    import pickle

    err = StudyFailedError("study x: all 2 trials failed")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is StudyFailedError and str(again) == str(err)
