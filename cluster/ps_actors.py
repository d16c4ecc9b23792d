"""The parameter-server strategy on Ray actors: server shards, workers, and their driver.

Actors, all in namespace ``mtp`` (``ray list actors`` and the dashboard show them):

- ``mtp-ps-<task>-shard-<i>``: a :class:`ShardActor` per shard (asyncio actor, restarts itself
  with ``max_restarts``; a restarted shard is empty until the next attempt publishes into it).
- ``mtp-ps-<task>-worker-<r>``: a :class:`PSWorkerActor` per rank. It runs the same
  :class:`trainer.loop.TrainLoop` as a Ray Train worker, with two things swapped in: a
  :class:`PSOptimizer` whose ``step`` pushes the gradients to the shards and copies back the
  parameters they return, and an :class:`ActorCollective` (gathers through the rendezvous
  actor) for the few per-epoch collectives (metric sums, the checkpoint decision, RNG states).
- ``mtp-ps-<task>-rendezvous``: the :class:`RendezvousActor` those collectives meet at.

Failures: when a worker or a shard dies, :func:`run_parameter_server` kills the attempt's
workers, waits for the shards to be back, and starts a new attempt; its rank 0 publishes the
newest good checkpoint (parameters, server optimizer state, version) into the shards, and every
rank resumes from the same checkpoint, so in ``sync`` mode the final weights equal an
uninterrupted run's. Up to ``failure.max_failures`` restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import ray
import torch
from torch import nn

from cluster.errors import ClusterError
from cluster.metrics import LazyMetrics
from cluster.parameter_server import (
    ParameterShard,
    PushOutcome,
    Rendezvous,
    ShardLayout,
    StaleAttemptError,
)
from trainer.spec import PSMode, TrainingTask

__all__ = [
    "ActorCollective",
    "PSOptimizer",
    "PSWorkerActor",
    "RendezvousActor",
    "ShardActor",
    "run_parameter_server",
]

logger = logging.getLogger(__name__)

NAMESPACE = "mtp"
_NAME_FREE_WAIT_S = 30.0
_SHARD_BACK_WAIT_S = 60.0
_SHARE_BYTES = 1 << 20  # sync replies above this go through one shared object-store copy


def actor_names(task_key: str, num_shards: int, num_workers: int) -> dict[str, list[str]]:
    prefix = f"mtp-ps-{task_key}"
    return {"shards": [f"{prefix}-shard-{k}" for k in range(num_shards)],
            "workers": [f"{prefix}-worker-{r}" for r in range(num_workers)],
            "rendezvous": [f"{prefix}-rendezvous"]}


def _ps_metrics() -> dict[str, Any]:
    """``ray.util.metrics`` of the parameter server (built in the recording process)."""
    from ray.util.metrics import Counter, Histogram

    return {
        "pushes": Counter("mtp_ps_pushes", description="Gradient pushes received.",
                          tag_keys=("shard", "applied")),
        "pulls": Counter("mtp_ps_pulls", description="Parameter pulls served.",
                         tag_keys=("shard",)),
        "staleness": Histogram("mtp_ps_staleness",
                               description="Versions between a push's base and newest.",
                               boundaries=[0.5, 1.5, 2.5, 4.5, 8.5, 16.5, 32.5],
                               tag_keys=("shard",)),
        "step_s": Histogram("mtp_ps_step_time_s",
                            description="Worker step: compute, push, pull, copy back.",
                            boundaries=[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5]),
    }


# ---------------------------------------------------------------------------------------------
# Server side


class ShardActor:
    """One parameter shard (asyncio actor: pushes of one sync step wait on an event)."""

    def __init__(self, shard_index: int, mode: str, world_size: int, max_staleness: int,
                 task: dict[str, Any]) -> None:
        from trainer.loop import build_optimizer

        spec = TrainingTask.model_validate(task)
        self.mode = PSMode(mode)
        self.shard = ParameterShard(shard_index, self.mode, world_size, max_staleness,
                                    lambda params: build_optimizer(spec, params, fused=True))
        self._applied = asyncio.Event()
        self._outgoing: Any = None
        self._tags = {"shard": str(shard_index)}
        self._metrics = LazyMetrics(_ps_metrics)

    def _share(self, params: np.ndarray) -> Any:
        """What every rank of a sync step receives: large buffers go into the object store
        once (all ranks read the same copy); small ones travel inline with each reply."""
        if params.nbytes > _SHARE_BYTES:
            return ray.put(params)
        # no copy: the buffer cannot change before every rank has pushed again, which needs
        # this very reply
        return params

    def _wake(self) -> None:
        self._applied.set()
        self._applied = asyncio.Event()

    async def ready(self) -> int:
        return self.shard.attempt

    async def publish(self, attempt: int, params: np.ndarray, version: int,
                      optimizer_state: dict[str, Any] | None) -> int:
        self.shard.publish(attempt, params, version, optimizer_state)
        self._wake()  # pushes still waiting from an older attempt fail (attempt check below)
        return self.shard.version

    async def push(self, attempt: int, rank: int, version: int,
                   grad: np.ndarray) -> tuple[int, bool, int, np.ndarray]:
        m = self._metrics.get()
        if self.mode is PSMode.SYNC:
            waiter = self._applied
            if self.shard.submit(attempt, rank, version, grad):
                self.shard.apply_pending()
                self._outgoing = self._share(self.shard.params())
                self._wake()
            else:
                await waiter.wait()
            if self.shard.attempt != attempt:
                raise StaleAttemptError(f"shard {self.shard.index}: attempt {attempt} replaced "
                                        f"by {self.shard.attempt} while waiting")
            outcome = PushOutcome(self.shard.version, True, 0)
            params = self._outgoing
        else:
            outcome = self.shard.apply_async(attempt, version, grad)
            m["staleness"].observe(outcome.staleness, tags=self._tags)
            # a copy: other workers' pushes update the buffer while this result is serialized
            params = self.shard.params().copy()
        m["pushes"].inc(tags={**self._tags, "applied": str(outcome.applied).lower()})
        return outcome.version, outcome.applied, outcome.staleness, params

    async def pull(self, attempt: int) -> tuple[int, np.ndarray]:
        if attempt != self.shard.attempt:
            raise StaleAttemptError(f"shard {self.shard.index}: pull from attempt {attempt}, "
                                    f"current is {self.shard.attempt}")
        self._metrics.get()["pulls"].inc(tags=self._tags)
        return self.shard.version, self.shard.params().copy()

    async def state_dict(self) -> dict[str, Any]:
        return self.shard.state_dict()

    async def stats(self) -> dict[str, Any]:
        s = self.shard
        return {"index": s.index, "attempt": s.attempt, "version": s.version,
                "pushes": s.pushes, "dropped": s.dropped,
                "size": 0 if s.param is None else int(s.param.numel())}


class RendezvousActor:
    """Gather-to-all for the workers' per-epoch collectives (see ``Rendezvous``)."""

    def __init__(self, world_size: int) -> None:
        self.r = Rendezvous(world_size)
        self._events: dict[str, asyncio.Event] = {}

    async def gather(self, key: str, rank: int, value: Any) -> list[Any]:
        event = self._events.setdefault(key, asyncio.Event())
        if self.r.put(key, rank, value):
            event.set()
        else:
            await event.wait()
        out = self.r.result(key)
        if not self.r.pending(key):
            self._events.pop(key, None)
        return out


