"""The few collective operations the training loop needs, behind one small interface.

``TorchCollective`` uses the process group Ray Train set up (gloo on CPU, NCCL on GPU);
``ActorCollective`` meets at the parameter server's rendezvous actor (the PS workers have no
process group); ``SingleProcess`` is the world-size-1 case, used by tests that drive the loop
without Ray.
"""

from __future__ import annotations

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
        t = tensor.to(self.device)
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
    """The TrainLoop's collectives over the rendezvous actor; sums in rank order."""

    def __init__(self, rendezvous: Any, rank: int, world_size: int, attempt: int) -> None:
        self.rendezvous = rendezvous
        self.rank = rank
        self.world_size = world_size
        self.attempt = attempt
        self._calls = 0

    def _gather(self, value: Any) -> list[Any]:
        key = f"{self.attempt}:{self._calls}"
        self._calls += 1
        import ray

        return list(ray.get(self.rendezvous.gather.remote(key, self.rank, value)))

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
