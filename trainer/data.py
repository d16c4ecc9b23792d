"""Loading datasets into memory, splitting them deterministically, and sharding batches.

The driver loads the dataset once (``load_dataset``), checks it, hashes it, and puts the arrays
in Ray's object store; every worker reads the same arrays zero-copy and takes its own shard of
each epoch's permutation (:class:`trainer.batches.ShardedBatches`). Nothing here imports torch:
a cached rerun loads, hashes and looks up its data without it.

Every problem with the data is one :class:`DataError` naming the file, the column, the value
and what is allowed: bad bytes, duplicate or missing columns, missing values, a target that is
neither numbers nor labels, labels that would make an absurd output layer, and sizes that cannot
fit in memory (checked before anything is allocated). Rows in messages are counted from 1, the
header not included.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtp_core.spec import (
    SKLEARN_KINDS,
    CustomDataset,
    DatasetSpec,
    FileDataset,
    SklearnDataset,
    SyntheticDataset,
    TaskKind,
    TrainingTask,
)
from trainer.data_memo import memoized
from trainer.errors import DataError

if TYPE_CHECKING:  # pyarrow is imported when a file is read
    import pyarrow as pa

__all__ = [
    "CSV_NULL_SPELLINGS",
    "MAX_CLASSES",
    "MAX_INFERRED_CLASSES",
    "Dataset",
    "DatasetMeta",
    "available_memory",
    "feature_stats",
    "format_bytes",
    "load_dataset",
    "Split",
    "raw_column",
    "split_indices",
    "split_rows",
    "task_split",
    "validation_shard",
]

#: Most classes a classification target may have. The model's output layer has one unit per
#: class, and integer labels are class indices (labels 0..K-1 make K units), so a stray large
#: label would make an absurd layer. The same bound as ``SyntheticDataset.n_classes`` (a test
#: keeps the two equal).
MAX_CLASSES = 10_000

#: With ``dataset.kind`` unset, an integer or text target is read as class labels only when that
#: makes at most this many classes (integers: largest label + 1; text: distinct values). Above
#: it the column is as likely a quantity (a count, a price, a year) or an identifier as a label,
#: so the user must say which by setting ``dataset.kind`` rather than have it guessed.
MAX_INFERRED_CLASSES = 100

#: The spellings of a missing value in a CSV field (pyarrow's defaults, stated here so the reader
#: and the messages agree). They are missing in text columns too: a label "NA" or "" is a
#: missing label, never a class.
CSV_NULL_SPELLINGS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                      "1.#IND", "1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null")

# Synthetic data: sklearn holds the float64 matrix and float64 copies of it while it generates
# (the shuffles), so generation needs this many bytes per value at its peak: measured with
# sklearn 1.9 as 27 for classification and 19 for regression, rounded down so a refused size is
# one that would not have fitted.
_SYNTHETIC_BYTES_PER_VALUE = {TaskKind.CLASSIFICATION: 24, TaskKind.REGRESSION: 16}

# How much of a CSV is sampled to estimate its row count before reading it.
_CSV_SAMPLE_BYTES = 1 << 20

_FLOAT32_MAX = float(np.finfo(np.float32).max)
# a number as CSV text: what tells a numeric column with one stray value from a label column
_NUMBER_RE = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


@dataclass(frozen=True)
class Dataset:
    """Features (float32, ``[N, *sample_shape]``) and targets (int64 labels or float32)."""

    name: str
    features: np.ndarray
    targets: np.ndarray
    kind: TaskKind
    num_classes: int
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...] = ()
    #: with ``dataset.preprocess``: the feature columns as loaded (numbers as float64 with NaN
    #: for missing, text as objects with None), which the fitted steps turn into ``features``
    raw: tuple[tuple[str, np.ndarray], ...] | None = None
    #: per feature column: number, integer, bool or text (as the source stored it)
    column_types: tuple[str, ...] = ()

    @property
    def num_samples(self) -> int:
        return int(self.features.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.features.shape[1:])


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units: ``512 B``, ``1.5 GiB``, ``72.8 TiB``."""
    if abs(n) < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:,.1f} PiB"


def available_memory() -> int:
    """Bytes the machine can still give this process without swapping: psutil's
    ``virtual_memory().available`` (Linux's ``MemAvailable``), the number the size checks
    compare against. psutil ships inside Ray and is importable once Ray is; without it the same
    figure is read from /proc/meminfo."""
    try:
        import psutil
    except ImportError:
        pass
    else:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not a POSIX system that says: no check
        return 2**63 - 1


def _check_fits(need: int, what: str, fix: str, available: int | None) -> None:
    have = available_memory() if available is None else available
    if need > have:
        raise DataError(f"{what} needs {format_bytes(need)} of memory but "
                        f"{format_bytes(have)} is available; {fix}")


