"""A study that failed or stopped before any trial finished, or whose config changed, can be
run again: a plain rerun starts over (the old folder moved whole to ``_studies/_superseded``),
``--resume`` after a fix starts over with the fix, and a study with finished trials is never
overwritten (one line says what to do)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import pytest

from hpo.errors import MetricNotReportedError, SearchConfigError
from hpo.spec import SearchSpec
from hpo.state import (
    CONFIG_FILE,
    SUPERSEDED,
    StoredStudy,
    StudyStart,
    config_differences,
    decide_start,
    move_aside,
    read_study,
    study_config,
    study_lock,
    write_study_config,
)
from hpo.study import run_study
from mtp_core.errors import exit_code_for
from tests.hpo.support import (
    assert_one_line,
    assert_still_there,
    cli,
    iris_study,
    seeded_storage,
    snapshot,
    write_config,
)

SPACE = {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}


def _spec(**kw: Any) -> SearchSpec:
    return SearchSpec.model_validate({"space": SPACE, "searcher": "random", "metric": "loss",
                                      "mode": "min", "num_samples": 2,
                                      "max_concurrent_trials": 1, "seed": 3, **kw})


def _config(**kw: Any) -> dict[str, Any]:
    return study_config(_spec(**kw), None)


def _stored(finished: int, config: dict[str, Any] | None, restorable: bool = True
            ) -> StoredStudy:
    return StoredStudy(path=Path("/s/_studies/t"), restorable=restorable, finished=finished,
                       config=config)


SAME = _config()
OTHER = _config(metric="loss2")

# (stored study, resume, expected start or the error's words)
DECISIONS: list[tuple[StoredStudy | None, bool, StudyStart | str]] = [
    (None, False, StudyStart.NEW),
    (None, True, "--resume: there is no study named 't' to resume"),
    (_stored(0, SAME), False, StudyStart.START_OVER),
    (_stored(0, OTHER), False, StudyStart.START_OVER),
    (_stored(0, None), False, StudyStart.START_OVER),
    (_stored(0, SAME, restorable=False), False, StudyStart.START_OVER),
    (_stored(0, SAME), True, StudyStart.RESUME),
    (_stored(0, None), True, StudyStart.RESUME),  # an older study: Tune's state decides
    (_stored(0, OTHER), True, StudyStart.START_OVER),  # the fix is what is wanted
    (_stored(0, SAME, restorable=False), True, StudyStart.START_OVER),
    (_stored(2, SAME), False, "--name: a study named 't' already exists with 2 finished"),
    (_stored(2, OTHER), False, "pass --resume to continue it, or choose another --name"),
    (_stored(2, None), False, "already exists with 2 finished trial(s)"),
    (_stored(2, SAME), True, StudyStart.RESUME),
    (_stored(2, None), True, StudyStart.RESUME),
    (_stored(2, OTHER), True,
     "--resume: study 't' has 2 finished trial(s) from another config (search.metric: "
     "\"loss2\" then, \"loss\" now)"),
    (_stored(1, SAME, restorable=False), True, "has no state Tune can restore"),
]


@pytest.mark.parametrize(("stored", "resume", "expected"), DECISIONS)
def test_what_a_rerun_does(stored: StoredStudy | None, resume: bool,
                           expected: StudyStart | str) -> None:
    if isinstance(expected, StudyStart):
        assert decide_start("t", stored, SAME, resume) is expected
        return
    with pytest.raises(SearchConfigError) as info:
        decide_start("t", stored, SAME, resume)
    assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert exit_code_for(info.value) == 2


def test_differences_name_every_changed_field() -> None:
    task = {"training": {"epochs": 3, "learning_rate": 0.1}, "name": "a"}
    old = study_config(_spec(), task)
    new = study_config(_spec(num_samples=5, space={"x": {"type": "uniform", "low": 0.1,
                                                         "high": 1.0}}),
                       {"training": {"epochs": 4, "learning_rate": 0.1}, "name": "a"})
    assert config_differences(old, new) == [
        "search.num_samples: 2 then, 5 now", "search.space.x.low: 0.0 then, 0.1 now",
        "training.epochs: 3 then, 4 now"]
    assert config_differences(old, old) == []
    added = study_config(_spec(space={**SPACE, "y": {"type": "int", "low": 1, "high": 3}}),
                         None)
    assert "search.space.y.high: unset then, 3 now" in config_differences(_config(), added)


def test_moving_aside_keeps_every_byte_and_never_lands_on_another(tmp_path: Path) -> None:
    studies = tmp_path / "_studies"
    at = _dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=_dt.UTC)
    moved = []
    for round_ in range(3):  # the same name, the same second: three distinct places
        study = studies / "t"
        (study / "trial_1").mkdir(parents=True)
        (study / "trial_1" / "result.json").write_text(f'{{"round": {round_}}}')
        write_study_config(study, _config())
        before = snapshot(study)
        dest = move_aside(study, now=at)
        assert not study.exists() and snapshot(dest) == before
        assert dest.parent.parent == studies / SUPERSEDED and dest.name == "t"
        assert dest.parent.name.startswith("t-20260102T030405Z-")
        moved.append(dest)
    assert len(set(moved)) == 3
    assert [json.loads((d / "trial_1" / "result.json").read_text())["round"]
            for d in moved] == [0, 1, 2]


def test_reading_what_is_stored(tmp_path: Path) -> None:
    assert read_study(tmp_path / "none", "loss") is None
    (tmp_path / "empty").mkdir()
    assert read_study(tmp_path / "empty", "loss") is None
    write_study_config(tmp_path / "config-only", _config())
    stored = read_study(tmp_path / "config-only", "loss")
    assert stored is not None
    assert (stored.restorable, stored.finished, stored.config) == (False, 0, _config())
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / CONFIG_FILE).write_text("{not json")
    (tmp_path / "garbage" / "experiment_state-2026.json").write_text("[1, 2")
    stored = read_study(tmp_path / "garbage", "loss")
    assert stored is not None and (stored.finished, stored.config) == (0, None)


def test_one_study_name_runs_in_one_process_at_a_time(tmp_path: Path) -> None:
    with study_lock(tmp_path, "t"):
        with pytest.raises(SearchConfigError,
                           match=r"^--name: study 't' is running in another process right now"):
            with study_lock(tmp_path, "t"):
                pass
        with study_lock(tmp_path, "u"):  # another name: its own lock
            pass
    with study_lock(tmp_path, "t"):  # released when the holder ended
        pass


def _objective(p: dict[str, Any]) -> dict[str, float]:
    return {"loss": (p["x"] - 0.3) ** 2}


def _superseded(storage: Path, name: str) -> list[Path]:
    return sorted((storage / "_studies" / SUPERSEDED).glob(f"{name}-*/{name}"))


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("resume", [False, True])
def test_a_study_that_failed_on_its_metric_runs_again_once_fixed(resume: bool,
                                                                 tmp_path: Path) -> None:
    storage = seeded_storage(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(MetricNotReportedError) as info:
        run_study(_spec(metric="losss"), name="t", storage=storage, objective=_objective)
    assert str(info.value) == ("search.metric 'losss' is not reported by the trials; they "
                               "report: loss")
    assert exit_code_for(info.value) == 2
    failed = snapshot(storage / "_studies" / "t")
    assert CONFIG_FILE in failed
    if not resume:  # the same mistake again: the same error, not "already exists"
        with pytest.raises(MetricNotReportedError):
            run_study(_spec(metric="losss"), name="t", storage=storage, objective=_objective)
        failed = snapshot(storage / "_studies" / "t")
    result = run_study(_spec(), name="t", storage=storage, objective=_objective,
                       resume=resume)
    assert len(result.trials) == 2 and result.metric == "loss"
    aside = _superseded(storage, "t")
    assert len(aside) == (1 if resume else 2)
    assert snapshot(aside[-1]) == failed  # the last failed attempt, whole
    stored = json.loads((storage / "_studies" / "t" / CONFIG_FILE).read_text())
    assert stored["search"]["metric"] == "loss"
    assert_still_there(before, tmp_path)


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_study_running_elsewhere_is_left_alone(tmp_path: Path) -> None:
    storage = seeded_storage(tmp_path)
    with pytest.raises(MetricNotReportedError):  # a failed study: a rerun would start over
        run_study(_spec(metric="losss"), name="t", storage=storage, objective=_objective)
    before = snapshot(tmp_path)
    with study_lock(storage / "_studies", "t"):  # as another `mtp tune --name t` would
        with pytest.raises(SearchConfigError, match="is running in another process"):
            run_study(_spec(), name="t", storage=storage, objective=_objective)
    assert snapshot(tmp_path) == before  # not moved aside, not written into


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_study_with_finished_trials_is_never_overwritten(tmp_path: Path) -> None:
    storage = seeded_storage(tmp_path)
    calls = tmp_path / "calls.txt"

    def counted(p: dict[str, Any]) -> dict[str, float]:
        with open(calls, "a") as f:
            f.write(f"{p['x']}\n")
        return {"loss": p["x"], "loss2": 1 - p["x"]}

    done = run_study(_spec(), name="t", storage=storage, objective=counted)
    assert len(done.trials) == 2 and len(calls.read_text().splitlines()) == 2
    before = snapshot(tmp_path)
    refusals: list[tuple[dict[str, Any], str]] = [
        (dict(resume=False), "--name: a study named 't' already exists with 2 finished "
                             "trial(s)"),
        (dict(resume=True, metric="loss2"),
         "(search.metric: \"loss\" then, \"loss2\" now)"),
        (dict(resume=True, num_samples=3), "(search.num_samples: 2 then, 3 now)"),
        (dict(resume=True, mode="max"), "(search.mode: \"min\" then, \"max\" now)"),
        (dict(resume=True, space={"x": {"type": "uniform", "low": 0.0, "high": 2.0}}),
         "(search.space.x.high: 1.0 then, 2.0 now)"),
    ]
    for kw, words in refusals:
        resume = bool(kw.pop("resume"))
        with pytest.raises(SearchConfigError) as info:
            run_study(_spec(**kw), name="t", storage=storage, objective=counted,
                      resume=resume)
        assert words in str(info.value), str(info.value)
        assert snapshot(tmp_path) == before
    again = run_study(_spec(), name="t", storage=storage, objective=counted, resume=True)
    assert [t.params for t in again.trials] == [t.params for t in done.trials]
    assert len(calls.read_text().splitlines()) == 2  # nothing ran again
    assert not (storage / "_studies" / SUPERSEDED).exists()


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_training_study_that_could_not_start_runs_when_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real path: a study of iris trials whose workers cannot get a CPU (another job
    holds them) ends with one line and exit 1; once the CPUs are free, the same command
    starts the study over and finishes it."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    storage = seeded_storage(tmp_path)
    cfg = write_config(tmp_path, iris_study(trial_start_timeout_s=8))
    before = snapshot(tmp_path)
    # every CPU: a 1-worker trial trains in its own actor, which holds the worker's CPU
    held = placement_group([{"CPU": ray.cluster_resources()["CPU"]}])
    ray.get(held.ready(), timeout=60)
    try:
        code, out, err = cli(["tune", cfg, "--storage-path", str(storage), "-q"], capsys)
    finally:
        remove_placement_group(held)
    line = assert_one_line(code, 1, out, err, "mtp: failed: study iris-study-study: no trial "
                           "could start training", "search.trial_start_timeout_s=8",
                           "a trial needs 1 CPU (resources.num_workers=1 x cpus_per_worker=1)",
                           "0 free")
    assert "other work holds them" in line
    stalled = snapshot(storage / "_studies" / "iris-study-study")
    code, out, err = cli(["tune", cfg, "--storage-path", str(storage), "-q", "--set",
                          "search.trial_start_timeout_s=300"], capsys)
    assert code == 0, err
    assert "best       val_accuracy" in out, out
    study = json.loads((storage / "_studies" / "iris-study-study" / "study.json").read_text())
    assert len(study["trials"]) == 2
    aside = _superseded(storage, "iris-study-study")
    assert len(aside) == 1 and snapshot(aside[0]) == stalled
    assert_still_there(before, tmp_path)
