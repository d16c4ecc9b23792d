"""``train(task)``: the driver side of a data-parallel training run on Ray Train.

The driver loads and checks the data (so bad input fails before any Ray work), derives the seed
from the task id and the data's content hash, puts the arrays in the object store, and runs a
``TorchTrainer`` whose workers each run :class:`trainer.loop.TrainLoop`. Worker failures are
handled by Ray Train's restart (``failure.max_failures``); every restart resumes from the newest
verified checkpoint in ``<storage_path>/<run_name>/checkpoints``. Running the same task again
with the same run name and storage path resumes the same way. On a multi-node cluster the
storage path must be on a filesystem every node sees (NFS or similar), as for Ray Train.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import logging
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from cluster.detector import HealthThresholds
from cluster.errors import ClusterError
from cluster.migrator import NoCapacityError
from cluster.supervision import Action, Limit, RestartLimits, Supervisor
from mtp_core.atomic import CorruptFileError, atomic_write_bytes, atomic_write_text, read_json
from mtp_core.errors import raised_error
from mtp_core.layout import RunLayout, ensure_storage
from mtp_core.names import check_name
from mtp_core.ray_env import apply_train_env, connect
from mtp_core.resources import Resources, TaskResources, capacity_problem
from mtp_core.spec import SklearnModel, Strategy, TrainingTask
from mtp_core.version import __version__
from tracking import RunOutcome, RunTracker, TrackedRun
from trainer.checkpoint import CheckpointStore
from trainer.errors import (
    CheckpointError,
    ConfigError,
    ResultFileError,
    TrainingDivergedError,
    TrainingFailedError,
)
from trainer.init_weights import resolve_init_from
from trainer.launch import WorkerLaunch
from trainer.prepare import PreparedTask, check_trainable, fingerprint, identify, identity, prepare
from trainer.result import (
    EpochRecord,
    PhaseClock,
    TestEvaluation,
    Timings,
    TrainingResult,
    load_result,
)
from trainer.reuse import ResultReuse
from trainer.tracked import end_tracker, start_tracker, track_cache_hit, tracking_target
from trainer.versions import code_version, torch_version

__all__ = ["DEFAULT_STORAGE_PATH", "Executor", "PreparedTask", "check_run_dir", "code_version",
           "connect", "prepare", "resolve_storage", "train", "train_local"]

logger = logging.getLogger(__name__)

DEFAULT_STORAGE_PATH = "./mtp_results"
_PROGRESS_POLL_S = 0.25
_CONTROLLER_FAILURE_LIMIT = 3
_NODE_ID_LABEL = "ray.io/node-id"  # the label Ray puts on every node (ray._raylet.RAY_NODE_ID_KEY)


def _run_dir_problem(layout: RunLayout, task: TrainingTask, prepared: PreparedTask
                     ) -> str | None:
    """Why ``layout`` cannot hold this run of ``task``, or None.

    Every file the platform writes there is checked, not only the checkpoints: a run directory
    belongs to one task (its identity, data and seed) and is never overwritten by another, nor
    relabelled by a rerun that asks for fewer epochs than it already holds.
    """
    root = layout.root
    if not root.exists():
        return None
    if not root.is_dir():
        return f"{root} is a file, not a run directory"
    found = CheckpointStore(layout.checkpoints).load_latest(prepared.fingerprint)
    trained = found[1].epoch if found is not None else 0
    if layout.result.exists():
        try:
            stored = load_result(root)
        except ResultFileError as err:
            return f"it holds a result.json that cannot be read ({err})"
        try:
            stored_task = TrainingTask.model_validate(stored.task)
        except ValidationError:
            return f"its result.json holds a task this version cannot read ({layout.result})"
        init = (prepared.init_weights
                if stored_task.training.init_from == task.training.init_from else None)
        if fingerprint(stored_task, stored.data_hash, stored.seed, prepared.model_code_sha256
                       if stored_task.model == task.model else None,
                       init) != prepared.fingerprint:
            return "it holds the result of " + _other_run(
                stored_task, task, (stored.data_hash, stored.seed),
                (prepared.data_hash, prepared.seed))
        # a diverged run's last epoch was never checkpointed: it does not count as trained
        trained = max(trained, stored.diverged.epoch - 1 if stored.diverged is not None
                      else stored.epochs_completed)
    elif layout.task.exists():
        try:
            stored_task = TrainingTask.model_validate(read_json(layout.task))
        except (CorruptFileError, ValidationError):
            return f"it holds a task.json that is not a task of this version ({layout.task})"
        if identity(stored_task) != identity(task):
            return "it holds a run of " + _other_run(stored_task, task)
    elif found is None:
        strays = [p.name for p in (layout.model, layout.final) if p.exists()]
        if strays:
            return f"it holds files of an unknown run ({', '.join(strays)})"
    epochs = task.training.epochs
    if trained > epochs:
        return (f"it already holds this task trained for {trained} epochs and "
                f"training.epochs={epochs} asks for fewer: nothing would be trained and the "
                f"stored run would be relabelled (see it with `mtp show {root}`, or raise "
                f"training.epochs to {trained} or more to reuse or extend it)")
    return None


def _other_run(stored: TrainingTask, task: TrainingTask, stored_data: tuple[str, int] = ("", 0),
               data: tuple[str, int] = ("", 0)) -> str:
    """``another task ('x')`` or ``task 'p' with other settings (training, data)``."""
    if stored.task_id != task.task_id:
        return f"another task ({stored.task_id!r})"
    a, b = identity(stored), identity(task)
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if stored_data[0] != data[0]:
        differ.append("the data's content")
    elif stored_data[1] != data[1]:
        differ.append("the seed")
    return f"task {task.task_id!r} with other settings ({', '.join(differ)} differ)"


def check_run_dir(layout: RunLayout, task: TrainingTask, prepared: PreparedTask) -> None:
    """Raise :class:`CheckpointError` when the run directory cannot hold this run."""
    problem = _run_dir_problem(layout, task, prepared)
    if problem is not None:
        raise CheckpointError(f"run directory {layout.root} cannot be used for task "
                              f"{task.task_id!r}: {problem}; nothing was changed: give "
                              "another --run-name (or --storage-path)")


def _check_capacity(task: TrainingTask) -> None:
    import ray

    nodes = [Resources.from_ray(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    problem = capacity_problem(TaskResources.of(task), nodes)
    if problem is None:
        return
    if os.environ.get("MTP_ALLOW_AUTOSCALE"):
        logger.warning("%s; waiting for the autoscaler (MTP_ALLOW_AUTOSCALE is set)", problem)
        return
    raise ConfigError(problem + ": lower resources.num_workers / cpus_per_worker / "
                      "gpus_per_worker / memory_per_worker, or add nodes (set "
                      "MTP_ALLOW_AUTOSCALE=1 to wait for an autoscaling cluster instead)")


def _ray_train_log_level() -> str:
    """Ray Train logs every report at INFO; show its warnings unless debug logging is on."""
    return "DEBUG" if logging.getLogger("trainer").isEnabledFor(logging.DEBUG) else "WARNING"


def _versions() -> dict[str, str]:
    import ray

    return {"mtp": __version__, "torch": torch_version(), "ray": ray.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _count_attempts(events_path: Path, since_unix: float) -> int:
    if not events_path.is_file():
        return 0
    n = 0
    for line in events_path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if not isinstance(ev, dict):
            continue
        if ev.get("event") == "start" and ev.get("time_unix", 0) >= since_unix:
            n += 1
    return n


def resolve_storage(storage_path: str | Path | None) -> Path:
    storage = Path(storage_path or os.environ.get("MTP_STORAGE_PATH") or DEFAULT_STORAGE_PATH)
    return storage.expanduser().resolve()


class Executor(enum.Enum):
    """Where a run's epochs execute.

    ``RAY_TRAIN``: Ray Train's workers (any world size), watched by the fault detector and
    resumed elsewhere by the task migrator. ``IN_PROCESS``: this process, world size 1, the
    same loop and numerics as a 1-worker Ray Train run (the same weights hash), without a
    worker group: a Ray Tune trial's own actor trains its task this way, and Tune's retries
    replace Ray Train's.
    """

    RAY_TRAIN = "ray_train"
    IN_PROCESS = "in_process"


def _import_training(task: TrainingTask, executor: Executor) -> None:
    """What a training run imports, at once and early (its time is the ``imports`` phase)."""
    if isinstance(task.model, SklearnModel):
        import sklearn.pipeline  # noqa: F401

        import trainer.classical  # noqa: F401
        return
    if executor is Executor.RAY_TRAIN:
        import ray.train.torch  # noqa: F401

        import trainer.workers  # noqa: F401
    import torch  # noqa: F401

    import trainer.loop  # noqa: F401
    import trainer.models  # noqa: F401


def train(
    task: TrainingTask,
    *,
    storage_path: str | Path | None = None,
    run_name: str | None = None,
    address: str | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    use_cache: bool = True,
    node_ids: list[str] | None = None,
    executor: Executor = Executor.RAY_TRAIN,
    tracking_parent: TrackedRun | None = None,
) -> TrainingResult:
    """Train ``task`` data-parallel on Ray and return its stored result.

    Unless ``use_cache`` is off (or ``consistency.cache`` / ``consistency.sharing`` are
    disabled), a result of the same task (same cache key: task identity, result-relevant
    parameters, data hash, code versions) is reused from the local cache or the cluster's
    registry without starting any worker, and an identical task that another driver is
    training right now is waited for instead of trained twice (see :mod:`trainer.reuse`).
    A local cache hit imports neither torch nor Ray.
    ``on_epoch`` is called in the driver with each epoch's metrics as rank 0 reports them.
    ``node_ids`` pins rank ``i`` to node ``node_ids[i]`` (consensus verification uses it).
    ``executor`` says where the epochs run (:class:`Executor`); ``IN_PROCESS`` takes 1-worker
    ``ddp`` tasks only. The result's ``timings.phases`` say where the wall time went.

    Unless ``tracking.enabled`` is off or ``MTP_TRACKING=off``, the run is an MLflow run
    logged from this driver (:mod:`trainer.tracked`), a reused result a cache-hit run; the
    result's ``tracking`` says where. ``tracking_parent`` (a study's parent run) nests the run
    under it, in the parent's store, whatever this process's environment says.
    """
    clock = PhaseClock()
    if run_name is not None:
        check_name(run_name, "run name")
    if executor is Executor.IN_PROCESS and (task.resources.num_workers != 1
                                            or task.strategy is not Strategy.DDP):
        raise ConfigError(f"task {task.task_id!r}: in-process training takes one ddp worker, "
                          f"the task has resources.num_workers={task.resources.num_workers} "
                          f"and strategy={task.strategy.value}")
    storage = ensure_storage(resolve_storage(storage_path))
    target = tracking_target(task, storage, tracking_parent)  # a bad tracking.uri fails here
    task = resolve_init_from(task, storage, task.tracking.uri)  # models:/NAME@ALIAS -> a run
    prepared = identify(task)
    clock.mark("data")
    spec = task.consistency
    reuse = ResultReuse(task, prepared.cache_key, storage) if use_cache else None
    if reuse is not None:
        hit = reuse.local()
        if hit is not None:
            logger.info("task %s: result reused from the local cache (%s)", task.task_id,
                        hit.run_dir)
            import sys

            ray = sys.modules.get("ray")  # a driver without Ray is not connected just to
            if ray is not None and ray.is_initialized() and spec.sharing.enabled:  # count
                from consistency.actors import get_result_registry

                get_result_registry(storage).note_cache.remote(True)
            return _registered(task, storage, hit if target is None else track_cache_hit(
                target, task, prepared, storage, run_name or task.task_id, hit,
                tracking_parent))
    clock.mark("cache")
    # before Ray starts: a run directory this run may not use fails fast, nothing written
    check_run_dir(RunLayout.of(storage / (run_name or task.task_id)), task, prepared)
    _import_training(task, executor)
    clock.mark("imports")
    check_trainable(prepared)
    clock.mark("data")
    shared = reuse is not None and spec.sharing.enabled
    if executor is Executor.RAY_TRAIN or shared:  # in-process, unshared: no Ray needed
        apply_train_env()
        connect(address)
        clock.mark("ray")
    registry = None
    if shared and reuse is not None:
        from consistency.actors import get_result_registry

        registry = get_result_registry(storage)
        hit = reuse.shared(registry) or reuse.claim_or_wait(registry)
        if hit is not None:
            logger.info("task %s: result reused from the registry (%s)", task.task_id,
                        hit.run_dir)
            return _registered(task, storage, hit if target is None else track_cache_hit(
                target, task, prepared, storage, run_name or task.task_id, hit,
                tracking_parent))
    clock.mark("cache")
    tracker = (None if target is None else
               start_tracker(target, task, prepared, storage, run_name or task.task_id,
                             tracking_parent))
    try:
        result = _run_tracked(tracker, storage / (run_name or task.task_id), lambda epochs: (
            _train_in_process(task, prepared, storage, run_name, epochs, clock)
            if executor is Executor.IN_PROCESS else
            _train(task, prepared, storage, run_name, epochs, node_ids, clock)), on_epoch)
        if result.diverged is not None:  # stored, never cached or shared
            hp = task.hyperparameters
            raise TrainingDivergedError(
                f"task {task.task_id!r}: {result.diverged.describe()} "
                f"(training.learning_rate={task.training.learning_rate:g}, "
                f"optimizer={task.training.optimizer.value}"
                + (f", momentum={hp.momentum:g}" if hp.momentum else "")
                + f"); training stopped there and the run is stored in {result.run_dir} "
                "(not cached): lower training.learning_rate or set "
                "hyperparameters.grad_clip_norm, and train it under another --run-name")
        if reuse is not None:
            reuse.publish(result, registry)
        return _registered(task, storage, result)
    finally:
        if reuse is not None:
            reuse.release(registry)


def _registered(task: TrainingTask, storage: Path, result: TrainingResult) -> TrainingResult:
    """``registry.register_as``: the finished run registered as a version of that model."""
    name = task.registry.register_as
    if name is not None:
        from trainer.registration import register_on_success

        register_on_success(result, name, storage, task.tracking.uri)
    return result


def _run_tracked(tracker: RunTracker | None, run_dir: Path,
                 run: Callable[[Callable[[dict[str, Any]], None] | None], TrainingResult],
                 on_epoch: Callable[[dict[str, Any]], None] | None) -> TrainingResult:
    """``run(on_epoch)`` with each epoch also logged by ``tracker``, which then ends the
    MLflow run: FINISHED, FAILED (a diverged run, or an error: its message tagged) or KILLED
    (interrupted). The result (``result.json`` too) says where it was logged."""
    if tracker is None:
        return run(on_epoch)

    def epochs(rec: dict[str, Any]) -> None:
        tracker.log_epoch(rec)
        if on_epoch is not None:
            on_epoch(rec)

    try:
        result = run(epochs)
    except KeyboardInterrupt:
        end_tracker(tracker, None, outcome=RunOutcome.KILLED, run_dir=run_dir, timeout_s=10)
        raise
    except BaseException as err:
        end_tracker(tracker, None, outcome=RunOutcome.FAILED, run_dir=run_dir,
                    error=f"{type(err).__name__}: {str(raised_error(err)).strip()}")
        raise
    ref = tracker.wait_started()
    if ref is not None:  # result.json, logged as an artifact next, names its own run
        result = result.model_copy(update={"tracking": ref.without_password()})
        result.save()
    if result.diverged is not None:
        end_tracker(tracker, result, outcome=RunOutcome.FAILED,
                    error=f"diverged: {result.diverged.describe()}")
    else:
        end_tracker(tracker, result, outcome=RunOutcome.FINISHED)
    return result


def _start_run_dir(task: TrainingTask, prepared: PreparedTask, storage: Path,
                   run_name: str) -> RunLayout:
    """The run directory with the task, the data report and the fitted preprocessing."""
    from trainer.report import data_report

    layout = RunLayout.of(storage / run_name)
    layout.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.task, json.dumps(task.canonical_dict(), indent=1))
    atomic_write_text(layout.data_report, json.dumps(data_report(prepared), indent=1))
    if prepared.preprocess is not None:
        atomic_write_bytes(layout.preprocess, prepared.preprocess.data)
    return layout


def _train(task: TrainingTask, prepared: PreparedTask, storage: Path, run_name: str | None,
           on_epoch: Callable[[dict[str, Any]], None] | None, node_ids: list[str] | None,
           clock: PhaseClock) -> TrainingResult:
    run_name = run_name or task.task_id
    layout = _start_run_dir(task, prepared, storage, run_name)
    run_dir = layout.root
    if isinstance(task.model, SklearnModel):
        return _train_estimator(task, prepared, run_name, layout, on_epoch, node_ids, clock)

    import ray

    from cluster.actors import get_fault_detector, get_task_migrator

    _check_capacity(task)  # train() has connected
    ft = task.fault_tolerance
    task_key = run_name  # unique per run directory; the task id when no run name is given
    detector = get_fault_detector(
        HealthThresholds(ft.heartbeat_interval_s, ft.node_failure_timeout_s,
                         ft.warning_missed_heartbeats, ft.critical_missed_heartbeats), storage)
    migrator = None
    # the parameter server restarts its own worker actors (failure.max_failures)
    if ft.enable_auto_recovery and task.strategy is Strategy.DDP:
        migrator = get_task_migrator(ft.migration_strategy, storage)
        ray.get(migrator.register.remote(task_key, TaskResources.of(task),
                                         ft.preempt_on_detection))
    data_ref = ray.put((prepared.dataset.features, prepared.dataset.targets))
    layout.progress.unlink(missing_ok=True)  # this driver prints this run's epochs only
    launch = WorkerLaunch(
        task=task, data=data_ref, meta=prepared.meta, seed=prepared.seed, run_dir=str(run_dir),
        fingerprint=prepared.fingerprint, task_key=task_key, progress=on_epoch is not None,
        detector=detector, migrator=migrator, ray_train_log_level=_ray_train_log_level(),
        user_code=prepared.user_code)
    stop = threading.Event()
    tail = None
    if on_epoch is not None:
        tail = threading.Thread(target=_tail_progress, args=(layout.progress, on_epoch, stop),
                                name="mtp-progress", daemon=True)
        tail.start()
    fit_start = clock.mark("control_plane")
    try:
        if task.strategy is Strategy.PARAMETER_SERVER:
            _run_ps(task, task_key, layout, launch)
        else:
            _supervise(task, task_key, storage, run_name, layout, launch, detector,
                       migrator, node_ids)
    finally:
        fit_end = time.time()
        stop.set()
        if tail is not None:
            tail.join(timeout=10)
        del data_ref
        detector.retire_task.remote(task_key)

    return _collect_result(task, prepared, run_name, run_dir, clock, fit_span=(fit_start, fit_end))


def _train_estimator(task: TrainingTask, prepared: PreparedTask, run_name: str,
                     layout: RunLayout, on_epoch: Callable[[dict[str, Any]], None] | None,
                     node_ids: list[str] | None, clock: PhaseClock) -> TrainingResult:
    """Fit a scikit-learn estimator as one Ray task of ``cpus_per_worker`` CPUs (on
    ``node_ids[0]`` when given). The fit has no checkpoints to resume from: a task lost with
    its node is run again from the start by Ray (up to ``failure.max_failures`` times), which
    gives the same model since the fit is seeded; an error of the estimator is not retried."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from trainer.classical import fit_shared_data

    _check_capacity(task)
    options: dict[str, Any] = {"num_cpus": task.resources.cpus_per_worker,
                               "max_retries": task.failure.max_failures,
                               "retry_exceptions": False, "name": f"mtp-fit:{run_name}"}
    if node_ids:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_ids[0], soft=False)
    fit = ray.remote(fit_shared_data).options(**options)
    data = ray.put((prepared.dataset.features, prepared.dataset.targets))
    fit_start = clock.mark("control_plane")
    ref = fit.remote(task, data, prepared.meta, prepared.seed, str(layout.root))
    try:
        summary = ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause if isinstance(err.cause, BaseException) else err
        if isinstance(cause, ConfigError):
            raise cause from None
        raise TrainingFailedError(
            f"training of task {task.task_id!r} failed: {type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else ''}") from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as err:
        raise TrainingFailedError(
            f"training of task {task.task_id!r} failed: its worker was lost "
            f"{task.failure.max_failures + 1} times ({type(err).__name__}); rerun to try "
            "again or raise failure.max_failures") from None
    _replay(summary, on_epoch)
    return _collect_result(task, prepared, run_name, layout.root, clock,
                           fit_span=(fit_start, time.time()))


