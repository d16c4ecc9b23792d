"""Running a study with Ray Tune: searchers, scheduler, trials, resume, and the study's outputs.

``run_study`` drives ``ray.tune.Tuner`` with one of four searchers (``bayesian``: Optuna's
Gaussian-process sampler, whose acquisition is (log) expected improvement, behind Tune's
``OptunaSearch``; ``tpe``; ``random``, also seeded through Optuna; ``grid``: Tune's grid
variants) and an optional ASHA scheduler. The objective is either a training task (each trial
trains the base task with its parameters through ``trainer.train``, reporting every epoch: a
1-worker trial in its own reused Tune actor, a larger one on Ray Train inside the Tune function
trainable; see :func:`trial_executor`) or, for tests and benchmarks, a plain Python function of
the parameters.

The study directory (``<storage>/_studies/<name>/``) holds Tune's experiment state (so an
interrupted study resumes with ``resume=True`` without rerunning finished trials), the config
it was started with (``hpo.state``: when a rerun starts over, resumes or is refused), and, at
the end, ``trials.csv``, ``trials.parquet``, ``study.json`` and ``progress.png`` (the metric per
trial with the best-so-far line).

Everything that can be checked before a trial starts is: the name (``hpo.names``), the space
against the task (``hpo.space``), the metric against what the task's trials report
(``hpo.metrics``), the CPUs a trial needs. While the study runs, a guard stops it when a trial
reports no ``search.metric`` (an input error) or when no trial can start training for
``search.trial_start_timeout_s`` (``hpo.guard``).
"""

from __future__ import annotations

import enum
import io
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

from database import open_database
from hpo.errors import HpoError, MetricNotReportedError, SearchConfigError, StudyFailedError
from hpo.guard import StudyGuard
from hpo.index import StudyIndex, StudyStatus, TrialRow
from hpo.metrics import check_trial_metric, task_kind
from hpo.names import check_study_name, default_study_name, trial_run_name
from hpo.space import apply_params, check_space, decode, tune_space
from hpo.spec import SchedulerName, SearcherName, SearchSpec
from hpo.state import (
    StudyStart,
    decide_start,
    move_aside,
    read_study,
    study_config,
    study_lock,
    write_study_config,
)
from mtp_core.atomic import atomic_write_bytes, atomic_write_text
from mtp_core.direction import Direction
from mtp_core.errors import raised_error
from mtp_core.layout import check_storage
from mtp_core.ray_env import connect, reap_orphan_placement_groups
from mtp_core.resources import TaskResources
from mtp_core.spec import (
    Strategy,
    TrainingTask,
    format_validation_error,
    load_raw_config,
    parse_task,
)
from tracking import RunOutcome, StudyRun, Tag, TrackedRun
from trainer.api import Executor, resolve_storage, train
from trainer.tracked import tracking_target

__all__ = ["StudyResult", "TrialRecord", "TrialStatus", "build_searcher", "run_study",
           "tune_task"]

logger = logging.getLogger(__name__)

Objective = Callable[[dict[str, Any]], Mapping[str, float]]


class TrialStatus(enum.StrEnum):
    """How a trial ended (the names of Tune's trial states)."""

    TERMINATED = "TERMINATED"  # ran to its end, or was stopped early by the scheduler
    ERROR = "ERROR"  # raised, and used up its search.max_failures retries


@dataclass
class TrialRecord:
    trial_id: str
    index: int  # order of creation
    params: dict[str, Any]
    value: float  # best of the metric over the trial's reports (by mode)
    last: dict[str, float]
    status: TrialStatus
    iterations: int
    time_s: float
    reused: bool = False  # its task's result came from the cache or registry: not trained