def _finish(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    kind: TaskKind,
    feature_names: list[str],
    spec: DatasetSpec,
    class_names: tuple[str, ...] = (),
    *,
    origin: str | None = None,
    target: str | None = None,
    raw: list[tuple[str, np.ndarray]] | None = None,
    column_types: list[str] | None = None,
) -> Dataset:
    """The checks every source shares, in the order a user should fix them: row count, feature
    values, labels. ``origin`` (the file; default ``name``) and ``target`` (its column) name
    what is wrong in messages."""
    where = f"dataset {origin or name!r}"
    labels_of = (f"dataset.target {target!r} in {origin or name!r}" if target
                 else f"the targets of {where}")
    n_all = int(y.shape[0])
    if spec.max_samples is not None:
        x, y = x[: spec.max_samples], y[: spec.max_samples]
        raw = [(c, v[: spec.max_samples]) for c, v in raw] if raw is not None else None
    n = int(y.shape[0])
    if n == 0:
        raise DataError(f"dataset {name!r} is empty: 0 rows; it needs at least 2 rows")
    if n < 2:
        trimmed = (f" (dataset.max_samples={spec.max_samples} of its {n_all} rows)"
                   if n < n_all else "")
        raise DataError(f"{where} has {n} row{trimmed}; it needs at least 2")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad_rows = ~np.isfinite(x).reshape(n, -1)
        per_row = bad_rows.any(axis=1)
        row = int(np.argmax(per_row))
        col = int(np.argmax(bad_rows[row]))
        col_name = feature_names[col] if x.ndim == 2 and col < len(feature_names) else col
        raise DataError(
            f"{where} has {int(per_row.sum())} row{'s' if per_row.sum() > 1 else ''} with NaN "
            "or infinite feature values "
            f"(first: row {row + 1}, feature {col_name!r}); clean them before training"
        )
    if kind is TaskKind.CLASSIFICATION:
        labels = np.unique(y)
        if labels.min() < 0:
            raise DataError(f"{labels_of}: class labels must be >= 0, got {labels.min()}")
        if y.dtype.kind == "f" and not np.array_equal(labels, np.floor(labels)):
            bad = labels[labels != np.floor(labels)][0]
            raise DataError(f"{labels_of}: class labels must be whole numbers, got {bad}; "
                            "for a continuous target set dataset.kind: regression")
        if len(labels) < 2:
            only = class_names[int(labels[0])] if class_names else labels[0].item()
            raise DataError(
                f"{labels_of} has a single class: all {n} rows are labelled {only!r}; "
                "classification needs at least 2 distinct labels"
            )
        if class_names:
            num_classes = len(class_names)
            if num_classes > MAX_CLASSES:
                raise DataError(
                    f"{labels_of} has {num_classes:,} distinct labels: the output layer would "
                    f"have {num_classes:,} units, more than MAX_CLASSES={MAX_CLASSES:,}; "
                    "group rare labels together or train on fewer labels"
                )
        else:
            top = int(labels.max())
            num_classes = top + 1
            if num_classes > MAX_CLASSES:
                raise DataError(
                    f"{labels_of}: the largest class label is {top}; integer labels are class "
                    f"indices, so the output layer would have {num_classes:,} units (labels "
                    f"0..{top}), that is {format_bytes(4 * num_classes)} of weights per unit "
                    f"of the layer before it, more than MAX_CLASSES={MAX_CLASSES:,} classes; "
                    "number the classes 0..K-1, or store the labels as text (each distinct "
                    "text is one class)"
                )
        y = np.ascontiguousarray(y, dtype=np.int64)
    else:
        y = np.ascontiguousarray(y, dtype=np.float32)
        if not np.isfinite(y).all():
            row = int(np.argmax(~np.isfinite(y)))
            raise DataError(f"{labels_of} has NaN or infinite values (first: row {row + 1}, "
                            f"{y[row]}); regression needs finite numbers")
        num_classes = 0
    if spec.image_shape is not None:
        c, h, w = spec.image_shape
        if c * h * w != x[0].size:
            raise DataError(
                f"dataset.image_shape {list(spec.image_shape)} holds {c * h * w} values but "
                f"each sample of {name!r} has {x[0].size} features"
            )
        x = x.reshape(x.shape[0], c, h, w)
    if spec.preprocess and raw is None:  # numbers only: the columns are the features
        flat = x.reshape(n, -1).astype(np.float64)
        raw = [(c, flat[:, i]) for i, c in enumerate(feature_names)]
    types = tuple(column_types or ["number"] * len(feature_names))
    return Dataset(name, x, y, kind, num_classes, tuple(feature_names), class_names,
                   raw=tuple(raw) if spec.preprocess and raw is not None else None,
                   column_types=types)


def _load_sklearn(spec: SklearnDataset) -> Dataset:
    def build() -> tuple[np.ndarray, np.ndarray, list[str]]:
        from sklearn import datasets

        loader = {
            "digits": datasets.load_digits,
            "breast_cancer": datasets.load_breast_cancer,
            "wine": datasets.load_wine,
            "iris": datasets.load_iris,
            "diabetes": datasets.load_diabetes,
        }[spec.name]
        bunch = loader()
        x = np.asarray(bunch.data)
        names = getattr(bunch, "feature_names", [f"f{i}" for i in range(x.shape[1])])
        return x, np.asarray(bunch.target), [str(n) for n in names]

    x, y, names = memoized({"source": "sklearn", "name": spec.name}, build)
    if spec.name == "digits" and spec.image_shape is None:
        spec = spec.model_copy(update={"image_shape": (1, 8, 8)})
    return _finish(f"sklearn:{spec.name}", x, y, SKLEARN_KINDS[spec.name], names, spec)


