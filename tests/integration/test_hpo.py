"""Hyperparameter search on a local Ray: searchers, grid coverage, resume, a real digits study.

Which searcher finds better configurations (the Gaussian process against random search) is a
measurement, not a pass/fail property: scripts/bench_hpo.py compares them over many seeds.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpo.spec import SearchSpec
from hpo.study import TrialRecord, run_study
from mtp.cli import main
from tests.conftest import EXAMPLES, NO_REUSE
from trainer import load_result, parse_task
from trainer import train as mtp_train

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

SPACE = {"x": {"type": "uniform", "low": 0.0, "high": 1.0},
         "y": {"type": "uniform", "low": 0.0, "high": 1.0},
         "c": {"type": "choice", "values": ["a", "b", "c"]},
         "n": {"type": "int", "low": 0, "high": 8}}


def bowl(p: dict[str, Any]) -> dict[str, float]:
    """A known objective: minimum 0 at x=0.3, y=0.7, c=a, n=3."""
    penalty = {"a": 0.0, "b": 0.05, "c": 0.1}[p["c"]]
    return {"loss": (p["x"] - 0.3) ** 2 + (p["y"] - 0.7) ** 2 + penalty
            + 0.01 * abs(p["n"] - 3)}


def _spec(searcher: str, **kw: Any) -> SearchSpec:
    return SearchSpec.model_validate({"space": SPACE, "searcher": searcher, "metric": "loss",
                                      "mode": "min", "num_samples": 20,
                                      "max_concurrent_trials": 1, "seed": 7, **kw})


# bayesian after 3 random trials: the Gaussian process suggests the other 3
@pytest.mark.parametrize("searcher,extra", [("tpe", {}),
                                            ("bayesian", {"initial_random_trials": 3})])
def test_same_seed_suggests_the_same_sequence(searcher: str, extra: dict[str, Any],
                                              tmp_path: Path) -> None:
    spec = _spec(searcher, num_samples=6, **extra)
    a = run_study(spec, name="a", storage=tmp_path, objective=bowl)
    b = run_study(spec, name="b", storage=tmp_path, objective=bowl)
    assert len(a.trials) == 6
    assert [t.params for t in a.trials] == [t.params for t in b.trials]


def test_grid_search_covers_its_grid_exactly(tmp_path: Path) -> None:
    spec = SearchSpec.model_validate({
        "space": {"x": {"type": "grid", "values": [0.1, 0.3, 0.5]},
                  "c": {"type": "choice", "values": ["a", "b"]}},
        "searcher": "grid", "metric": "loss", "mode": "min"})
    r = run_study(spec, name="grid", storage=tmp_path,
                  objective=lambda p: bowl({**p, "y": 0.7, "n": 3}))
    seen = sorted((t.params["x"], t.params["c"]) for t in r.trials)
    assert seen == sorted((x, c) for x in (0.1, 0.3, 0.5) for c in ("a", "b"))
    assert r.best_params == {"x": 0.3, "c": "a"}
    # the study's outputs
    for key in ("csv", "parquet", "json", "plot"):
        assert Path(r.files[key]).is_file(), key
    import pandas as pd

    table = pd.read_parquet(r.files["parquet"])
    assert len(table) == 6 and set(table["param.c"]) == {"a", "b"}
    assert Path(r.files["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupted_study_resumes_without_rerunning_finished_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a driver script's Ctrl-C: Tune's own SIGINT handler stops the study (the CLI replaces it
    # with its own, tested in test_interrupts); Python's default handler around it
    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    calls = tmp_path / "calls.jsonl"

    def counted(p: dict[str, Any]) -> dict[str, float]:
        with open(calls, "a") as f:
            f.write(json.dumps(p, sort_keys=True) + "\n")
        return bowl(p)

    spec = _spec("random", num_samples=8)
    finished: list[TrialRecord] = []
    fired = tmp_path / "interrupted"  # on disk: Tune restores this callback on resume

    def interrupt_after_three(rec: TrialRecord, best: Any, total: int) -> None:
        finished.append(rec)
        if len(finished) == 3 and not fired.exists():
            fired.touch()
            os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C

    try:
        run_study(spec, name="resumable", storage=tmp_path, objective=counted,
                  on_trial=interrupt_after_three)
    except (Exception, KeyboardInterrupt):  # noqa: BLE001 - how Tune ends is Tune's choice
        pass
    finally:
        signal.signal(signal.SIGINT, previous)
    first_calls = calls.read_text().splitlines()
    assert 3 <= len(first_calls) < 8, len(first_calls)
    done = run_study(spec, name="resumable", storage=tmp_path, objective=counted, resume=True)
    all_calls = calls.read_text().splitlines()
    assert len(done.trials) == 8
    # every configuration was evaluated exactly once across both runs
    assert len(all_calls) == len(set(all_calls)) == 8


def test_study_on_digits_beats_the_default_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "study.json"
    raw = yaml.safe_load((EXAMPLES / "digits_mlp_tune.yaml").read_text())
    raw["training"]["epochs"] = 3
    raw["consistency"] = NO_REUSE
    raw["search"].update({"num_samples": 4, "scheduler": "fifo", "max_concurrent_trials": 1,
                          "searcher": "tpe"})
    cfg.write_text(json.dumps(raw))
    default = mtp_train(parse_task({k: v for k, v in raw.items() if k != "search"}),
                        storage_path=tmp_path / "default")
    code = main(["tune", str(cfg), "--storage-path", str(tmp_path / "study")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("/4 ") == 4, out  # one progress row per trial
    study = json.loads((tmp_path / "study" / "_studies" / "digits-mlp-tune-study"
                        / "study.json").read_text())
    assert study["best_value"] > default.final_metrics["val_accuracy"] + 0.02, (
        study["best_value"], default.final_metrics)
    assert len(study["trials"]) == 4
    # each trial trained a real task whose stored result agrees with the table
    best = next(t for t in study["trials"] if t["trial_id"] == study["best_trial"])
    run = tmp_path / "study" / f"digits-mlp-tune-study-{best['trial_id']}"
    assert abs(max(h.metrics["val_accuracy"] for h in load_result(run).history)
               - study["best_value"]) < 1e-9
