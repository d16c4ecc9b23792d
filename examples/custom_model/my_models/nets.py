"""A small residual convolutional network, built by a factory ``mtp`` calls with the data's
input shape, the number of outputs and the task kind (plus the config's ``model.params``)."""

from __future__ import annotations

import math

from torch import nn


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.act = nn.ReLU()

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.act(x + self.body(x))


def build(input_shape: tuple[int, ...], num_outputs: int, task: str, channels: int = 16,
          blocks: int = 2, hidden: int = 64) -> nn.Module:
    """Images ``(C, H, W)`` go through a conv stem and ``blocks`` residual blocks; flat
    feature vectors through an MLP of the same width."""
    if len(input_shape) == 3:
        c, h, w = input_shape
        return nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(),
            *[_Residual(channels) for _ in range(blocks)],
            nn.Flatten(), nn.Linear(channels * h * w, hidden), nn.ReLU(),
            nn.Linear(hidden, num_outputs))
    n_in = math.prod(input_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_outputs))