def _load_synthetic(spec: SyntheticDataset, available_bytes: int | None) -> Dataset:
    values = spec.n_samples * spec.n_features
    per_value = _SYNTHETIC_BYTES_PER_VALUE[spec.kind]
    _check_fits(
        values * per_value,
        f"dataset.n_samples={spec.n_samples} x dataset.n_features={spec.n_features} "
        f"({values:,} values; generating them as float64 takes {per_value} bytes per value)",
        "lower dataset.n_samples or dataset.n_features",
        available_bytes,
    )
    informative = spec.n_informative or max(1, spec.n_features // 2)
    if spec.kind is TaskKind.CLASSIFICATION and spec.n_classes > 2**informative:
        raise DataError(
            f"dataset.n_classes={spec.n_classes} needs n_informative >= "
            f"{int(np.ceil(np.log2(spec.n_classes)))} (got {informative})"
        )

    def build() -> tuple[np.ndarray, np.ndarray, list[str]]:
        x, y = _generate(spec, informative)
        return x, y, [f"x{i}" for i in range(spec.n_features)]

    key = {"source": "synthetic", **spec.model_dump(mode="json", include=_GENERATOR_FIELDS)}
    x, y, names = (memoized(key, build) if values <= _MEMO_MAX_VALUES else build())
    return _finish(f"synthetic:{spec.kind.value}", x, y, spec.kind, names, spec)


#: What a generated dataset's arrays depend on (the rest of the spec is applied after).
_GENERATOR_FIELDS = {"kind", "n_samples", "n_features", "n_classes", "n_informative", "noise",
                     "seed"}
#: Generated datasets up to this many values (8 MB as float64) are kept on disk.
_MEMO_MAX_VALUES = 1_000_000


def _generate(spec: SyntheticDataset, informative: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification, make_regression

    if spec.kind is TaskKind.CLASSIFICATION:
        x, y = make_classification(
            n_samples=spec.n_samples,
            n_features=spec.n_features,
            n_informative=informative,
            n_redundant=0,
            n_classes=spec.n_classes,
            n_clusters_per_class=1,
            random_state=spec.seed,
        )
    else:
        x, y = make_regression(
            n_samples=spec.n_samples,
            n_features=spec.n_features,
            n_informative=informative,
            noise=spec.noise,
            random_state=spec.seed,
        )
        y = y / max(float(np.std(y)), 1e-12)  # unit-scale targets keep default lrs sensible
    return x, y


def _shown(names: list[str], most: int = 20) -> str:
    """A list of column names for a message, the first ``most`` of a long one."""
    if len(names) <= most:
        return str(names)
    return f"{str(names[:most])[:-1]}, ... ({len(names):,} in all)]"


def _printable(text: str) -> str:
    """``text`` with every character that is not printable (newlines, control bytes, line
    separators) escaped, so a message built from file contents stays one line."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _one_line(err: BaseException) -> str:
    """An exception's text on one line (pyarrow quotes the offending bytes of a file, newlines
    and all), cut to a readable length."""
    text = _printable(str(err).strip()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _first_invalid_utf8(col: pa.ChunkedArray) -> tuple[int, bytes] | None:
    """Row and bytes of the first value of a string or binary column that is not UTF-8; only
    the first chunk that fails Arrow's own check is decoded value by value."""
    import pyarrow as pa

    offset = 0
    for chunk in col.chunks:
        t = chunk.type
        if pa.types.is_large_string(t) or pa.types.is_large_binary(t):
            raw, text = chunk.view(pa.large_binary()), pa.large_string()
        elif pa.types.is_string(t) or pa.types.is_binary(t):
            raw, text = chunk.view(pa.binary()), pa.string()
        else:
            return None
        try:
            raw.view(text).validate(full=True)
        except pa.ArrowInvalid:
            for i, value in enumerate(raw.to_pylist()):
                if value is not None:
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        return offset + i, value
        offset += len(chunk)
    return None


class _TableFile:
    """One Parquet or CSV file read for a task, checked in the order a user fixes things:
    the file's columns (names, bytes), the size it will take, its rows, the features, and the
    target. Every check raises a DataError naming the file and the column."""

    def __init__(self, spec: FileDataset, path: Path, available_bytes: int | None) -> None:
        self.spec = spec
        self.path = path
        self.csv = spec.source == "csv"
        self.file = repr(str(path))
        self.available = available_bytes

    def load(self) -> Dataset:
        spec = self.spec
        columns = self._column_names()
        order = spec.order_by
        features = spec.features or [c for c in columns if c not in (spec.target, order)]
        self._check_columns(columns, features)
        if order is not None and order not in columns:
            raise DataError(f"dataset.order_by {order!r} is not a column of {self.file}; "
                            f"columns are {_shown(columns)}")
        extra = [order] if order is not None and order not in features else []
        table = self._read([*features, spec.target, *extra], len(features))
        self._check_text(table)
        if order is not None:
            table = _in_time_order(table, order, self.file)
        if table.num_rows < 2:
            if table.num_rows == 0:
                raise DataError(f"dataset {self.file} is empty: 0 rows; it needs at least 2 rows")
            raise DataError(f"dataset {self.file} has 1 row; it needs at least 2")
        y, kind, class_names = self._target(table.column(spec.target))
        types = [_column_type(table.column(name).type) for name in features]
        if spec.preprocess:  # text and missing values are the steps' to handle
            raw = [(name, raw_column(table.column(name), name, self.file)) for name in features]
            return _finish(self.path.name, np.zeros((len(y), 0), np.float32), y, kind, features,
                           spec, class_names, origin=str(self.path), target=spec.target,
                           raw=raw, column_types=types)
        x = np.stack([self._feature(table.column(name), name) for name in features], axis=1)
        return _finish(self.path.name, x, y, kind, features, spec, class_names,
                       origin=str(self.path), target=spec.target, column_types=types)

    # -- the file's columns ---------------------------------------------------------------------

    def _column_names(self) -> list[str]:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if not self.csv:
            with pq.ParquetFile(self.path) as pf:
                return list(pf.schema_arrow.names)
        reader = pacsv.open_csv(self.path)  # parses the first block only
        try:
            return list(reader.schema.names)
        except UnicodeDecodeError as err:
            raise DataError(
                f"the header (first line) of {self.file} is not valid UTF-8 text: byte "
                f"{err.object[err.start:err.end]!r} in column name {err.object!r}; save the "
                "file as UTF-8"
            ) from None
        finally:
            reader.close()

    def _check_columns(self, columns: list[str], features: list[str]) -> None:
        spec = self.spec
        seen: dict[str, int] = {}
        for i, name in enumerate(columns):
            if name in seen:
                raise DataError(
                    f"{self.file} has two columns named {name!r} (columns {seen[name] + 1} and "
                    f"{i + 1}); column names must be unique: rename one"
                )
            seen[name] = i
        if spec.target not in columns:
            raise DataError(
                f"dataset.target {spec.target!r} is not a column of {self.file}; "
                f"columns are {_shown(columns)}"
            )
        missing = [c for c in features if c not in columns]
        if missing:
            raise DataError(
                f"dataset.features {_shown(missing)} are not columns of {self.file}; columns "
                f"are {_shown(columns)}"
            )
        if spec.target in features:
            raise DataError(f"dataset.features includes the target column {spec.target!r}")
        if not features:
            raise DataError(f"{self.file} has no feature columns besides target {spec.target!r}")

    # -- reading --------------------------------------------------------------------------------

    def _read(self, used: list[str], n_features: int) -> pa.Table:
        """The used columns, after checking that they fit in memory: the decoded table plus the
        float32 feature matrix made from it."""
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if self.csv:
            rows, table_bytes, about = self._csv_size(len(used))
        else:
            with pq.ParquetFile(self.path) as pf:
                rows, table_bytes = self._parquet_size(pf, used)
            about = ""
        need = table_bytes + rows * n_features * 4
        _check_fits(need, f"dataset.path {self.file} ({about}{rows:,} rows x {len(used)} used "
                    "columns, decoded, plus the float32 features)",
                    "use a smaller file or fewer columns (dataset.features)", self.available)
        if not self.csv:
            return pq.read_table(self.path, columns=used)
        options = pacsv.ConvertOptions(include_columns=used, strings_can_be_null=True,
                                       null_values=list(CSV_NULL_SPELLINGS))
        return pacsv.read_csv(self.path, convert_options=options)

    def _parquet_size(self, pf: Any, used: list[str]) -> tuple[int, int]:
        """Rows and decoded bytes of the used columns, from the file's metadata: fixed-width
        columns exactly, others by their uncompressed size."""
        md = pf.metadata
        rows = int(md.num_rows)
        schema = pf.schema_arrow
        total = 0
        variable = set()
        for name in used:
            try:
                total += rows * schema.field(name).type.bit_width // 8
            except ValueError:  # not fixed width (strings, lists, ...)
                variable.add(name)
        for g in range(md.num_row_groups):
            group = md.row_group(g)
            for c in range(group.num_columns):
                chunk = group.column(c)
                leaf = chunk.path_in_schema  # "name", or "name.list.element" when nested
                if any(leaf == v or leaf.startswith(v + ".") for v in variable):
                    total += int(chunk.total_uncompressed_size)
        return rows, total

    def _csv_size(self, n_used: int) -> tuple[int, int, str]:
        """Rows estimated from the first MiB (exact when the file is smaller); each used value
        decodes to about 8 bytes (int64, double, or a short string with its offset)."""
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            sample = f.read(_CSV_SAMPLE_BYTES)
        lines = max(sample.count(b"\n") - 1, 1)  # the header is not a row
        if len(sample) >= size:
            return lines, lines * n_used * 8, ""
        rows = int(size / len(sample) * lines)
        return rows, rows * n_used * 8, "about "

    def _check_text(self, table: pa.Table) -> None:
        """Every text column is valid UTF-8. pyarrow's CSV reader types a column with bytes that
        are not UTF-8 as binary; a Parquet string column is checked by Arrow's validation."""
        import pyarrow as pa

        for name, col in zip(table.column_names, table.columns, strict=True):
            t = col.type
            binary = pa.types.is_binary(t) or pa.types.is_large_binary(t)
            if not ((self.csv and binary) or pa.types.is_string(t) or pa.types.is_large_string(t)):
                continue
            bad = _first_invalid_utf8(col)
            if bad is not None:
                row, value = bad
                shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
                raise DataError(
                    f"column {name!r} of {self.file} is not valid UTF-8 text: row {row + 1} "
                    f"holds the bytes {shown}; save the file as UTF-8"
                )

    # -- features and target --------------------------------------------------------------------

    def _missing(self, what: str, col: pa.ChunkedArray) -> str:
        import pyarrow.compute as pc

        first = pc.index(pc.is_null(col), True).as_py()
        n = col.null_count
        where = "every row" if n == len(col) and n > 1 else f"first: row {first + 1}"
        msg = f"{what} in {self.file} has {n} missing value{'s' if n > 1 else ''} ({where})"
        if self.csv:
            spellings = ", ".join(s for s in CSV_NULL_SPELLINGS if s)
            msg += f"; in a CSV an empty field and {spellings} count as missing"
        return msg

    def _check_float32_range(self, what: str, col: pa.ChunkedArray) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if not pa.types.is_floating(col.type) or col.type.bit_width <= 32:
            return
        too_big = pc.and_(pc.is_finite(col), pc.greater(pc.abs(col), _FLOAT32_MAX))
        row = pc.index(too_big, True).as_py()
        if row >= 0:
            raise DataError(
                f"{what} in {self.file} holds {col[row].as_py()!r} at row {row + 1}, beyond "
                f"float32's range (+-{_FLOAT32_MAX:.3g}) that training uses; rescale the column"
            )

    def _feature(self, col: pa.ChunkedArray, name: str) -> np.ndarray:
        import pyarrow as pa

        t = col.type
        what = f"dataset feature column {name!r}"
        if col.null_count and (col.null_count == len(col) or pa.types.is_null(t)):
            raise DataError(self._missing(what, col) + "; drop the column")
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                or pa.types.is_decimal(t)):
            raise DataError(
                f"dataset feature column {name!r} in {self.file} has type {_printable(str(t))}; "
                "feature columns must be numeric (int, float, decimal or bool)"
            )
        if col.null_count:
            raise DataError(self._missing(what, col) + "; fill them in or drop those rows")
        if pa.types.is_decimal(t):
            col = col.cast(pa.float64())
        self._check_float32_range(what, col)
        return np.asarray(col.to_numpy().astype(np.float32, copy=False))

    def _target(self, col: pa.ChunkedArray) -> tuple[np.ndarray, TaskKind, tuple[str, ...]]:
        import pyarrow as pa
        import pyarrow.compute as pc

        spec = self.spec
        what = f"dataset.target {spec.target!r}"
        if col.null_count:
            raise DataError(self._missing(what, col) + "; a target cannot be missing: fill "
                            "them in or drop those rows")
        t = col.type
        if pa.types.is_decimal(t):  # exact decimals are numbers, not labels
            col = col.cast(pa.float64())
            t = col.type
        number = pa.types.is_integer(t) or pa.types.is_floating(t)
        text = (pa.types.is_string(t) or pa.types.is_large_string(t)
                or pa.types.is_dictionary(t))
        if not (number or text or pa.types.is_boolean(t)):
            raise DataError(
                f"{what} in {self.file} has type {_printable(str(t))}; a target must be a number "
                "(int, float, decimal), a bool, or a text label (string or dictionary), one "
                "value per row"
            )
        if pa.types.is_floating(t):
            nan = pc.index(pc.is_nan(col), True).as_py()
            if nan >= 0:
                count = pc.sum(pc.is_nan(col)).as_py()
                raise DataError(f"{what} in {self.file} has {count} NaN value"
                                f"{'s' if count > 1 else ''} (first: row {nan + 1}); a target "
                                "cannot be missing: fill them in or drop those rows")
        kind = spec.kind
        if kind is None:
            kind = TaskKind.REGRESSION if pa.types.is_floating(t) else TaskKind.CLASSIFICATION
        if kind is TaskKind.REGRESSION:
            if not number:
                raise DataError(f"{what} in {self.file} has type {_printable(str(t))}; "
                                "regression needs numbers" + self._not_a_number(col))
            self._check_float32_range(what, col)
            return col.to_numpy().astype(np.float32), kind, ()
        if pa.types.is_integer(t) or pa.types.is_boolean(t):
            if spec.kind is None and not pa.types.is_boolean(t):
                lo, hi = (v.as_py() for v in pc.min_max(col).values())
                if hi + 1 > MAX_INFERRED_CLASSES:
                    distinct = len(pc.unique(col))
                    raise DataError(
                        f"{what} in {self.file} holds integers from {lo} to {hi} ({distinct} "
                        f"distinct values): as class labels (class indices 0..{hi}) they would "
                        f"make {hi + 1:,} classes, more than the {MAX_INFERRED_CLASSES} assumed "
                        "without dataset.kind; set dataset.kind: regression if they are "
                        "quantities, or dataset.kind: classification if they are class labels"
                    )
            # labels are class indices; _finish checks their range, then makes them int64
            return np.asarray(col.to_numpy()), kind, ()
        if pa.types.is_floating(t):
            whole = pc.and_(pc.is_finite(col), pc.equal(col, pc.floor(col)))
            row = pc.index(whole, False).as_py()
            if row >= 0:
                raise DataError(
                    f"{what} in {self.file} holds {col[row].as_py()!r} at row {row + 1}, not a "
                    "whole number, so it cannot be a class label; for a continuous target "
                    "set dataset.kind: regression"
                )
        # labels by name: the classes are the sorted distinct values (numbers by their text)
        as_str = pc.cast(col, pa.string())
        uniq = sorted(v for v in pc.unique(as_str).to_pylist() if v is not None)
        if spec.kind is None and len(uniq) > MAX_INFERRED_CLASSES:
            raise DataError(
                f"{what} in {self.file} has {len(uniq):,} distinct text values: as class "
                f"labels they would make {len(uniq):,} classes, more than the "
                f"{MAX_INFERRED_CLASSES} assumed without dataset.kind; set dataset.kind: "
                "classification if they are class labels" + self._not_a_number(col)
            )
        index = pc.index_in(as_str, value_set=pa.array(uniq, pa.string()))
        return np.asarray(index.to_numpy()).astype(np.int64), kind, tuple(uniq)

    def _not_a_number(self, col: pa.ChunkedArray) -> str:
        """For a text column that is mostly numbers, which value is not (often one stray
        marker, like '?', is what made a numeric column text)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            return ""
        numeric = pc.match_substring_regex(col, _NUMBER_RE)
        if pc.sum(numeric).as_py() * 2 < len(col):
            return ""
        row = pc.index(numeric, False).as_py()
        if row < 0:
            return "; its values are all numbers written as text: store them as numbers"
        return (f"; the column looks numeric but row {row + 1} holds {col[row].as_py()!r}, "
                "which is not a number")


def _load_file(spec: FileDataset, available_bytes: int | None) -> Dataset:
    import pyarrow as pa

    path = Path(spec.path)
    if not path.is_file():
        raise DataError(f"dataset.path {str(path)!r} does not exist (or is not a file)")
    try:
        return _TableFile(spec, path, available_bytes).load()
    except MemoryError as err:  # pyarrow's ArrowMemoryError included
        raise DataError(
            f"dataset.path {str(path)!r} does not fit in memory while it is read "
            f"({_one_line(err)}); use a smaller file or fewer columns (dataset.features)"
        ) from None
    except (pa.ArrowException, KeyError, UnicodeDecodeError, OSError) as err:
        # no reader error escapes: the file is what is wrong, and the message names it
        raise DataError(
            f"dataset.path {str(path)!r} is not a readable {spec.source} file: {_one_line(err)}"
        ) from None


def load_dataset(spec: DatasetSpec, *, available_bytes: int | None = None) -> Dataset:
    """Load the dataset a task names; raises DataError naming the file or field on bad input.

    Sizes are checked before anything big is allocated, against ``available_bytes`` (default:
    :func:`available_memory` now).
    """
    if isinstance(spec, SklearnDataset):
        return _load_sklearn(spec)
    if isinstance(spec, SyntheticDataset):
        return _load_synthetic(spec, available_bytes)
    if isinstance(spec, CustomDataset):
        return _load_custom(spec)
    return _load_file(spec, available_bytes)


def _text_classes(labels: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Text labels as class ids: each distinct text one class, numbered in sorted order."""
    names, ids = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    return ids.astype(np.int64), tuple(str(n) for n in names)


