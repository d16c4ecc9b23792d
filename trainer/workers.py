"""The worker side of a run: what each rank executes, for both strategies.

``ray_train_worker`` is Ray Train's per-worker entry point (strategy ``ddp``): it runs
:class:`trainer.loop.TrainLoop` with Ray's process group and the DDP exchange.
:class:`PSWorkerActor` (``mtp-ps-<task>-worker-<r>``, strategy ``parameter_server``) runs the
same loop with two things swapped in: a :class:`~trainer.exchange.ParameterServerExchange` that
reaches the shard actors through :class:`RayShards`, and an
:class:`~trainer._collective.ActorCollective` (gathers through the rendezvous actor) for the
few per-epoch collectives. Both tie the rank to the control plane the same way:
:class:`WorkerWiring`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
import ray
import torch
from torch import nn

from cluster.heartbeat import HeartbeatSender
from cluster.parameter_server import PushOutcome, ShardLayout
from mtp_core.spec import CustomModel
from trainer._collective import ActorCollective, SingleProcess, TorchCollective
from trainer.exchange import ParameterServerExchange, ShardStart
from trainer.launch import WorkerLaunch
from trainer.loop import TrainLoop

__all__ = ["PSWorkerActor", "RayShards", "WorkerWiring", "ray_train_worker"]

logger = logging.getLogger(__name__)


def _quiet_ray_train_reports(level: str) -> None:
    """Ray Train logs every report at INFO from every worker (one line per rank per epoch).

    Its execution context names that logger by file path (``logging.getLogger(__file__)``),
    outside the ``ray.train`` hierarchy that ``LoggingConfig`` controls, so set it here.
    """
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("ray.train") or "/ray/train/" in name:
            logging.getLogger(name).setLevel(level)


class WorkerWiring:
    """One rank's ties to the control plane for one attempt, the same for both strategies.

    Lifecycle: built before the loop (the loop reports epochs to :meth:`progress`), then
    ``with wiring.attach(loop): loop.run()``. Entering starts the heartbeat to the fault
    detector and registers the rank with the task migrator (its actor, to stop it on a
    verdict; on rank 0 the attempt's nodes and, after a migration, where it resumed from);
    leaving stops the heartbeat, whatever happened. Each of the launch's ``progress``,
    ``detector`` and ``migrator`` is optional; what is absent is skipped.
    """

    def __init__(self, launch: WorkerLaunch, node_id: str | None = None) -> None:
        self.launch = launch
        self.node_id = node_id if node_id is not None else (
            ray.get_runtime_context().get_node_id())
        self._loop: TrainLoop | None = None
        self._heartbeat: HeartbeatSender | None = None

    def progress(self, record: dict[str, Any]) -> None:
        """Append an epoch's record to the run's ``progress.jsonl``, which the driver tails
        (display only: a file on the storage every node sees, no actor to start)."""
        if not self.launch.progress:
            return
        try:
            with open(self.launch.layout.progress, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, default=str) + "\n")
        except OSError as err:  # progress display must never stop training
            logger.debug("progress file not written: %s", err)

    def attach(self, loop: TrainLoop) -> WorkerWiring:
        self._loop = loop
        return self

    def __enter__(self) -> WorkerWiring:
        loop = self._loop
        if loop is None:
            raise RuntimeError("WorkerWiring: call attach(loop) before entering")
        launch = self.launch
        if launch.detector is not None:
            self._heartbeat = HeartbeatSender(
                launch.detector, launch.task_key, launch.attempt, loop.rank, self.node_id,
                lambda: loop.state.global_step,
                launch.task.fault_tolerance.heartbeat_interval_s).start()
        try:
            self._register(loop)
        except BaseException:
            self._stop()
            raise
        return self

    def _register(self, loop: TrainLoop) -> None:
        migrator, key, attempt = self.launch.migrator, self.launch.task_key, self.launch.attempt
        if migrator is None:
            return
        nodes = loop.comm.all_gather_object(self.node_id)  # every rank: a collective
        migrator.attach_worker.remote(key, attempt, loop.rank,
                                      ray.get_runtime_context().current_actor)
        if loop.rank == 0:
            migrator.attempt_started.remote(key, attempt, nodes)
            if attempt > 0:
                migrator.resumed.remote(key, attempt, loop.resumed_from, loop.state.global_step)

    def _stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop()


def ray_train_worker(config: dict[str, WorkerLaunch]) -> None:
    """Ray Train's per-worker entry point: TrainLoop with Ray's process group, wired to the
    control plane by :class:`WorkerWiring`."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    launch = config["launch"]
    _quiet_ray_train_reports(launch.ray_train_log_level)
    features, targets = ray.get(launch.data)
    device = ray.train.torch.get_device()
    collective = TorchCollective(device) if dist.is_initialized() else SingleProcess()
    wiring = WorkerWiring(launch)
    launch.install_code()
    loop = TrainLoop(
        launch.task, features, targets, launch.meta, launch.seed, launch.run_dir,
        launch.fingerprint, collective,
        report=lambda metrics: ray.train.report(metrics),
        prepare_model=lambda m: ray.train.torch.prepare_model(
            # the built-in models' only buffers (Standardize) never change: no per-step
            # broadcast; a custom model's may (BatchNorm running statistics): rank 0's are
            # broadcast before every forward, so every rank uses, and the stored model holds,
            # the same ones
            m, parallel_strategy_kwargs={
                "forward_sync_buffers": isinstance(launch.task.model, CustomModel)}),
        device=device,
        on_epoch=wiring.progress,
    )
    with wiring.attach(loop):
        loop.run()


class RayShards:
    """The shard actors (``cluster.ps_actors.ShardActor`` handles) as the PS exchange's
    :class:`~trainer.exchange.ShardServers`: one call per shard, in parallel, then one wait."""

    def __init__(self, handles: list[Any]) -> None:
        self.handles = handles

    def push(self, attempt: int, rank: int, versions: Sequence[int],
             grads: Sequence[np.ndarray]) -> list[tuple[PushOutcome, np.ndarray]]:
        refs = [shard.push.remote(attempt, rank, versions[k], grads[k])
                for k, shard in enumerate(self.handles)]
        replies = ray.get(refs)
        # a large sync reply is one shared object-store copy for all ranks: fetch those at once
        flats = [r[3] for r in replies]
        shared = [k for k, flat in enumerate(flats) if isinstance(flat, ray.ObjectRef)]
        for k, flat in zip(shared, ray.get([flats[k] for k in shared]), strict=True):
            flats[k] = flat
        return [(PushOutcome(version, applied, staleness), flats[k])
                for k, (version, applied, staleness, _) in enumerate(replies)]

    def pull(self, attempt: int) -> list[tuple[int, np.ndarray]]:
        return [(int(v), flat)
                for v, flat in ray.get([shard.pull.remote(attempt) for shard in self.handles])]

    def state_dicts(self) -> list[dict[str, Any]]:
        return list(ray.get([shard.state_dict.remote() for shard in self.handles]))

    def publish(self, attempt: int, starts: Sequence[ShardStart]) -> None:
        ray.get([shard.publish.remote(attempt, s.params, s.version, s.optimizer_state)
                 for shard, s in zip(self.handles, starts, strict=True)])


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
        collective = ActorCollective.over_actor(rendezvous, rank, world, attempt)
        spec = task.ps_spec
        servers = RayShards(shards)

        def make_exchange(module: nn.Module) -> ParameterServerExchange:
            return ParameterServerExchange(
                module, ShardLayout.for_module(module, spec.num_shards), servers, attempt,
                rank, spec.mode, barrier=collective.barrier)

        wiring = WorkerWiring(launch)
        launch.install_code()
        loop = TrainLoop(task, features, targets, launch.meta, launch.seed, launch.run_dir,
                         launch.fingerprint, collective,
                         # a barrier, as ray.train.report is for DDP: no rank starts the next
                         # epoch's pushes while rank 0 reads the servers' state for a checkpoint
                         report=lambda metrics: collective.barrier(),
                         device=device, on_epoch=wiring.progress, make_exchange=make_exchange)
        exchange = loop.exchange
        assert isinstance(exchange, ParameterServerExchange)  # make_exchange's
        with wiring.attach(loop):
            summary = loop.run()
        summary["ps"] = exchange.stats()
        return summary
