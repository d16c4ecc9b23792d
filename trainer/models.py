"""Building torch modules from a task's model spec.

Every model starts with a :class:`Standardize` layer holding the train split's feature mean and
std as buffers, so the exported weights take raw inputs and the weight hash covers the
preprocessing too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mtp_core.spec import (
    Activation,
    CNNModel,
    CustomModel,
    LinearModel,
    MLPModel,
    ModelSpec,
    OptimizerName,
    TaskKind,
)
from trainer.data import available_memory, format_bytes
from trainer.errors import ConfigError
from trainer.versions import MODEL_CODE_VERSION  # re-exported: the builders' version

__all__ = ["MODEL_CODE_VERSION", "ModelSize", "Standardize", "build_model", "check_model_size",
           "check_output_shape", "count_parameters", "model_size"]


_ACTIVATIONS: dict[Activation, type[nn.Module]] = {
    Activation.RELU: nn.ReLU,
    Activation.GELU: nn.GELU,
    Activation.TANH: nn.Tanh,
    Activation.SIGMOID: nn.Sigmoid,
}


class Standardize(nn.Module):
    """``(x - mean) / std`` with fixed (non-trainable) statistics."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _Squeeze(nn.Module):
    """Regression heads output ``[N, 1]``; losses compare against ``[N]`` targets."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(-1)


def _mlp(spec: MLPModel, n_in: int, n_out: int) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Flatten()]
    width = n_in
    for hidden in spec.hidden_sizes:
        layers += [nn.Linear(width, hidden), _ACTIVATIONS[spec.activation]()]
        if spec.dropout > 0:
            layers.append(nn.Dropout(spec.dropout))
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return layers


def _cnn(spec: CNNModel, shape: tuple[int, ...], n_out: int) -> list[nn.Module]:
    if len(shape) != 3:
        raise ConfigError(
            f"model.type=cnn needs samples shaped [channels, height, width], got {list(shape)}; "
            "set dataset.image_shape"
        )
    c, h, w = shape
    layers: list[nn.Module] = []
    for out_c in spec.channels:
        layers += [
            nn.Conv2d(c, out_c, spec.kernel_size, padding=spec.kernel_size // 2),
            _ACTIVATIONS[spec.activation](),
        ]
        if min(h, w) >= 4:  # pool while the feature map is large enough to halve
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = out_c
    layers += [nn.Flatten(), nn.Linear(c * h * w, spec.hidden_size),
               _ACTIVATIONS[spec.activation]()]
    if spec.dropout > 0:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(nn.Linear(spec.hidden_size, n_out))
    return layers


def _custom(spec: CustomModel, sample_shape: tuple[int, ...], kind: TaskKind,
            n_out: int) -> nn.Module:
    """The user's module from their factory (see :mod:`trainer.user_code`)."""
    from trainer.user_code import factory_of

    factory = factory_of(spec)
    try:
        module = factory(input_shape=tuple(sample_shape), num_outputs=n_out, task=kind.value,
                         **spec.params)
    except Exception as err:  # noqa: BLE001 - the user's code may raise anything
        raise ConfigError(f"model.factory={spec.factory!r} raised {type(err).__name__}: "
                          f"{err}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model.factory={spec.factory!r} returned a "
                          f"{type(module).__name__}, not a torch.nn.Module")
    return module


def check_output_shape(spec: ModelSpec, model: nn.Module, sample: torch.Tensor,
                       kind: TaskKind, num_classes: int) -> None:
    """Run ``model`` on a probe batch: a custom model's output must be ``(batch, outputs)``;
    ConfigError naming the factory otherwise."""
    if not isinstance(spec, CustomModel):
        return
    n_out = num_classes if kind is TaskKind.CLASSIFICATION else 1
    want = (len(sample), n_out) if kind is TaskKind.CLASSIFICATION else (len(sample),)
    try:
        with torch.no_grad():
            out = model.eval()(sample)
    except Exception as err:  # noqa: BLE001 - the user's forward may raise anything
        raise ConfigError(f"model.factory={spec.factory!r}: the model's forward on a probe "
                          f"batch of shape {tuple(sample.shape)} raised "
                          f"{type(err).__name__}: {err}") from None
    finally:
        model.train()
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != want:
        raise ConfigError(f"model.factory={spec.factory!r}: the model maps a batch of shape "
                          f"{tuple(sample.shape)} to {got}; expected (batch, {n_out}) "
                          f"({kind.value}, num_outputs={n_out})")