def _load_custom(spec: CustomDataset) -> Dataset:
    """Call the user's loader (its code found as a custom model's is) and check what it gave."""
    from trainer.user_code import find, install

    loader = install(find(spec.loader, spec.code_dir, field="dataset.loader"))
    said = f"dataset.loader={spec.loader!r}"
    try:
        out = loader(**spec.params)
    except Exception as err:  # noqa: BLE001 - the user's code may raise anything
        raise DataError(f"{said} raised {type(err).__name__}: {_one_line(err)}") from None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise DataError(f"{said} returned a {type(out).__name__}; expected a pair: (features, "
                        "targets) arrays, or (pyarrow.Table, target column name)")
    first, second = out
    class_names: tuple[str, ...] = ()
    raw: list[tuple[str, np.ndarray]] | None = None
    types: list[str] | None = None
    pa: Any = sys.modules.get("pyarrow")  # a loader that returns a table has imported it
    if pa is not None and isinstance(first, pa.Table):
        if not isinstance(second, str) or second not in first.column_names:
            raise DataError(f"{said} returned a table with columns {_shown(first.column_names)} "
                            f"and target {second!r}: the target must name one of them")
        if spec.order_by is not None:
            if spec.order_by not in first.column_names or spec.order_by == second:
                raise DataError(f"dataset.order_by {spec.order_by!r} is not a feature column of "
                                f"the table {said} returned; columns are "
                                f"{_shown(first.column_names)}")
            first = _in_time_order(first, spec.order_by, f"the table {said} returned")
        names = [c for c in first.column_names if c not in (second, spec.order_by)]
        if not names:
            raise DataError(f"{said} returned a table whose only column is the target {second!r}")
        types = [_column_type(first.column(name).type) for name in names]
        if spec.preprocess:
            raw = [(name, raw_column(first.column(name), name, f"the table {said} returned"))
                   for name in names]
        cols = []
        for name in names if not spec.preprocess else ():
            col = first.column(name)
            if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
                    or pa.types.is_boolean(col.type)):
                raise DataError(f"{said}: feature column {name!r} is {col.type}; features must "
                                "be numbers or booleans (encode text columns first)")
            cols.append(col.to_numpy(zero_copy_only=False).astype(np.float64))
        x = np.stack(cols, axis=1) if cols else np.zeros((first.num_rows, 0), np.float64)
        target = first.column(second)
        if pa.types.is_string(target.type) or pa.types.is_large_string(target.type):
            text = np.asarray(target.to_pylist(), dtype=object)
            if any(v is None for v in text):
                raise DataError(f"{said}: target column {second!r} has missing values")
            y, class_names = _text_classes(text.tolist())
        else:
            y = target.to_numpy(zero_copy_only=False)
    else:
        if spec.order_by is not None:
            raise DataError(f"dataset.order_by {spec.order_by!r} needs a column: {said} "
                            "returned arrays; return (pyarrow.Table, target column) instead")
        names = []
        try:
            x, y = np.asarray(first), np.asarray(second)
        except Exception as err:  # noqa: BLE001 - ragged or exotic objects
            raise DataError(f"{said} returned values that are not arrays: {_one_line(err)}"
                            ) from None
        if x.dtype.kind not in "biuf" or y.dtype.kind not in "biufUO":
            raise DataError(f"{said} returned features of dtype {x.dtype} and targets of dtype "
                            f"{y.dtype}; features must be numbers, targets numbers or text")
        if y.dtype.kind in "UO":
            y, class_names = _text_classes(y.astype(str).tolist())
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{said} returned features of shape {tuple(x.shape)} and targets of "
                        f"shape {tuple(y.shape)}; expected (rows, features...) and (rows,) with "
                        "the same number of rows")
    names = names or [f"x{i}" for i in range(int(np.prod(x.shape[1:])))]
    kind = spec.kind or (TaskKind.CLASSIFICATION if class_names or y.dtype.kind in "biu"
                         else TaskKind.REGRESSION)
    return _finish(f"custom:{spec.loader}", x, y, kind, names, spec, class_names,
                   raw=raw, column_types=types)


