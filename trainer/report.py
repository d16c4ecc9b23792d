"""``dataset.validation`` rules and the data report every run writes (``data_report.json``).

The rules are checked on the data as loaded, before it is hashed or split; each failure is a
DataError naming the rule, the column, the count and the limit. The report describes the
loaded data (rows; per column its type, missing and infinite values), the target (class
balance, or its statistics), the splits, the training split's feature statistics (no
validation or test row in them) and, with ``dataset.preprocess``, the columns the fitted steps
make. ``mtp validate`` prints it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mtp_core.spec import DataValidation, TaskKind
from trainer.data import Dataset
from trainer.errors import DataError

if TYPE_CHECKING:
    from trainer.prepare import PreparedTask

__all__ = ["check_validation", "data_report"]

REPORT_VERSION = 1


def _columns(ds: Dataset) -> list[tuple[str, np.ndarray, str]]:
    """Each feature column as loaded: name, values (one per row), type."""
    types = ds.column_types or ("number",) * len(ds.feature_names)
    if ds.raw is not None:
        return [(name, values, t) for (name, values), t in zip(ds.raw, types, strict=True)]
    flat = ds.features.reshape(ds.num_samples, -1)
    if flat.shape[1] != len(ds.feature_names):  # image data: one column per value
        return [(f"x{i}", flat[:, i], "number") for i in range(flat.shape[1])]
    return [(name, flat[:, i], t)
            for i, (name, t) in enumerate(zip(ds.feature_names, types, strict=True))]


def _missing(values: np.ndarray) -> int:
    if values.dtype.kind in "biuf":
        return int(np.isnan(values).sum()) if values.dtype.kind == "f" else 0
    return sum(1 for v in values.tolist() if v is None or (isinstance(v, float) and v != v))


def _infinite(values: np.ndarray) -> int:
    return int(np.isinf(values).sum()) if values.dtype.kind == "f" else 0


def _share(n: int, rows: int) -> str:
    return f"{n} of {rows} rows ({n / rows:.3f})"


def check_validation(rules: DataValidation | None, ds: Dataset) -> None:
    """Raise DataError on the first rule the loaded data breaks."""
    rows = ds.num_samples
    cols = _columns(ds)
    allow_inf = rules is not None and rules.allow_infinite
    for name, values, _ in cols:
        n = _infinite(values)
        if n and not allow_inf:
            raise DataError(f"dataset column {name!r} has {n} infinite value{'s' if n > 1 else ''}"
                            "; set dataset.validation.allow_infinite: true and clip them in "
                            "dataset.preprocess, or clean the data")
    if rules is None:
        return
    if rules.min_rows is not None and rows < rules.min_rows:
        raise DataError(f"dataset.validation.min_rows={rules.min_rows}: the data has {rows} "
                        "rows")
    if rules.columns is not None:
        have = {name: t for name, _, t in cols}
        for name, want in rules.columns.items():
            if name not in have:
                raise DataError(f"dataset.validation.columns: column {name!r} is missing; the "
                                f"feature columns are {sorted(have)}")
            got = have[name]
            if not (got == want or (want == "number" and got == "integer")):
                raise DataError(f"dataset.validation.columns: column {name!r} is {got}, "
                                f"expected {want}")
    if rules.max_missing_fraction is not None:
        for name, values, _ in cols:
            n = _missing(values)
            if n / rows > rules.max_missing_fraction:
                raise DataError(f"dataset.validation.max_missing_fraction="
                                f"{rules.max_missing_fraction:g}: column {name!r} misses "
                                f"{_share(n, rows)}")
    if rules.min_class_fraction is not None and ds.kind is TaskKind.CLASSIFICATION:
        counts = np.bincount(ds.targets, minlength=ds.num_classes)
        present = [(c, int(n)) for c, n in enumerate(counts) if n]
        c, n = min(present, key=lambda cn: (cn[1], cn[0]))
        if n / rows < rules.min_class_fraction:
            label = ds.class_names[c] if ds.class_names else c
            raise DataError(f"dataset.validation.min_class_fraction="
                            f"{rules.min_class_fraction:g}: class {label!r} has "
                            f"{_share(n, rows)}")


def _stats(values: np.ndarray) -> dict[str, float]:
    v = values[np.isfinite(values)].astype(np.float64)
    if not len(v):
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"),
                "max": float("nan")}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max())}


def data_report(prepared: PreparedTask) -> dict[str, Any]:
    """The report of a prepared task's data (JSON-ready)."""
    ds, split = prepared.loaded, prepared.split
    rows = ds.num_samples
    columns = []
    train_stats = {}
    for name, values, t in _columns(ds):
        entry: dict[str, Any] = {"name": name, "type": t, "missing": _missing(values),
                                 "infinite": _infinite(values)}
        if values.dtype.kind in "biuf":
            train_stats[name] = _stats(np.asarray(values[split.train], np.float64))
        else:
            text = [v for v in values[split.train].tolist() if isinstance(v, str)]
            entry["categories"] = len(set(text))
        columns.append(entry)
    if ds.kind is TaskKind.CLASSIFICATION:
        counts = np.bincount(ds.targets, minlength=ds.num_classes)
        names = ds.class_names or tuple(str(c) for c in range(ds.num_classes))
        target: dict[str, Any] = {
            "kind": "classification", "classes": ds.num_classes,
            "balance": {str(n): {"rows": int(c), "fraction": float(c) / rows}
                        for n, c in zip(names, counts, strict=True)}}
    else:
        target = {"kind": "regression", **_stats(np.asarray(ds.targets, np.float64))}
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "task_id": prepared.task.task_id,
        "data_hash": prepared.data_hash,
        "rows": rows,
        "columns": columns,
        "target": target,
        "splits": {"train": len(split.train), "validation": len(split.validation),
                   "test": len(split.test),
                   "how": ("time order (dataset.order_by)"
                           if getattr(prepared.task.dataset, "order_by", None)
                           else "stratified" if ds.kind is TaskKind.CLASSIFICATION
                           and prepared.task.training.stratify else "seeded shuffle")},
        "train_feature_stats": train_stats,
    }
    if prepared.preprocess is not None:
        report["preprocess"] = {"steps": len(prepared.task.dataset.preprocess),
                                "inputs": list(prepared.preprocess.inputs),
                                "outputs": list(prepared.preprocess.outputs),
                                "sha256": prepared.preprocess.sha256}
    return report
