"""The declarative data pipeline (``dataset.preprocess``), built of scikit-learn transformers.

Each step becomes one ``ColumnTransformer`` over its columns (the others pass through), all
in one ``Pipeline``. The steps are fitted one after the other on the **training split only**
(no validation or test row reaches a fitted statistic), then the fitted pipeline transforms
every row into the float32 features the model trains on. It is saved with the run as
canonical skops bytes (``preprocess.skops``), its sha256 in the result, and applied the same
way when the model predicts.

Steps and their scikit-learn transformers: ``impute`` (``SimpleImputer``), ``clip``
(:class:`QuantileClipper`, the one transformer scikit-learn lacks), ``one_hot``
(``OneHotEncoder``), ``ordinal`` (``OrdinalEncoder``), ``scale`` (``StandardScaler``,
``MinMaxScaler``, ``RobustScaler``), ``log`` (``FunctionTransformer(np.log1p)``),
``select_k_best`` (``SelectKBest``, ANOVA F), ``pca`` (``PCA``, seeded). Every problem is a
DataError naming the step (``dataset.preprocess[i]``) and the column.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from mtp_core.spec import (
    ClipStep,
    ImputeStep,
    LogStep,
    OneHotStep,
    OrdinalStep,
    PCAStep,
    PreprocessStep,
    ScaleStep,
    SelectKBestStep,
    TaskKind,
)
from trainer.errors import DataError

__all__ = ["FittedPreprocess", "QuantileClipper", "fit_preprocess", "load_preprocess",
           "transform_columns"]

_NUMERIC_STEPS = (ClipStep, ScaleStep, LogStep, SelectKBestStep, PCAStep)
TRUSTED_TYPES = ["trainer.preprocess.QuantileClipper"]
"""This module's own transformer types, trusted when a saved pipeline is loaded."""


class QuantileClipper(TransformerMixin, BaseEstimator):
    """Clip each column to the ``low``/``high`` quantiles of its training values."""

    def __init__(self, low: float = 0.01, high: float = 0.99) -> None:
        self.low = low
        self.high = high

    def fit(self, x: Any, y: Any = None) -> QuantileClipper:
        values = np.asarray(x, dtype=np.float64)
        self.bounds_ = np.nanquantile(values, [self.low, self.high], axis=0)
        self.n_features_in_ = values.shape[1]
        if hasattr(x, "columns"):
            self.feature_names_in_ = np.asarray(list(x.columns), dtype=object)
        return self

    def transform(self, x: Any) -> Any:
        values = np.asarray(x, dtype=np.float64)
        return np.clip(values, self.bounds_[0], self.bounds_[1])

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        if input_features is not None:
            return np.asarray(input_features, dtype=object)
        return np.asarray(getattr(self, "feature_names_in_", []), dtype=object)


@dataclass(frozen=True)
class FittedPreprocess:
    """The fitted pipeline and what it maps: raw columns in, feature columns out."""

    pipeline: Any
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    data: bytes  # canonical skops bytes
    sha256: str


def _frame(columns: tuple[tuple[str, np.ndarray], ...] | list[tuple[str, np.ndarray]]) -> Any:
    """The columns as a DataFrame; a missing value is NaN in every column (scikit-learn's
    marker, which it also finds in text columns)."""
    import pandas as pd

    data = {}
    for name, values in columns:
        if values.dtype.kind in "biuf":
            data[name] = pd.Series(values, dtype=np.float64)
        else:
            data[name] = pd.Series([np.nan if v is None else v for v in values.tolist()],
                                   dtype=object)
    return pd.DataFrame(data)


def _is_text(frame: Any, column: str) -> bool:
    return frame[column].dtype.kind not in "biuf"


def _where(i: int, step: PreprocessStep) -> str:
    return f"dataset.preprocess[{i}] ({step.step})"