def _column_type(t: pa.DataType) -> str:
    """A column's type in the data report's words: integer, number, bool, text or its
    Arrow name."""
    import pyarrow as pa

    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "text"
    return str(t)


def raw_column(col: pa.ChunkedArray, name: str, where: str,
               allow_empty: bool = False) -> np.ndarray:
    """A feature column as the preprocessing steps take it: numbers as float64 (NaN where
    missing), text as Python strings (None where missing). ``allow_empty``: a column with no
    value at all (null-typed) is NaNs rather than an error (a batch of new rows may have
    none)."""
    import pyarrow as pa

    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(pa.string())
        t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return np.asarray(col.to_pylist(), dtype=object)
    if pa.types.is_decimal(t) or pa.types.is_boolean(t) or pa.types.is_integer(t):
        col = col.cast(pa.float64())
        t = col.type
    if pa.types.is_floating(t):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    if pa.types.is_null(t):  # every value missing: the reader could not tell its type
        if allow_empty:
            return np.full(len(col), np.nan)
        raise DataError(f"dataset feature column {name!r} in {where} has no values; drop it")
    raise DataError(f"dataset feature column {name!r} in {where} has type "
                    f"{_printable(str(t))}; feature columns must be numbers, booleans or text "
                    "(text needs an encoding step in dataset.preprocess)")