# ---------------------------------------------------------------------------------------------
# Worker side


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


class PSOptimizer:
    """Stands in for the torch optimizer in a PS worker's TrainLoop.

    ``step`` pushes this rank's gradients (one flat buffer per shard) and copies the returned
    parameters into the model; the optimizer itself runs on the shards. ``state_dict`` (rank 0,
    at a checkpoint) is the servers' state; ``load_state_dict`` (on resume) keeps it for
    :meth:`publish`.
    """

    def __init__(self, module: nn.Module, layout: ShardLayout, shards: list[Any], attempt: int,
                 rank: int, mode: PSMode) -> None:
        self.params = dict(module.named_parameters())
        self.layout = layout
        self.shards = shards
        self.attempt = attempt
        self.rank = rank
        self.mode = mode
        self.versions = [0] * layout.num_shards
        self.pushes = 0
        self.dropped = 0
        self.max_staleness_seen = 0
        self._resume_state: dict[str, Any] | None = None
        self._metrics = LazyMetrics(_ps_metrics)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params.values():
            p.grad = None

    def _grads(self) -> dict[str, torch.Tensor]:
        return {n: (p.grad if p.grad is not None else torch.zeros_like(p))
                for n, p in self.params.items()}

    def step(self) -> None:
        t0 = time.perf_counter()
        grads = self._grads()
        refs = [shard.push.remote(self.attempt, self.rank, self.versions[k],
                                  self.layout.gather(grads, k))
                for k, shard in enumerate(self.shards)]
        replies = ray.get(refs)
        shared = [k for k, r in enumerate(replies) if isinstance(r[3], ray.ObjectRef)]
        flats = [r[3] for r in replies]
        for k, flat in zip(shared, ray.get([flats[k] for k in shared]), strict=True):
            flats[k] = flat
        for k, (version, applied, staleness, _) in enumerate(replies):
            self.layout.scatter(flats[k], self.params, k)
            self.versions[k] = version
            self.pushes += 1
            self.dropped += 0 if applied else 1
            self.max_staleness_seen = max(self.max_staleness_seen, staleness)
        self._metrics.get()["step_s"].observe(time.perf_counter() - t0)

    def pull(self) -> None:
        refs = [shard.pull.remote(self.attempt) for shard in self.shards]
        for k, (version, flat) in enumerate(ray.get(refs)):
            self.layout.scatter(flat, self.params, k)
            self.versions[k] = version

    def synchronize(self) -> None:
        """At an epoch's end (after every rank's last push): everyone takes the newest."""
        if self.mode is PSMode.ASYNC:
            self.pull()

    def state_dict(self) -> dict[str, Any]:
        states = ray.get([s.state_dict.remote() for s in self.shards])
        return {"strategy": "parameter_server", "num_shards": self.layout.num_shards,
                "shard_names": [self.layout.names(k) for k in range(self.layout.num_shards)],
                "shards": states}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("strategy") != "parameter_server":
            raise ClusterError("the checkpoint holds a DDP optimizer state, not a parameter "
                               "server's; use a new --run-name for strategy parameter_server")
        names = [self.layout.names(k) for k in range(self.layout.num_shards)]
        if state.get("shard_names") != names:
            raise ClusterError(
                f"the checkpoint's shard layout ({state.get('num_shards')} shards) differs from "
                f"this run's ps.num_shards={self.layout.num_shards}")
        self._resume_state = state

    def publish(self) -> None:
        """Rank 0: load the attempt's starting state into every shard."""
        refs = []
        for k, shard in enumerate(self.shards):
            if self._resume_state is not None:
                s = self._resume_state["shards"][k]
                refs.append(shard.publish.remote(self.attempt, s["params"].numpy(),
                                                 s["version"], s["optimizer"]))
            else:
                refs.append(shard.publish.remote(self.attempt,
                                                 self.layout.gather(self.params, k), 0, None))
        ray.get(refs)


