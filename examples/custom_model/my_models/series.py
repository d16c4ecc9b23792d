"""A 1-D convolutional network over a window of past returns, for
``examples/custom_model/prices_conv1d.yaml``."""

from __future__ import annotations

from torch import nn


class _Window(nn.Module):
    """``(batch, lags)`` -> ``(batch, 1, lags)``, oldest return first."""

    def forward(self, x):  # type: ignore[no-untyped-def]
        return x.flip(-1).unsqueeze(1)


def build(input_shape: tuple[int, ...], num_outputs: int, task: str, channels: int = 16,
          kernel_size: int = 3) -> nn.Module:
    (lags,) = input_shape
    return nn.Sequential(
        _Window(),
        nn.Conv1d(1, channels, kernel_size, padding=kernel_size // 2), nn.ReLU(),
        nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2), nn.ReLU(),
        nn.Flatten(), nn.Linear(channels * lags, num_outputs))
