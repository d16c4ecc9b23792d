"""The worker side of a run: what each rank executes, for both strategies.

``ray_train_worker`` is Ray Train's per-worker entry point (strategy ``ddp``): it wraps
:class:`trainer.loop.TrainLoop` with Ray's process group. :class:`PSWorkerActor`
(``mtp-ps-<task>-worker-<r>``, strategy ``parameter_server``) runs the same loop with two things
swapped in: a :class:`PSOptimizer` whose ``step`` pushes the gradients to the shards and copies
back the parameters they return, and an :class:`~trainer._collective.ActorCollective` (gathers
through the rendezvous actor) for the few per-epoch collectives.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
import torch
from torch import nn

from cluster.errors import ClusterError
from cluster.heartbeat import HeartbeatSender
from cluster.parameter_server import ShardLayout
from cluster.ps_actors import ps_metrics
from mtp_core.metrics import LazyMetrics
from mtp_core.spec import PSMode
from trainer._collective import ActorCollective, SingleProcess, TorchCollective
from trainer.launch import WorkerLaunch
from trainer.loop import TrainLoop

__all__ = ["PSOptimizer", "PSWorkerActor", "ray_train_worker"]

logger = logging.getLogger(__name__)


def _quiet_ray_train_reports(level: str) -> None:
    """Ray Train logs every report at INFO from every worker (one line per rank per epoch).

    Its execution context names that logger by file path (``logging.getLogger(__file__)``),
    outside the ``ray.train`` hierarchy that ``LoggingConfig`` controls, so set it here.
    """
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("ray.train") or "/ray/train/" in name:
            logging.getLogger(name).setLevel(level)


def ray_train_worker(config: dict[str, WorkerLaunch]) -> None:
    """Ray Train's per-worker entry point: wraps TrainLoop with Ray's process group.

    Also sends heartbeats to the fault detector and, on rank 0, tells the task migrator where
    this attempt runs and, after a migration, from which checkpoint it resumed.
    """
    import ray
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    launch = config["launch"]
    _quiet_ray_train_reports(launch.ray_train_log_level)
    task = launch.task
    features, targets = ray.get(launch.data)
    device = ray.train.torch.get_device()
    collective = TorchCollective(device) if dist.is_initialized() else SingleProcess()
    progress = launch.progress
    node_id = ray.get_runtime_context().get_node_id()
    attempt = launch.attempt

    def on_epoch(record: dict[str, Any]) -> None:
        if progress is None:
            return
        try:
            progress.put_nowait(record)
        except Exception as err:  # noqa: BLE001 - progress display must never stop training
            logger.debug("progress queue unavailable: %s", err)

    loop = TrainLoop(
        task, features, targets, launch.meta, launch.seed, launch.run_dir, launch.fingerprint,
        collective,
        report=lambda metrics: ray.train.report(metrics),
        prepare_model=lambda m: ray.train.torch.prepare_model(
            # the Standardize buffers never change: no per-step buffer broadcast
            m, parallel_strategy_kwargs={"forward_sync_buffers": False}),
        device=device,
        on_epoch=on_epoch,
    )
    heartbeat = None
    if launch.detector is not None:
        heartbeat = HeartbeatSender(
            launch.detector, launch.task_key, attempt, collective.rank, node_id,
            lambda: loop.state.global_step, task.fault_tolerance.heartbeat_interval_s).start()
    nodes = collective.all_gather_object(node_id)
    migrator = launch.migrator
    if migrator is not None:
        migrator.attach_worker.remote(launch.task_key, attempt, collective.rank,
                                      ray.get_runtime_context().current_actor)
    if migrator is not None and collective.rank == 0:
        migrator.attempt_started.remote(launch.task_key, attempt, nodes)
        if attempt > 0:
            migrator.resumed.remote(launch.task_key, attempt, loop.resumed_from,
                                    loop.state.global_step)
    try:
        loop.run()
    finally:
        if heartbeat is not None:
            heartbeat.stop()


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

    def run(self, launch: WorkerLaunch, rank: int, shards: list[Any],
            rendezvous: Any) -> dict[str, Any]:
        task = launch.task
        world, attempt = task.resources.num_workers, launch.attempt
        torch.set_num_threads(max(1, int(task.resources.cpus_per_worker)))
        features, targets = ray.get(launch.data)
        use_cuda = task.resources.use_gpu and torch.cuda.is_available()
        device = torch.device("cuda" if use_cuda else "cpu")
        collective = ActorCollective(rendezvous, rank, world, attempt)
        spec = task.ps_spec
        holder: dict[str, PSOptimizer] = {}

        def make_optimizer(module: nn.Module) -> PSOptimizer:
            layout = ShardLayout.for_module(module, spec.num_shards)
            holder["opt"] = PSOptimizer(module, layout, shards, attempt, rank,
                                        spec.mode)
            return holder["opt"]

        progress = launch.progress

        def report(metrics: dict[str, Any]) -> None:
            # a barrier, as ray.train.report is for DDP: no rank starts the next epoch's pushes
            # while rank 0 reads the servers' state for a checkpoint
            collective.barrier()
            if rank == 0 and progress is not None:
                try:
                    progress.put_nowait(metrics)
                except Exception as err:  # noqa: BLE001 - display only
                    logger.debug("progress queue unavailable: %s", err)

        loop = TrainLoop(task, features, targets, launch.meta, launch.seed, launch.run_dir,
                         launch.fingerprint, collective, report=report,
                         device=device, make_optimizer=make_optimizer)
        opt = holder["opt"]
        if rank == 0:
            opt.publish()
        collective.barrier()
        opt.pull()
        heartbeat = None
        if launch.detector is not None:
            node_id = ray.get_runtime_context().get_node_id()
            heartbeat = HeartbeatSender(
                launch.detector, launch.task_key, attempt, rank, node_id,
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