def _body(spec: ModelSpec, sample_shape: tuple[int, ...], kind: TaskKind,
          num_classes: int) -> list[nn.Module]:
    n_in = math.prod(sample_shape)
    if kind is TaskKind.CLASSIFICATION:
        n_out = num_classes
    else:
        if spec.type == "logistic_regression":
            raise ConfigError(
                "model.type=logistic_regression needs a classification dataset; the dataset's "
                "target is continuous (regression): use model.type=linear"
            )
        n_out = 1
    body: list[nn.Module]
    if isinstance(spec, CustomModel):
        body = [_custom(spec, sample_shape, kind, n_out)]
    elif isinstance(spec, LinearModel):
        body = [nn.Flatten(), nn.Linear(n_in, n_out)]
    elif isinstance(spec, MLPModel):
        body = _mlp(spec, n_in, n_out)
    elif isinstance(spec, CNNModel):
        body = _cnn(spec, sample_shape, n_out)
    else:  # an estimator is no network (trainer.classical fits it)
        raise ConfigError(f"model.type={spec.type} is not a neural network")
    if kind is TaskKind.REGRESSION:
        body.append(_Squeeze())
    return body


def build_model(
    spec: ModelSpec,
    sample_shape: tuple[int, ...],
    kind: TaskKind,
    num_classes: int,
    mean: np.ndarray | torch.Tensor,
    std: np.ndarray | torch.Tensor,
) -> nn.Sequential:
    """The model for one sample shape and task kind; parameters drawn from torch's global RNG.

    It is allocated for real: call :func:`check_model_size` first where the size comes from
    user input.
    """
    body = _body(spec, sample_shape, kind, num_classes)
    return nn.Sequential(Standardize(mean, std), *body)


@dataclass(frozen=True)
class ModelSize:
    """What a model takes in memory during training, in float32 values."""

    parameters: int
    buffers: int  # the Standardize layer's mean and std
    optimizer_states: int  # state tensors the optimizer keeps per parameter

    @property
    def weight_bytes(self) -> int:
        return 4 * (self.parameters + self.buffers)

    @property
    def training_bytes(self) -> int:
        """Weights, their gradients and the optimizer's state."""
        return 4 * (self.parameters * (2 + self.optimizer_states) + self.buffers)


def _optimizer_states(optimizer: OptimizerName, momentum: float) -> int:
    if optimizer is OptimizerName.SGD:
        return 1 if momentum > 0 else 0  # the momentum buffer
    return 2  # Adam and AdamW: first and second moments


def model_size(spec: ModelSpec, sample_shape: tuple[int, ...], kind: TaskKind, num_classes: int,
               optimizer: OptimizerName = OptimizerName.ADAM, momentum: float = 0.0) -> ModelSize:
    """The size of the model :func:`build_model` would build, counted on torch's meta device
    (the same builders, no memory allocated and no random numbers drawn)."""
    with torch.device("meta"):
        body = _body(spec, sample_shape, kind, num_classes)
    params = sum(p.numel() for m in body for p in m.parameters())
    return ModelSize(params, 2 * math.prod(sample_shape), _optimizer_states(optimizer, momentum))


def _size_fields(spec: ModelSpec) -> tuple[str, str]:
    """The fields that set a model's size, and what to do about them."""
    if isinstance(spec, MLPModel):
        return f"model.hidden_sizes={spec.hidden_sizes}", "narrow or drop hidden layers"
    if isinstance(spec, CustomModel):
        return f"model.factory={spec.factory!r} with model.params={spec.params}", \
            "make the model smaller"
    if isinstance(spec, CNNModel):
        return (f"model.channels={spec.channels}, model.hidden_size={spec.hidden_size}",
                "lower them (or use a smaller dataset.image_shape)")
    return f"model.type={spec.type}", "use fewer input features (dataset.features)"


def check_model_size(spec: ModelSpec, sample_shape: tuple[int, ...], kind: TaskKind,
                     num_classes: int, optimizer: OptimizerName = OptimizerName.ADAM,
                     momentum: float = 0.0, *, available_bytes: int | None = None) -> ModelSize:
    """Refuse a model whose weights, gradients and optimizer state do not fit in the memory
    available (``available_bytes``, default: what the machine has now), before it is built;
    returns its size. The ConfigError names the fields that set the size."""
    size = model_size(spec, sample_shape, kind, num_classes, optimizer, momentum)
    have = available_memory() if available_bytes is None else available_bytes
    if size.training_bytes > have:
        n_in = math.prod(sample_shape)
        n_out = num_classes if kind is TaskKind.CLASSIFICATION else 1
        states = (f" and {size.optimizer_states} {optimizer.value} state tensor"
                  f"{'s' if size.optimizer_states > 1 else ''} per weight"
                  if size.optimizer_states else "")
        fields, fix = _size_fields(spec)
        raise ConfigError(
            f"{fields} on {n_in:,} input{'s' if n_in > 1 else ''} and {n_out:,} "
            f"output{'s' if n_out > 1 else ''} makes {size.parameters:,} parameters: "
            f"{format_bytes(size.weight_bytes)} of float32 weights, "
            f"{format_bytes(size.training_bytes)} with their gradients{states}, but "
            f"{format_bytes(have)} of memory is available; {fix}"
        )
    return size


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
