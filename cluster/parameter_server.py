"""The parameter-server strategy's logic: shard layout, server shards, the rendezvous.

Everything here is plain Python and torch, driven by tests without Ray; the Ray actors in
:mod:`cluster.ps_actors` are thin wrappers.

Data path of one step (``K`` shards, ``W`` workers), and what is copied where:

1. A worker's backward pass leaves gradients in its parameters' ``.grad``. For each shard the
   worker copies the gradients of that shard's parameters into one contiguous float32 buffer
   (``torch.cat`` of the flattened views: one copy) and passes it to ``shard.push`` as a numpy
   array. Ray serializes a numpy array as one raw buffer (pickle protocol 5, no per-element
   work): small pushes travel inline in the call, large ones (> 100 KiB) are written once into
   the node's shared-memory object store and the server reads them there without a copy.
2. The shard adds the ``W`` buffers in rank order into one accumulator (``sync``) or takes the
   one buffer (``async``), copies it into the ``.grad`` of its flat parameter and runs the
   torch optimizer on that single flat tensor (one fused update for all the shard's tensors).
3. The shard returns its flat parameter buffer (a numpy view, serialized once per caller into
   the object store) and the worker copies it into its parameters through precomputed views
   (one copy).

So a step moves each gradient and each parameter once through the object store per worker,
with no per-tensor Python round trips and no JSON. Ray's documented example server instead
sends a list of per-layer arrays and rebuilds state dicts on every step.

Lifecycle of a run: the driver creates the shards and the rendezvous; rank 0 of every attempt
*publishes* the starting state into the shards (fresh parameters or the checkpoint it resumed
from), all ranks meet at a barrier, and training pushes and pulls until the last epoch. A
publish carries an attempt number, so a push left over from a failed attempt is refused.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cluster.errors import ClusterError
from mtp_core.spec import PSMode

__all__ = [
    "PSMode",
    "ParameterShard",
    "PushOutcome",
    "Rendezvous",
    "ShardLayout",
    "StaleAttemptError",
]

logger = logging.getLogger(__name__)


class StaleAttemptError(ClusterError):
    """A push or pull from an attempt that a newer publish has replaced."""


def _view(arr: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A tensor over a (possibly read-only) numpy buffer from Ray's object store, no copy.

    It is only ever read (added into a writable accumulator, copied into parameters), so
    torch's warning about non-writable arrays does not apply.
    """
    if isinstance(arr, torch.Tensor):
        return arr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


@dataclass(frozen=True)
class _Slot:
    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int


class ShardLayout:
    """Which parameter lives on which shard, and where in that shard's flat buffer.

    Parameters are assigned whole (a tensor is never split), largest first to the shard with
    the fewest elements so far, ties to the lower shard index: deterministic for a given model.
    """

    def __init__(self, named_shapes: list[tuple[str, tuple[int, ...]]], num_shards: int) -> None:
        if num_shards < 1:
            raise ClusterError(f"ps.num_shards={num_shards}: must be at least 1")
        if num_shards > len(named_shapes):
            raise ClusterError(
                f"ps.num_shards={num_shards} but the model has only {len(named_shapes)} "
                f"parameter tensors; allowed: 1..{len(named_shapes)} (a tensor is never split)"
            )
        self.num_shards = num_shards
        order = sorted(range(len(named_shapes)),
                       key=lambda i: (-int(np.prod(named_shapes[i][1], dtype=np.int64)), i))
        loads = [0] * num_shards
        members: list[list[int]] = [[] for _ in range(num_shards)]
        for i in order:
            k = min(range(num_shards), key=lambda s: (loads[s], s))
            members[k].append(i)
            loads[k] += int(np.prod(named_shapes[i][1], dtype=np.int64))
        self.shards: list[list[_Slot]] = []
        for k in range(num_shards):
            slots, offset = [], 0
            for i in sorted(members[k]):  # model order inside a shard
                name, shape = named_shapes[i]
                n = int(np.prod(shape, dtype=np.int64))
                slots.append(_Slot(name, tuple(shape), offset, n))
                offset += n
            self.shards.append(slots)
        self.sizes = [sum(s.numel for s in slots) for slots in self.shards]

    @classmethod
    def for_module(cls, module: torch.nn.Module, num_shards: int) -> ShardLayout:
        return cls([(n, tuple(p.shape)) for n, p in module.named_parameters()], num_shards)

    def names(self, shard: int) -> list[str]:
        return [s.name for s in self.shards[shard]]

    def gather(self, tensors: Mapping[str, torch.Tensor], shard: int) -> np.ndarray:
        """One contiguous float32 buffer of ``shard``'s tensors (one copy)."""
        parts = [tensors[s.name].detach().reshape(-1) for s in self.shards[shard]]
        flat = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
        return flat.to("cpu", torch.float32).numpy()

    def scatter(self, flat: np.ndarray | torch.Tensor, tensors: Mapping[str, torch.Tensor],
                shard: int) -> None:
        """Copy a shard's flat buffer into the named tensors (views, one copy each)."""
        src = _view(flat)
        for s in self.shards[shard]:
            dst = tensors[s.name]
            dst.data.copy_(src[s.offset : s.offset + s.numel].view(s.shape))


@dataclass(frozen=True)
class PushOutcome:
    version: int  # the shard's parameter version the returned buffer holds
    applied: bool  # False: an async push dropped for staleness
    staleness: int  # versions between the push's base and the shard's newest


