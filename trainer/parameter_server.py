"""The parameter-server strategy's driver: the loop that starts and supervises its attempts.

- ``mtp-ps-<task>-worker-<r>``: a :class:`trainer.workers.PSWorkerActor` per rank (the same
  :class:`trainer.loop.TrainLoop` as a Ray Train worker, wired to the shards).
- The shards and the rendezvous are :mod:`cluster.ps_actors`.

Failures: when a worker or a shard dies, :func:`run_parameter_server` kills the attempt's
workers, waits for the shards to be back, and starts a new attempt; its rank 0 publishes the
newest good checkpoint (parameters, server optimizer state, version) into the shards, and every
rank resumes from the same checkpoint, so in ``sync`` mode the final weights equal an
uninterrupted run's. Up to ``failure.max_failures`` restarts (-1: forever), as the run's
:class:`cluster.supervision.Supervisor` decides.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import ray

from cluster.errors import ClusterError
from cluster.ps_actors import RendezvousActor, ShardActor, actor_names
from cluster.supervision import Action, RestartLimits, Supervisor
from mtp_core.ray_env import NAMESPACE
from mtp_core.resources import TaskResources
from mtp_core.spec import TrainingTask
from trainer.launch import WorkerLaunch
from trainer.loop import build_optimizer
from trainer.workers import PSWorkerActor

__all__ = ["run_parameter_server"]

logger = logging.getLogger(__name__)

_NAME_FREE_WAIT_S = 30.0
_SHARD_BACK_WAIT_S = 60.0


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


def run_parameter_server(task: TrainingTask, task_key: str, launch: WorkerLaunch,
                         on_failure: Callable[[int, str], None] | None = None) -> dict[str, Any]:
    """Train ``task`` with the parameter-server strategy; returns rank 0's summary.

    ``launch`` is what every worker needs (task, data ref, meta, seed, run dir, fingerprint,
    progress flag, detector); each attempt gets a copy with its number. Raises
    ``ClusterError`` after more than ``failure.max_failures`` failed attempts, with the cause.
    """
    spec = task.ps_spec
    res = TaskResources.of(task)
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
    supervisor = Supervisor(RestartLimits(task.failure.max_failures, "failure.max_failures"),
                            name=task_key)
    workers: list[Any] = []
    rendezvous: Any = None
    try:
        while True:
            attempt = supervisor.attempt
            # a fresh rendezvous per attempt: gathers that a failed attempt left waiting die
            # with the old one instead of holding its concurrency slots
            rendezvous = _new_rendezvous(names["rendezvous"][0], res.num_workers)
            _await_names_free(names["workers"])
            workers = [ray.remote(PSWorkerActor).options(
                name=names["workers"][r], namespace=NAMESPACE, num_cpus=res.cpus_per_worker,
                num_gpus=res.gpus_per_worker, max_restarts=0).remote()
                       for r in range(res.num_workers)]
            attempt_launch = replace(launch, attempt=attempt)
            refs = [w.run.remote(attempt_launch, r, shards, rendezvous)
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
                supervisor.attempt_failed(cause)
                while (decision := supervisor.step()).action is Action.WAIT:
                    time.sleep(decision.wait_s)
                if decision.action is not Action.RETRY:  # FAIL: no relocation here
                    limits = supervisor.limits
                    raise ClusterError(
                        f"parameter-server attempt {attempt} failed ({cause}) and "
                        f"{limits.setting}={limits.max_retries} restarts are used up") from err
                logger.warning("parameter-server attempt %d of %s failed (%s); restarting "
                               "from the newest good checkpoint", attempt, task_key, cause)
                if on_failure is not None:
                    on_failure(attempt, cause)
                _await_shards(shards)
    finally:
        _kill(workers + shards + ([rendezvous] if rendezvous is not None else []))