class PSWorkerActor:
    """One rank of a parameter-server run: a TrainLoop wired to the shards."""

    def run(self, config: dict[str, Any]) -> dict[str, Any]:
        from cluster.heartbeat import HeartbeatSender
        from trainer.loop import TrainLoop

        task = TrainingTask.model_validate(config["task"])
        rank, world, attempt = config["rank"], task.resources.num_workers, config["attempt"]
        torch.set_num_threads(max(1, int(task.resources.cpus_per_worker)))
        features, targets = ray.get(config["data"])
        use_cuda = task.resources.use_gpu and torch.cuda.is_available()
        device = torch.device("cuda" if use_cuda else "cpu")
        collective = ActorCollective(config["rendezvous"], rank, world, attempt)
        spec = task.ps_spec
        holder: dict[str, PSOptimizer] = {}

        def make_optimizer(module: nn.Module) -> PSOptimizer:
            layout = ShardLayout.for_module(module, spec.num_shards)
            holder["opt"] = PSOptimizer(module, layout, config["shards"], attempt, rank,
                                        spec.mode)
            return holder["opt"]

        progress = config.get("progress")

        def report(metrics: dict[str, Any]) -> None:
            # a barrier, as ray.train.report is for DDP: no rank starts the next epoch's pushes
            # while rank 0 reads the servers' state for a checkpoint
            collective.barrier()
            if rank == 0 and progress is not None:
                try:
                    progress.put_nowait(metrics)
                except Exception as err:  # noqa: BLE001 - display only
                    logger.debug("progress queue unavailable: %s", err)

        loop = TrainLoop(task, features, targets, config["meta"], config["seed"],
                         config["run_dir"], config["fingerprint"], collective, report=report,
                         device=device, make_optimizer=make_optimizer)
        opt = holder["opt"]
        if rank == 0:
            opt.publish()
        collective.barrier()
        opt.pull()
        heartbeat = None
        if config.get("detector") is not None:
            node_id = ray.get_runtime_context().get_node_id()
            heartbeat = HeartbeatSender(
                config["detector"], config["task_key"], attempt, rank, node_id,
                lambda: loop.state.global_step, task.fault_tolerance.heartbeat_interval_s,
            ).start()
        try:
            summary = loop.run()
        finally:
            if heartbeat is not None:
                heartbeat.stop()
        summary["ps"] = {"pushes": opt.pushes, "dropped": opt.dropped,
                         "max_staleness": opt.max_staleness_seen}
        return summary


# ---------------------------------------------------------------------------------------------
# Driver


