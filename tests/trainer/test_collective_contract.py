"""Contract suite: every :class:`~trainer._collective.Collective` gives the same answers.

Implementations and world sizes, each as in production but without Ray:

- ``SingleProcess`` (world size 1 only);
- ``TorchCollective`` on a real gloo process group, one spawned process per rank, meeting
  through a ``FileStore``;
- ``ActorCollective`` gathering at the real ``cluster.ps_actors.RendezvousActor``, hosted on an
  in-process event loop (:mod:`tests.support.aio_host`), one thread per rank.

Every rank runs the same sequence of collectives (:func:`exercise`); the test checks what each
rank got against the values worked out here.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.aio_host import event_loop_host
from trainer._collective import ActorCollective, Collective, SingleProcess, TorchCollective

pytestmark = pytest.mark.timeout(300)

_WAIT_S = 120.0


def exercise(comm: Collective) -> dict[str, Any]:
    """One rank's share: the same calls, in the same order, on every rank."""
    r = comm.rank
    x64 = torch.tensor([r + 1.0, -2.5 * (r + 1), 1e10, 0.125], dtype=torch.float64)
    x64_before = x64.clone()
    s64 = comm.all_reduce_sum(x64)
    x32 = torch.arange(6, dtype=torch.float32).reshape(2, 3) * (r + 1)
    s32 = comm.all_reduce_sum(x32)
    sint = comm.all_reduce_sum(torch.tensor([r, 7, -(2**40)], dtype=torch.int64))
    return {
        "rank": comm.rank,
        "world_size": comm.world_size,
        "sum64": s64.tolist(), "dtype64": s64.dtype, "input_unchanged": torch.equal(x64,
                                                                                    x64_before),
        "sum32": s32.tolist(), "dtype32": s32.dtype, "shape32": tuple(s32.shape),
        "sum_int": sint.tolist(), "dtype_int": sint.dtype,
        "broadcast": comm.broadcast_int(1000 + r),
        "broadcast_negative": comm.broadcast_int(-1 if r == 0 else 5),
        "broadcast_large": comm.broadcast_int(2**40 + r),
        "gather": comm.all_gather_object({"rank": r, "name": "r" * (r + 1), "t": (r, None)}),
        "gather_again": comm.all_gather_object(r * 10),
    }


def expected(world_size: int, rank: int) -> dict[str, Any]:
    ranks = range(world_size)
    n = sum(r + 1 for r in ranks)  # sum of the per-rank multipliers
    return {
        "rank": rank,
        "world_size": world_size,
        "sum64": [float(n), -2.5 * n, 1e10 * world_size, 0.125 * world_size],
        "dtype64": torch.float64, "input_unchanged": True,
        "sum32": [[0.0, 1.0 * n, 2.0 * n], [3.0 * n, 4.0 * n, 5.0 * n]],
        "dtype32": torch.float32, "shape32": (2, 3),
        "sum_int": [sum(ranks), 7 * world_size, -(2**40) * world_size],
        "dtype_int": torch.int64,
        "broadcast": 1000,
        "broadcast_negative": -1,
        "broadcast_large": 2**40,
        "gather": [{"rank": r, "name": "r" * (r + 1), "t": (r, None)} for r in ranks],
        "gather_again": [r * 10 for r in ranks],
    }


# -- running each implementation ------------------------------------------------------------------


def _single(world_size: int, tmp_path: Path) -> list[dict[str, Any]]:
    assert world_size == 1
    return [exercise(SingleProcess())]


def _torch_rank(rank: int, world_size: int, store: str, out: Any) -> None:
    """A spawned process: one rank of a gloo process group."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=60))
        try:
            out.put((rank, exercise(TorchCollective(torch.device("cpu")))))
        finally:
            dist.destroy_process_group()
    except Exception as err:  # noqa: BLE001 - reported to the test process
        out.put((rank, f"{type(err).__name__}: {err}"))


def _torch(world_size: int, tmp_path: Path) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited torch or thread state
    out = ctx.Queue()
    procs = [ctx.Process(target=_torch_rank, args=(r, world_size, str(tmp_path / "store"), out),
                         daemon=True) for r in range(world_size)]
    for p in procs:
        p.start()
    try:
        results: dict[int, Any] = {}
        for _ in range(world_size):
            try:
                rank, value = out.get(timeout=_WAIT_S)
            except queue.Empty:
                pytest.fail(f"a gloo rank did not answer within {_WAIT_S:.0f} s")
            results[rank] = value
        for p in procs:
            p.join(timeout=30)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
    errors = [v for v in results.values() if isinstance(v, str)]
    assert not errors, errors
    return [results[r] for r in range(world_size)]


def _actor(world_size: int, tmp_path: Path) -> list[dict[str, Any]]:
    from cluster.ps_actors import RendezvousActor

    with event_loop_host(timeout_s=_WAIT_S) as host:
        rendezvous = RendezvousActor(world_size)

        def gather(key: str, rank: int, value: Any) -> list[Any]:
            return host.call(rendezvous.gather(key, rank, value))

        with ThreadPoolExecutor(max_workers=world_size) as pool:
            futures = [pool.submit(exercise, ActorCollective(gather, r, world_size, attempt=3))
                       for r in range(world_size)]
            results = [f.result(timeout=_WAIT_S) for f in futures]
        assert rendezvous.r._values == {}  # every gather was read by every rank and dropped
    return results


RUNNERS = {"single": _single, "torch-gloo": _torch, "actor-rendezvous": _actor}


@pytest.mark.parametrize(("impl", "world_size"), [
    ("single", 1),
    ("torch-gloo", 1),
    ("torch-gloo", 2),
    ("actor-rendezvous", 1),
    ("actor-rendezvous", 2),
])
def test_collectives_give_the_right_values(impl: str, world_size: int, tmp_path: Path) -> None:
    results = RUNNERS[impl](world_size, tmp_path)
    assert len(results) == world_size
    for rank, got in enumerate(results):
        assert got == expected(world_size, rank), f"rank {rank}"


def test_actor_collective_keys_calls_by_attempt_and_order() -> None:
    """Gathers are keyed ``<attempt>:<call number>``: the ranks' n-th calls of one attempt meet,
    and never a call of another attempt."""
    seen: list[str] = []

    def gather(key: str, rank: int, value: Any) -> list[Any]:
        seen.append(key)
        return [value]

    comm = ActorCollective(gather, 0, 1, attempt=2)
    comm.broadcast_int(1)
    comm.all_gather_object("x")
    comm.barrier()
    assert seen == ["2:0", "2:1", "2:2"]
