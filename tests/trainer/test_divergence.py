"""A run whose loss or metrics become NaN or infinite stops at that epoch and says so: the
summary names the epoch and the metric, the diverged epoch is not checkpointed (a rerun resumes
from the last finite state), and the stored result reads back with its NaNs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from mtp_core.spec import parse_task
from tests.support.runs import finished_run
from trainer import train_local
from trainer.loop import first_non_finite
from trainer.result import load_result


def _diverging(epochs: int = 4) -> dict[str, Any]:
    # SGD with momentum at learning rate 10: the loss is NaN within the first epoch
    return {"name": "diverges", "model": {"type": "mlp", "hidden_sizes": [32]},
            "dataset": {"source": "sklearn", "name": "digits"},
            "training": {"epochs": epochs, "batch_size": 32, "learning_rate": 10,
                         "optimizer": "sgd"},
            "hyperparameters": {"momentum": 0.9},
            "resources": {"num_workers": 1}}


@pytest.mark.parametrize(("record", "expected"), [
    ({"train_loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.9}, None),
    ({"train_loss": math.nan, "val_loss": 0.4}, "train_loss"),
    ({"train_loss": 0.5, "val_loss": math.inf}, "val_loss"),
    ({"train_loss": 0.5, "val_loss": 0.4, "val_r2": -math.inf}, "val_r2"),
    ({"train_loss": 0.5, "val_loss": 0.4, "samples_per_s": math.nan}, None),  # not a metric
])
def test_first_non_finite_names_the_loss_or_metric(record: dict[str, Any],
                                                   expected: str | None) -> None:
    found = first_non_finite(record)
    assert (found[0] if found else None) == expected


def test_diverged_loop_stops_at_that_epoch_without_checkpointing_it(tmp_path: Path) -> None:
    summary = train_local(parse_task(_diverging()), storage_path=tmp_path)
    div = summary["diverged"]
    assert div is not None and div["epoch"] == 1 and div["metric"] == "train_loss"
    assert not math.isfinite(div["value"])
    assert summary["epochs_completed"] == 1  # stopped: 3 epochs were left
    assert not (tmp_path / "diverges" / "model.safetensors").exists()  # NaN weights not kept
    assert not (tmp_path / "diverges" / "checkpoints").exists() or not any(
        (tmp_path / "diverges" / "checkpoints").iterdir())


def test_diverged_result_reads_back_with_its_nans(tmp_path: Path) -> None:
    run = finished_run(_diverging(epochs=2), tmp_path)
    text = (run / "result.json").read_text()
    assert '"NaN"' in text and "null" not in text.split('"diverged"')[1].split("}")[0]
    result = load_result(run)
    assert result.diverged is not None and result.diverged.epoch == 1
    assert math.isnan(result.history[0].train_loss)
