"""Loading a finished run's model back: a :class:`Predictor` that takes the columns the run
was trained on, applies the stored preprocessing and predicts with the network or the fitted
scikit-learn pipeline, every stored file checked against its hash."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from consistency.hashing import state_dict_hash
from mtp_core.layout import RunLayout
from mtp_core.spec import CustomModel, SklearnModel, TaskKind, TrainingTask
from trainer.errors import DataError, TrainerError
from trainer.models import build_model
from trainer.result import TrainingResult, load_result

__all__ = ["Predictor", "load_model", "load_network"]

_BATCH = 8192


def load_model(source: str | Path, verify: bool = True, *,
               storage_path: str | Path | None = None,
               tracking_uri: str | None = None) -> Predictor:
    """The :class:`Predictor` of a run directory or of a registered version
    (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``; resolved through the model registry of
    ``storage_path``, default ``$MTP_STORAGE_PATH`` or ``./mtp_results``, and ``tracking_uri``).

    ``predict`` / ``predict_proba`` take new rows by column name (a pandas DataFrame, a
    pyarrow Table or a mapping of columns), apply the stored ``dataset.preprocess`` and return
    labels (or values); ``.module`` is the torch network (``.estimator`` the fitted
    scikit-learn pipeline). With ``verify`` every stored file must hash to what the result
    records."""
    if isinstance(source, str) and source.startswith("models:/"):
        import os

        from database import open_database
        from tracking.models import ModelRegistry, VersionRef
        from tracking.target import resolve_target

        storage = Path(storage_path or os.environ.get("MTP_STORAGE_PATH") or "./mtp_results")
        storage = storage.expanduser().resolve()
        version = ModelRegistry(resolve_target(tracking_uri, storage, source="tracking_uri"),
                                open_database(storage)).resolve(VersionRef.parse(source))
        source = version.run_dir
    return Predictor(source, verify=verify)


class Predictor:
    """A finished run's model with what it needs to score raw rows (see :func:`load_model`)."""

    def __init__(self, run_dir: str | Path, verify: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.result: TrainingResult = load_result(run_dir)
        self.task = TrainingTask.model_validate(self.result.task)
        self.kind = TaskKind(self.result.task_kind)
        self.class_names = tuple(self.result.class_names)
        self.module: nn.Module | None = None
        self.estimator: Any = None
        if isinstance(self.task.model, SklearnModel):
            self.estimator = _load_estimator(self.run_dir, self.result.model_path,
                                             self.result.weights_hash, self.task.model, verify)
        else:
            self.module = load_network(run_dir, verify, self.result)
        self.preprocess = self._load_preprocess(verify)
        self.columns: tuple[str, ...] = (
            tuple(self.preprocess.feature_names_in_) if self.preprocess is not None
            else tuple(self.result.feature_columns))

    def _load_preprocess(self, verify: bool) -> Any:
        want = self.result.versions.get("preprocess_sha256")
        if want is None:
            return None
        from trainer.preprocess import load_preprocess

        path = RunLayout.of(self.run_dir).preprocess
        data = _verified_bytes(path, want if verify else None, "preprocessing file",
                               "preprocess_sha256")
        return load_preprocess(data, str(path))

    # -- input ------------------------------------------------------------------------------

    def features(self, data: Any, what: str = "the input") -> np.ndarray:
        """The model's float32 input for ``data``'s rows (DataError naming a missing column)."""
        if not self.columns:  # a run stored before mtp recorded its input columns
            if isinstance(data, np.ndarray) and self.preprocess is None:
                x = np.ascontiguousarray(data, dtype=np.float32)
                return (x.reshape((len(x), *self.result.sample_shape)) if self.module is not None
                        else x.reshape(len(x), -1))
            raise TrainerError(f"{self.run_dir} was stored by an mtp that did not record its "
                               "input columns: give the features as an array of shape "
                               f"(rows, {', '.join(map(str, self.result.sample_shape))})")
        columns = _columns_of(data, self.columns, what)
        if self.result.feature_types:
            columns = [(name, _as_trained(values, t, name, what)) for (name, values), t
                       in zip(columns, self.result.feature_types, strict=True)]
        if self.preprocess is not None:
            from trainer.preprocess import _frame, transform_columns

            x = transform_columns(self.preprocess, _frame(columns), what)
        else:
            for name, values in columns:
                if values.dtype.kind not in "biuf":
                    raise DataError(f"column {name!r} of {what} is not numeric; the run was "
                                    "trained on numbers (no dataset.preprocess encodes text)")
                bad = ~np.isfinite(values.astype(np.float64))
                if bad.any():
                    raise DataError(f"column {name!r} of {what} has {int(bad.sum())} missing or "
                                    f"infinite values (first: row {int(np.argmax(bad)) + 1}); "
                                    "the run was trained without dataset.preprocess to fill "
                                    "them")
            x = (np.stack([v.astype(np.float32) for _, v in columns], axis=1) if columns
                 else np.zeros((0, 0), np.float32))
        return x.reshape((len(x), *self.result.sample_shape)) if self.module is not None else x

    # -- output -----------------------------------------------------------------------------

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities, one column per class id (classification)."""
        if self.kind is not TaskKind.CLASSIFICATION:
            raise TrainerError("predict_proba is for classification runs")
        return self._scores(self.features(data), proba=True)

    def predict(self, data: Any) -> np.ndarray:
        """Labels (class names where the run had text labels, else class ids) or values."""
        x = self.features(data)
        if self.kind is TaskKind.REGRESSION:
            return self._scores(x, proba=False).astype(np.float64)
        return self._labels(self._scores(x, proba=False))

    def predict_both(self, data: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict` and :meth:`predict_proba` from one pass over ``data`` (None for
        the probabilities of a regression, or of a classifier without them)."""
        x = self.features(data)
        if self.kind is TaskKind.REGRESSION:
            return self._scores(x, proba=False).astype(np.float64), None
        if self.estimator is not None:  # its own predict: the same labels as predict()
            labels = self._labels(self._scores(x, proba=False))
            has = hasattr(self.estimator, "predict_proba")
            return labels, self._scores(x, proba=True) if has else None
        logits = self._logits(x)  # one forward: the labels are its argmax, as predict's are
        return self._labels(logits.argmax(axis=1)), _softmax(logits)

    def _labels(self, ids: np.ndarray) -> np.ndarray:
        ids = ids.astype(np.int64)
        if self.class_names:
            return np.asarray(self.class_names, dtype=object)[ids]
        return ids

    def _scores(self, x: np.ndarray, proba: bool) -> np.ndarray:
        if self.estimator is not None:
            if proba:
                if not hasattr(self.estimator, "predict_proba"):
                    raise TrainerError(f"{type(self.estimator[-1]).__name__} has no "
                                       "predict_proba")
                out = np.zeros((len(x), self.result.num_classes), np.float64)
                classes = np.asarray(self.estimator.classes_, np.int64)
                out[:, classes] = self.estimator.predict_proba(x.reshape(len(x), -1))
                return out
            return np.asarray(self.estimator.predict(x.reshape(len(x), -1)))
        logits = self._logits(x)
        if self.kind is not TaskKind.CLASSIFICATION:
            return logits
        return _softmax(logits) if proba else logits.argmax(axis=1)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        """The network's outputs for ``x`` (float32), in batches, without gradients."""
        import torch

        assert self.module is not None
        parts = []
        with torch.no_grad():
            for s in range(0, len(x), _BATCH):
                parts.append(self.module(torch.from_numpy(
                    np.ascontiguousarray(x[s:s + _BATCH]))).numpy())
        if not parts:
            width = (self.result.num_classes,) if self.kind is TaskKind.CLASSIFICATION else ()
            return np.zeros((0, *width), np.float32)
        return np.concatenate(parts)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """torch's softmax over the last axis (the same float32 arithmetic as at training)."""
    import torch

    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()


def _columns_of(data: Any, needed: tuple[str, ...], what: str) -> list[tuple[str, np.ndarray]]:
    """The ``needed`` columns of ``data`` as the steps take them (numbers float64 with NaN,
    text as objects); a missing column is a DataError naming it."""
    import sys

    pa: Any = sys.modules.get("pyarrow")
    pd: Any = sys.modules.get("pandas")
    if isinstance(data, np.ndarray):
        flat = data.reshape(len(data), -1) if data.ndim > 1 else data.reshape(-1, 1)
        if flat.shape[1] != len(needed) or data.dtype.kind not in "biuf":
            raise DataError(f"{what} is an array of shape {data.shape}; give the {len(needed)} "
                            f"columns {_shown(needed)} by name (a DataFrame or pyarrow Table)")
        return [(name, flat[:, i].astype(np.float64)) for i, name in enumerate(needed)]
    if pa is not None and isinstance(data, pa.Table):
        from trainer.data import raw_column

        present = data.column_names
        get = (lambda c: raw_column(data.column(c), c, what, allow_empty=True))  # noqa: E731
    elif pd is not None and isinstance(data, pd.DataFrame):
        present = [str(c) for c in data.columns]
        get = (lambda c: _plain_values(data[c].to_numpy()))  # noqa: E731
    elif isinstance(data, dict):
        present = list(data)
        get = (lambda c: _plain_values(np.asarray(data[c])))  # noqa: E731
    else:
        raise DataError(f"{what} is a {type(data).__name__}; give a pandas DataFrame, a pyarrow "
                        "Table or a mapping of columns")
    missing = [c for c in needed if c not in present]
    if missing:
        raise DataError(f"{what} has no column {missing[0]!r}, which the model needs (it needs "
                        f"{_shown(needed)})")
    return [(c, get(c)) for c in needed]


def _as_trained(values: np.ndarray, trained: str, name: str, what: str) -> np.ndarray:
    """A column of new rows in the type it was trained as: numbers where the run had numbers
    (a batch whose values are all missing reads as untyped), text where it had text."""
    if trained == "text":
        if values.dtype.kind == "f" and np.isnan(values).all():
            return np.full(len(values), None, dtype=object)
        return values
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    out = np.empty(len(values), np.float64)
    for i, v in enumerate(values.tolist()):
        try:
            out[i] = np.nan if v is None else float(v)
        except (TypeError, ValueError):
            raise DataError(f"column {name!r} of {what} holds {v!r} at row {i + 1}; the run "
                            f"was trained on {trained} values there") from None
    return out


def _shown(names: tuple[str, ...] | list[str]) -> str:
    names = list(names)
    return str(names) if len(names) <= 8 else f"{names[:8]} and {len(names) - 8} more"


def _plain_values(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    out = values.astype(object)
    return np.asarray([None if (isinstance(v, float) and math.isnan(v)) else v for v in out],
                      dtype=object)


def load_network(run_dir: str | Path, verify: bool = True,
                 result: TrainingResult | None = None) -> nn.Module:
    """Rebuild the run's network from its stored task and load ``model.safetensors``.

    The network takes the features the run's preprocessing makes, unstandardised: its first
    layer holds the training split's feature statistics. With ``verify`` the weights must hash
    to the result's ``weights_hash``.
    """
    from safetensors.torch import load_file

    result = result or load_result(run_dir)
    task = TrainingTask.model_validate(result.task)
    if isinstance(task.model, SklearnModel):
        raise TrainerError(f"{run_dir}: model.type=sklearn is no network; use load_model")
    path = Path(run_dir) / "model.safetensors"
    if not path.is_file():
        path = Path(result.model_path)
    if not path.is_file():
        raise TrainerError(f"model file {str(path)!r} is missing")
    state = load_file(str(path))
    if verify and state_dict_hash(state) != result.weights_hash:
        raise TrainerError(
            f"model weights {str(path)!r} do not match the result's weights_hash "
            f"{result.weights_hash[:12]}: the file was changed or corrupted"
        )
    trained_with = result.versions.get("model_code_sha256")
    if isinstance(task.model, CustomModel):
        from trainer.user_code import install, resolve

        code = resolve(task.model)
        if trained_with is not None and code.sha256 != trained_with:
            raise TrainerError(
                f"model.factory={task.model.factory!r}: its source found now (sha256 "
                f"{code.sha256[:12]}) is not the source this run was trained with "
                f"({trained_with[:12]}); restore that code to load the model")
        install(code)
    shape = tuple(result.sample_shape)
    model = build_model(task.model, shape, TaskKind(result.task_kind), result.num_classes,
                        np.zeros(shape, np.float32), np.ones(shape, np.float32))
    model.load_state_dict(state)
    model.eval()
    return model


def _load_estimator(run_dir: Path, model_path: str, weights_hash: str, spec: SklearnModel,
                    verify: bool) -> Any:
    from trainer.classical import load_estimator

    path = run_dir / "model.skops"
    if not path.is_file():
        path = Path(model_path)
    data = _verified_bytes(path, weights_hash if verify else None, "model file", "weights_hash")
    return load_estimator(data, spec.estimator, str(path))


def _verified_bytes(path: Path, sha256: str | None, what: str, recorded_as: str) -> bytes:
    """The file's bytes, refused when missing or (``sha256`` given) when they hash to
    anything else than the result records."""
    if not path.is_file():
        raise TrainerError(f"{what} {str(path)!r} is missing")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise TrainerError(f"{what} {str(path)!r} does not match the result's {recorded_as} "
                           f"{sha256[:12]}: the file was changed or corrupted")
    return data
