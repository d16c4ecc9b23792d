"""How a rank's gradients become its next parameters: the :class:`GradientExchange` protocol.

:class:`trainer.loop.TrainLoop` drives one exchange per rank and knows nothing of the strategy:

- :class:`DDPExchange` (strategy ``ddp``, and ``train_local``): DDP has already all-reduced the
  gradients during ``backward``; ``step`` is the local torch optimizer step.
- :class:`ParameterServerExchange` (strategy ``parameter_server``): ``step`` pushes the
  gradients to the server shards, which run the optimizer, and copies back the parameters they
  return. It reaches the shards through :class:`ShardServers` (the Ray actors in production:
  ``trainer.workers.RayShards``), so its logic runs in tests without Ray.

The state an exchange checkpoints is the ``"optimizer"`` entry of a checkpoint: the torch
optimizer's ``state_dict`` for DDP, the shards' parameters, versions and optimizer states for
the parameter server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from cluster.parameter_server import PushOutcome, ShardLayout
from mtp_core.metrics import LazyMetrics
from mtp_core.spec import PSMode, Strategy
from trainer.errors import CheckpointError

__all__ = [
    "DDPExchange",
    "GradientExchange",
    "ParameterServerExchange",
    "ShardServers",
    "ShardStart",
]


class GradientExchange(Protocol):
    """One rank's side of a strategy's gradient exchange.

    Lifecycle, as :class:`~trainer.loop.TrainLoop` calls it: built for the loop's module;
    ``load_state_dict`` when resuming from a checkpoint; ``start`` once, before the first step;
    then per batch ``zero_grad``, backward (by the loop), ``step``; ``synchronize`` at the end
    of every epoch, on every rank, before evaluation; ``state_dict`` at a checkpoint (rank 0).
    """

    def start(self) -> None:
        """Bring every rank to the same starting parameters (after any ``load_state_dict``)."""

    def zero_grad(self) -> None:
        """Drop the gradients of the previous step (``.grad`` becomes ``None``)."""

    def step(self) -> None:
        """Apply this step's gradients (in ``.grad``) to the module's parameters."""

    def synchronize(self) -> None:
        """At an epoch's end, after every rank's last step: take the newest parameters."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores under ``"optimizer"`` (torch-loadable, weights only)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a checkpoint's ``"optimizer"`` entry."""


class DDPExchange:
    """The local torch optimizer: with DDP the gradients were averaged in ``backward``.

    ``optimizer`` is :func:`trainer.loop.build_optimizer`'s, over the module's parameters.
    Its ``state_dict`` is the checkpoint's ``"optimizer"`` entry, unchanged.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def start(self) -> None:
        """Nothing to do: every rank built the same model from the same seed."""

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.optimizer.step()

    def synchronize(self) -> None:
        """Nothing to do: DDP steps in lockstep, every rank already holds the same parameters."""

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


@dataclass(frozen=True)
class ShardStart:
    """What one shard starts an attempt from: parameters, version, optimizer state (resume)."""

    params: np.ndarray
    version: int
    optimizer_state: dict[str, Any] | None


class ShardServers(Protocol):
    """The parameter server's shards as a worker reaches them; each call covers every shard
    (index ``k`` of a list is shard ``k``) and returns when all have answered."""

    def push(self, attempt: int, rank: int, versions: Sequence[int],
             grads: Sequence[np.ndarray]) -> list[tuple[PushOutcome, np.ndarray]]:
        """Push one flat gradient per shard; each shard's outcome and its parameters after."""
        ...

    def pull(self, attempt: int) -> list[tuple[int, np.ndarray]]:
        """Each shard's version and parameters."""
        ...

    def state_dicts(self) -> list[dict[str, Any]]:
        """Each shard's ``ParameterShard.state_dict``."""
        ...

    def publish(self, attempt: int, starts: Sequence[ShardStart]) -> None:
        """Start ``attempt`` on every shard from ``starts[k]``."""
        ...


def _ps_metrics() -> dict[str, Any]:
    from cluster.ps_actors import ps_metrics  # imports Ray: deferred to the first step

    return ps_metrics()


