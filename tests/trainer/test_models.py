from __future__ import annotations

import numpy as np
import pytest
import torch

from mtp_core.spec import CNNModel, LinearModel, MLPModel, TaskKind
from trainer import ConfigError
from trainer.models import Standardize, build_model, count_parameters


def _stats(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    return np.full(shape, 2.0, np.float32), np.full(shape, 4.0, np.float32)


def test_mlp_shapes_and_size() -> None:
    spec = MLPModel(type="mlp", hidden_sizes=[32, 16], dropout=0.2)
    m = build_model(spec, (20,), TaskKind.CLASSIFICATION, 5, *_stats((20,)))
    assert m(torch.zeros(7, 20)).shape == (7, 5)
    assert count_parameters(m) == 20 * 32 + 32 + 32 * 16 + 16 + 16 * 5 + 5
    assert any(isinstance(x, torch.nn.Dropout) for x in m)


def test_linear_regression_outputs_a_vector() -> None:
    m = build_model(LinearModel(type="linear"), (10,), TaskKind.REGRESSION, 0, *_stats((10,)))
    assert m(torch.zeros(3, 10)).shape == (3,)


def test_logistic_regression_needs_classification() -> None:
    with pytest.raises(ConfigError, match="logistic_regression needs a classification"):
        build_model(LinearModel(type="logistic_regression"), (10,), TaskKind.REGRESSION, 0,
                    *_stats((10,)))


def test_cnn_on_digits_shape() -> None:
    m = build_model(CNNModel(type="cnn"), (1, 8, 8), TaskKind.CLASSIFICATION, 10,
                    *_stats((1, 8, 8)))
    assert m(torch.zeros(4, 1, 8, 8)).shape == (4, 10)
    with pytest.raises(ConfigError, match=r"cnn needs samples shaped \[channels"):
        build_model(CNNModel(type="cnn"), (64,), TaskKind.CLASSIFICATION, 10, *_stats((64,)))


def test_standardize_is_part_of_the_state_dict() -> None:
    s = Standardize(np.array([1.0, 2.0]), np.array([2.0, 4.0]))
    assert torch.equal(s(torch.tensor([[3.0, 6.0]])), torch.tensor([[1.0, 1.0]]))
    assert set(s.state_dict()) == {"mean", "std"}
    assert not list(s.parameters())


def test_same_seed_same_initial_weights() -> None:
    spec = MLPModel(type="mlp", hidden_sizes=[8])
    torch.manual_seed(3)
    a = build_model(spec, (4,), TaskKind.CLASSIFICATION, 2, *_stats((4,)))
    torch.manual_seed(3)
    b = build_model(spec, (4,), TaskKind.CLASSIFICATION, 2, *_stats((4,)))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
