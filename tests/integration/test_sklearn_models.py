"""scikit-learn estimators on a local Ray: fitted as one Ray task sized by the task's CPUs
(the same bytes as in-process), and tuned by ``mtp tune`` over ``model.params``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mtp.cli import main
from tests.conftest import EXAMPLES
from tests.trainer.test_sklearn_models import fit_here, rf_task
from trainer import load_model, load_result, parse_task
from trainer import train as mtp_train

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def test_a_forest_fitted_on_the_cluster_equals_the_one_fitted_here(tmp_path: Path) -> None:
    raw = rf_task()
    raw["resources"]["cpus_per_worker"] = 2  # the whole local Ray: n_jobs=2
    raw["consistency"] = {"cache": {"enabled": False}, "sharing": {"enabled": False}}
    on_ray = mtp_train(parse_task(raw), storage_path=tmp_path / "ray")
    here = fit_here(raw, tmp_path / "here")
    assert on_ray.weights_hash == here.weights_hash
    assert on_ray.final_metrics == here.final_metrics
    assert load_model(on_ray.run_dir).estimator.get_params()["estimator__n_jobs"] == 2
    events = [json.loads(line) for line in
              (Path(on_ray.run_dir) / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "finish"]


def test_mtp_tune_searches_a_forests_depth_and_its_trials_are_reproducible(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = yaml.safe_load((EXAMPLES / "random_forest_tune.yaml").read_text())
    raw["search"].update({"num_samples": 4, "max_concurrent_trials": 1})
    raw["consistency"] = {"cache": {"enabled": False}, "sharing": {"enabled": False}}
    cfg = tmp_path / "study.json"
    cfg.write_text(json.dumps(raw))
    code = main(["tune", str(cfg), "--storage-path", str(tmp_path / "study")])
    out = capsys.readouterr().out
    assert code == 0, out
    study = json.loads((tmp_path / "study" / "_studies" / "digits-rf-tune-study"
                        / "study.json").read_text())
    assert len(study["trials"]) == 4
    depths = {t["params"]["model.params.max_depth"] for t in study["trials"]}
    assert len(depths) > 1 and all(2 <= d <= 16 for d in depths)
    assert study["best_value"] >= 0.9
    # the best trial's stored forest is what a plain run of its task fits, bit for bit
    best = next(t for t in study["trials"] if t["trial_id"] == study["best_trial"])
    trial = load_result(tmp_path / "study" / f"digits-rf-tune-study-{best['trial_id']}")
    assert trial.final_metrics["val_accuracy"] == study["best_value"]
    again = mtp_train(parse_task(trial.task), storage_path=tmp_path / "again")
    assert again.weights_hash == trial.weights_hash
