"""The few collective operations the training loop needs, behind one small interface.

``TorchCollective`` uses the process group Ray Train set up (gloo on CPU, NCCL on GPU);
``ActorCollective`` meets at the parameter server's rendezvous actor (the PS workers have no
process group); ``SingleProcess`` is the world-size-1 case, used by ``train_local`` and by tests
that drive the loop without Ray.

The contract every implementation keeps (``tests/trainer/test_collective_contract.py``): every
rank calls the same collectives in the same order; ``all_reduce_sum`` returns the elementwise
sum over ranks with the input's dtype and leaves the input unchanged; ``broadcast_int`` returns
rank 0's value; ``all_gather_object`` returns every rank's object, in rank order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.distributed as dist

__all__ = ["ActorCollective", "Collective", "SingleProcess", "TorchCollective"]


class Collective(Protocol):
    rank: int
    world_size: int

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor: ...

    def broadcast_int(self, value: int) -> int: ...

    def all_gather_object(self, obj: Any) -> list[Any]: ...


class SingleProcess:
    rank = 0
    world_size = 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def broadcast_int(self, value: int) -> int:
        return value

    def all_gather_object(self, obj: Any) -> list[Any]:
        return [obj]


class TorchCollective:
    """torch.distributed collectives; tensors are reduced on ``device`` (CPU for gloo)."""

    def __init__(self, device: torch.device) -> None:
        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialized")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = device

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        # a copy: all_reduce works in place, and on CPU .to(device) alone returns the input
        t = tensor.detach().to(self.device, copy=True)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu()

    def broadcast_int(self, value: int) -> int:
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.broadcast(t, src=0)
        return int(t.item())

    def all_gather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


class ActorCollective:
    """The TrainLoop's collectives as gathers at a rendezvous; sums in rank order.

    ``gather(key, rank, value)`` returns every rank's value for ``key`` in rank order once all
    have arrived (``cluster.ps_actors.RendezvousActor.gather``; :meth:`over_actor` calls it over
    Ray). Keys are ``"<attempt>:<call number>"``: the ranks' n-th calls meet, and a call left
    over from a failed attempt never meets the next attempt's.
    """

    def __init__(self, gather: Callable[[str, int, Any], list[Any]], rank: int,
                 world_size: int, attempt: int) -> None:
        self.gather = gather
        self.rank = rank
        self.world_size = world_size
        self.attempt = attempt
        self._calls = 0

    @classmethod
    def over_actor(cls, rendezvous: Any, rank: int, world_size: int,
                   attempt: int) -> ActorCollective:
        """Gathers at a ``RendezvousActor`` handle."""

        def gather(key: str, rank: int, value: Any) -> list[Any]:
            import ray  # deferred: the loop and its tests run without Ray

            return list(ray.get(rendezvous.gather.remote(key, rank, value)))

        return cls(gather, rank, world_size, attempt)

    def _gather(self, value: Any) -> list[Any]:
        key = f"{self.attempt}:{self._calls}"
        self._calls += 1
        return list(self.gather(key, self.rank, value))

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        parts = self._gather(tensor.detach().cpu())
        acc = parts[0].clone()
        for p in parts[1:]:
            acc += p
        return acc

    def broadcast_int(self, value: int) -> int:
        return int(self._gather(value)[0])

    def all_gather_object(self, obj: Any) -> list[Any]:
        return self._gather(obj)

    def barrier(self) -> None:
        self._gather(None)
