from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
)

from trainer.metrics import (
    classification_metrics,
    classification_stats,
    regression_metrics,
    regression_stats,
)


def test_classification_metrics_match_sklearn_and_sum_over_shards() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 500)
    pred = np.where(rng.random(500) < 0.7, y, rng.integers(0, 4, 500))
    logits = torch.nn.functional.one_hot(torch.from_numpy(pred), 4).float()
    target = torch.from_numpy(y)
    # two shards summed, as the all-reduce does
    stats = classification_stats(logits[:200], target[:200], 4) + classification_stats(
        logits[200:], target[200:], 4)
    m = classification_metrics(stats.numpy())
    assert m["val_accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["val_precision"] == pytest.approx(precision_score(y, pred, average="macro"))
    assert m["val_recall"] == pytest.approx(recall_score(y, pred, average="macro"))
    assert m["val_f1"] == pytest.approx(f1_score(y, pred, average="macro"))


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    p = y + rng.normal(scale=0.3, size=300)
    stats = regression_stats(torch.from_numpy(p[:100]), torch.from_numpy(y[:100])) + \
        regression_stats(torch.from_numpy(p[100:]), torch.from_numpy(y[100:]))
    m = regression_metrics(stats.numpy())
    assert m["val_mse"] == pytest.approx(mean_squared_error(y, p))
    assert m["val_r2"] == pytest.approx(r2_score(y, p))
