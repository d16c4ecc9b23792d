"""Two finished runs compared on the same held-out rows, with a paired significance test.

:func:`compare_runs` loads both runs' :class:`~trainer.export.Predictor` (every stored file
checked against its hash), checks that they answer the same question (task kind, target
column, feature columns, class labels), picks the rows, scores both models on them now
(real inference, never the stored metrics) and returns a :class:`Comparison`:

- the rows: by default the held-out **test** split of run A's task, re-derived as training
  derived it (the task stored in A's ``result.json``, its data loaded and checked against the
  data hash A recorded, split with the seed A recorded); when A's task had no test split
  (``training.test_split: 0``) its validation split, and the comparison says so. With
  ``data`` a Parquet or CSV file holding the feature columns and the target column.
- the metrics, A, B and B - A: accuracy, macro F1 and log loss (where both have
  probabilities) for classification; mse, mae and r2 for regression.
- the test: McNemar's exact test on per-row correctness (classification), a paired bootstrap
  of per-row squared error (regression); see :mod:`trainer.significance`.

:func:`format_comparison` renders it as a side-by-side table (the future
``mtp models compare NAME@A NAME@B [--data FILE]`` resolves registry versions to run
directories and prints it).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtp_core.direction import Direction
from mtp_core.errors import InputError
from mtp_core.spec import FileDataset, TaskKind, TrainingTask
from trainer.errors import DataError, TrainerError
from trainer.metrics import classification_metrics, confusion_matrix, regression_metrics
from trainer.significance import SignificanceTest, mcnemar, paired_bootstrap

if TYPE_CHECKING:
    from trainer.export import Predictor

__all__ = ["Comparison", "DataSource", "IncomparableRunsError", "MetricComparison",
           "MetricName", "compare_runs", "format_comparison", "target_column"]

logger = logging.getLogger(__name__)

#: The name of the target column in a ``--data`` file for runs whose dataset names none
#: (scikit-learn's bundled and generated datasets, custom loaders): scikit-learn's own.
DEFAULT_TARGET = "target"

#: Formats ``data`` may have, by suffix.
DATA_FORMATS = (".parquet", ".csv")

# The floor of a probability in the log loss: the one training uses (trainer.classical).
_PROBA_FLOOR = 1e-15

# The seed of the bootstrap: fixed, so a comparison printed twice is the same comparison.
BOOTSTRAP_SEED = 0


class IncomparableRunsError(TrainerError, InputError):
    """The two runs do not answer the same question (kind, target, features or classes
    differ); names what differs and both values."""


class DataSource(enum.StrEnum):
    """Where a comparison's rows came from."""

    TEST_SPLIT = "test_split"  # run A's held-out test split, re-derived
    VALIDATION_SPLIT = "validation_split"  # run A's validation split (its task had no test)
    FILE = "file"  # a data file given by the caller


class MetricName(enum.StrEnum):
    """A metric of a comparison; its :attr:`direction` says which way is better."""

    ACCURACY = "accuracy"
    MACRO_F1 = "macro_f1"
    LOG_LOSS = "log_loss"
    MSE = "mse"
    MAE = "mae"
    R2 = "r2"

    @property
    def direction(self) -> Direction:
        return (Direction.MINIMIZE if self in (MetricName.LOG_LOSS, MetricName.MSE,
                                               MetricName.MAE) else Direction.MAXIMIZE)


@dataclass(frozen=True)
class MetricComparison:
    """One metric of both models on the same rows; ``difference`` is ``b - a``."""

    metric: MetricName
    a: float
    b: float
    difference: float

    @classmethod
    def of(cls, metric: MetricName, a: float, b: float) -> MetricComparison:
        return cls(metric, float(a), float(b), float(b) - float(a))

    @property
    def b_is_better(self) -> bool | None:
        """Whether B is better on this metric (None: equal)."""
        if self.a == self.b:
            return None
        return self.metric.direction.improves(self.b, self.a)


@dataclass(frozen=True)
class Comparison:
    """Models A and B scored now on the same ``rows`` rows.

    ``source`` says where the rows came from and ``data_source`` says it in words (which run's
    split, or which file). ``notes`` are caveats about the rows (e.g. some were in B's
    training split). ``test`` is the paired significance test of B against A.
    """

    run_a: str
    run_b: str
    labels: tuple[str, str]
    kind: TaskKind
    target: str
    rows: int
    source: DataSource
    data_source: str
    metrics: tuple[MetricComparison, ...]
    test: SignificanceTest
    notes: tuple[str, ...] = ()

    def metric(self, name: MetricName) -> MetricComparison:
        for m in self.metrics:
            if m.metric is name:
                return m
        raise KeyError(f"{name.value} is not among this comparison's metrics "
                       f"{[m.metric.value for m in self.metrics]}")


