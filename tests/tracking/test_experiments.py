"""The across-run summary of an experiment, computed from hand-made runs (no MLflow)."""

from __future__ import annotations

import statistics

import pytest

from tracking import RunKind, RunRow, summarize


def _run(i: int, status: str, duration: float | None, acc: float | None, loss: float,
         kind: RunKind = RunKind.TRAINING) -> RunRow:
    metrics = {"val_loss": loss, **({"best_val_accuracy": acc} if acc is not None else {})}
    return RunRow(run_id=f"r{i}", name=f"run-{i}", kind=kind, status=status, start_ms=i,
                  duration_s=duration, metrics=metrics, monitor_metric="val_accuracy",
                  monitor_mode="max")


def test_the_summary_counts_rates_durations_metric_statistics_and_the_best_run() -> None:
    runs = [_run(1, "FINISHED", 10.0, 0.80, 0.50),
            _run(2, "FINISHED", 20.0, 0.90, 0.40),
            _run(3, "FAILED", 6.0, None, 0.90),
            _run(4, "RUNNING", None, 0.99, 0.30),  # not finished: not the best
            _run(5, "FINISHED", 0.1, 0.95, 0.35, kind=RunKind.CACHE_HIT),  # repeats a run
            _run(6, "FINISHED", 30.0, None, 0.0, kind=RunKind.STUDY)]
    s = summarize("exp", "7", runs)
    assert (s.count, s.finished, s.cache_hits, s.studies) == (4, 2, 1, 1)
    assert s.success_rate == pytest.approx(0.5)
    assert s.mean_duration_s == pytest.approx(12.0)  # runs 1-3 ended
    by = {m.name: m for m in s.metrics}
    loss = [0.50, 0.40, 0.90, 0.30]
    assert (by["val_loss"].count, by["val_loss"].min, by["val_loss"].max) == (4, 0.30, 0.90)
    assert by["val_loss"].mean == pytest.approx(statistics.fmean(loss))
    assert by["val_loss"].median == pytest.approx(0.45)
    assert by["val_loss"].std == pytest.approx(statistics.stdev(loss))
    acc = by["best_val_accuracy"]
    assert (acc.count, acc.min, acc.max) == (3, 0.80, 0.99)
    assert (s.monitor_metric, s.monitor_mode) == ("val_accuracy", "max")
    assert (s.best_run_id, s.best_value) == ("r2", 0.90)


def test_a_minimised_monitor_picks_the_lowest_and_one_run_has_zero_spread() -> None:
    row = RunRow(run_id="a", name="a", kind=RunKind.TRAINING, status="FINISHED", start_ms=0,
                 duration_s=1.0, metrics={"val_loss": 0.2}, monitor_metric="val_loss",
                 monitor_mode="min")
    other = RunRow(run_id="b", name="b", kind=RunKind.TRAINING, status="FINISHED", start_ms=1,
                   duration_s=3.0, metrics={"val_loss": 0.1, "best_val_loss": 0.05},
                   monitor_metric="val_loss", monitor_mode="min")
    s = summarize("exp", "1", [row, other])
    assert (s.best_run_id, s.best_value) == ("b", 0.05)  # best_<metric> wins over the latest
    one = summarize("exp", "1", [row])
    assert one.metrics[0].std == 0.0 and one.success_rate == 1.0


def test_an_empty_experiment_has_an_empty_summary() -> None:
    s = summarize("exp", "1", [])
    assert (s.count, s.success_rate, s.mean_duration_s, s.best_run_id) == (0, 0.0, None, None)
    assert s.metrics == []
