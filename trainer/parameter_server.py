"""The parameter-server strategy's workers and the driver loop that supervises them.

- ``mtp-ps-<task>-worker-<r>``: a :class:`PSWorkerActor` per rank. It runs the same
  :class:`trainer.loop.TrainLoop` as a Ray Train worker, with two things swapped in: a
  :class:`PSOptimizer` whose ``step`` pushes the gradients to the shards and copies back the
  parameters they return, and an :class:`~trainer._collective.ActorCollective` (gathers through
  the rendezvous actor) for the few per-epoch collectives (metric sums, the checkpoint
  decision, RNG states).
- The shards and the rendezvous are :mod:`cluster.ps_actors`.

Failures: when a worker or a shard dies, :func:`run_parameter_server` kills the attempt's
workers, waits for the shards to be back, and starts a new attempt; its rank 0 publishes the
newest good checkpoint (parameters, server optimizer state, version) into the shards, and every
rank resumes from the same checkpoint, so in ``sync`` mode the final weights equal an
uninterrupted run's. Up to ``failure.max_failures`` restarts.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import ray
import torch
from torch import nn

from cluster.errors import ClusterError
from cluster.heartbeat import HeartbeatSender
from cluster.parameter_server import ShardLayout
from cluster.ps_actors import RendezvousActor, ShardActor, actor_names, ps_metrics
from mtp_core.metrics import LazyMetrics
from mtp_core.ray_env import NAMESPACE
from mtp_core.spec import PSMode, TrainingTask
from trainer._collective import ActorCollective
from trainer.loop import TrainLoop, build_optimizer

__all__ = ["PSOptimizer", "PSWorkerActor", "run_parameter_server"]

logger = logging.getLogger(__name__)

_NAME_FREE_WAIT_S = 30.0
_SHARD_BACK_WAIT_S = 60.0


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
        self._metrics = LazyMetrics(ps_metrics)

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
    make_optimizer = functools.partial(build_optimizer, task, fused=True)
    shards = [
        ray.remote(ShardActor).options(name=names["shards"][k], namespace=NAMESPACE,
                           num_cpus=spec.cpus_per_shard, max_restarts=-1, max_task_retries=0,
                           max_concurrency=max(64, 4 * res.num_workers))
        .remote(k, spec.mode, res.num_workers, spec.max_staleness, make_optimizer)
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