@dataclass(frozen=True)
class _Rows:
    """The rows both models are scored on: the input columns by name and the targets
    (class ids for classification)."""

    columns: Any  # a dict of column arrays or a pyarrow Table: what Predictor takes
    targets: np.ndarray
    source: DataSource
    description: str
    notes: tuple[str, ...]


def target_column(task: TrainingTask) -> str:
    """The name of the column a ``data`` file holds the target in for runs of ``task``:
    ``dataset.target`` of a file dataset, else :data:`DEFAULT_TARGET`."""
    return task.dataset.target if isinstance(task.dataset, FileDataset) else DEFAULT_TARGET


def compare_runs(run_a: str | Path, run_b: str | Path, *, data: Path | None = None,
                 labels: tuple[str, str] = ("A", "B")) -> Comparison:
    """Score the models of ``run_a`` and ``run_b`` on the same rows and test the difference.

    Raises :class:`IncomparableRunsError` when the runs differ in task kind, target, feature
    columns or class labels; :class:`~trainer.errors.DataError` for a ``data`` file that is
    missing, of another format, or lacks a column (named); ``ResultFileError`` /
    ``TrainerError`` when a run does not load or a stored file fails its hash.
    """
    from trainer.export import load_model

    if len(labels) != 2 or labels[0] == labels[1] or not all(labels):
        raise InputError(f"labels={labels!r}: expected two different, non-empty names")
    la, lb = labels
    pred_a, pred_b = load_model(run_a), load_model(run_b)
    target = _check_comparable(pred_a, pred_b, labels)
    if data is not None:
        rows = _file_rows(Path(data), pred_a, target)
    else:
        rows = _split_rows(pred_a, pred_b, labels)
    n = len(rows.targets)
    if n == 0:
        raise DataError(f"{rows.description} has no rows to compare the models on")
    logger.info("comparing %s=%s and %s=%s on %d rows of %s", la, run_a, lb, run_b, n,
                rows.description)
    out_a, out_b = _evaluate(pred_a, rows), _evaluate(pred_b, rows)
    kind = pred_a.kind
    if kind is TaskKind.CLASSIFICATION:
        metrics, test = _classification(out_a, out_b, rows.targets, pred_a, pred_b)
    else:
        metrics, test = _regression(out_a, out_b, rows.targets)
    return Comparison(str(run_a), str(run_b), (la, lb), kind, target, n, rows.source,
                      rows.description, metrics, test, rows.notes)


# -- are they comparable ------------------------------------------------------------------------


def _check_comparable(a: Predictor, b: Predictor, labels: tuple[str, str]) -> str:
    """The target column both runs predict; IncomparableRunsError naming what differs."""
    la, lb = labels

    def differ(what: str, va: object, vb: object) -> IncomparableRunsError:
        return IncomparableRunsError(
            f"runs {la} ({a.run_dir}) and {lb} ({b.run_dir}) cannot be compared: their {what} "
            f"differ ({la}: {va!r}, {lb}: {vb!r}); compare two runs of the same task kind, "
            "target and feature columns")

    if a.kind is not b.kind:
        raise differ("task kinds", a.kind.value, b.kind.value)
    ta, tb = target_column(a.task), target_column(b.task)
    if ta != tb:
        raise differ("target columns", ta, tb)
    if set(a.columns) != set(b.columns):
        only_a = [c for c in a.columns if c not in b.columns]
        only_b = [c for c in b.columns if c not in a.columns]
        raise differ("feature columns (only in one of them)", only_a, only_b)
    if a.kind is TaskKind.CLASSIFICATION and a.class_names != b.class_names:
        raise differ("class labels", list(a.class_names), list(b.class_names))
    return ta


# -- the rows -----------------------------------------------------------------------------------


def _split_rows(a: Predictor, b: Predictor, labels: tuple[str, str]) -> _Rows:
    """Run A's held-out rows, re-derived: A's stored task, its data (checked against the hash
    A recorded), the split drawn with A's seed. The test split, else the validation split."""
    from trainer.data import task_split
    from trainer.prepare import identify

    la, lb = labels
    try:
        prepared = identify(a.task)
    except InputError as err:
        raise DataError(f"run {la} ({a.run_dir}): its task's data cannot be loaded to re-derive "
                        f"its held-out rows ({err}); give the rows as a data file instead"
                        ) from None
    if prepared.data_hash != a.result.data_hash:
        raise DataError(
            f"run {la} ({a.run_dir}): its task's data has changed since the run was trained "
            f"(data hash {prepared.data_hash[:12]}, the run recorded "
            f"{a.result.data_hash[:12]}): its held-out rows cannot be re-derived; give the rows "
            "as a data file instead")
    loaded = prepared.loaded
    split = task_split(a.task, loaded.targets, loaded.kind, a.result.seed)
    notes: list[str] = []
    if len(split.test):
        idx, source = split.test, DataSource.TEST_SPLIT
        what = f"the held-out test split of run {la}'s task {a.task.task_id!r}"
    else:
        idx, source = split.validation, DataSource.VALIDATION_SPLIT
        what = (f"the validation split of run {la}'s task {a.task.task_id!r} (its "
                "training.test_split is 0, so it has no test split)")
        notes.append(f"run {la} selected its best epoch (and stopped early) on these rows: its "
                     "numbers on them are optimistic")
    notes.extend(_leak_notes(b, lb, idx, prepared.data_hash, loaded.targets, loaded.kind))
    return _Rows(_columns_of(loaded, idx), loaded.targets[idx], source,
                 f"{what}, {len(idx)} rows", tuple(notes))