def _in_time_order(table: pa.Table, column: str, where: str) -> pa.Table:
    """``table`` sorted by ``column`` (``dataset.order_by``), a stable sort: rows with equal
    times keep their order. Every row needs a time: a missing or NaN one is a DataError."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(column)
    what = f"dataset.order_by {column!r} in {where}"
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_temporal(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t)
            or pa.types.is_decimal(t)):
        raise DataError(f"{what} has type {_printable(str(t))}; allowed: numbers, dates, "
                        "timestamps or text that sorts in time order (e.g. ISO 8601)")
    missing = pc.is_null(col, nan_is_null=True)
    count = pc.sum(missing).as_py() or 0
    if count:
        first = pc.index(missing, True).as_py()
        raise DataError(f"{what} has {count} missing value{'s' if count > 1 else ''} (first: "
                        f"row {first + 1}); every row needs its time: fill them in or drop those "
                        "rows")
    return table.take(pc.sort_indices(table, sort_keys=[(column, "ascending")]))


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation split into (train, validation) index arrays, both sorted.

    Sorting keeps each split in the dataset's order, so the split depends only on
    ``(n, validation_fraction, seed)`` and never on how the data is later sharded.
    """
    split = split_rows(n, validation_fraction, 0.0, seed)
    return split.train, split.validation