def _columns(i: int, step: PreprocessStep, frame: Any) -> list[str]:
    """The columns step ``i`` transforms, checked against what the frame holds now."""
    where = _where(i, step)
    present = list(frame.columns)
    if step.columns is not None:
        missing = [c for c in step.columns if c not in present]
        if missing:
            raise DataError(f"{where}: columns {missing} are not there at this step; the "
                            f"columns are {present}")
        cols = list(step.columns)
    elif isinstance(step, OneHotStep | OrdinalStep):
        cols = [c for c in present if _is_text(frame, c)]
    elif isinstance(step, ImputeStep) and step.strategy in ("most_frequent", "constant"):
        cols = present
    elif isinstance(step, SelectKBestStep | PCAStep):
        cols = present
    else:
        cols = [c for c in present if not _is_text(frame, c)]
    if not cols:
        raise DataError(f"{where}: no column to apply it to (the columns are {present})")
    numeric_only = isinstance(step, _NUMERIC_STEPS) or (
        isinstance(step, ImputeStep) and step.strategy in ("mean", "median"))
    if numeric_only:
        text = [c for c in cols if _is_text(frame, c)]
        if text:
            raise DataError(f"{where}: column {text[0]!r} is text and the step takes numbers; "
                            "encode it first (a one_hot or ordinal step)")
    if not isinstance(step, ImputeStep | OneHotStep | OrdinalStep):
        holes = [(c, int(frame[c].isna().sum())) for c in cols if frame[c].isna().any()]
        if holes:
            c, n = holes[0]
            raise DataError(f"{where}: column {c!r} has {n} missing value{'s' if n > 1 else ''} "
                            "in the training split when this step runs; put an impute step "
                            "before it")
    return cols


def _transformer(i: int, step: PreprocessStep, cols: list[str], frame: Any, kind: TaskKind,
                 seed: int) -> list[tuple[str, Any, list[str]]]:
    """The ``(name, transformer, columns)`` entries of step ``i``'s ColumnTransformer."""
    from sklearn.decomposition import PCA
    from sklearn.feature_selection import SelectKBest, f_classif, f_regression
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import (
        FunctionTransformer,
        MinMaxScaler,
        OneHotEncoder,
        OrdinalEncoder,
        RobustScaler,
        StandardScaler,
    )

    name = f"{i}-{step.step}"
    if isinstance(step, ImputeStep):
        # numbers and text apart: one imputer over both would turn the numbers into objects
        numbers = [c for c in cols if not _is_text(frame, c)]
        text = [c for c in cols if _is_text(frame, c)]
        entries = []
        for part, cs in (("numbers", numbers), ("text", text)):
            if not cs:
                continue
            fill = step.fill_value
            if step.strategy == "constant" and part == "numbers" and isinstance(fill, str):
                raise DataError(f"{_where(i, step)}: fill_value {fill!r} is text for number "
                                f"columns {cs}; give a number, or list only text columns")
            imputer = SimpleImputer(strategy=step.strategy, fill_value=fill,
                                    missing_values=np.nan, keep_empty_features=True)
            entries.append((f"{name}-{part}", imputer, cs))
        return entries
    if isinstance(step, ClipStep):
        return [(name, QuantileClipper(*step.quantiles), cols)]
    if isinstance(step, OneHotStep):
        unknown = {"ignore": "ignore", "error": "error",
                   "infrequent": "infrequent_if_exist"}[step.unknown]
        return [(name, OneHotEncoder(handle_unknown=unknown, sparse_output=False,
                                     min_frequency=step.min_frequency, dtype=np.float64), cols)]
    if isinstance(step, OrdinalStep):
        if step.unknown == "code":
            enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                 dtype=np.float64)
        else:
            enc = OrdinalEncoder(dtype=np.float64)
        return [(name, enc, cols)]
    if isinstance(step, ScaleStep):
        scaler = {"standard": StandardScaler, "minmax": MinMaxScaler,
                  "robust": RobustScaler}[step.method]()
        return [(name, scaler, cols)]
    if isinstance(step, LogStep):
        low = min(float(np.nanmin(frame[c].to_numpy(np.float64))) for c in cols)
        if low <= -1:
            col = next(c for c in cols if float(np.nanmin(frame[c].to_numpy(np.float64))) <= -1)
            raise DataError(f"{_where(i, step)}: column {col!r} holds {low:g} in the training "
                            "split; log(1 + x) needs values above -1")
        return [(name, FunctionTransformer(np.log1p, feature_names_out="one-to-one"), cols)]
    if isinstance(step, SelectKBestStep):
        if step.k > len(cols):
            raise DataError(f"{_where(i, step)}: k={step.k} but only {len(cols)} columns are "
                            "there at this step")
        score = f_classif if kind is TaskKind.CLASSIFICATION else f_regression
        return [(name, SelectKBest(score, k=step.k), cols)]
    assert isinstance(step, PCAStep)
    n = step.n_components
    if isinstance(n, int) and n > len(cols):
        raise DataError(f"{_where(i, step)}: n_components={n} but only {len(cols)} columns are "
                        "there at this step")
    return [(name, PCA(n_components=n, svd_solver="full", random_state=seed % 2**32), cols)]


