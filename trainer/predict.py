"""Batch prediction (``mtp predict``): a file of new rows scored by a finished run on Ray Data.

The input (Parquet or CSV) is read by Ray Data in blocks and streamed through a pool of
scoring actors (``map_batches`` with a class: each actor loads the run's
:class:`~trainer.export.Predictor` once), so an input larger than one machine's memory is
scored on the cluster; the order of the rows is kept. The driver writes the scored batches to
one output file as they arrive (Parquet or CSV, by its suffix), holding a few batches at a
time, into a temporary file that replaces the output only when every row is written: an
interrupted run leaves no half-written output. Every input column is kept, then
``prediction`` (the label or value) and, for classifiers with probabilities,
``probability_<class>`` per class.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError, DataError

__all__ = ["PredictionSummary", "Scorer", "predict_file", "scored_table"]

FORMATS = (".parquet", ".csv")
DEFAULT_BATCH_ROWS = 8192


@dataclass(frozen=True)
class PredictionSummary:
    rows: int
    output: str
    seconds: float
    workers: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def scored_table(predictor: Any, batch: Any) -> Any:
    """``batch`` (a pyarrow Table) with the prediction columns appended."""
    import pyarrow as pa

    from trainer.export import Predictor

    assert isinstance(predictor, Predictor)
    labels, proba = predictor.predict_both(batch)  # one pass: features once, one forward
    out = batch.append_column("prediction", pa.array(labels.tolist()))
    if proba is not None:
        names = predictor.class_names or tuple(str(i) for i in range(proba.shape[1]))
        for i, name in enumerate(names):
            out = out.append_column(f"probability_{name}", pa.array(proba[:, i]))
    return out


class Scorer:
    """A Ray Data scoring actor: loads the run's predictor once, scores every batch it gets.
    ``RUN_DIR`` is set on a subclass per run (no constructor arguments to keep alive in the
    object store across actor restarts)."""

    RUN_DIR = ""

    def __init__(self) -> None:
        import torch

        from trainer.export import load_model

        torch.set_num_threads(1)  # one CPU per scoring actor
        self.predictor = load_model(self.RUN_DIR)

    def __call__(self, batch: Any) -> Any:
        return scored_table(self.predictor, batch)


def _format(path: Path, flag: str) -> str:
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"{flag} {str(path)!r}: expected a .parquet or .csv file")
    return path.suffix.lower()


def _input_columns(path: Path, fmt: str) -> list[str]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if fmt == ".parquet":
            with pq.ParquetFile(path) as pf:
                return list(pf.schema_arrow.names)
        reader = pacsv.open_csv(path)
        try:
            return list(reader.schema.names)
        finally:
            reader.close()
    except Exception as err:  # noqa: BLE001 - any reader error: the file is what is wrong
        raise DataError(f"--input {str(path)!r} is not a readable {fmt[1:]} file: "
                        f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                        ) from None


class _Writer:
    """Batches appended to one Parquet or CSV file, schema from the first batch."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self._writer: Any = None

    def write(self, table: Any) -> None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = (pq.ParquetWriter(self.path, table.schema) if self.fmt == ".parquet"
                            else pacsv.CSVWriter(self.path, table.schema))
        self._writer.write_table(table.cast(self._writer.schema)
                                 if self.fmt == ".parquet" else table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def predict_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path, *,
                 address: str | None = None, workers: int | None = None,
                 batch_rows: int = DEFAULT_BATCH_ROWS) -> PredictionSummary:
    """Score ``input_path`` with the run in ``run_dir`` into ``output_path`` on Ray Data.

    Checked before Ray starts, in this order: the run loads (every stored file matches its
    hash), the input and output are Parquet or CSV, and the input has every column the model
    needs.
    """
    from trainer.export import load_model

    predictor = load_model(run_dir)  # first: the run every other check is about
    src, dst = Path(input_path), Path(output_path)
    fmt_in, fmt_out = _format(src, "--input"), _format(dst, "--output")
    if not src.is_file():
        raise DataError(f"--input {str(src)!r} does not exist (or is not a file)")
    if dst.resolve() == src.resolve():
        raise ConfigError(f"--output {str(dst)!r} is the input file; give another path")
    if batch_rows < 1:
        raise ConfigError(f"--batch-size {batch_rows}: must be at least 1")
    present = _input_columns(src, fmt_in)
    missing = [c for c in predictor.columns if c not in present]
    if missing:
        raise DataError(f"--input {str(src)!r} has no column {missing[0]!r}, which the model "
                        f"needs (it needs {list(predictor.columns)}; the file has {present})")
    dst.parent.mkdir(parents=True, exist_ok=True)

    import ray
    import ray.data

    from mtp_core.ray_env import connect

    connect(address)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-dataset plan lines
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # output rows in input order
    ctx.enable_progress_bars = False
    # Ray Data's listing and reading tasks need a CPU of their own: scoring actors that held
    # every CPU would wait forever for their first batch
    cpus = int(ray.cluster_resources().get("CPU", 1))
    room = max(1, cpus - 1)
    pool = max(1, min(workers or room, room))
    actor_cpus = 1.0 if cpus > 1 else 0.5
    start = time.perf_counter()
    reader = ray.data.read_parquet if fmt_in == ".parquet" else ray.data.read_csv
    ds = reader(str(src.resolve()))
    scorer = type("Scorer", (Scorer,), {"RUN_DIR": str(Path(run_dir).resolve())})
    scored = ds.map_batches(scorer, batch_size=batch_rows, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=pool),
                            num_cpus=actor_cpus)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    writer = _Writer(tmp, fmt_out)
    rows = 0
    try:
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            writer.write(batch)
            rows += batch.num_rows
        writer.close()
        if rows == 0:
            raise DataError(f"--input {str(src)!r} has no rows")
        os.replace(tmp, dst)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    return PredictionSummary(rows, str(dst), time.perf_counter() - start, pool)
