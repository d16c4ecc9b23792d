"""The search section: validation errors, the Tune space, parameter names checked against tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpo.errors import SearchConfigError
from hpo.space import apply_params, check_space, decode
from hpo.study import best_so_far, build_searcher, parse_search
from mtp.cli import main
from tests.conftest import EXAMPLES, digits_task_dict


def _spec(space: dict[str, Any], **kw: Any) -> Any:
    return parse_search({"space": space, **kw}, "study.yaml")


@pytest.mark.parametrize(("space", "kw", "message"), [
    ({"training.learning_rate": {"type": "uniform", "low": 0.1, "high": 0.1}}, {},
     r"search.space.training.learning_rate: .*empty range: low=0.1 must be below high=0.1"),
    ({"training.learning_rate": {"type": "loguniform", "low": 0.0, "high": 0.1}}, {},
     r"loguniform needs low > 0 \(log of a non-positive bound\), got low=0"),
    ({"training.batch_size": {"type": "int", "low": 8, "high": 4}}, {},
     r"empty range: low=8 must be below high=4"),
    ({"model.dropout": {"type": "choice", "values": []}}, {},
     r"search.space.model.dropout.values: .*at least 1 item"),
    ({"model.dropout": {"type": "normal", "low": 0, "high": 1}}, {},
     r"search.space.model.dropout: .*does not match any of the expected tags"),
    ({"model.dropout": {"type": "grid", "values": [0.1, 0.2]}}, {"searcher": "bayesian"},
     r"parameters \['model.dropout'\] are type grid, which only searcher=grid takes"),
    ({"model.dropout": {"type": "uniform", "low": 0, "high": 0.5}}, {"searcher": "grid"},
     r"searcher=grid needs finite values: parameters \['model.dropout'\] are ranges"),
    ({}, {}, r"search.space: .*at least 1 item"),
    ({"model.dropout": {"type": "uniform", "low": 0, "high": 0.5}}, {"searcher": "hyperband"},
     r"search.searcher: got \"hyperband\""),
    ({"model.dropout": {"type": "uniform", "low": 0, "high": 0.5}}, {"num_samples": 0},
     r"search.num_samples: got 0: Input should be greater than or equal to 1"),
    ({"model.dropout": {"type": "uniform", "low": 0, "high": 0.5}},
     {"searcher": "random", "initial_random_trials": 5},
     r"initial_random_trials=5 applies to searcher bayesian or tpe, not random; remove it"),
])
def test_bad_search_sections_name_the_field(space: dict, kw: dict, message: str) -> None:
    with pytest.raises(SearchConfigError, match=message):
        _spec(space, **kw)


def test_parameter_names_and_values_are_checked_against_the_task() -> None:
    base = digits_task_dict()
    with pytest.raises(SearchConfigError,
                       match=r"search.space.training.learnign_rate: unknown parameter name"):
        check_space(_spec({"training.learnign_rate": {"type": "uniform", "low": 0.1,
                                                      "high": 0.2}}), base)
    with pytest.raises(SearchConfigError,
                       match=r"search.space.model.dropout: value 1.5 is not valid for the task"):
        check_space(_spec({"model.dropout": {"type": "uniform", "low": 0.0, "high": 1.5}}), base)
    check_space(_spec({"model.hidden_sizes": {"type": "choice", "values": [[32], [64, 32]]}}),
                base)


def test_list_choices_round_trip_through_tune_and_back() -> None:
    spec = _spec({"model.hidden_sizes": {"type": "choice", "values": [[32], [64, 32]]},
                  "training.batch_size": {"type": "int", "low": 8, "high": 64}})
    params = decode(spec, {"model.hidden_sizes": "[64, 32]", "training.batch_size": 16.0})
    assert params == {"model.hidden_sizes": [64, 32], "training.batch_size": 16}
    raw = apply_params(digits_task_dict(), params)
    assert raw["model"]["hidden_sizes"] == [64, 32] and raw["training"]["batch_size"] == 16


def test_grid_size_and_best_so_far() -> None:
    spec = _spec({"model.dropout": {"type": "grid", "values": [0.0, 0.1, 0.2]},
                  "training.batch_size": {"type": "choice", "values": [16, 32]}},
                 searcher="grid")
    assert spec.grid_size() == 6 and spec.total_trials() == 6
    assert best_so_far([0.5, 0.4, 0.7, 0.6], "max") == [0.5, 0.5, 0.7, 0.7]
    assert best_so_far([0.5, 0.4, 0.7, 0.3], "min") == [0.5, 0.4, 0.4, 0.3]


def test_mtp_tune_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tune", str(EXAMPLES / "digits_mlp_tune.yaml"), "--storage-path",
                 str(tmp_path), "--set", "search.num_samples=0"])
    assert code == 2
    assert "search.num_samples: got 0" in capsys.readouterr().err
    assert main(["tune", str(EXAMPLES / "digits_mlp.yaml"), "--storage-path",
                 str(tmp_path)]) == 2
    assert "no search section" in capsys.readouterr().err


@pytest.mark.parametrize(("num_samples", "given", "startup"), [
    (12, None, 10), (500, None, 10), (30, 4, 4), (30, 7, 7)])
def test_model_based_searchers_start_with_the_configured_random_phase(
    num_samples: int, given: int | None, startup: int
) -> None:
    spec = _spec({"model.dropout": {"type": "uniform", "low": 0, "high": 0.5}},
                 num_samples=num_samples,
                 **({"initial_random_trials": given} if given else {}))
    assert spec.startup_trials() == startup
    searcher = build_searcher(spec)
    assert searcher is not None
    assert searcher._sampler._n_startup_trials == startup