class ParameterShard:
    """One server shard: a flat float32 parameter, its optimizer, a version counter.

    ``sync``: ``submit`` collects one gradient per rank for the current version; when all
    ``world_size`` are in, ``apply_pending`` sums them in rank order, divides by the world size
    and steps the optimizer once (the same arithmetic every run: bit-reproducible).
    ``async``: ``apply_async`` steps the optimizer with one worker's gradient at once, unless it
    was computed on parameters more than ``max_staleness`` versions old.
    """

    def __init__(self, shard_index: int, mode: PSMode, world_size: int,
                 max_staleness: int, make_optimizer: Any) -> None:
        self.index = shard_index
        self.mode = mode
        self.world_size = world_size
        self.max_staleness = max_staleness
        self._make_optimizer = make_optimizer
        self.attempt = -1
        self.version = 0
        self.param: torch.Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending: dict[int, np.ndarray] = {}
        self.pushes = 0
        self.dropped = 0

    # -- state ---------------------------------------------------------------------------------

    def publish(self, attempt: int, params: np.ndarray, version: int,
                optimizer_state: dict[str, Any] | None) -> None:
        """Start ``attempt`` from these parameters (and optimizer state, when resuming)."""
        if attempt < self.attempt:
            raise StaleAttemptError(
                f"shard {self.index}: publish for attempt {attempt} after attempt {self.attempt}")
        self.attempt = attempt
        self.param = torch.nn.Parameter(torch.tensor(np.asarray(params, dtype=np.float32)))
        self.optimizer = self._make_optimizer([self.param])
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.version = int(version)
        self._pending.clear()

    def state_dict(self) -> dict[str, Any]:
        param, opt = self._require()
        return {"index": self.index, "version": self.version,
                # copies: the live tensors keep changing after this snapshot
                "params": param.detach().clone(), "optimizer": copy.deepcopy(opt.state_dict())}

    def params(self) -> np.ndarray:
        param, _ = self._require()
        return param.detach().numpy()

    def _require(self) -> tuple[torch.Tensor, torch.optim.Optimizer]:
        if self.param is None or self.optimizer is None:
            raise ClusterError(f"shard {self.index} holds no parameters yet (not published)")
        return self.param, self.optimizer

    def _check(self, attempt: int, grad: np.ndarray) -> None:
        param, _ = self._require()
        if attempt != self.attempt:
            raise StaleAttemptError(
                f"shard {self.index}: push from attempt {attempt}, current is {self.attempt}")
        if grad.shape != (param.numel(),):
            raise ClusterError(f"shard {self.index}: gradient of shape {grad.shape}, "
                               f"expected ({param.numel()},)")

    def _step(self, grad: torch.Tensor) -> None:
        param, opt = self._require()
        param.grad = grad
        opt.step()
        param.grad = None
        self.version += 1

    # -- sync ----------------------------------------------------------------------------------

    def submit(self, attempt: int, rank: int, version: int, grad: np.ndarray) -> bool:
        """Record ``rank``'s gradient for ``version``; True when all ranks have pushed."""
        self._check(attempt, grad)
        if version != self.version:
            raise ClusterError(f"shard {self.index}: sync push for version {version} from rank "
                               f"{rank}, but the shard is at version {self.version}")
        if rank in self._pending:
            raise ClusterError(f"shard {self.index}: rank {rank} pushed twice for version "
                               f"{version}")
        self._pending[rank] = grad
        self.pushes += 1
        return len(self._pending) == self.world_size

    def apply_pending(self) -> int:
        """Average the pending gradients in rank order and step; returns the new version."""
        acc = torch.tensor(self._pending[0], dtype=torch.float32)  # a copy: inputs are read-only
        for r in range(1, self.world_size):
            acc.add_(_view(self._pending[r]))
        acc.div_(self.world_size)
        self._pending.clear()
        self._step(acc)
        return self.version

    # -- async ---------------------------------------------------------------------------------

    def apply_async(self, attempt: int, version: int, grad: np.ndarray) -> PushOutcome:
        self._check(attempt, grad)
        self.pushes += 1
        staleness = self.version - version
        if staleness > self.max_staleness:
            self.dropped += 1
            return PushOutcome(self.version, False, staleness)
        self._step(torch.tensor(grad, dtype=torch.float32))
        return PushOutcome(self.version, True, staleness)


class Rendezvous:
    """Gather-to-all among ``world_size`` ranks, keyed by call: the PS workers' collectives.

    Every rank calls the same sequence of collectives, so the ``key`` (attempt, call number)
    matches across ranks. A key's entry is dropped once every rank has read the result.
    """

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self._values: dict[str, dict[int, Any]] = {}
        self._reads: dict[str, int] = {}

    def put(self, key: str, rank: int, value: Any) -> bool:
        slot = self._values.setdefault(key, {})
        if rank in slot:
            raise ClusterError(f"rendezvous {key}: rank {rank} arrived twice")
        slot[rank] = value
        return len(slot) == self.world_size

    def pending(self, key: str) -> bool:
        """Whether ``key`` still has ranks to arrive or to read."""
        return key in self._values

    def result(self, key: str) -> list[Any]:
        slot = self._values[key]
        out = [slot[r] for r in range(self.world_size)]
        self._reads[key] = self._reads.get(key, 0) + 1
        if self._reads[key] == self.world_size:
            del self._values[key], self._reads[key]
        return out