def fit_preprocess(steps: list[PreprocessStep], columns: tuple[tuple[str, np.ndarray], ...],
                   targets: np.ndarray, train: np.ndarray, kind: TaskKind, seed: int
                   ) -> tuple[FittedPreprocess, np.ndarray]:
    """Fit the steps on the training rows only; return the fitted pipeline and every row's
    features (float32). DataError naming the step and column when the data does not fit."""
    import warnings

    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    from trainer.classical import canonical_skops

    frame = _frame(columns)
    current = frame.iloc[train].reset_index(drop=True)
    y = targets[train]
    fitted: list[tuple[str, Any]] = []
    for i, step in enumerate(steps):
        cols = _columns(i, step, current)
        ct = ColumnTransformer(_transformer(i, step, cols, current, kind, seed),
                               remainder="passthrough", verbose_feature_names_out=False)
        ct.set_output(transform="pandas")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. constant columns in SelectKBest
                current = ct.fit_transform(current, y)
        except ValueError as err:
            infinite = [c for c in cols if not _is_text(current, c)
                        and np.isinf(current[c].to_numpy(np.float64)).any()]
            if infinite:
                raise DataError(f"{_where(i, step)}: column {infinite[0]!r} holds infinite "
                                "values in the training split; bound them first (a clip "
                                "step) or clean the data") from None
            raise DataError(f"{_where(i, step)}: {str(err).splitlines()[0]}") from None
        fitted.append((f"{i}-{step.step}", ct))
    pipeline = Pipeline(fitted)
    features = transform_columns(pipeline, frame, "the data")
    data = canonical_skops(pipeline)
    return (FittedPreprocess(pipeline, tuple(frame.columns), tuple(map(str, current.columns)),
                             data, hashlib.sha256(data).hexdigest()), features)


def transform_columns(pipeline: Any, frame: Any, what: str) -> np.ndarray:
    """Every row of ``frame`` through the fitted pipeline, as float32 features; a column left
    as text or with missing values is a DataError naming it."""
    try:
        out = pipeline.transform(frame) if pipeline.steps else frame
    except ValueError as err:
        infinite = [c for c in frame.columns
                    if not _is_text(frame, c) and np.isinf(frame[c].to_numpy(np.float64)).any()]
        if infinite:
            raise DataError(f"column {infinite[0]!r} of {what} holds infinite values, which a "
                            "step cannot take; bound them first (a clip step) or clean the "
                            "data") from None
        raise DataError(f"dataset.preprocess on {what}: {str(err).splitlines()[0]}") from None
    for c in out.columns:
        if _is_text(out, c):
            raise DataError(f"column {c!r} of {what} is still text after dataset.preprocess; "
                            "add a one_hot or ordinal step for it")
        n = int(out[c].isna().sum())
        if n:
            raise DataError(f"column {c!r} of {what} has {n} missing value{'s' if n > 1 else ''}"
                            " after dataset.preprocess; add an impute step for it")
    values = out.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        c = out.columns[int(np.argmax(~np.isfinite(values).all(axis=0)))]
        raise DataError(f"column {c!r} of {what} has infinite values after dataset.preprocess "
                        "(a log of a large value, or infinities in the data); clip them first")
    return values.astype(np.float32)


def load_preprocess(data: bytes, where: str) -> Any:
    """A saved pipeline: scikit-learn's types and this module's only."""
    from trainer.classical import load_estimator

    return load_estimator(data, "sklearn.pipeline.Pipeline", where)