def _kill(handles: list[Any]) -> None:
    for h in handles:
        try:
            ray.kill(h, no_restart=True)
        except Exception as err:  # noqa: BLE001 - already gone
            logger.debug("kill: %s", err)


def _await_names_free(names: list[str]) -> None:
    """A killed actor's name is released asynchronously; wait before reusing it.

    Only waits: an actor that holds one of these names and stays alive belongs to another
    driver's run of the same run name, which must not be disturbed.
    """
    deadline = time.monotonic() + _NAME_FREE_WAIT_S
    for name in names:
        while True:
            try:
                ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                break
            if time.monotonic() > deadline:
                raise ClusterError(f"actor name {name} is still taken after "
                                   f"{_NAME_FREE_WAIT_S:.0f} s: another driver is running a "
                                   "parameter-server run of the same name; use another "
                                   "--run-name")
            time.sleep(0.1)


def _new_rendezvous(name: str, world_size: int) -> Any:
    _await_names_free([name])
    return ray.remote(RendezvousActor).options(
        name=name, namespace=NAMESPACE, num_cpus=0, max_restarts=0,
        max_concurrency=max(64, 4 * world_size)).remote(world_size)


def _await_shards(shards: list[Any]) -> None:
    """Shards restart by themselves; wait until each answers again."""
    deadline = time.monotonic() + _SHARD_BACK_WAIT_S
    for k, shard in enumerate(shards):
        while True:
            try:
                ray.get(shard.ready.remote(), timeout=5)
                break
            except Exception as err:  # noqa: BLE001 - restarting
                if time.monotonic() > deadline:
                    raise ClusterError(f"parameter-server shard {k} did not come back within "
                                       f"{_SHARD_BACK_WAIT_S:.0f} s: {err}") from err
                time.sleep(0.2)


def run_parameter_server(task: TrainingTask, task_key: str, base_config: dict[str, Any],
                         on_failure: Callable[[int, str], None] | None = None) -> dict[str, Any]:
    """Train ``task`` with the parameter-server strategy; returns rank 0's summary.

    ``base_config`` holds what every worker needs (task, data ref, meta, seed, run dir,
    fingerprint, progress queue, detector). Raises ``ClusterError`` after more than
    ``failure.max_failures`` failed attempts, with the cause.
    """
    spec = task.ps_spec
    res = task.resources
    names = actor_names(task_key, spec.num_shards, res.num_workers)
    _await_names_free(names["shards"] + names["workers"] + names["rendezvous"])
    task_dict = task.canonical_dict()
    shards = [
        ray.remote(ShardActor).options(name=names["shards"][k], namespace=NAMESPACE,
                           num_cpus=spec.cpus_per_shard, max_restarts=-1, max_task_retries=0,
                           max_concurrency=max(64, 4 * res.num_workers))
        .remote(k, spec.mode.value, res.num_workers, spec.max_staleness, task_dict)
        for k in range(spec.num_shards)
    ]
    gpus = (res.gpus_per_worker or 1.0) if res.use_gpu else 0.0
    attempt = 0
    workers: list[Any] = []
    rendezvous: Any = None
    try:
        while True:
            # a fresh rendezvous per attempt: gathers that a failed attempt left waiting die
            # with the old one instead of holding its concurrency slots
            rendezvous = _new_rendezvous(names["rendezvous"][0], res.num_workers)
            _await_names_free(names["workers"])
            workers = [ray.remote(PSWorkerActor).options(
                name=names["workers"][r], namespace=NAMESPACE, num_cpus=res.cpus_per_worker,
                num_gpus=gpus, max_restarts=0).remote()
                       for r in range(res.num_workers)]
            refs = [w.run.remote({**base_config, "rank": r, "attempt": attempt,
                                  "shards": shards, "rendezvous": rendezvous})
                    for r, w in enumerate(workers)]
            try:
                pending, summaries = list(refs), {}
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    summaries[done[0]] = ray.get(done[0])  # raises if that rank failed
                return dict(summaries[refs[0]])
            except (ray.exceptions.RayError, ClusterError) as err:
                cause = f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:300]}"
                _kill(workers + [rendezvous])
                limit = task.failure.max_failures
                if limit != -1 and attempt >= limit:
                    raise ClusterError(
                        f"parameter-server attempt {attempt} failed ({cause}) and "
                        f"failure.max_failures={limit} restarts are used up") from err
                logger.warning("parameter-server attempt %d of %s failed (%s); restarting "
                               "from the newest good checkpoint", attempt, task_key, cause)
                if on_failure is not None:
                    on_failure(attempt, cause)
                _await_shards(shards)
                attempt += 1
    finally:
        _kill(workers + shards + ([rendezvous] if rendezvous is not None else []))