@dataclass
class StudyResult:
    name: str
    study_dir: str
    metric: str
    mode: str
    searcher: str
    best_params: dict[str, Any]
    best_value: float
    best_trial: str
    trials: list[TrialRecord] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_searcher(spec: SearchSpec) -> Any:
    """Tune search algorithm for ``spec`` (None: Tune's variant generator, for grid)."""
    if spec.searcher is SearcherName.GRID:
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler: Any
    if spec.searcher is SearcherName.BAYESIAN:
        sampler = optuna.samplers.GPSampler(seed=spec.seed,
                                            n_startup_trials=spec.startup_trials())
    elif spec.searcher is SearcherName.TPE:
        sampler = optuna.samplers.TPESampler(seed=spec.seed,
                                             n_startup_trials=spec.startup_trials())
    else:
        sampler = optuna.samplers.RandomSampler(seed=spec.seed)
    return OptunaSearch(sampler=sampler)  # metric and mode come from the TuneConfig


def _scheduler(spec: SearchSpec, max_t: int) -> Any:
    if spec.scheduler is SchedulerName.FIFO:
        return None
    from ray.tune.schedulers import ASHAScheduler

    # metric and mode come from the TuneConfig (Tune refuses them in both places)
    # max_t one past the last epoch: a trial that survives every rung ends by returning (its
    # result stored and shared), not by being stopped at its last report
    return ASHAScheduler(time_attr="training_iteration",
                         max_t=max(max_t, spec.grace_period) + 1, grace_period=spec.grace_period,
                         reduction_factor=spec.reduction_factor)


def _function_trainable(objective: Objective, spec: SearchSpec) -> Callable[[dict], None]:
    def trainable(config: dict[str, Any]) -> None:
        from ray import tune

        metrics = dict(objective(decode(spec, config)))
        if spec.metric not in metrics:
            raise _metric_not_reported(spec.metric, metrics)
        tune.report(metrics)

    return trainable


def _metric_not_reported(metric: str, reported: Mapping[str, Any]) -> MetricNotReportedError:
    return MetricNotReportedError(
        f"search.metric {metric!r} is not reported by the trials; they report: "
        f"{', '.join(sorted(reported)) or 'nothing'}")


def _task_trainable(base: dict[str, Any], spec: SearchSpec, storage: str,
                    study: str, parent: TrackedRun | None = None) -> Callable[[dict], None]:
    def trainable(config: dict[str, Any]) -> None:
        from ray import tune

        params = decode(spec, config)
        raw = apply_params(base, params)
        # Tune owns a trial's lifecycle: it retries failed trials (search.max_failures) and
        # stops poor ones (asha). Ray Train's own worker restarts cover worker loss inside a
        # trial; the task migrator, which would restart a stopped trial's run, stays out.
        raw.setdefault("fault_tolerance", {})["enable_auto_recovery"] = False
        task = parse_task(raw, origin=f"study {study}")
        reported: dict[str, Any] = {"n": 0, "epoch": 0, "missing": None}

        def on_epoch(rec: dict[str, Any]) -> None:
            # after a worker restart the epochs since the last checkpoint run again: Tune
            # (and ASHA's rungs) must see each epoch once
            if int(rec.get("epoch", 0)) <= reported["epoch"]:
                return
            reported["epoch"] = int(rec.get("epoch", 0))
            metrics = _numeric(rec)
            if spec.metric not in metrics:  # checked before the study: a backstop. Raising
                # here would only stop the progress pump, not the training
                reported["missing"] = metrics
                return
            tune.report(metrics)  # Tune's session is process-wide: any thread may report
            reported["n"] += 1

        trial = tune.get_context().get_trial_id()
        result = train(task, storage_path=storage, run_name=trial_run_name(study, trial),
                       on_epoch=on_epoch, executor=trial_executor(task),
                       tracking_parent=parent)
        if reported["missing"] is not None:
            raise _metric_not_reported(spec.metric, reported["missing"])
        if reported["n"] == 0:  # reused from the cache or registry: replay its curve
            for h in result.history:
                metrics = {"epoch": h.epoch, "train_loss": h.train_loss, **h.metrics,
                           "cache_hit": 1.0}
                if spec.metric not in metrics:
                    raise _metric_not_reported(spec.metric, metrics)
                tune.report(metrics)

    return trainable


