"""``mtp predict`` on Ray Data: a file scored by a pool of actors, rows in input order, the
validation rows' predictions reproducing the run's stored metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtp.cli import main
from mtp_core.spec import parse_task
from tests.trainer.test_preprocess import CHURN, churn_task
from trainer import load_model
from trainer.api import Executor, train
from trainer.prepare import identify

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def test_mtp_predict_scores_a_file_in_order_and_reproduces_the_validation_metrics(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = parse_task(churn_task())
    result = train(task, storage_path=tmp_path / "runs", use_cache=False,
                   executor=Executor.IN_PROCESS)
    table = pa.csv.read_csv(CHURN)
    table = table.append_column("row_id", pa.array(np.arange(table.num_rows)))
    src = tmp_path / "new.parquet"
    pq.write_table(table, src, row_group_size=100)  # several blocks for Ray Data
    out = tmp_path / "scored.parquet"
    code = main(["predict", result.run_dir, "--input", str(src), "--output", str(out),
                 "--batch-size", "64"])
    assert code == 0, capsys.readouterr().err
    assert "scored 600 rows into" in capsys.readouterr().out
    scored = pd.read_parquet(out)
    assert scored["row_id"].tolist() == list(range(600))  # input order
    assert list(scored.columns[:8]) == [*table.column_names]
    assert {"prediction", "probability_no", "probability_yes"} <= set(scored.columns)
    # the same as the predictor in this process, and the stored validation accuracy
    here = load_model(result.run_dir).predict(table)
    assert scored["prediction"].tolist() == here.tolist()
    prepared = identify(task)
    val = prepared.split.validation
    truth = np.asarray(prepared.dataset.class_names, dtype=object)[prepared.dataset.targets]
    accuracy = float(np.mean(scored["prediction"].to_numpy()[val] == truth[val]))
    assert accuracy == result.final_metrics["val_accuracy"]
    # CSV in, CSV out
    csv_out = tmp_path / "scored.csv"
    assert main(["predict", result.run_dir, "--input", str(CHURN), "--output",
                 str(csv_out)]) == 0
    assert pd.read_csv(csv_out)["prediction"].tolist() == here.tolist()
