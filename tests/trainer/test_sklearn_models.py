"""scikit-learn estimators (``model.type: sklearn``) without Ray: fitted in this process as
a study trial fits them, seeded so reruns (in another process too) save identical bytes,
scored like the networks, cached, reloaded without running code; every bad estimator or
data-parallel option is one line naming the field."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtp.cli import main
from mtp_core.spec import parse_task
from tests.conftest import EXAMPLES, REPO
from trainer import load_model
from trainer.api import Executor, train
from trainer.classical import canonical_skops, load_estimator
from trainer.errors import ConfigError, TrainerError
from trainer.prepare import identify


def rf_task(name: str = "rf", **params: Any) -> dict[str, Any]:
    return {"name": name,
            "model": {"type": "sklearn", "estimator": "sklearn.ensemble.RandomForestClassifier",
                      "params": {"n_estimators": 30, **params}},
            "dataset": {"source": "sklearn", "name": "digits"},
            "resources": {"cpus_per_worker": 1},
            "consistency": {"cache": {"enabled": True}, "sharing": {"enabled": False}}}


def fit_here(raw: dict[str, Any], storage: Path, use_cache: bool = False) -> Any:
    return train(parse_task(raw), storage_path=storage, use_cache=use_cache,
                 executor=Executor.IN_PROCESS)


def test_a_random_forest_reaches_its_accuracy_and_refits_identically_in_another_process(
        tmp_path: Path) -> None:
    result = fit_here(rf_task(), tmp_path / "a")
    assert result.final_metrics["val_accuracy"] >= 0.95
    assert result.world_size == 1 and result.epochs_completed == 1 and result.best_epoch == 1
    model = Path(result.model_path)
    assert model.name == "model.skops"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == result.weights_hash
    assert result.versions["scikit-learn"] and result.versions["skops"]
    # another interpreter: other object ids and another clock, the same bytes
    script = ("import json, sys; from trainer.api import Executor, train; "
              "from mtp_core.spec import parse_task; "
              "r = train(parse_task(json.loads(sys.argv[1])), storage_path=sys.argv[2], "
              "use_cache=False, executor=Executor.IN_PROCESS); print(r.weights_hash)")
    out = subprocess.run([sys.executable, "-c", script, json.dumps(rf_task()),
                          str(tmp_path / "b")], capture_output=True, text=True, check=True,
                         cwd=REPO, timeout=300)
    assert out.stdout.split()[-1] == result.weights_hash
    assert (tmp_path / "b" / "rf" / "model.skops").read_bytes() == model.read_bytes()


def test_the_platform_sets_n_jobs_and_random_state_from_the_task(tmp_path: Path) -> None:
    raw = rf_task()
    raw["resources"]["cpus_per_worker"] = 2
    result = fit_here(raw, tmp_path)
    params = load_model(result.run_dir).estimator.get_params()
    assert params["estimator__n_jobs"] == 2
    assert params["estimator__random_state"] == result.seed % 2**32
    assert [name for name, _ in load_model(result.run_dir).estimator.steps] == ["standardize",
                                                                       "estimator"]
    # another seed (here through the global seed) fits another forest
    raw["consistency"]["deterministic"] = {"global_seed": 7}
    other = fit_here(raw, tmp_path / "other")
    assert other.seed != result.seed and other.weights_hash != result.weights_hash


def test_the_stored_model_reproduces_the_validation_metrics(tmp_path: Path) -> None:
    raw = rf_task()
    result = fit_here(raw, tmp_path)
    prepared = identify(parse_task(raw))
    val = prepared.split.validation
    pipeline = load_model(result.run_dir).estimator
    pred = pipeline.predict(prepared.dataset.features[val].reshape(len(val), -1))
    accuracy = float(np.mean(pred == prepared.dataset.targets[val]))
    assert accuracy == result.final_metrics["val_accuracy"]


def test_a_regressor_and_a_classifier_without_probabilities_are_scored(tmp_path: Path) -> None:
    reg = fit_here({"name": "ridge", "model": {"type": "sklearn",
                                               "estimator": "sklearn.linear_model.Ridge",
                                               "params": {"alpha": 1.0}},
                    "dataset": {"source": "sklearn", "name": "diabetes"},
                    "training": {"loss": "l1"}}, tmp_path)
    assert set(reg.final_metrics) == {"val_loss", "val_mse", "val_r2"}
    assert reg.final_metrics["val_r2"] > 0.3 and reg.monitor_metric == "val_loss"
    assert reg.final_metrics["val_loss"] < math.sqrt(reg.final_metrics["val_mse"])  # l1 < rmse
    svc = fit_here({"name": "svc", "model": {"type": "sklearn",
                                             "estimator": "sklearn.svm.LinearSVC"},
                    "dataset": {"source": "sklearn", "name": "iris"}}, tmp_path)
    # no predict_proba: the validation loss is the 0-1 loss
    assert svc.final_metrics["val_loss"] == pytest.approx(1 - svc.final_metrics["val_accuracy"])


def test_a_rerun_is_a_cache_hit_and_other_params_fit_again(tmp_path: Path) -> None:
    first = fit_here(rf_task(), tmp_path, use_cache=True)
    again = fit_here(rf_task(), tmp_path, use_cache=True)
    assert again.cache_hit is not None and again.weights_hash == first.weights_hash
    deeper = fit_here(rf_task(name="rf", max_depth=4), tmp_path / "deeper", use_cache=True)
    assert deeper.cache_hit is None and deeper.weights_hash != first.weights_hash
    # a stored model changed after the fit is never served
    model = Path(first.model_path)
    model.write_bytes(model.read_bytes() + b"\0")
    refit = fit_here(rf_task(), tmp_path / "refit", use_cache=True)
    assert refit.cache_hit is None and refit.weights_hash == first.weights_hash
    with pytest.raises(TrainerError, match="does not match the result's weights_hash"):
        load_model(first.run_dir)


def test_saved_bytes_are_canonical_and_foreign_types_are_refused() -> None:
    import math as pymath

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import FunctionTransformer

    x, y = np.arange(40, dtype=np.float32).reshape(20, 2), np.arange(20) % 2
    a = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    b = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    assert canonical_skops(a) == canonical_skops(b)
    back = load_estimator(canonical_skops(a), "sklearn.ensemble.RandomForestClassifier", "a")
    assert (back.predict(x) == a.predict(x)).all()
    foreign = canonical_skops(FunctionTransformer(func=pymath.log1p))
    with pytest.raises(TrainerError, match=r"holds types outside .*'math.log1p'"):
        load_estimator(foreign, "sklearn.preprocessing.FunctionTransformer", "f.skops")
    with pytest.raises(TrainerError, match="is not a readable skops file"):
        load_estimator(b"not a zip", "sklearn.ensemble.RandomForestClassifier", "x.skops")


BAD_ESTIMATORS = [
    ({"estimator": "no_such_pkg.Forest"}, "module 'no_such_pkg' cannot be imported"),
    ({"estimator": "sklearn.ensemble.NoSuchForest"}, "has no attribute 'NoSuchForest'"),
    ({"estimator": "math.pi"}, "not a scikit-learn estimator class"),
    ({"estimator": "sklearn.ensemble.RandomForestRegressor"},
     "is a regressor and the dataset is a classification task"),
    ({"params": {"n_trees": 3}}, "unexpected keyword argument 'n_trees'"),
    ({"params": {"max_depth": -1}}, "The 'max_depth' parameter of RandomForestClassifier must be"),
]


@pytest.mark.parametrize(("change", "words"), BAD_ESTIMATORS,
                         ids=[w.split("'")[0][:20] for _, w in BAD_ESTIMATORS])
def test_a_bad_estimator_exits_2_naming_it_and_writes_nothing(
        tmp_path: Path, change: dict[str, Any], words: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    raw = rf_task()
    raw["model"] = {**raw["model"], **change}
    cfg = tmp_path / "task.json"
    cfg.write_text(json.dumps(raw))
    storage = tmp_path / "runs"
    code = main(["run", str(cfg), "--storage-path", str(storage), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("mtp: ") and words in err[0], err
    assert "model.estimator=" in err[0] or "model.params" in err[0], err
    assert not list(storage.glob("*/*"))  # no run directory holds anything


@pytest.mark.parametrize(("change", "words"), [
    ({"resources": {"num_workers": 2}}, "resources.num_workers=2 does not apply to "
                                        "model.type=sklearn"),
    ({"strategy": "parameter_server"}, "strategy=parameter_server does not apply"),
    ({"resources": {"use_gpu": True, "gpus_per_worker": 1}}, "estimators run on CPUs"),
    ({"model": {"type": "sklearn", "estimator": "RandomForest"}}, "expected MODULE.CLASS"),
    ({"model": {"type": "sklearn", "estimator": "a.B", "params": {"n_jobs": 4}}},
     "n_jobs is set from resources.cpus_per_worker"),
    ({"model": {"type": "sklearn", "estimator": "a.B", "params": {"random_state": 1}}},
     "random_state is derived from the task's seed"),
])
def test_data_parallel_options_and_platform_params_are_config_errors(
        change: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        parse_task({**rf_task(), **change})
    assert parse_task(rf_task()).resources.num_workers == 1  # the default for an estimator


def test_cli_prints_the_fit_and_the_estimator(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    result = fit_here(rf_task(), tmp_path)
    assert main(["show", result.run_dir]) == 0
    out = capsys.readouterr().out
    assert "estimator=sklearn.ensemble.RandomForestClassifier" in out
    assert "checkpoint none (an estimator is fitted in one step)" in out
    assert any(line.startswith("fit  train_loss ") and "*best" in line
               for line in out.splitlines())


def test_a_study_refuses_estimator_params_scikit_learn_refuses() -> None:
    from hpo.errors import SearchConfigError
    from hpo.space import check_space
    from hpo.study import parse_search
    from mtp_core.spec import load_raw_config

    raw = load_raw_config(EXAMPLES / "random_forest_tune.yaml")
    search = raw.pop("search")
    check_space(parse_search(search, "t"), raw)  # the example's space is valid
    search["space"]["model.params.max_depth"] = {"type": "int", "low": 0, "high": 8}
    with pytest.raises(SearchConfigError, match=r"model.params.max_depth: value 0 is not valid"
                       r".*'max_depth' parameter of RandomForestClassifier must be"):
        check_space(parse_search(search, "t"), raw)
