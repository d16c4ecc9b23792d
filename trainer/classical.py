"""Classical models (``model.type: sklearn``): a scikit-learn estimator fitted on one worker.

The estimator is built from its import path and ``model.params``; the platform sets
``random_state`` (from the task's seed) and ``n_jobs`` (from ``resources.cpus_per_worker``)
where the estimator takes them, so a rerun fits the same model. It is fitted on the same
seeded training split the neural models use (with the dataset's standardization in front, as
one scikit-learn ``Pipeline``), scored on the validation split with the same metrics, and
saved with skops, which loads without running code. The saved bytes are canonical (the
archive's file names, object ids and timestamps are fixed), so the weights hash, the sha256 of
those bytes, is the same for the same fitted model on any node and in any run.

Nothing here imports torch or Ray: the driver's checks, a Ray task on the cluster and a Tune
trial's own process all call these functions.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import math
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mtp_core.atomic import atomic_write_bytes, atomic_write_text
from mtp_core.layout import RunLayout
from mtp_core.spec import LossName, SklearnModel, TaskKind, TrainingTask
from trainer.data import DatasetMeta, task_split
from trainer.errors import ConfigError, TrainerError
from trainer.metrics import (
    classification_metrics,
    confusion_matrix,
    first_non_finite,
    regression_metrics,
    time_inference,
)

__all__ = ["ESTIMATOR_STEP", "build_pipeline", "canonical_skops", "check_estimator",
           "estimator_versions", "fit_estimator", "fit_shared_data", "load_estimator",
           "stored_values"]

ESTIMATOR_STEP = "estimator"
_EPOCH_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_TRUSTED_ROOTS = ("sklearn", "numpy", "scipy")


def _field(spec: SklearnModel) -> str:
    return f"model.estimator={spec.estimator!r}"


def estimator_class(spec: SklearnModel) -> type:
    """The class ``model.estimator`` names; ConfigError with the reason when it cannot be."""
    module_name, _, attr = spec.estimator.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{_field(spec)}: module {module_name!r} cannot be imported "
                          f"({err})") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise ConfigError(f"{_field(spec)}: module {module_name!r} has no attribute {attr!r}")
    missing = [m for m in ("fit", "predict", "get_params", "set_params") if not hasattr(cls, m)]
    if not isinstance(cls, type) or missing:
        raise ConfigError(f"{_field(spec)}: not a scikit-learn estimator class (needs fit, "
                          "predict, get_params and set_params)")
    return cls


def build_estimator(spec: SklearnModel, kind: TaskKind | None, seed: int, cpus: float) -> Any:
    """The unfitted estimator with the platform's ``random_state`` and ``n_jobs``; its params
    checked by scikit-learn's own rules where the estimator has them, and its kind against
    ``kind`` (None: not known yet)."""
    from sklearn.base import is_classifier, is_regressor

    cls = estimator_class(spec)
    try:
        est = cls(**spec.params)
    except TypeError as err:  # an unknown keyword
        raise ConfigError(f"model.params for {spec.estimator}: {err}") from None
    own = est.get_params(deep=False)
    platform: dict[str, Any] = {}
    if "random_state" in own:
        platform["random_state"] = seed % 2**32  # numpy's seed range
    if "n_jobs" in own:
        platform["n_jobs"] = max(1, int(cpus))
    est.set_params(**platform)
    validate = getattr(est, "_validate_params", None)  # scikit-learn's parameter constraints
    if callable(validate):
        try:
            validate()
        except (ValueError, TypeError) as err:
            raise ConfigError(f"model.params for {spec.estimator}: {err}") from None
    if kind is TaskKind.CLASSIFICATION and is_regressor(est):
        raise ConfigError(f"{_field(spec)} is a regressor and the dataset is a classification "
                          "task; allowed: a classifier (e.g. "
                          "sklearn.ensemble.RandomForestClassifier)")
    if kind is TaskKind.REGRESSION and is_classifier(est):
        raise ConfigError(f"{_field(spec)} is a classifier and the dataset is a regression "
                          "task; allowed: a regressor (e.g. "
                          "sklearn.ensemble.RandomForestRegressor)")
    return est


def build_pipeline(task: TrainingTask, kind: TaskKind, seed: int) -> Any:
    """The dataset's preprocessing and the estimator, as one unfitted ``Pipeline``."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    assert isinstance(task.model, SklearnModel)
    steps: list[tuple[str, Any]] = []
    if task.dataset.standardize:
        steps.append(("standardize", StandardScaler()))
    steps.append((ESTIMATOR_STEP, build_estimator(task.model, kind, seed,
                                                  task.resources.cpus_per_worker)))
    return Pipeline(steps)


