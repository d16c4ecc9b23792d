from __future__ import annotations

import numpy as np
import pytest
import torch

from mtp_core.spec import CNNModel, LinearModel, MLPModel, OptimizerName, TaskKind
from trainer import ConfigError
from trainer.data import format_bytes
from trainer.models import (
    Standardize,
    build_model,
    check_model_size,
    count_parameters,
    model_size,
)


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


def test_model_size_check_names_the_fields_and_sizes() -> None:
    spec = MLPModel(type="mlp", hidden_sizes=[65536, 65536, 65536])
    with pytest.raises(ConfigError) as err:
        check_model_size(spec, (64,), TaskKind.CLASSIFICATION, 10, OptimizerName.ADAM,
                         available_bytes=64 << 30)
    params = 64 * 65536 + 65536 + 2 * (65536 * 65536 + 65536) + 65536 * 10 + 10
    assert str(err.value) == (
        f"model.hidden_sizes=[65536, 65536, 65536] on 64 inputs and 10 outputs makes "
        f"{params:,} parameters: {format_bytes(4 * (params + 128))} of float32 weights, "
        f"{format_bytes(4 * (4 * params + 128))} with their gradients and 2 adam state "
        "tensors per weight, but 64.0 GiB of memory is available; narrow or drop hidden layers")
    assert model_size(spec, (64,), TaskKind.CLASSIFICATION, 10).parameters == params


def test_model_size_matches_the_built_model_and_draws_no_random_numbers() -> None:
    cases = [(MLPModel(type="mlp", hidden_sizes=[32, 16]), (20,), TaskKind.CLASSIFICATION, 5),
             (MLPModel(type="mlp", hidden_sizes=[7]), (3,), TaskKind.REGRESSION, 0),
             (CNNModel(type="cnn"), (1, 8, 8), TaskKind.CLASSIFICATION, 10),
             (LinearModel(type="linear"), (12,), TaskKind.REGRESSION, 0)]
    for spec, shape, kind, classes in cases:
        torch.manual_seed(0)
        state = torch.random.get_rng_state()
        size = check_model_size(spec, shape, kind, classes)  # type: ignore[arg-type]
        assert torch.equal(torch.random.get_rng_state(), state)
        built = build_model(spec, shape, kind, classes,  # type: ignore[arg-type]
                            np.zeros(shape, np.float32), np.ones(shape, np.float32))
        assert size.parameters == count_parameters(built)
        assert size.buffers == sum(b.numel() for b in built.buffers())


@pytest.mark.parametrize(("optimizer", "momentum", "copies"), [
    (OptimizerName.SGD, 0.0, 2), (OptimizerName.SGD, 0.9, 3), (OptimizerName.ADAM, 0.0, 4),
    (OptimizerName.ADAMW, 0.0, 4)])
def test_training_memory_counts_gradients_and_optimizer_state(
        optimizer: OptimizerName, momentum: float, copies: int) -> None:
    spec = MLPModel(type="mlp", hidden_sizes=[100])
    size = model_size(spec, (10,), TaskKind.CLASSIFICATION, 2, optimizer, momentum)
    assert size.parameters == 10 * 100 + 100 + 100 * 2 + 2
    assert size.training_bytes == 4 * (copies * size.parameters + 20)
    check_model_size(spec, (10,), TaskKind.CLASSIFICATION, 2, optimizer, momentum,
                     available_bytes=size.training_bytes)  # exactly fits
    with pytest.raises(ConfigError, match="model.hidden_sizes=\\[100\\] on 10 inputs"):
        check_model_size(spec, (10,), TaskKind.CLASSIFICATION, 2, optimizer, momentum,
                         available_bytes=size.training_bytes - 1)


@pytest.mark.parametrize(("spec", "shape", "named"), [
    (CNNModel(type="cnn", channels=[4096, 4096], hidden_size=65536), (3, 64, 64),
     "model.channels=[4096, 4096], model.hidden_size=65536 on 12,288 inputs and 1,000 outputs"),
    (LinearModel(type="linear"), (100_000_000,),
     "model.type=linear on 100,000,000 inputs and 1,000 outputs makes 100,000,001,000 "
     "parameters"),
])
def test_size_check_names_what_sets_the_size(spec: CNNModel | LinearModel,
                                             shape: tuple[int, ...], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_model_size(spec, shape, TaskKind.CLASSIFICATION, 1000, available_bytes=1 << 30)
    assert str(err.value).startswith(named), str(err.value)
    assert str(err.value).endswith("but 1.0 GiB of memory is available; " + (
        "use fewer input features (dataset.features)" if isinstance(spec, LinearModel)
        else "lower them (or use a smaller dataset.image_shape)"))
