"""Building torch modules from a task's model spec.

Every model starts with a :class:`Standardize` layer holding the train split's feature mean and
std as buffers, so the exported weights take raw inputs and the weight hash covers the
preprocessing too.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mtp_core.spec import Activation, CNNModel, LinearModel, MLPModel, ModelSpec, TaskKind
from trainer.errors import ConfigError

__all__ = ["MODEL_CODE_VERSION", "Standardize", "build_model", "count_parameters"]

#: Bump when a model builder below changes what it builds (layers, initialisation): it is part
#: of the result cache key, so results of the old architecture code stop matching.
MODEL_CODE_VERSION = "models-v1"

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


def build_model(
    spec: ModelSpec,
    sample_shape: tuple[int, ...],
    kind: TaskKind,
    num_classes: int,
    mean: np.ndarray | torch.Tensor,
    std: np.ndarray | torch.Tensor,
) -> nn.Sequential:
    """The model for one sample shape and task kind; parameters drawn from torch's global RNG."""
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
    if isinstance(spec, LinearModel):
        body = [nn.Flatten(), nn.Linear(n_in, n_out)]
    elif isinstance(spec, MLPModel):
        body = _mlp(spec, n_in, n_out)
    else:
        body = _cnn(spec, sample_shape, n_out)
    if kind is TaskKind.REGRESSION:
        body.append(_Squeeze())
    return nn.Sequential(Standardize(mean, std), *body)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