class ParameterServerExchange:
    """One worker's side of the parameter server: the optimizer runs on the shards.

    ``step`` pushes this rank's gradients (one flat buffer per shard) and copies the parameters
    the shards return into the module. ``start``: rank 0 publishes the attempt's starting state
    (the module's parameters, or the checkpoint ``load_state_dict`` kept), all ranks meet at
    ``barrier``, then every rank pulls. ``synchronize`` pulls in ``async`` mode (other ranks
    pushed after this rank's last step); in ``sync`` mode every step already returned the
    newest parameters. ``state_dict`` (rank 0, at a checkpoint) is the shards' state.
    """

    def __init__(self, module: nn.Module, layout: ShardLayout, servers: ShardServers,
                 attempt: int, rank: int, mode: PSMode,
                 barrier: Callable[[], None] = lambda: None) -> None:
        self.params = dict(module.named_parameters())
        self.layout = layout
        self.servers = servers
        self.attempt = attempt
        self.rank = rank
        self.mode = mode
        self.barrier = barrier
        self.versions = [0] * layout.num_shards
        self.pushes = 0
        self.dropped = 0
        self.max_staleness_seen = 0
        self._resume_state: dict[str, Any] | None = None
        self._metrics = LazyMetrics(_ps_metrics)

    def _shard_names(self) -> list[list[str]]:
        return [self.layout.names(k) for k in range(self.layout.num_shards)]

    def start(self) -> None:
        if self.rank == 0:
            self.publish()
        self.barrier()
        self.pull()

    def publish(self) -> None:
        """Rank 0: load the attempt's starting state into every shard."""
        starts = []
        for k in range(self.layout.num_shards):
            if self._resume_state is not None:
                s = self._resume_state["shards"][k]
                starts.append(ShardStart(s["params"].numpy(), s["version"], s["optimizer"]))
            else:
                starts.append(ShardStart(self.layout.gather(self.params, k), 0, None))
        self.servers.publish(self.attempt, starts)

    def pull(self) -> None:
        for k, (version, flat) in enumerate(self.servers.pull(self.attempt)):
            self.layout.scatter(flat, self.params, k)
            self.versions[k] = version

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def step(self) -> None:
        t0 = time.perf_counter()
        grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p))
                 for n, p in self.params.items()}
        flats = [self.layout.gather(grads, k) for k in range(self.layout.num_shards)]
        replies = self.servers.push(self.attempt, self.rank, self.versions, flats)
        for k, (outcome, params) in enumerate(replies):
            self.layout.scatter(params, self.params, k)
            self.versions[k] = outcome.version
            self.pushes += 1
            self.dropped += 0 if outcome.applied else 1
            self.max_staleness_seen = max(self.max_staleness_seen, outcome.staleness)
        self._metrics.get()["step_s"].observe(time.perf_counter() - t0)

    def synchronize(self) -> None:
        if self.mode is PSMode.ASYNC:
            self.pull()

    def state_dict(self) -> dict[str, Any]:
        return {"strategy": Strategy.PARAMETER_SERVER.value,
                "num_shards": self.layout.num_shards,
                "shard_names": self._shard_names(),
                "shards": self.servers.state_dicts()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Check the checkpoint fits this run's shards and keep it for :meth:`publish`."""
        if state.get("strategy") != Strategy.PARAMETER_SERVER.value:
            raise CheckpointError("the checkpoint holds a DDP optimizer state, not a parameter "
                               "server's; use a new --run-name for strategy parameter_server")
        if state.get("shard_names") != self._shard_names():
            raise CheckpointError(
                f"the checkpoint's shard layout ({state.get('num_shards')} shards) differs from "
                f"this run's ps.num_shards={self.layout.num_shards}")
        self._resume_state = state

    def stats(self) -> dict[str, int]:
        """This rank's pushes, the pushes dropped as too stale, the largest staleness seen."""
        return {"pushes": self.pushes, "dropped": self.dropped,
                "max_staleness": self.max_staleness_seen}