def check_estimator(task: TrainingTask, kind: TaskKind | None) -> None:
    """What the driver checks before any worker starts, and a study for each value it may
    give ``model.params`` (ConfigError naming the field); ``kind`` None skips the kind check."""
    assert isinstance(task.model, SklearnModel)
    build_estimator(task.model, kind, 0, task.resources.cpus_per_worker)


def estimator_versions() -> dict[str, str]:
    """The libraries an estimator's numbers and file depend on (in its cache key and result)."""
    from importlib import metadata

    return {lib: metadata.version(lib) for lib in ("scikit-learn", "skops")}


# -- the saved file ----------------------------------------------------------------------------


def canonical_skops(obj: Any) -> bytes:
    """``skops.io.dumps(obj)`` with what varies between processes fixed.

    skops names the archive's array files and marks shared objects by Python object ids, and
    stamps entries with the current time: ids become their order of first appearance, every
    entry gets the same time, entries are sorted. Loading is unchanged (it resolves the same
    names and ids); equal fitted models give equal bytes.
    """
    import skops.io as sio

    with zipfile.ZipFile(io.BytesIO(sio.dumps(obj))) as src:
        schema = json.loads(src.read("schema.json"))
        ids: dict[int, int] = {}
        files: dict[str, str] = {}

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "__id__" and isinstance(value, int):
                        node[key] = ids.setdefault(value, len(ids))
                    elif key == "file" and isinstance(value, str):
                        node[key] = files.setdefault(value, f"{len(files)}.npy")
                    else:
                        walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(schema)
        entries = {"schema.json": json.dumps(schema, indent=2).encode()}
        entries.update({new: src.read(old) for old, new in files.items()})
        stray = set(src.namelist()) - {"schema.json", *files}
        if stray:
            raise TrainerError(f"skops wrote entries the platform does not know: {sorted(stray)}")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, _EPOCH_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, entries[name])
    return out.getvalue()


def load_estimator(data: bytes, estimator: str, where: str,
                   trusted: tuple[str, ...] | list[str] = ()) -> Any:
    """The fitted pipeline in ``data``; only types of scikit-learn, numpy, scipy, the
    estimator's own package and the ``trusted`` type names are accepted (skops refuses to
    build anything else)."""
    import skops.io as sio

    from trainer.preprocess import TRUSTED_TYPES

    roots = (*_TRUSTED_ROOTS, estimator.split(".")[0])
    trusted = [*trusted, *TRUSTED_TYPES]  # the pipeline's own preprocessing steps
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as err:  # noqa: BLE001 - a damaged archive: skops raises many kinds
        raise TrainerError(f"{where} is not a readable skops file ({err})") from None
    refused = [t for t in untrusted if t.split(".")[0] not in roots and t not in trusted]
    if refused:
        raise TrainerError(f"{where} holds types outside {', '.join(roots)}: {refused}; not "
                           "loaded")
    return sio.loads(data, trusted=untrusted)


def stored_values(data: bytes) -> int:
    """How many numbers the saved model holds (the arrays in the archive): the estimator's
    counterpart of a network's parameter count."""
    total = 0
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            if name.endswith(".npy"):
                arr = np.load(io.BytesIO(z.read(name)), allow_pickle=False)
                total += int(arr.size)
    return total


# -- fitting -----------------------------------------------------------------------------------


def _loss(task: TrainingTask, kind: TaskKind, model: Any, x: np.ndarray, y: np.ndarray,
          pred: np.ndarray, num_classes: int) -> float:
    """Log loss where the classifier has probabilities (else the 0-1 loss); for regression the
    task's loss (mse, l1, huber with delta 1 as torch's)."""
    if len(y) == 0:
        return 0.0
    if kind is TaskKind.CLASSIFICATION:
        if not hasattr(model, "predict_proba"):
            return float(np.mean(pred != y))
        proba = np.zeros((len(y), num_classes), np.float64)
        proba[:, np.asarray(model.classes_, np.int64)] = model.predict_proba(x)
        p = np.clip(proba[np.arange(len(y)), y], 1e-15, 1.0)
        return float(-np.mean(np.log(p)))
    err = pred.astype(np.float64) - y.astype(np.float64)
    name = task.training.loss
    if name is LossName.L1:
        return float(np.mean(np.abs(err)))
    if name is LossName.HUBER:
        a = np.abs(err)
        return float(np.mean(np.where(a <= 1.0, 0.5 * err * err, a - 0.5)))
    return float(np.mean(err * err))


