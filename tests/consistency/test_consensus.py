from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest

from consistency.consensus import ConsistencyReport, compare_results, metric_difference
from consistency.errors import ConsistencyError

H = "f" * 64


def _r(weights: str = H, **metrics: float) -> dict[str, Any]:
    return {"final_metrics": metrics, "weights_hash": weights}


def _cmp(results: list[dict[str, Any]], tol: float = 0.1, min_nodes: int = 2,
         threshold: float = 0.5) -> ConsistencyReport:
    nodes = [f"n{i}" for i in range(len(results))]
    return compare_results(results, nodes, tol, min_nodes, threshold)


def test_bitwise_equal_replicas_are_consistent() -> None:
    rep = _cmp([_r(val_loss=0.3), _r(val_loss=0.3), _r(val_loss=0.3)])
    assert rep.is_consistent and rep.bitwise_equal
    assert rep.confidence == 1.0 and rep.agreeing_nodes == ["n0", "n1", "n2"]
    assert rep.weights_hashes == [H, H, H]
    assert [(m.node, m.diff, m.within_tolerance) for m in rep.metrics] == [
        ("n1", 0.0, True), ("n2", 0.0, True)]


def test_metrics_within_tolerance_agree_without_equal_weights() -> None:
    rep = _cmp([_r("a", val_loss=1.0, val_accuracy=0.9), _r("b", val_loss=1.0005,
                                                            val_accuracy=0.9)], tol=0.1)
    assert rep.is_consistent and not rep.bitwise_equal
    loss = next(m for m in rep.metrics if m.name == "val_loss")
    assert loss.diff == pytest.approx(0.0005)
    assert loss.diff_percent == pytest.approx(0.05)
    assert loss.local == 1.0 and loss.remote == 1.0005 and loss.within_tolerance


def test_metric_outside_tolerance_is_logged_and_inconsistent(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="consistency.consensus"):
        rep = _cmp([_r("a", val_loss=1.0), _r("b", val_loss=1.01)], tol=0.1)
    assert not rep.is_consistent and rep.confidence == 0.5
    assert rep.metrics[0].diff_percent == pytest.approx(1.0)
    assert not rep.metrics[0].within_tolerance
    assert "metric val_loss differs" in caplog.text
    assert "n0=1.0" in caplog.text and "n1=1.01" in caplog.text
    assert "tolerance_percentage=0.1" in caplog.text


def test_confidence_and_min_nodes_decide() -> None:
    results = [_r("a", m=1.0), _r("b", m=1.0), _r("c", m=2.0), _r("d", m=3.0)]
    rep = _cmp(results, min_nodes=2, threshold=0.5)
    assert rep.agreeing_nodes == ["n0", "n1"] and rep.confidence == 0.5
    assert rep.is_consistent
    assert not _cmp(results, min_nodes=2, threshold=0.6).is_consistent  # confidence too low
    assert not _cmp(results, min_nodes=3, threshold=0.5).is_consistent  # too few nodes
    assert "min_consensus_nodes=3: NOT met" in _cmp(results, min_nodes=3).reason


def test_outlier_reference_is_not_verified() -> None:
    rep = _cmp([_r("x", m=5.0), _r("a", m=1.0), _r("a", m=1.0)])
    assert rep.agreeing_nodes == ["n0"] and not rep.is_consistent


def test_equal_weights_with_altered_metrics_is_inconsistent() -> None:
    # the weights hash alone cannot vouch for a result whose metrics were changed afterwards
    rep = _cmp([_r(H, m=1.0), _r(H, m=1.5)])
    assert rep.bitwise_equal and not rep.is_consistent
    assert not rep.metrics[0].within_tolerance and rep.agreeing_nodes == ["n0"]


@pytest.mark.parametrize(("local", "remote", "equal"), [
    (0.0, 0.0, True),
    (math.nan, math.nan, True),
    (math.inf, math.inf, True),
    (math.nan, 1.0, False),
    (1.0, math.nan, False),
    (0.0, 1e-9, False),
    (-2.0, -2.0, True),
])
def test_metric_difference_edge_cases(local: float, remote: float, equal: bool) -> None:
    _, pct = metric_difference(local, remote)
    assert (pct == 0.0) is equal
    if not equal:
        assert pct > 100.0
    rep = _cmp([_r("a", m=local), _r("b", m=remote)], tol=0.1)
    assert rep.is_consistent is equal


def test_missing_metric_disagrees_and_empty_metrics_need_equal_weights() -> None:
    rep = _cmp([_r("a", val_loss=1.0, val_f1=0.5), _r("b", val_loss=1.0)])
    missing = next(m for m in rep.metrics if m.name == "val_f1")
    assert missing.remote is None and missing.diff is None and not missing.within_tolerance
    assert not rep.is_consistent
    assert not _cmp([_r("a"), _r("b")]).is_consistent
    assert _cmp([_r("a"), _r("a")]).is_consistent


def test_single_replica_needs_min_nodes_one() -> None:
    assert not _cmp([_r(m=1.0)], min_nodes=2).is_consistent
    rep = _cmp([_r(m=1.0)], min_nodes=1)
    assert rep.is_consistent and rep.confidence == 1.0 and not rep.bitwise_equal


def test_report_is_json_serialisable_with_nan() -> None:
    rep = _cmp([_r("a", m=math.nan), _r("b", m=1.0)])
    data = rep.to_json_dict()
    text = json.dumps(data, allow_nan=False)  # strict JSON
    assert data["metrics"][0]["local"] == "NaN" and data["metrics"][0]["diff_percent"] == "Infinity"
    back = ConsistencyReport.model_validate_json(text)
    assert back.metrics[0].local is not None and math.isnan(back.metrics[0].local)
    assert back.is_consistent is False and back.nodes == ["n0", "n1"]
    # a stored report's results compare again (NaN arrives as the string "NaN")
    again = compare_results([{"final_metrics": {"m": "NaN"}, "weights_hash": "a"},
                             _r("b", m=math.nan)], ["x", "y"], 0.1, 2, 0.5)
    assert again.is_consistent


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ConsistencyError, match="2 results but 1 node names"):
        compare_results([_r(), _r()], ["n0"], 0.1, 2, 0.5)
    with pytest.raises(ConsistencyError, match="no results"):
        compare_results([], [], 0.1, 2, 0.5)
    with pytest.raises(ConsistencyError, match=r"tolerance_percentage=-1 is outside \[0, 100\]"):
        _cmp([_r(), _r()], tol=-1)
    with pytest.raises(ConsistencyError, match="min_consensus_nodes=0 must be an integer >= 1"):
        _cmp([_r(), _r()], min_nodes=0)
    with pytest.raises(ConsistencyError, match="node 'n1' has no 'final_metrics'"):
        _cmp([_r(), {"weights_hash": H}])
    with pytest.raises(ConsistencyError, match="metric 'm' of node 'n0' is not a number"):
        _cmp([{"final_metrics": {"m": "high"}, "weights_hash": H}, _r()])