def _replay(summary: dict[str, Any], on_epoch: Callable[[dict[str, Any]], None] | None) -> None:
    """Hand a finished fit's epoch records to ``on_epoch``, as a network's run reports them."""
    if on_epoch is not None:
        for record in summary["history"]:
            on_epoch({k: v for k, v in record.items() if k != "start_unix"})


def _tail_progress(path: Path, on_epoch: Callable[[dict[str, Any]], None],
                   stop: threading.Event) -> None:
    """Hand each record rank 0 appends to ``path`` to ``on_epoch``, until ``stop`` is set and
    the file holds nothing more (display only: a failing callback ends the tail)."""
    offset, pending = 0, b""
    while True:
        stopping = stop.is_set()
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        try:
            for line in lines:
                on_epoch(json.loads(line))
        except Exception as err:  # noqa: BLE001 - display only
            logger.debug("progress display stopped: %s", err)
            return
        if stopping:
            return
        stop.wait(_PROGRESS_POLL_S)


def _train_in_process(task: TrainingTask, prepared: PreparedTask, storage: Path,
                      run_name: str | None, on_epoch: Callable[[dict[str, Any]], None] | None,
                      clock: PhaseClock) -> TrainingResult:
    run_name = run_name or task.task_id
    layout = _start_run_dir(task, prepared, storage, run_name)
    fit_start = clock.mark("control_plane")
    _run_here(prepared, layout.root, on_epoch=on_epoch)
    return _collect_result(task, prepared, run_name, layout.root, clock,
                           fit_span=(fit_start, time.time()))