@dataclass(frozen=True)
class Split:
    """Row indices of the training, validation and test splits (each sorted, disjoint)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def _sizes(n: int, validation: float, test: float) -> tuple[int, int]:
    """Rows held for validation (at least 1) and test (at least 1 when asked for), leaving at
    least one to train on."""
    n_val = max(int(round(n * validation)), 1)
    n_test = max(int(round(n * test)), 1) if test > 0 else 0
    if n - n_val - n_test < 1:
        need = 3 if test > 0 else 2
        if n < need:
            raise DataError(f"the dataset has {n} row{'s' if n != 1 else ''}: a "
                            f"{'three' if test > 0 else 'two'}-way split needs at least "
                            f"{need} (one to train on, one for each held-out split)")
        n_val = min(n_val, n - 1 - (1 if test > 0 else 0))
        n_test = min(n_test, n - 1 - n_val)
    return n_val, n_test


def _shares(counts: np.ndarray, total: int) -> np.ndarray:
    """``total`` rows shared over groups of ``counts`` rows in proportion (largest
    remainders, ties to the lower group), never more than a group has."""
    want = counts * (total / max(int(counts.sum()), 1))
    take = np.minimum(np.floor(want).astype(np.int64), counts)
    order = sorted(range(len(counts)), key=lambda i: (-(want[i] - take[i]), i))
    short = total - int(take.sum())
    for i in order * 2:  # a second pass where a group is already full
        if short <= 0:
            break
        if take[i] < counts[i]:
            take[i] += 1
            short -= 1
    return take


def split_rows(n: int, validation: float, test: float, seed: int, *,
               labels: np.ndarray | None = None, ordered: bool = False) -> Split:
    """The seeded split of ``n`` rows into training, validation and test rows.

    - ``ordered``: the rows are in time order (``dataset.order_by``): the first rows train,
      the next validate, the last test; nothing is shuffled across the boundaries.
    - ``labels`` (classification, ``training.stratify``): each class is split in proportion
      (its rows drawn by the seeded permutation), so every split keeps the class shares.
    - otherwise: one seeded permutation; its first rows validate, the next test.

    The split depends only on these arguments, never on how the data is later sharded.
    """
    n_val, n_test = _sizes(n, validation, test)
    n_train = n - n_val - n_test
    if ordered:
        idx = np.arange(n)
        return Split(idx[:n_train], idx[n_train:n_train + n_val], idx[n_train + n_val:])
    rng = np.random.default_rng(seed)
    if labels is None:
        perm = rng.permutation(n)
        return Split(np.sort(perm[n_val + n_test:]), np.sort(perm[:n_val]),
                     np.sort(perm[n_val:n_val + n_test]))
    classes, inverse = np.unique(np.asarray(labels), return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(classes))]
    counts = np.array([len(m) for m in members], np.int64)
    val_take = _shares(counts, n_val)
    test_take = _shares(counts - val_take, n_test)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for rows, v, t in zip(members, val_take, test_take, strict=True):
        drawn = rows[rng.permutation(len(rows))]
        parts[1].append(drawn[:v])
        parts[2].append(drawn[v:v + t])
        parts[0].append(drawn[v + t:])
    train, val, tst = (np.sort(np.concatenate(p)) if p else np.empty(0, np.int64)
                       for p in parts)
    return Split(train, val, tst)


def task_split(task: TrainingTask, targets: np.ndarray, kind: TaskKind, seed: int) -> Split:
    """:func:`split_rows` as the task asks: its fractions, stratified for classification
    (unless ``training.stratify`` is off), in time order with ``dataset.order_by``."""
    t = task.training
    ordered = getattr(task.dataset, "order_by", None) is not None
    labels = targets if kind is TaskKind.CLASSIFICATION and t.stratify and not ordered else None
    return split_rows(len(targets), t.validation_split, t.test_split, seed, labels=labels,
                      ordered=ordered)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (float64 accumulation, std floored so constants stay finite)."""
    flat = features.reshape(features.shape[0], -1).astype(np.float64)
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    shape = features.shape[1:]
    return mean.reshape(shape).astype(np.float32), std.reshape(shape).astype(np.float32)


def validation_shard(n: int, rank: int, world_size: int) -> np.ndarray:
    """Rank ``r`` evaluates rows ``r, r+W, r+2W, ...``: disjoint, covering, no padding."""
    return np.arange(rank, n, world_size)


@dataclass(frozen=True)
class DatasetMeta:
    """What the workers need to know about the data besides the arrays."""

    kind: TaskKind
    num_classes: int