def _metrics(kind: TaskKind, pred: np.ndarray, y: np.ndarray, num_classes: int
             ) -> dict[str, float]:
    if kind is TaskKind.CLASSIFICATION:
        return classification_metrics(confusion_matrix(pred, y, num_classes))
    p, t = pred.astype(np.float64).ravel(), y.astype(np.float64).ravel()
    return regression_metrics(np.array([((p - t) ** 2).sum(), t.sum(), (t * t).sum(),
                                        float(len(t))]))


def _event(layout: RunLayout, event: dict[str, Any]) -> None:
    layout.events.parent.mkdir(parents=True, exist_ok=True)
    with open(layout.events, "a", encoding="utf-8") as f:  # one short line: appends stay whole
        f.write(json.dumps({**event, "time_unix": time.time()}) + "\n")


def fit_estimator(task: TrainingTask, features: np.ndarray, targets: np.ndarray,
                  meta: DatasetMeta, seed: int, run_dir: str | Path) -> dict[str, Any]:
    """Fit, score and save the task's pipeline; write ``final.json`` like a network's run.

    One "epoch" in the history: the fit, with the training loss and the validation metrics.
    BLAS and OpenMP pools are held to ``cpus_per_worker`` threads, as ``n_jobs`` is.
    """
    from threadpoolctl import threadpool_limits

    layout = RunLayout.of(run_dir)
    _event(layout, {"event": "start", "from_epoch": 0, "world_size": 1})
    kind, k = meta.kind, meta.num_classes
    split = task_split(task, targets, kind, seed)
    train_idx, val_idx = split.train, split.validation
    x = features.reshape(len(features), -1)
    y = targets.reshape(len(targets)) if kind is TaskKind.CLASSIFICATION else targets.ravel()
    pipeline = build_pipeline(task, kind, seed)
    t0 = time.time()
    threads = max(1, int(task.resources.cpus_per_worker))
    with threadpool_limits(limits=threads):
        start = time.perf_counter()
        pipeline.fit(x[train_idx], y[train_idx])
        fit_time = time.perf_counter() - start
        train_pred = pipeline.predict(x[train_idx])
        val_pred = pipeline.predict(x[val_idx])
        record: dict[str, Any] = {
            "epoch": 1,
            "train_loss": _loss(task, kind, pipeline, x[train_idx], y[train_idx], train_pred, k),
            "val_loss": _loss(task, kind, pipeline, x[val_idx], y[val_idx], val_pred, k),
            **_metrics(kind, val_pred, y[val_idx], k),
            "train_samples": len(train_idx),
            "train_time_s": fit_time,
            "samples_per_s": len(train_idx) / fit_time if fit_time > 0 else math.nan,
            "epoch_time_s": 0.0,
            "is_best": True,
            "start_unix": t0,
        }
        record["epoch_time_s"] = time.time() - t0
        bad = first_non_finite(record)
        diverged = None if bad is None else {"epoch": 1, "metric": bad[0], "value": bad[1]}
        test = None
        if len(split.test) and diverged is None:
            xt, yt = x[split.test], y[split.test]
            pred = pipeline.predict(xt)
            metrics = {"test_loss": _loss(task, kind, pipeline, xt, yt, pred, k),
                       **{m.replace("val_", "test_", 1): v
                          for m, v in _metrics(kind, pred, yt, k).items()}}
            test = {"epoch": 1, "weights": "best", "rows": len(yt), "metrics": metrics,
                    "inference": time_inference(
                        lambda a, b: pipeline.predict(xt[a:b]), len(xt),
                        task.training.batch_size, device="cpu", threads=threads)}
    data = canonical_skops(pipeline)
    metric, mode = task.monitor_metric(kind)
    summary = {
        "weights_hash": hashlib.sha256(data).hexdigest(),
        "epochs_completed": 1,
        "stopped_early": False,
        "best_epoch": 1,
        "monitor_metric": metric,
        "monitor_mode": mode,
        "history": [record],
        "num_parameters": stored_values(data),
        "world_size": 1,
        "seed": seed,
        "resumed_from_epoch": None,
        "diverged": diverged,
        "test": test,
    }
    if diverged is None:  # a diverged model never replaces a stored one
        atomic_write_bytes(layout.estimator, data)
    atomic_write_text(layout.final, json.dumps(summary, indent=1))
    _event(layout, {"event": "finish", "epoch": 1})
    return summary


def fit_shared_data(task: TrainingTask, data: tuple[np.ndarray, np.ndarray], meta: DatasetMeta,
                    seed: int, run_dir: str) -> dict[str, Any]:
    """:func:`fit_estimator` on ``(features, targets)`` as one value (a Ray task's argument,
    read from the object store)."""
    return fit_estimator(task, data[0], data[1], meta, seed, run_dir)