def trial_executor(task: TrainingTask) -> Executor:
    """A trial of one ``ddp`` worker trains in its own Tune actor (no worker group to start,
    the actor and its imports reused by the next trial); larger trials run on Ray Train."""
    if task.resources.num_workers == 1 and task.strategy is Strategy.DDP:
        return Executor.IN_PROCESS
    return Executor.RAY_TRAIN


def _trial_actor_resources(task: TrainingTask) -> dict[str, float]:
    """What a trial's own actor holds: the worker's CPUs and GPUs when it trains in-process,
    next to nothing when it only drives Ray Train (whose workers hold them)."""
    if trial_executor(task) is Executor.IN_PROCESS:
        res = TaskResources.of(task)  # one place turns resources into Ray's numbers
        return {"cpu": res.cpus_per_worker, "gpu": res.gpus_per_worker}
    return {"cpu": 0.001}


def _numeric(rec: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in rec.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def _trial_needs(base: Mapping[str, Any] | None) -> tuple[float, str]:
    """CPUs one trial holds while it trains, and how to say so."""
    if base is None:
        return 1.0, "1 CPU"
    task = parse_task(base)
    res = TaskResources.of(task)
    text = (f"{res.total_cpus:g} CPU{'' if res.total_cpus == 1 else 's'} "
            f"(resources.num_workers={res.num_workers} x "
            f"cpus_per_worker={res.cpus_per_worker:g}"
            + (f" + {res.shard_cpus:g} for parameter-server shards" if res.shard_cpus else "")
            + ")" + (f" and {res.total_gpus:g} GPUs" if res.total_gpus else ""))
    return res.total_cpus, text


def run_study(spec: SearchSpec, *, name: str, storage: str | Path,
              base_task: Mapping[str, Any] | None = None, objective: Objective | None = None,
              resume: bool = False, verbose: int = 0,
              on_trial: Callable[[TrialRecord, TrialRecord | None, int], None] | None = None,
              ) -> StudyResult:
    """Run (or resume) a study; exactly one of ``base_task`` (a raw task dict) and
    ``objective`` says what a trial does. Returns the best parameters and every trial.

    Raises SearchConfigError (an input error) for a bad name, space, metric or an existing
    study it must not touch, before any trial starts; StudyFailedError when the study ran but
    no trial is usable, or no trial could start within ``spec.trial_start_timeout_s``."""
    import ray
    from ray import tune

    if (base_task is None) == (objective is None):
        raise HpoError("run_study needs exactly one of base_task and objective")
    check_study_name(name)
    storage_root = check_storage(Path(storage).expanduser().resolve())
    studies = storage_root / "_studies"
    study_dir = studies / name
    if base_task is not None:
        check_space(spec, base_task)
        task = parse_task(base_task)
        check_trial_metric(spec.metric, task_kind(task))
        target = tracking_target(task, storage_root)  # a bad tracking.uri: an input error
        max_t = task.training.epochs
        if spec.scheduler is SchedulerName.ASHA and spec.grace_period >= max_t:
            logger.warning("search.grace_period=%d is not below training.epochs=%d: asha "
                           "stops no trial", spec.grace_period, max_t)
    else:
        assert objective is not None
        trainable = _function_trainable(objective, spec)
        trainable = tune.with_resources(trainable, {"cpu": 1})
        max_t = 1
    config = study_config(spec, base_task)
    # refusals first: a study that may not run leaves the storage path as it was
    decide_start(name, read_study(study_dir, spec.metric), config, resume)
    if not ray.is_initialized():
        connect()
    reap_orphan_placement_groups()  # what an earlier study in this driver left behind
    if base_task is not None and task.consistency.sharing.enabled:
        # a corrupt registry is one line now, not the same failure in every trial
        from consistency.actors import get_result_registry

        get_result_registry(storage_root)
    per_trial, needs = _trial_needs(base_task)
    have = float(ray.cluster_resources().get("CPU", 1.0))
    fits = max(1, int(have // per_trial)) if per_trial > 0 else 1
    if per_trial > have:
        raise SearchConfigError(
            f"one trial needs {needs} but the cluster has {have:g} CPUs; lower them or add "
            "nodes")
    concurrent = spec.max_concurrent_trials or fits
    if concurrent > fits:
        logger.warning("search.max_concurrent_trials=%d trials of %g CPUs need %g CPUs, the "
                       "cluster has %g: at most %d run at once (the rest queue)", concurrent,
                       per_trial, concurrent * per_trial, have, fits)
        concurrent = fits

    guard = StudyGuard(name, spec.trial_start_timeout_s, per_trial, needs,
                       None if base_task is None else str(storage_root))
    callbacks: list[Callback] = [guard]
    if on_trial is not None:
        callbacks.append(_Progress(spec, on_trial))
    run_config = tune.RunConfig(
        name=name, storage_path=str(studies), verbose=verbose, callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures))
    with study_lock(studies, name):
        # decided again under the lock: another run may have ended (or started) meanwhile
        start = decide_start(name, read_study(study_dir, spec.metric), config, resume)
        if start is StudyStart.START_OVER:
            aside = move_aside(study_dir)
            logger.warning("study %s: the stored study has no finished trial to keep (moved "
                           "to %s); the study starts over with this config", name, aside)
        index = StudyIndex(open_database(storage_root))
        callbacks.append(_IndexTrials(spec, storage_root, name))
        parent = None
        if base_task is not None:
            # the parent run first: the store's tables and the experiment exist before the
            # trials' processes write to it at once
            parent = None if target is None else StudyRun.open(
                target, experiment=task.tracking.experiment or task.name, study=name,
                tags={Tag.SEARCHER.value: spec.searcher.value, Tag.METRIC.value: spec.metric,
                      Tag.MODE.value: spec.mode.value, Tag.TASK_ID.value: task.task_id,
                      Tag.STORAGE.value: str(storage_root)},
                params={**base_task, "search": spec.model_dump(mode="json")},
                resume=start is StudyStart.RESUME)
            trainable = tune.with_resources(
                _task_trainable(dict(base_task), spec, str(storage_root), name,
                                None if parent is None else parent.run),
                _trial_actor_resources(task))
        index.started(name, study_dir=str(study_dir), searcher=spec.searcher.value,
                      metric=spec.metric, mode=spec.mode.value,
                      run_id=None if parent is None else parent.run.run_id)
        t0 = time.time()
        if start is StudyStart.RESUME:
            # Tune restores the study's own TuneConfig and RunConfig (this guard's twin among
            # them); the config is the one it started with (decide_start)
            tuner = tune.Tuner.restore(str(study_dir), trainable=trainable,
                                       resume_errored=True, param_space=tune_space(spec))
        else:
            write_study_config(study_dir, config)
            tuner = tune.Tuner(
                trainable,
                param_space=tune_space(spec),
                tune_config=tune.TuneConfig(
                    search_alg=build_searcher(spec), scheduler=_scheduler(spec, max_t),
                    metric=spec.metric, mode=spec.mode.value, num_samples=spec.num_samples,
                    max_concurrent_trials=concurrent, time_budget_s=spec.time_budget_s,
                    # a plain objective and an in-process training trial keep their
                    # actor (and its imports) for the next trial; a trial that drives a Ray
                    # Train run gets a fresh one (a stopped run's controller dies with it)
                    reuse_actors=(objective is not None
                                  or trial_executor(task) is Executor.IN_PROCESS)),
                run_config=run_config,
            )
        try:
            grid = tuner.fit()
            logger.info("study %s: %d trials in %.1f s", name, len(grid), time.time() - t0)
            result = _summarise(spec, name, study_dir, grid)
        except KeyboardInterrupt:
            index.ended(name, StudyStatus.INTERRUPTED)
            if parent is not None:
                parent.end(RunOutcome.KILLED)
            raise
        except BaseException as err:
            index.ended(name, StudyStatus.FAILED, error=f"{type(err).__name__}: {err}")
            if parent is not None:
                parent.end(RunOutcome.FAILED, error=f"{type(err).__name__}: {err}")
            raise
        index.ended(name, StudyStatus.FINISHED, trials=[trial_row(t) for t in result.trials],
                    best={"trial_id": result.best_trial, "value": result.best_value,
                          "params": result.best_params})
        if parent is not None:
            parent.end(RunOutcome.FINISHED, metrics={f"best_{spec.metric}": result.best_value},
                       tags={Tag.BEST_TRIAL.value: result.best_trial},
                       artifacts=[Path(f) for f in result.files.values()])
        return result


class _Progress(Callback):
    """Hands each finished trial to ``on_trial`` (the CLI's table rows)."""

    def __init__(self, spec: SearchSpec, on_trial: Any) -> None:
        self.spec = spec
        self.on_trial = on_trial
        self.best: TrialRecord | None = None
        self.done = 0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rec = _record_of_trial(self.spec, trial, self.done)
        self.done += 1
        if rec is None:
            return
        if self.spec.mode.improves(rec.value, None if self.best is None else self.best.value):
            self.best = rec
        self.on_trial(rec, self.best, self.spec.total_trials())


class _IndexTrials(Callback):
    """Writes each finished trial's row to the study index (the Tune driver: one writer).

    Tune pickles its callbacks into the study's state, so this holds the storage path, not
    an open database (nor a URL with a password): the database is resolved when used."""

    def __init__(self, spec: SearchSpec, storage_root: Path, name: str) -> None:
        self.spec, self.storage_root, self.name = spec, str(storage_root), name
        self.done = 0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rec = _record_of_trial(self.spec, trial, self.done)
        self.done += 1
        if rec is not None:
            StudyIndex(open_database(Path(self.storage_root))).trial(self.name, trial_row(rec))


def trial_row(rec: TrialRecord) -> TrialRow:
    """A trial's row in the study index."""
    return TrialRow(trial_id=rec.trial_id, position=rec.index, status=rec.status.value,
                    params=rec.params, value=rec.value, metrics=rec.last,
                    iterations=rec.iterations, time_s=rec.time_s, reused=rec.reused)


def _record_of_trial(spec: SearchSpec, trial: Any, index: int) -> TrialRecord | None:
    last = trial.last_result or {}
    if spec.metric not in last:
        return None
    return TrialRecord(
        trial_id=trial.trial_id, index=index, params=decode(spec, trial.config),
        value=float(last[spec.metric]), last=_numeric(last), status=TrialStatus.TERMINATED,
        iterations=int(last.get("training_iteration", 0)),
        time_s=float(last.get("time_total_s", 0.0)), reused=bool(last.get("cache_hit")))


def _summarise(spec: SearchSpec, name: str, study_dir: Path, grid: Any) -> StudyResult:
    """The study's result from Tune's ``ResultGrid``; :class:`StudyFailedError` when no trial
    is usable (none reported the metric, or every trial failed)."""
    records: list[TrialRecord] = []
    skipped: list[Any] = []
    orders: dict[str, int] = {}
    results = list(grid)
    for r in results:
        tid = str((r.metrics or {}).get("trial_id", ""))
        if tid:
            orders[tid] = _creation_order(r)
        df = r.metrics_dataframe
        if r.metrics is None or df is None or spec.metric not in df:
            skipped.append(r)
            continue
        series = df[spec.metric].astype(float)
        value = float(series.max() if spec.mode is Direction.MAXIMIZE else series.min())
        m = r.metrics
        records.append(TrialRecord(
            trial_id=str(m.get("trial_id")), index=0, params=decode(spec, r.config),
            value=value, last=_numeric(m),
            status=TrialStatus.ERROR if r.error else TrialStatus.TERMINATED,
            iterations=int(m.get("training_iteration", len(df))),
            time_s=float(m.get("time_total_s", 0.0)), reused=bool(m.get("cache_hit"))))
    check_study_succeeded(spec, name, study_dir, results, records)
    for r in skipped:
        logger.warning("trial %s reported no %s (error: %s)", Path(r.path).name, spec.metric,
                       None if r.error is None else trial_error_message(r.error))
    records.sort(key=lambda t: (orders.get(t.trial_id, 1 << 30), t.trial_id))
    for i, rec in enumerate(records):
        rec.index = i
    best = records[0]
    for rec in records[1:]:
        if spec.mode.improves(rec.value, best.value):
            best = rec
    result = StudyResult(name=name, study_dir=str(study_dir), metric=spec.metric,
                         mode=spec.mode.value, searcher=spec.searcher.value,
                         best_params=best.params, best_value=best.value,
                         best_trial=best.trial_id, trials=records)
    result.files = write_outputs(result)
    return result


# Tune names each trial's directory <trainable>_<trial id>_<counter>_<params>_<date>; a trial
# id is 8 hex digits (a searcher's trials) or <5 hex>_<5 digits> (grid variants)
_TRIAL_DIR = re.compile(r"_(?:[0-9a-f]{8}|[0-9a-f]{5}_\d{5})_(\d+)(?:_|$)")


def _creation_order(result: Any) -> int:
    """The counter Tune gives trials in creation order, from a result's directory name."""
    found = _TRIAL_DIR.search(Path(result.path).name)
    return int(found.group(1)) if found else 1 << 30


def check_study_succeeded(spec: SearchSpec, name: str, study_dir: Path, results: list[Any],
                          records: list[TrialRecord]) -> None:
    """Raise :class:`StudyFailedError` unless some trial is usable: it reported the metric and
    not every trial failed. ``results`` are Tune's ``Result`` objects (``error``, ``path``,
    ``config``), ``records`` the trials that reported the metric. The message names the study,
    the number of trials and the first failed trial's error."""
    failed = sorted((r for r in results if r.error is not None), key=_creation_order)
    if records and len(failed) < len(results):
        return
    where = f"trial logs under {study_dir}"
    if not results:
        budget = (f" within search.time_budget_s={spec.time_budget_s:g}"
                  if spec.time_budget_s is not None else "")
        raise StudyFailedError(f"study {name}: no trial ran{budget}; {where}")
    first = ""
    if failed:
        try:
            params = decode(spec, failed[0].config or {})
        except (KeyError, ValueError):  # a config from another search space: name the dir
            params = {}
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        first = (f"the first ({shown or Path(failed[0].path).name}) raised "
                 f"{trial_error_message(failed[0].error)}")
    if len(failed) == len(results):
        raise StudyFailedError(f"study {name}: all {len(results)} trials failed; {first}; "
                               f"{where}")
    raise StudyFailedError(
        f"study {name}: none of its {len(results)} trials reported search.metric="
        f"{spec.metric!r}" + (f" ({len(failed)} failed; {first})" if failed else
                              "; is it an epoch metric such as val_loss or val_accuracy?")
        + f"; {where}")


def trial_error_message(err: BaseException) -> str:
    """One line for a trial's error: the exception raised in the trial, not the Ray task
    error around it (whose text is the remote traceback) nor a stored traceback's text."""
    err = raised_error(err)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        return lines[-1]  # a traceback's text ends with "ErrorType: message"
    text = lines[0] if lines else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def best_so_far(values: list[float], mode: str) -> list[float]:
    out: list[float] = []
    for v in values:
        if not out or Direction(mode).improves(v, out[-1]):
            out.append(v)
        else:
            out.append(out[-1])
    return out


def write_outputs(result: StudyResult) -> dict[str, str]:
    """trials.csv, trials.parquet, study.json and progress.png in the study directory."""
    import pandas as pd

    d = Path(result.study_dir)
    d.mkdir(parents=True, exist_ok=True)
    rows = [{"trial": t.index, "trial_id": t.trial_id, result.metric: t.value,
             "status": t.status.value, "iterations": t.iterations, "time_s": t.time_s,
             "reused": t.reused,
             **{f"param.{k}": (json.dumps(v) if isinstance(v, list | dict) else v)
                for k, v in t.params.items()}}
            for t in result.trials]
    df = pd.DataFrame(rows)
    files = {"csv": str(d / "trials.csv"), "parquet": str(d / "trials.parquet"),
             "json": str(d / "study.json"), "plot": str(d / "progress.png")}
    atomic_write_text(files["csv"], df.to_csv(index=False))
    parquet = io.BytesIO()
    df.to_parquet(parquet, index=False)
    atomic_write_bytes(files["parquet"], parquet.getvalue())
    atomic_write_text(Path(files["json"]), json.dumps(
        {k: v for k, v in result.to_dict().items() if k != "files"}, indent=1, default=str))
    _plot(result, Path(files["plot"]))
    return files


def _plot(result: StudyResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [t.index + 1 for t in result.trials]
    ys = [t.value for t in result.trials]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.scatter(xs, ys, s=18, label=f"{result.metric} per trial", color="#4477aa")
    ax.step(xs, best_so_far(ys, result.mode), where="post", color="#cc3311",
            label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{result.metric} ({result.mode})")
    ax.set_title(f"study {result.name}: {result.searcher} search")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())


def tune_task(config_path: str | Path, *, overrides: list[str] | None = None,
              storage_path: str | Path | None = None, name: str | None = None,
              resume: bool = False, verbose: int = 0,
              on_trial: Callable[[TrialRecord, TrialRecord | None, int], None] | None = None,
              ) -> StudyResult:
    """The ``mtp tune`` entry point: a study config file (task + ``search``) to a result."""

    raw = load_raw_config(config_path, overrides or [])
    if not isinstance(raw, dict):
        raise SearchConfigError(f"invalid study config {config_path}: expected a mapping (a "
                                f"task with a search section) at the top level, got "
                                f"{type(raw).__name__}")
    search_raw = raw.pop("search", None)
    if search_raw is None:
        raise SearchConfigError(f"{config_path}: no search section (see `mtp tune --help` and "
                                "the README's hyperparameter-search section)")
    spec = parse_search(search_raw, str(config_path))

    base = parse_task(raw, origin=str(config_path),
                      base_dir=Path(config_path).resolve().parent).canonical_dict()
    study = default_study_name(base.get("id") or base["name"]) if name is None else name
    return run_study(spec, name=study, storage=resolve_storage(storage_path), base_task=base,
                     resume=resume, verbose=verbose, on_trial=on_trial)


def parse_search(raw: Any, origin: str) -> SearchSpec:
    from pydantic import ValidationError

    if not isinstance(raw, Mapping):
        raise SearchConfigError(
            f"invalid search section in {origin}: search: got {type(raw).__name__}: expected "
            "a mapping (space, searcher, metric, mode, num_samples, ...)")
    space = raw.get("space")
    for path, param in (space.items() if isinstance(space, Mapping) else ()):
        if isinstance(param, Mapping) and "type" not in param:
            # e.g. --set search.space.a.b=1, which nests where a dotted name was meant
            raise SearchConfigError(
                f"invalid search section in {origin}: search.space.{path}: got "
                f"{sorted(map(str, param))} without a type; allowed: a parameter with type "
                "uniform, loguniform, int, choice or grid (its name is a dotted task path as "
                "one key)")
    try:
        return SearchSpec.model_validate(raw)
    except ValidationError as err:
        # the field paths are relative to the search section
        raise SearchConfigError(format_validation_error(
            err, raw, origin, model=SearchSpec, field_prefix="search.",
            what="search section in")) from None