def _leak_notes(b: Predictor, lb: str, idx: np.ndarray, data_hash: str, targets: np.ndarray,
                kind: TaskKind) -> list[str]:
    """Caveats when B may have trained on some of the rows: a split of the same data drawn
    otherwise (another seed or fractions), or other data altogether."""
    from trainer.data import task_split

    if b.result.data_hash != data_hash:
        return [f"run {lb} was trained on other data (data hash {b.result.data_hash[:12]}): "
                f"whether these rows were held out from {lb} is unknown"]
    b_split = task_split(b.task, targets, kind, b.result.seed)
    seen = int(np.isin(idx, b_split.train).sum())
    if seen == 0:
        return []
    logger.warning("%d of the %d comparison rows were in run %s's training split", seen,
                   len(idx), lb)
    return [f"{seen} of these {len(idx)} rows were in run {lb}'s training split (its task "
            f"split the same data otherwise): its numbers on them are optimistic"]


def _columns_of(loaded: Any, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The input columns of the loaded dataset's rows ``idx``, by name, as loaded (before
    ``dataset.preprocess``, which each run's predictor applies itself)."""
    if loaded.raw is not None:
        return {name: values[idx] for name, values in loaded.raw}
    flat = loaded.features.reshape(loaded.num_samples, -1)
    names = loaded.feature_names
    if flat.shape[1] != len(names):
        raise TrainerError(f"{loaded.name}: {flat.shape[1]} feature values per row but "
                           f"{len(names)} feature names; its rows cannot be given by column")
    return {name: flat[idx, i] for i, name in enumerate(names)}


def _file_rows(path: Path, a: Predictor, target: str) -> _Rows:
    """The rows of a Parquet or CSV file: the model's columns and the target (DataError
    naming the file and a missing column)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from trainer.data import CSV_NULL_SPELLINGS

    shown = repr(str(path))
    fmt = path.suffix.lower()
    if fmt not in DATA_FORMATS:
        raise DataError(f"data file {shown}: expected a .parquet or .csv file")
    if not path.is_file():
        raise DataError(f"data file {shown} does not exist (or is not a file)")
    needed = [*a.columns, target] if target not in a.columns else list(a.columns)
    try:
        if fmt == ".parquet":
            with pq.ParquetFile(path) as pf:
                present = list(pf.schema_arrow.names)
        else:
            reader = pacsv.open_csv(path)
            try:
                present = list(reader.schema.names)
            finally:
                reader.close()
        missing = [c for c in needed if c not in present]
        if missing:
            role = "target column" if missing[0] == target else "feature column"
            raise DataError(f"data file {shown} has no column {missing[0]!r} (the runs' "
                            f"{role}); it needs {list(a.columns)} and the target {target!r}, "
                            f"the file has {present}")
        if fmt == ".parquet":
            table = pq.read_table(path, columns=needed)
        else:
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                include_columns=needed, strings_can_be_null=True,
                null_values=list(CSV_NULL_SPELLINGS)))
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"data file {shown} is not a readable {fmt[1:]} file: {first}"
                        ) from None
    targets = _file_targets(table.column(target).to_pylist(), a, target, shown)
    return _Rows(table, targets, DataSource.FILE,
                 f"data file {shown}, {table.num_rows} rows", ())


def _file_targets(values: list[Any], a: Predictor, target: str, shown: str) -> np.ndarray:
    """A file's target column as the runs' targets: class ids (by label where the runs had
    text labels) or finite float values; DataError naming the row and value otherwise."""
    where = f"target column {target!r} of data file {shown}"
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            raise DataError(f"{where} has a missing or non-finite value at row {i + 1}; every "
                            "row needs its target")
    if a.kind is TaskKind.REGRESSION:
        for i, v in enumerate(values):
            if not _is_number(v):
                raise DataError(f"{where} holds {v!r} at row {i + 1}; a regression target "
                                "must be numbers")
        return np.asarray(values, np.float64)
    if a.class_names:
        ids = {name: i for i, name in enumerate(a.class_names)}
        out = np.empty(len(values), np.int64)
        for i, v in enumerate(values):
            key = str(v)
            if key not in ids:
                raise DataError(f"{where} holds {v!r} at row {i + 1}, which is not a class the "
                                f"runs were trained on; allowed: {list(a.class_names)}")
            out[i] = ids[key]
        return out
    out = np.empty(len(values), np.int64)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not _is_number(v) or float(v) != int(float(v)) or v < 0:
            raise DataError(f"{where} holds {v!r} at row {i + 1}; the runs' classes are the "
                            f"whole numbers 0..{a.result.num_classes - 1}")
        out[i] = int(v)
    return out


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# -- scoring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outputs:
    """One model's predictions on the rows: class ids (classification) or values, and the
    class probabilities where it has them."""

    predicted: np.ndarray
    proba: np.ndarray | None


def _evaluate(p: Predictor, rows: _Rows) -> _Outputs:
    """The model's predictions now, through its predictor (its stored preprocessing)."""
    predicted, proba = p.predict_both(rows.columns)
    if p.kind is TaskKind.REGRESSION:
        return _Outputs(np.asarray(predicted, np.float64).reshape(-1), None)
    if p.class_names:
        ids = {name: i for i, name in enumerate(p.class_names)}
        predicted = np.asarray([ids[str(v)] for v in predicted.tolist()], np.int64)
    return _Outputs(np.asarray(predicted, np.int64), proba)


def _log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log probability of the true class, floored as training floors it (a
    class beyond the model's outputs has the floor)."""
    p = np.full(len(y), _PROBA_FLOOR)
    inside = y < proba.shape[1]
    p[inside] = proba[np.flatnonzero(inside), y[inside]]
    return float(-np.mean(np.log(np.clip(p, _PROBA_FLOOR, 1.0))))


def _classification(a: _Outputs, b: _Outputs, y: np.ndarray, pred_a: Predictor,
                    pred_b: Predictor) -> tuple[tuple[MetricComparison, ...], SignificanceTest]:
    k = max(pred_a.result.num_classes, pred_b.result.num_classes, int(y.max()) + 1,
            int(a.predicted.max()) + 1, int(b.predicted.max()) + 1)
    ma = classification_metrics(confusion_matrix(a.predicted, y, k))
    mb = classification_metrics(confusion_matrix(b.predicted, y, k))
    metrics = [MetricComparison.of(MetricName.ACCURACY, ma["val_accuracy"], mb["val_accuracy"]),
               MetricComparison.of(MetricName.MACRO_F1, ma["val_f1"], mb["val_f1"])]
    if a.proba is not None and b.proba is not None:
        metrics.append(MetricComparison.of(MetricName.LOG_LOSS, _log_loss(a.proba, y),
                                           _log_loss(b.proba, y)))
    return tuple(metrics), mcnemar(a.predicted == y, b.predicted == y)


def _regression(a: _Outputs, b: _Outputs, y: np.ndarray
                ) -> tuple[tuple[MetricComparison, ...], SignificanceTest]:
    t = y.astype(np.float64)

    def scores(p: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        err = p - t
        sq = err * err
        stats = np.array([sq.sum(), t.sum(), (t * t).sum(), float(len(t))])
        return {**regression_metrics(stats), "mae": float(np.abs(err).mean())}, sq

    ma, sq_a = scores(a.predicted)
    mb, sq_b = scores(b.predicted)
    metrics = (MetricComparison.of(MetricName.MSE, ma["val_mse"], mb["val_mse"]),
               MetricComparison.of(MetricName.MAE, ma["mae"], mb["mae"]),
               MetricComparison.of(MetricName.R2, ma["val_r2"], mb["val_r2"]))
    return metrics, paired_bootstrap(sq_a, sq_b, seed=BOOTSTRAP_SEED)


# -- output -------------------------------------------------------------------------------------


def format_comparison(c: Comparison) -> str:
    """A side-by-side table (metric, A, B, B-A), then the significance line and any notes."""
    la, lb = c.labels
    lines = [f"{la}: {c.run_a}", f"{lb}: {c.run_b}",
             f"{c.kind.value} of {c.target!r} on {c.data_source}"]
    head = ("metric", la, lb, f"{lb}-{la}")
    body = [(m.metric.value, f"{m.a:.4f}", f"{m.b:.4f}", f"{m.difference:+.4f}")
            for m in c.metrics]
    widths = [max(len(r[i]) for r in (head, *body)) for i in range(4)]
    for r in (head, *body):
        lines.append("  ".join([r[0].ljust(widths[0]),
                                *(v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True))]
                               ).rstrip())
    what = ("per-row correctness" if c.kind is TaskKind.CLASSIFICATION
            else "per-row squared error")
    lines.append(f"{c.test.describe(c.labels)} (on {what})")
    lines.extend(f"note: {n}" for n in c.notes)
    return "\n".join(lines)
