"""Validation metrics from sufficient statistics that can be summed across ranks.

Each rank evaluates its shard of the validation split and produces a small vector (a confusion
matrix, or sums of errors); an all-reduce adds the vectors, and every rank turns the sum into
the same metrics. That keeps early-stopping decisions identical on all ranks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "classification_metrics",
    "classification_stats",
    "confusion_matrix",
    "first_non_finite",
    "time_inference",
    "regression_metrics",
    "regression_stats",
]


def classification_stats(
    logits: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Flattened confusion matrix (rows: true class, columns: predicted), float64."""
    import torch  # the numpy functions of this module are used where torch is not loaded

    pred = logits.argmax(dim=-1)
    idx = targets.to(torch.long) * num_classes + pred.to(torch.long)
    counts = torch.bincount(idx, minlength=num_classes * num_classes)
    return counts.to(torch.float64)


def confusion_matrix(pred: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """:func:`classification_stats` for predicted class ids in numpy (float64, flattened)."""
    idx = np.asarray(targets, np.int64) * num_classes + np.asarray(pred, np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).astype(np.float64)


def classification_metrics(confusion: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-averaged precision, recall and F1 over classes that occur.

    A class with no true and no predicted samples is left out of the averages; a class that is
    predicted but never present counts with recall 0 (it cannot be recalled).
    """
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim == 1:  # flattened, as it travels through all-reduce
        k = int(round(np.sqrt(cm.size)))
        cm = cm.reshape(k, k)
    total = cm.sum()
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    present = (support + predicted) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    n = max(int(present.sum()), 1)
    return {
        "val_accuracy": float(tp.sum() / total) if total else 0.0,
        "val_precision": float(precision[present].sum() / n),
        "val_recall": float(recall[present].sum() / n),
        "val_f1": float(f1[present].sum() / n),
    }


def regression_stats(pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[sum squared error, sum y, sum y^2, count]`` in float64."""
    import torch

    p = pred.to(torch.float64).reshape(-1)
    y = targets.to(torch.float64).reshape(-1)
    return torch.stack([((p - y) ** 2).sum(), y.sum(), (y * y).sum(),
                        torch.tensor(float(y.numel()), dtype=torch.float64)])


def regression_metrics(stats: np.ndarray) -> dict[str, float]:
    """MSE and R² from summed statistics (R² = 1 - SSE / total sum of squares)."""
    sse, sy, syy, n = (float(v) for v in stats)
    if n <= 0:
        return {"val_mse": 0.0, "val_r2": 0.0}
    sst = syy - sy * sy / n
    return {"val_mse": sse / n, "val_r2": 1.0 - sse / sst if sst > 0 else 0.0}


def first_non_finite(record: dict[str, Any]) -> tuple[str, float] | None:
    """The first loss or validation metric of an epoch record that is NaN or infinite."""
    for name in ("train_loss", *sorted(k for k in record if k.startswith("val_"))):
        value = record.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            return name, value
    return None


LATENCY_CALLS = 50  # single-row calls the inference latency is the median of


def time_inference(call: Callable[[int, int], None], rows: int, batch_size: int, *,
                   device: str, threads: int) -> dict[str, Any]:
    """How fast ``call(start, stop)`` predicts rows ``start:stop`` (it must return only once
    they are done): throughput over all ``rows`` in batches of ``batch_size`` after one
    warm-up batch, and the median time of single-row calls (up to :data:`LATENCY_CALLS`)."""
    b = max(1, min(batch_size, rows))
    call(0, b)
    start = time.perf_counter()
    for s in range(0, rows, b):
        call(s, min(s + b, rows))
    elapsed = time.perf_counter() - start
    times = []
    for i in range(min(rows, LATENCY_CALLS)):
        t0 = time.perf_counter()
        call(i, i + 1)
        times.append(time.perf_counter() - t0)
    return {"device": device, "threads": threads, "batch_size": b,
            "throughput_samples_per_s": rows / elapsed if elapsed > 0 else math.nan,
            "latency_ms_per_sample": 1000 * float(np.median(times)),
            "latency_samples": len(times)}
