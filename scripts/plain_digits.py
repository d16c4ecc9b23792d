"""The quick-start task written by hand: the baseline of ``mtp run examples/digits_mlp.yaml``.

What a user would write without the platform, in one process with plain PyTorch, numpy and
scikit-learn (no mtp import): scikit-learn's digits (1,797 samples, 8x8 pixels, 10 classes), a
seeded 20% validation split, features standardised with the training split's mean and std, an
MLP 64-128-64-10 with ReLU and dropout 0.1, Adam (lr 0.002, weight decay 1e-4), batch 32, 15
epochs, 2 torch threads, a validation pass after every epoch. Batches are slices of a fresh
``randperm`` order each epoch over the in-memory tensors (no DataLoader). Prints one line per
epoch, then the final validation accuracy and the wall time (from the data load to the last
validation; the interpreter's start and the imports are not in it). ``scripts/bench_startup.py``
runs it as a subprocess and times the whole process.

``train_mlp`` is also the objective of ``scripts/plain_optuna_digits.py``.

Usage::

    python scripts/plain_digits.py [--epochs 15] [--threads 2] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

__all__ = ["Digits", "build_mlp", "load_digits_split", "main", "train_mlp"]


@dataclass(frozen=True)
class Digits:
    """The standardised training and validation splits, as tensors."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def load_digits_split(validation_fraction: float = 0.2, seed: int = 0) -> Digits:
    """scikit-learn's digits, a seeded permutation split, standardised with the training split's
    statistics (a constant pixel keeps std 1)."""
    x, y = load_digits(return_X_y=True)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_val = round(len(x) * validation_fraction)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    mean = x[train_idx].mean(axis=0)
    std = x[train_idx].std(axis=0)
    std[std < 1e-8] = 1.0
    x = (x - mean) / std
    return Digits(torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx]),
                  torch.from_numpy(x[val_idx]), torch.from_numpy(y[val_idx]))


def build_mlp(n_in: int, hidden: Sequence[int], n_out: int, dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout per hidden layer, then a linear output layer."""
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


@torch.no_grad()
def _validate(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor,
              y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    out = model(x)
    return float(loss_fn(out, y)), float((out.argmax(dim=1) == y).float().mean())


def train_mlp(data: Digits, *, hidden: Sequence[int], dropout: float, learning_rate: float,
              weight_decay: float, batch_size: int, epochs: int, seed: int = 0,
              on_epoch: Callable[[int, float, float, float], None] | None = None,
              ) -> list[float]:
    """Train a fresh MLP on ``data`` with Adam; the validation accuracy after each epoch.

    ``on_epoch(epoch, train_loss, val_loss, val_accuracy)`` is called after each epoch.
    """
    torch.manual_seed(seed)
    model = build_mlp(data.x_train.shape[1], hidden, 10, dropout)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = len(data.x_train)
    accuracies: list[float] = []
    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum = 0.0
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(yb)
        val_loss, val_acc = _validate(model, loss_fn, data.x_val, data.y_val)
        accuracies.append(val_acc)
        if on_epoch is not None:
            on_epoch(epoch, loss_sum / n, val_loss, val_acc)
    return accuracies


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true",
                   help="last line: the result as one JSON object")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    data = load_digits_split(0.2, args.seed)

    def show(epoch: int, train_loss: float, val_loss: float, val_acc: float) -> None:
        print(f"epoch {epoch:>3}/{args.epochs}  train_loss {train_loss:.4f}  "
              f"val_loss {val_loss:.4f}  val_accuracy {val_acc:.4f}", flush=True)

    accuracies = train_mlp(data, hidden=[128, 64], dropout=0.1, learning_rate=0.002,
                           weight_decay=1e-4, batch_size=32, epochs=args.epochs,
                           seed=args.seed, on_epoch=show)
    wall = time.perf_counter() - t0
    final = accuracies[-1] if accuracies else math.nan
    print(f"final val_accuracy {final:.4f}  wall {wall:.2f} s")
    if args.json:
        print(json.dumps({"val_accuracy": final, "wall_s": wall, "epochs": args.epochs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