def _make_trainer(task: TrainingTask, run_name: str, storage: Path, launch: WorkerLaunch,
                  node_ids: list[str] | None, max_failures: int) -> Any:
    from ray.train import FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    from trainer._ray_train import LeanTorchTrainer
    from trainer.workers import ray_train_worker  # imports Ray: deferred

    res = task.resources
    per_worker = TaskResources.of(task).worker_bundle()
    # after a migration each rank is pinned to the node the migrator chose for it
    selector = [{_NODE_ID_LABEL: nid} for nid in node_ids] if node_ids else None
    return LeanTorchTrainer(
        ray_train_worker,
        train_loop_config={"launch": launch},
        torch_config=TorchConfig(backend="nccl" if res.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=res.num_workers, use_gpu=res.use_gpu,
                                     resources_per_worker=per_worker, label_selector=selector),
        run_config=RunConfig(name=run_name, storage_path=str(storage),
                             # a worker group that cannot start (no resources within
                             # RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S) is a controller
                             # failure, retried forever by default: bounded here
                             failure_config=FailureConfig(
                                 max_failures=max_failures,
                                 controller_failure_limit=_CONTROLLER_FAILURE_LIMIT),
                             logging_config=LoggingConfig(log_level=_ray_train_log_level())),
    )


def _fit(trainer: Any) -> None:
    """``trainer.fit()`` in a helper thread, so that Ctrl-C and SIGTERM reach this driver.

    Called from the main thread, Ray Train replaces the process's SIGINT handler with its own,
    which aborts the run and then exits the process with no word of why. From another thread
    it leaves signals alone (as under Tune): the caller's handler raises KeyboardInterrupt
    here, and the run's actors end with this driver; every checkpoint already written stays
    valid, so rerunning the command resumes from the latest one.
    """
    if threading.current_thread() is not threading.main_thread():
        trainer.fit()
        return
    outcome: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append(err)

    thread = threading.Thread(target=fit, name="mtp-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.2)
    if outcome:
        raise outcome[0]


def _supervise(task: TrainingTask, task_key: str, storage: Path, run_name: str,
               layout: RunLayout, launch: WorkerLaunch, detector: Any,
               migrator: Any, node_ids: list[str] | None = None) -> None:
    """Run the trainer; after a failure, do what the run's :class:`Supervisor` decides.

    With auto-recovery the migrator is the only restarter: Ray Train gets ``max_failures=0``
    and each failed attempt is followed by a plan (healthy nodes, by strategy) and, after the
    backoff, a new attempt pinned to those nodes, which resumes from the newest good
    checkpoint; up to ``fault_tolerance.max_retry_attempts`` retries. Without it, Ray Train
    restarts the worker group itself, up to ``failure.max_failures`` times, and a failure that
    reaches this driver is final.
    """
    import ray

    ft = task.fault_tolerance
    auto = migrator is not None
    limits = (RestartLimits(ft.max_retry_attempts, "fault_tolerance.max_retry_attempts",
                            backoff_s=ft.retry_backoff_s, relocate=True) if auto
              else RestartLimits(0, "failure.max_failures",
                                 setting_value=task.failure.max_failures))
    supervisor = Supervisor(limits, name=task_key)
    while True:
        attempt = supervisor.attempt
        launch = replace(launch, attempt=attempt)
        trainer = _make_trainer(task, run_name, storage, launch, node_ids,
                                0 if auto else task.failure.max_failures)
        try:
            _fit(trainer)
            if migrator is not None:
                migrator.finished.remote(task_key, True)
            return
        except Exception as err:  # Ray Train raises its own error types
            failure_at = time.time()
            cause = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            latest = CheckpointStore(layout.checkpoints).list()
            where = (f"latest checkpoint {latest[-1].path} (kept)" if latest
                     else "no checkpoint written")
            supervisor.attempt_failed(cause)
            while (decision := supervisor.step()).action is not Action.RETRY:
                if decision.action is Action.WAIT:  # the backoff
                    time.sleep(decision.wait_s)
                elif decision.action is Action.FAIL:
                    if migrator is not None:
                        migrator.finished.remote(task_key, False, decision.reason)
                    if decision.limit is Limit.RETRIES:
                        raise TrainingFailedError(
                            f"training of task {task.task_id!r} failed ({decision.reason}); "
                            f"{where}; rerun with the same --run-name and --storage-path to "
                            f"resume, or raise {decision.threshold}"
                        ) from err
                    raise TrainingFailedError(
                        f"training of task {task.task_id!r} failed and cannot be resumed: "
                        f"{decision.reason}; {where}; add nodes or lower resources.num_workers, "
                        "then rerun with the same --run-name and --storage-path"
                    ) from err
                else:  # RETRY_ELSEWHERE: the migrator waits for the verdict and places it
                    logger.warning("attempt %d of task %s failed (%s); asking the task migrator",
                                   attempt, task_key, cause)
                    try:
                        placement = ray.get(migrator.plan.remote(
                            task_key, failure_at, cause,
                            ft.node_failure_timeout_s + 2 * ft.heartbeat_interval_s))
                    except NoCapacityError as no_room:
                        # raised in the actor: Ray's wrapper keeps the original as .cause
                        supervisor.no_capacity(str(raised_error(no_room)),
                                               could_fit_once_settled=False)
                        continue
                    detector.retire_task.remote(task_key, attempt)
                    # a fresh copy of the data, held by this driver only: Ray may otherwise
                    # fetch the old object from a copy on the lost node, and wait out a
                    # timeout before retrying
                    launch = replace(launch, data=ray.put(ray.get(launch.data)))
                    supervisor.placed(placement)
            node_ids = list(decision.node_ids) or node_ids


def _run_ps(task: TrainingTask, task_key: str, layout: RunLayout, launch: WorkerLaunch) -> None:

    from trainer.parameter_server import run_parameter_server  # imports Ray: deferred

    try:
        run_parameter_server(task, task_key, launch)
    except ClusterError as err:
        latest = CheckpointStore(layout.checkpoints).list()
        where = (f"latest checkpoint {latest[-1].path} (kept)" if latest
                 else "no checkpoint written")
        raise TrainingFailedError(
            f"training of task {task.task_id!r} failed ({err}); {where}; rerun with the same "
            "--run-name and --storage-path to resume, or raise failure.max_failures"
        ) from err


def _collect_result(task: TrainingTask, prepared: PreparedTask, run_name: str, run_dir: Path,
                    clock: PhaseClock, *,
                    fit_span: tuple[float, float] | None = None) -> TrainingResult:
    """Read the run's ``final.json`` into its :class:`TrainingResult` and store it; the wall
    time runs from ``clock.start``.

    With ``fit_span`` (when the workers ran: the call that started them and its return), the
    wall time is split into phases, the workers' part by their epochs' own clocks:
    ``worker_start`` up to this call's first epoch, ``first_epoch``, ``epochs``, ``teardown``.
    """
    t_start = clock.start
    layout = RunLayout.of(run_dir)
    if not layout.final.is_file():
        raise TrainingFailedError(f"training finished but {layout.final} was not written")
    summary = json.loads(layout.final.read_text())
    history = [EpochRecord.from_loop(r) for r in summary["history"]]
    raw_history = summary["history"]
    wall = time.time() - t_start
    train_time = sum(r.train_time_s for r in history)
    samples = sum(r.train_samples for r in history)
    steady = [r.samples_per_s for r in history[1:]] or [r.samples_per_s for r in history]
    starts = [r["start_unix"] for r in raw_history if r["start_unix"] >= t_start]
    store = CheckpointStore(layout.checkpoints)
    ckpts = store.list()
    best = store.best()
    best_rec = next((r for r in history if r.epoch == summary["best_epoch"]), None)
    if fit_span is not None:
        _charge_workers(clock, fit_span, [r for r in raw_history if r["start_unix"] >= t_start])
        clock.mark("result")
    result = TrainingResult(
        task_id=task.task_id,
        task_name=task.name,
        run_name=run_name,
        run_dir=str(run_dir),
        strategy=task.strategy.value,
        data_hash=prepared.data_hash,
        task_kind=prepared.dataset.kind.value,
        num_classes=prepared.dataset.num_classes,
        sample_shape=list(prepared.dataset.sample_shape),
        feature_columns=list(prepared.loaded.feature_names),
        feature_types=list(prepared.loaded.column_types),
        class_names=list(prepared.dataset.class_names),
        seed=prepared.seed,
        world_size=summary["world_size"],
        num_parameters=summary["num_parameters"],
        epochs_completed=summary["epochs_completed"],
        stopped_early=summary["stopped_early"],
        monitor_metric=summary["monitor_metric"],
        monitor_mode=summary["monitor_mode"],
        best_epoch=summary["best_epoch"],
        best_metrics=best_rec.metrics if best_rec else {},
        final_metrics=history[-1].metrics if history else {},
        history=history,
        weights_hash=summary["weights_hash"],
        model_path=str(layout.estimator if isinstance(task.model, SklearnModel)
                       else layout.model),
        checkpoint_dir=str(layout.checkpoints),
        best_checkpoint=str(best.path) if best else None,
        latest_checkpoint=str(ckpts[-1].path) if ckpts else None,
        resumed_from_epoch=summary["resumed_from_epoch"],
        initial_metrics=summary.get("initial_metrics"),
        test_metrics=(summary.get("test") or {}).get("metrics", {}),
        test=(TestEvaluation.model_validate({k: v for k, v in summary["test"].items()
                                             if k != "metrics"})
              if summary.get("test") else None),
        diverged=summary.get("diverged"),
        attempts=max(_count_attempts(layout.events, t_start), 1),
        timings=Timings(
            wall_time_s=wall,
            startup_s=(min(starts) - t_start) if starts else 0.0,
            train_time_s=train_time,
            samples_per_s=samples / train_time if train_time > 0 else 0.0,
            steady_samples_per_s=statistics.median(steady) if steady else 0.0,
            phases=clock.ordered(),
        ),
        versions={**_versions(), **({"model_code_sha256": prepared.model_code_sha256}
                                     if prepared.model_code_sha256 else {}),
                  **({"preprocess_sha256": prepared.preprocess.sha256}
                     if prepared.preprocess is not None else {}),
                  **prepared.library_versions},
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        cache_key=prepared.cache_key,
        task=task.canonical_dict(),
    )
    result.save(run_dir)
    return result


def _charge_workers(clock: PhaseClock, fit_span: tuple[float, float],
                    epochs: list[dict[str, Any]]) -> None:
    fit_start, fit_end = fit_span
    if not epochs:  # nothing trained in this call (an interrupted or resumed-complete run)
        clock.add("worker_start", fit_end - fit_start)
    else:
        first, last = epochs[0], epochs[-1]
        first_end = first["start_unix"] + first["epoch_time_s"]
        last_end = last["start_unix"] + last["epoch_time_s"]
        clock.add("worker_start", first["start_unix"] - fit_start)
        clock.add("first_epoch", first["epoch_time_s"])
        if len(epochs) > 1:
            clock.add("epochs", last_end - first_end)
        clock.add("teardown", fit_end - last_end)
    clock.restart_at(fit_end)


def train_local(task: TrainingTask, *, storage_path: str | Path, run_name: str | None = None,
                device: str | None = None) -> dict[str, Any]:
    """Run the training loop in this process with world size 1 (no Ray); returns the summary.

    Useful for debugging a task and for tests of the loop itself. ``device`` defaults to
    ``cuda`` when the task asks for GPUs and one is visible, else ``cpu``. The loop runs with
    ``resources.cpus_per_worker`` torch threads, as a Ray worker of the task would: CPU kernels'
    results depend on the thread count, which torch otherwise takes from the machine's cores.
    Nothing is cached or stored as a result (see ``train(..., executor=Executor.IN_PROCESS)``).
    """
    prepared = prepare(task)
    run_dir = Path(storage_path).resolve() / (run_name or task.task_id)
    return _run_here(prepared, run_dir, device)


def _run_here(prepared: PreparedTask, run_dir: Path, device: str | None = None,
              on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """World size 1 in this process, with the torch thread count a 1-worker Ray Train run's
    worker has (``cpus_per_worker``) and no process group: the same numerics. An estimator
    (``model.type: sklearn``) is fitted here as on its Ray worker."""
    if isinstance(prepared.task.model, SklearnModel):
        from trainer.classical import fit_estimator

        summary = fit_estimator(prepared.task, prepared.dataset.features,
                                prepared.dataset.targets, prepared.meta, prepared.seed, run_dir)
        _replay(summary, on_epoch)
        return summary
    import torch

    from trainer._collective import SingleProcess
    from trainer.loop import TrainLoop

    task = prepared.task
    if device is None:
        device = "cuda" if task.resources.use_gpu and torch.cuda.is_available() else "cpu"
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(task.resources.cpus_per_worker)))
    try:
        loop = TrainLoop(task, prepared.dataset.features, prepared.dataset.targets,
                         prepared.meta, prepared.seed, run_dir, prepared.fingerprint,
                         SingleProcess(), device=torch.device(device), on_epoch=on_epoch)
        return loop.run()
    finally:
        torch.set_num_threads(threads)
