"""The ``mtp`` command line.

Exit codes: 0 success; 2 bad input (config, data, arguments, paths); 1 the platform or the
training failed; 3 training diverged (a loss or metric became NaN or infinite); 130 interrupted
(SIGINT, Ctrl-C); 143 terminated (SIGTERM). An error the platform raises (any ``MtpError``) is
one ``mtp: error: ...`` / ``mtp: failed: ...`` line on stderr, never a traceback (``-v`` logs it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from mtp_core.errors import (
    EXIT_DIVERGED,
    ConfigError,
    InputError,
    MtpError,
    exit_code_for,
    raised_error,
)
from mtp_core.names import name_problem
from mtp_core.ray_env import NAMESPACE, connect, mute_worker_logs
from mtp_core.spec import load_task

if TYPE_CHECKING:  # the trainer imports torch: only the commands that train load it
    from trainer.result import TrainingResult

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
_RESUMABLE = ("run", "tune")  # commands whose rerun resumes where it stopped

logger = logging.getLogger(__name__)

_SHOWN_METRICS = ("val_loss", "val_accuracy", "val_f1", "val_mse", "val_r2")

_STARTED = time.time()  # this module is imported first by the `mtp` command


def _process_age_s() -> float:
    """Seconds since this process started (interpreter start and imports included)."""
    try:
        import psutil  # Ray's dependency; light

        return time.time() - psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - from this module's import, then
        return time.time() - _STARTED


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.4f}"


def format_epoch(rec: dict[str, Any], total_epochs: int | None) -> str:
    """One epoch's line; ``total_epochs`` None for an estimator's fit (its only "epoch")."""
    head = f"epoch {rec['epoch']:>3}/{total_epochs}" if total_epochs is not None else "fit"
    parts = [head, f"train_loss {_fmt(rec['train_loss'])}"]
    parts += [f"{k} {_fmt(rec[k])}" for k in _SHOWN_METRICS if k in rec]
    parts.append(f"{rec['samples_per_s']:,.0f} samples/s")
    if rec.get("checkpoint"):
        parts.append("ckpt")
    if rec.get("is_best"):
        parts.append("*best")
    return "  ".join(parts)


def format_phases(r: TrainingResult, cli_s: float | None = None) -> str:
    """Where a run's wall time went (``mtp run -v``): the CLI's own start, then the phases of
    ``train()`` (:data:`trainer.result.PHASES`)."""
    parts = [f"cli {cli_s:.2f}s"] if cli_s is not None else []
    parts += [f"{k} {v:.2f}s" for k, v in r.timings.phases.items()]
    return "phases     " + "  ".join(parts)


def _test_lines(r: TrainingResult) -> list[str]:
    if r.test is None:
        return []
    t, inf = r.test, r.test.inference
    metrics = "  ".join(f"{k} {_fmt(v)}" for k, v in sorted(r.test_metrics.items()))
    which = (f"epoch {t.epoch} (best)" if t.weights == "best"
             else f"epoch {t.epoch} (final: the best epoch's checkpoint was not kept)")
    return [f"test       {which}, {t.rows:,} rows: {metrics}",
            f"inference  {inf.throughput_samples_per_s:,.0f} samples/s in batches of "
            f"{inf.batch_size}, {inf.latency_ms_per_sample:.3f} ms for one sample "
            f"({inf.device}, {inf.threads} thread{'s' if inf.threads != 1 else ''})"]


def format_summary(r: TrainingResult) -> str:
    best = "  ".join(f"{k} {_fmt(v)}" for k, v in sorted(r.best_metrics.items()))
    final = "  ".join(f"{k} {_fmt(v)}" for k, v in sorted(r.final_metrics.items()))
    t = r.timings
    strategy = r.strategy
    ps = r.task.get("ps") or {}
    if strategy == "parameter_server":
        strategy += f" ({ps.get('mode', 'sync')}, {ps.get('num_shards', 1)} shards)"
    estimator = r.task["model"].get("estimator") if r.task["model"]["type"] == "sklearn" else None
    how = (f"estimator={estimator}  seed={r.seed}  stored values={r.num_parameters:,}"
           if estimator else f"strategy={strategy}  world_size={r.world_size}  "
           f"seed={r.seed}  params={r.num_parameters:,}")
    ckpts = (f"checkpoint best {r.best_checkpoint}  latest {r.latest_checkpoint}"
             if r.best_checkpoint or r.latest_checkpoint or not estimator
             else "checkpoint none (an estimator is fitted in one step)")
    lines = [
        f"run        {r.run_name}  ({r.run_dir})",
        f"task       {r.task_id}  {how}",
        f"data_hash  {r.data_hash}",
        *([f"model code {r.task['model'].get('factory')}  sha256 "
           f"{r.versions['model_code_sha256']}"] if "model_code_sha256" in r.versions else []),
        f"epochs     {r.epochs_completed}" + ("  (stopped early)" if r.stopped_early else "")
        + (f"  resumed from epoch {r.resumed_from_epoch}" if r.resumed_from_epoch else "")
        + (f"  attempts {r.attempts}" if r.attempts > 1 else ""),
        f"best       epoch {r.best_epoch} by {r.monitor_metric} ({r.monitor_mode}): {best}",
        f"final      {final}",
        *_test_lines(r),
        f"weights    sha256 {r.weights_hash}",
        f"model      {r.model_path}",
        ckpts,
        f"time       wall {t.wall_time_s:.1f}s  start-up {t.startup_s:.1f}s  "
        f"training {t.train_time_s:.1f}s  {t.samples_per_s:,.0f} samples/s  "
        f"(steady {t.steady_samples_per_s:,.0f})",
    ]
    if r.diverged is not None:
        lines.insert(3, f"status     DIVERGED: {r.diverged.describe()}; training stopped there "
                     "(this result is not cached)")
    if r.cache_hit is not None:
        lines.append(f"cache      reused from {r.cache_hit.source}: no "
                     f"training was started (key {(r.cache_key or '')[:16]}; --no-cache "
                     "trains anyway)")
    return "\n".join(lines)


def _connect_early(args: argparse.Namespace) -> None:
    """A given cluster address is checked before torch loads: a bad one fails in seconds."""
    if args.address or os.environ.get("RAY_ADDRESS"):
        connect(args.address)


def _cmd_run(args: argparse.Namespace) -> int:
    task = load_task(args.config, args.set or [])  # a bad config fails before torch loads
    _connect_early(args)
    from trainer.api import train

    total = None if task.model.type == "sklearn" else task.training.epochs
    scheduled = args.scheduled

    def on_epoch(rec: dict[str, Any]) -> None:
        if not args.quiet:
            print(format_epoch(rec, total), flush=True)
        if scheduled is not None:
            scheduled.epoch(rec, total)

    cli_s = _process_age_s()
    result = train(task, storage_path=args.storage_path, run_name=args.run_name,
                   address=args.address, on_epoch=on_epoch, use_cache=not args.no_cache)
    if scheduled is not None:
        scheduled.result = {
            "run_dir": str(result.run_dir), "weights_hash": result.weights_hash,
            "best_metrics": result.best_metrics, "test_metrics": result.test_metrics,
            "epochs_completed": result.epochs_completed, "data_hash": result.data_hash,
            "seed": result.seed, "cache_hit": result.cache_hit is not None}
    if args.json:
        print(result.model_dump_json(indent=1))
    else:
        print(format_summary(result), flush=True)
        if args.verbose and result.cache_hit is None and result.timings.phases:
            print(format_phases(result, cli_s), flush=True)
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    from trainer.result import load_result

    r = load_result(args.run_dir)
    if args.json:
        print(r.model_dump_json(indent=1))
        return EXIT_OK
    print(format_summary(r))
    print()
    for rec in r.history:
        flat = {"epoch": rec.epoch, "train_loss": rec.train_loss, **rec.metrics,
                "samples_per_s": rec.samples_per_s, "is_best": rec.is_best}
        print(format_epoch(flat, None if r.task["model"]["type"] == "sklearn"
                           else r.epochs_completed))
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from trainer.predict import predict_file

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be at least 1")
    summary = predict_file(args.run_dir, args.input, args.output, address=args.address,
                           workers=args.workers, batch_rows=args.batch_size)
    print(f"scored {summary.rows:,} rows into {summary.output} in {summary.seconds:.1f}s "
          f"({summary.rows_per_s:,.0f} rows/s, {summary.workers} scoring "
          f"actor{'s' if summary.workers != 1 else ''})")
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    task = load_task(args.config, args.set or [])  # a bad config fails before torch loads
    from trainer.api import prepare, resolve_storage
    from trainer.init_weights import resolve_init_from
    from trainer.report import data_report

    # training.init_from: models:/NAME@ALIAS -> the run it names in the default registry
    task = resolve_init_from(task, resolve_storage(None), task.tracking.uri)
    p = prepare(task)
    print(json.dumps({"task_id": task.task_id, "samples": p.dataset.num_samples,
                      "sample_shape": list(p.dataset.sample_shape),
                      "kind": p.dataset.kind.value, "num_classes": p.dataset.num_classes,
                      "data_hash": p.data_hash, "seed": p.seed,
                      "data_report": data_report(p)}, indent=1))
    return EXIT_OK


def _cmd_cluster_status(args: argparse.Namespace) -> int:
    connect(args.address, require_cluster="cluster status")  # first: a bad address fails fast
    from cluster.status import collect_status, format_status

    status = collect_status()
    if args.json:
        from cluster.scheduler_actor import snapshot_json

        out = {k: v for k, v in status.items() if k != "ray_nodes"}
        if out.get("scheduler") is not None:
            out["scheduler"] = snapshot_json(out["scheduler"])
        print(json.dumps(out, indent=1, default=str))
    else:
        print(format_status(status))
    return EXIT_OK


def _cmd_cluster_start(args: argparse.Namespace) -> int:
    connect(args.address, require_cluster="cluster start")
    from mtp.platform import start_services
    from trainer.api import resolve_storage

    storage = resolve_storage(args.storage_path)
    for svc in start_services(storage, args.database_url):
        print(f"{svc.name:<22}{'started' if svc.started else 'already running'}")
    print(f"storage               {storage}")
    return EXIT_OK


def _cmd_cluster_stop(args: argparse.Namespace) -> int:
    connect(args.address, require_cluster="cluster stop")
    from mtp.platform import stop_services

    stopped = stop_services()
    print(f"stopped {', '.join(stopped)}" if stopped else "no platform service was running")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from mtp.api.auth import load_token

    token = load_token(args.token_file)  # before anything starts: a bad file is exit 2
    if not token:
        raise ConfigError("mtp serve needs a token: set MTP_API_TOKEN or give --token-file "
                          "(every call must send `authorization: Bearer <token>`)")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together: give both (PEM files) or "
                          "neither")
    cert = key = None
    if args.tls_cert:
        cert, key = _read_pem(args.tls_cert, "--tls-cert"), _read_pem(args.tls_key, "--tls-key")
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    if not loopback and cert is None:
        if not args.allow_insecure:
            raise ConfigError(f"--host {args.host}: serving beyond this machine without TLS "
                              "sends the token in the clear; give --tls-cert and --tls-key, "
                              "or --allow-insecure on a network you trust")
        logger.warning("serving on %s without TLS (--allow-insecure): the token and every "
                       "task travel in the clear", args.host)
    connect(args.address, require_cluster="serve")
    from mtp.api.server import ServerConfig, start_server

    server = start_server(ServerConfig(
        host=args.host, port=args.port, token=token, tls_cert=cert, tls_key=key,
        storage=args.storage_path, tracking_uri=args.tracking_uri,
        max_workers=args.max_workers))
    print(f"mtp API (mtp.v1) on {args.host}:{server.port}"
          f"{' with TLS' if cert else ''}; SIGTERM or Ctrl-C stops it", flush=True)
    try:
        while True:
            server.server.wait_for_termination(timeout=1.0)
    except KeyboardInterrupt:  # SIGTERM / SIGINT (the CLI's handlers): a clean stop
        server.stop(grace_s=args.grace_s)
        print("mtp API stopped", flush=True)
    return EXIT_OK


def _read_pem(path: str, flag: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"{flag} {path}: cannot be read ({err.strerror or err})") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{flag} {path}: not a PEM file (no -----BEGIN line)")
    return data


def format_report(report: Any) -> str:
    lines = [f"consistent  {report.is_consistent}  (bitwise equal weights: "
             f"{report.bitwise_equal}, confidence {report.confidence:.2f})",
             f"reason      {report.reason}"]
    for node, h in zip(report.nodes, report.weights_hashes, strict=True):
        lines.append(f"replica     {node[:24]:<24}  weights {h[:16]}")
    bad = [m for m in report.metrics if not m.within_tolerance]
    for m in bad:
        lines.append(f"differs     {m.name} on {m.node[:12]}: reference {m.local} vs {m.remote} "
                     f"(diff {m.diff}, {m.diff_percent}% > {report.tolerance_percentage}%)")
    return "\n".join(lines)


def _cmd_verify(args: argparse.Namespace) -> int:
    task = load_task(args.config, args.set or [])  # a bad config fails before torch loads
    _connect_early(args)
    from trainer.verify import verify

    report = verify(task, args.replicas, storage_path=args.storage_path, address=args.address)
    if args.json:
        print(json.dumps(report.to_json_dict(), indent=1))
    else:
        print(format_report(report))
    return EXIT_OK if report.is_consistent else EXIT_FAILED


def _cmd_registry_stats(args: argparse.Namespace) -> int:
    import ray

    connect(args.address, require_cluster="registry stats")  # first: a bad address fails fast
    from consistency.actors import REGISTRY_NAME

    try:
        registry = ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
    except ValueError:
        raise ConfigError(f"no {REGISTRY_NAME} actor on this cluster: no run has shared a "
                          "result yet") from None
    stats = ray.get(registry.stats.remote())
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        for k in sorted(stats):
            print(f"{k:<16} {stats[k]}")
    return EXIT_OK


def _fmt_param(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, list | dict) else str(v)


def _cmd_tune(args: argparse.Namespace) -> int:
    _connect_early(args)
    from hpo.study import TrialRecord, tune_task

    header = {"printed": False}

    def on_trial(rec: TrialRecord, best: TrialRecord | None, total: int) -> None:
        if args.quiet or args.json:
            return
        if not header["printed"]:
            print(f"{'trial':>9}  {'value':>8}  {'best':>8}  {'epochs':>6}  {'s':>6}  params",
                  flush=True)
            header["printed"] = True
        params = "  ".join(f"{k.split('.')[-1]}={_fmt_param(v)}" for k, v in rec.params.items())
        print(f"{rec.index + 1:>4}/{total:<4}  {rec.value:>8.4f}  "
              f"{(best.value if best else rec.value):>8.4f}  {rec.iterations:>6}  "
              f"{rec.time_s:>6.1f}  {params}" + ("  (reused)" if rec.reused else ""),
              flush=True)

    # a failed trial is one line in the study's summary (its traceback is in the trial's
    # error.txt), not a traceback logged by Tune; Tune's own SIGINT handler would end the study
    # quietly and let it report success: Ctrl-C takes the CLI's path (exit 130, "rerun with
    # --resume"), as SIGTERM does. Scoped to this command: main() may run in a caller's process.
    tune_env = _scoped_env(TUNE_PRINT_ALL_TRIAL_ERRORS="0", TUNE_DISABLE_SIGINT_HANDLER="1")
    # with --json, stdout is the study's JSON alone: what Ray Tune prints goes to stderr
    out = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with tune_env, out:
        result = tune_task(args.config, overrides=args.set or [],
                           storage_path=args.storage_path, name=args.name, resume=args.resume,
                           on_trial=on_trial)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, default=str))
        return EXIT_OK
    print(f"study      {result.name}  ({result.study_dir})")
    print(f"searcher   {result.searcher}  trials {len(result.trials)}")
    print(f"best       {result.metric} {result.best_value:.4f} ({result.mode}) in trial "
          f"{result.best_trial}")
    for k, v in result.best_params.items():
        print(f"  {k} = {_fmt_param(v)}")
    for k, path in result.files.items():
        print(f"{k:<10} {path}")
    return EXIT_OK


def _tracking_target(args: argparse.Namespace) -> Any:
    from tracking import resolve_target
    from trainer.api import resolve_storage

    return resolve_target(args.tracking_uri, resolve_storage(args.storage_path),
                          source="--tracking-uri")


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _cmd_experiments_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from tracking import list_experiments

    target = _tracking_target(args)
    experiments = list_experiments(target)
    if args.json:
        print(json.dumps([asdict(e) for e in experiments], indent=1))
        return EXIT_OK
    if not experiments:
        print(f"no experiments in {target.shown}")
        return EXIT_OK
    width = max(10, *(len(e.name) for e in experiments))
    print(f"{'experiment':<{width}}  {'id':>4}  {'runs':>5}  {'trained':>7}  last run")
    for e in experiments:
        print(f"{e.name:<{width}}  {e.experiment_id:>4}  {e.runs:>5}  {e.training_runs:>7}  "
              f"{_when(e.last_start_ms)}")
    return EXIT_OK


def _fmt_opt(v: float | None, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _cmd_experiments_show(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from tracking import show_experiment

    s = show_experiment(_tracking_target(args), args.name)
    if args.json:
        print(json.dumps(asdict(s), indent=1, default=str))
        return EXIT_OK
    shown = [m for m in (s.monitor_metric, *_SHOWN_METRICS) if m] if s.runs else []
    shown = list(dict.fromkeys(m for m in shown
                               if any(r.monitored_value(m) is not None for r in s.runs)))
    width = max(8, *(len(r.name) for r in s.runs)) if s.runs else 8
    print(f"experiment {s.name}  (id {s.experiment_id})")
    print(f"{'run':<{width}}  {'kind':<9}  {'status':<8}  {'time s':>7}  "
          + "  ".join(f"{m:>12}" for m in shown) + "  run id")
    for r in s.runs:
        print(f"{r.name:<{width}}  {r.kind.value:<9}  {r.status:<8}  "
              f"{_fmt_opt(r.duration_s, '.1f'):>7}  "
              + "  ".join(f"{_fmt_opt(r.monitored_value(m)):>12}" for m in shown)
              + f"  {r.run_id}" + (f" (of {r.original_run_id})" if r.original_run_id else ""))
    print()
    print(f"runs       {s.count} trained, {s.finished} finished (success rate "
          f"{s.success_rate:.0%}), mean duration {_fmt_opt(s.mean_duration_s, '.1f')} s"
          + (f"; {s.cache_hits} cache hits" if s.cache_hits else "")
          + (f"; {s.studies} studies" if s.studies else ""))
    if s.best_run_id is not None:
        best = next(r for r in s.runs if r.run_id == s.best_run_id)
        print(f"best       {best.name} ({s.best_run_id}) by {s.monitor_metric} "
              f"({s.monitor_mode}): {s.best_value:.4f}")
    if s.metrics:
        mw = max(len(m.name) for m in s.metrics)
        print(f"{'metric':<{mw}}  {'n':>3}  {'min':>10}  {'max':>10}  {'mean':>10}  "
              f"{'median':>10}  {'std':>10}")
        for m in s.metrics:
            print(f"{m.name:<{mw}}  {m.count:>3}  {m.min:>10.4g}  {m.max:>10.4g}  "
                  f"{m.mean:>10.4g}  {m.median:>10.4g}  {m.std:>10.4g}")
    return EXIT_OK


def _tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-path", default=None,
                   help="its platform database is the default tracking store and holds the "
                   "model registry's lineage and alias history (default: $MTP_STORAGE_PATH "
                   "or ./mtp_results)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking and registry URI (default: $MLFLOW_TRACKING_URI, "
                   "else the platform database under --storage-path)")
    p.add_argument("--json", action="store_true", help="print as JSON")


def _address_arg(p: argparse.ArgumentParser, local: bool) -> None:
    """``--address``: commands that can train start an embedded local Ray without one."""
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (host:port or 'auto'); default: $RAY_ADDRESS"
                   + (", else an embedded local Ray" if local else ""))


def _plain_name(text: str) -> str:
    """A run's or a study's folder name under the storage path: one plain path component."""
    problem = name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem} (a name under --storage-path, not a path)")
    return text


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range; allowed: 0 to 65535 "
                                         "(0: any free port)")
    return value


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: what is wrong and where the usage is, not the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mtp", description="Ray-based model-training platform.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--database-url", default=None, metavar="URL",
                        help="the platform database (result registry, lineage, alias history, "
                        "default tracking store): postgresql://USER:PASSWORD@HOST/DB or "
                        "sqlite:///PATH (default: $MTP_DATABASE_URL, else "
                        "<storage>/_db/mtp.db)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train a task described by a YAML/JSON config")
    run.add_argument("config", help="task config file (.yaml, .yml or .json)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a config field, e.g. --set training.epochs=5 (repeatable)")
    _address_arg(run, local=True)
    run.add_argument("--storage-path", default=None,
                     help="where runs are stored (default: $MTP_STORAGE_PATH or ./mtp_results); "
                     "must be shared by all nodes on a multi-node cluster")
    run.add_argument("--run-name", default=None, type=_plain_name,
                     help="run directory name (default: the task id); an existing run of the "
                     "same task resumes from its latest checkpoint")
    run.add_argument("--no-cache", action="store_true",
                     help="train even if the local cache or the cluster registry holds a "
                     "result of this task")
    run.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.set_defaults(func=_cmd_run, parser=run)

    show = sub.add_parser("show", help="print a stored run's result")
    show.add_argument("run_dir", help="run directory (holds result.json)")
    show.add_argument("--json", action="store_true", help="print the result as JSON")
    show.set_defaults(func=_cmd_show, parser=show)

    pred = sub.add_parser("predict", help="score a Parquet/CSV file with a finished run "
                          "(Ray Data)")
    pred.add_argument("run_dir", help="run directory (holds result.json and the model)")
    pred.add_argument("--input", required=True, help="rows to score (.parquet or .csv)")
    pred.add_argument("--output", required=True,
                      help="where the scored rows go (.parquet or .csv): the input's columns, "
                      "then prediction (and probability_<class> for classifiers)")
    _address_arg(pred, local=True)
    pred.add_argument("--workers", type=int, default=None,
                      help="scoring actors, one CPU each (default and most: the cluster's "
                      "CPUs less one, which Ray Data's reading tasks use)")
    pred.add_argument("--batch-size", type=int, default=8192, help="rows per scored batch")
    pred.set_defaults(func=_cmd_predict, parser=pred)

    val = sub.add_parser("validate", help="check a config and its data without training")
    val.add_argument("config")
    val.add_argument("--set", action="append", metavar="KEY=VALUE")
    val.set_defaults(func=_cmd_validate, parser=val)

    cluster = sub.add_parser("cluster", help="the platform's services on a cluster: start, "
                             "stop, health and the queue")
    csub = cluster.add_subparsers(dest="cluster_command", required=True,
                                  metavar="{start,stop,status}")
    status = csub.add_parser("status", help="nodes, health levels, tasks, failures, "
                             "migrations, the queue")
    _address_arg(status, local=False)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_cluster_status, parser=status)
    cstart = csub.add_parser("start", help="start the fault detector (and its node agents), "
                             "the migrator, the result registry and the scheduler on the head "
                             "(idempotent)")
    _address_arg(cstart, local=False)
    cstart.add_argument("--storage-path", default=None,
                        help="runs, checkpoints and the default platform database (default: "
                        "$MTP_STORAGE_PATH or ./mtp_results; shared by all nodes)")
    cstart.set_defaults(func=_cmd_cluster_start, parser=cstart)
    cstop = csub.add_parser("stop", help="stop the platform's services (the queue stays in the "
                            "database; running tasks go on)")
    _address_arg(cstop, local=False)
    cstop.set_defaults(func=_cmd_cluster_stop, parser=cstop)

    ver = sub.add_parser("verify", help="train a task on several nodes and compare the results")
    ver.add_argument("config")
    ver.add_argument("--set", action="append", metavar="KEY=VALUE")
    ver.add_argument("--replicas", type=_at_least_one, default=2,
                     help="distinct nodes to train on (default 2)")
    _address_arg(ver, local=True)
    ver.add_argument("--storage-path", default=None)
    ver.add_argument("--json", action="store_true", help="print the ConsistencyReport as JSON")
    ver.set_defaults(func=_cmd_verify, parser=ver)

    tune = sub.add_parser("tune", help="hyperparameter search over a task (Ray Tune)")
    tune.add_argument("config", help="study config: a task config with a search section")
    tune.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="override a task or search field, e.g. --set search.num_samples=8")
    tune.add_argument("--name", default=None, type=_plain_name,
                      help="study name (default: <task id>-study)")
    tune.add_argument("--resume", action="store_true",
                      help="continue an interrupted study; finished trials are not rerun")
    tune.add_argument("--storage-path", default=None,
                      help="studies live in <storage>/_studies/<name> (default ./mtp_results)")
    _address_arg(tune, local=True)
    tune.add_argument("-q", "--quiet", action="store_true", help="no per-trial lines")
    tune.add_argument("--json", action="store_true", help="print the study result as JSON")
    tune.set_defaults(func=_cmd_tune, parser=tune)

    reg = sub.add_parser("registry", help="the cluster-wide result registry")
    rsub = reg.add_subparsers(dest="registry_command", required=True, metavar="{stats}")
    rstats = rsub.add_parser("stats", help="entries, cache hits and misses, verifications")
    _address_arg(rstats, local=False)
    rstats.add_argument("--json", action="store_true")
    rstats.set_defaults(func=_cmd_registry_stats, parser=rstats)

    exps = sub.add_parser("experiments", help="experiments tracked on MLflow: runs and summaries")
    esub = exps.add_subparsers(dest="experiments_command", required=True,
                               metavar="{list,show}")
    elist = esub.add_parser("list", help="every experiment with its run counts")
    _tracking_args(elist)
    elist.set_defaults(func=_cmd_experiments_list, parser=elist)
    eshow = esub.add_parser("show", help="an experiment's runs, key metrics and the summary "
                            "across runs (count, success rate, duration, metric statistics, "
                            "best run)")
    eshow.add_argument("name", help="experiment name (a task's tracking.experiment or name)")
    _tracking_args(eshow)
    eshow.set_defaults(func=_cmd_experiments_show, parser=eshow)

    srv = sub.add_parser("serve", help="the gRPC API (mtp.v1) over the scheduler and the model "
                         "registry, for clients in any language")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default: loopback only)")
    srv.add_argument("--port", type=_port, default=50051)
    _address_arg(srv, local=False)
    srv.add_argument("--token-file", default=None,
                     help="a file holding the bearer token (default: $MTP_API_TOKEN)")
    srv.add_argument("--tls-cert", default=None, metavar="PEM", help="serve TLS with this "
                     "certificate chain (with --tls-key)")
    srv.add_argument("--tls-key", default=None, metavar="PEM")
    srv.add_argument("--allow-insecure", action="store_true",
                     help="allow a non-loopback --host without TLS (logs a warning)")
    srv.add_argument("--storage-path", default=None,
                     help="the model registry's storage (default: the scheduler's)")
    srv.add_argument("--tracking-uri", default=None, help="MLflow tracking and registry URI")
    srv.add_argument("--grace-s", type=float, default=5.0,
                     help="on SIGTERM, how long open calls may take to finish")
    srv.add_argument("--max-workers", type=_at_least_one, default=64,
                     help="threads serving calls; each open WatchTask stream holds one, and "
                     "a quarter (at least 4) stay for the other calls (default 64)")
    srv.set_defaults(func=_cmd_serve, parser=srv)

    from mtp._models_cli import add_models_parser
    from mtp._queue_cli import add_queue_parser

    add_models_parser(sub, _address_arg, _tracking_args)
    add_queue_parser(sub, _address_arg, _at_least_one)
    return parser


@contextlib.contextmanager
def _scoped_env(**values: str) -> Iterator[None]:
    """Set environment variables a user has not set, for the duration of one command."""
    added = [k for k in values if k not in os.environ]
    for k in added:
        os.environ[k] = values[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


class _Signals:
    """SIGINT and SIGTERM end a command as Ctrl-C does: the first one raises KeyboardInterrupt
    in the main thread (the run stops; its checkpoints are already on disk), a second one exits
    at once. ``mtp_core.ray_env.connect`` keeps them in place across ``ray.init`` (which sets
    its own SIGTERM handler)."""

    received: int | None = None

    @classmethod
    def install(cls) -> dict[int, Any]:
        """Install the handlers; returns the ones they replace, for ``restore``."""
        before: dict[int, Any] = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for sig in before:
            signal.signal(sig, cls._handle)
        return before

    @staticmethod
    def restore(before: dict[int, Any]) -> None:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    @classmethod
    def _handle(cls, signum: int, frame: Any) -> None:
        if cls.received is not None:
            os._exit(128 + cls.received)
        cls.received = signum
        mute_worker_logs()  # the run's workers die with it: their tracebacks are noise
        raise KeyboardInterrupt


def _interrupted(args: argparse.Namespace, argv: Sequence[str]) -> int:
    signum = _Signals.received or signal.SIGINT
    name = signal.Signals(signum).name
    again = ""
    if args.command in _RESUMABLE:
        again = (f"; rerun `{shlex.join(['mtp', *argv])}` to resume from the latest "
                 "checkpoint" if args.command != "tune" else
                 f"; rerun `{shlex.join(['mtp', *argv, *([] if args.resume else ['--resume'])])}`"
                 " to continue the study")
    print(f"mtp: interrupted ({name}){again}", file=sys.stderr, flush=True)
    return 128 + signum


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the subcommand they were given to, not by the top-level parser
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Ray's token authentication stays on; only silence its dashboard's usage prompt.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main_thread = threading.current_thread() is threading.main_thread()
    before: dict[int, Any] = {}
    if main_thread:
        _Signals.received = None
        before = _Signals.install()
    try:
        return _run_command(args, argv)
    finally:  # a caller's process (a driver script, a test) gets its handlers back
        _Signals.restore(before)


def _run_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    args.scheduled = None
    if args.command == "run":  # a task the scheduler started: it reports how it went
        from cluster.attempt import ScheduledAttempt

        args.scheduled = ScheduledAttempt.from_env(
            args.storage_path or os.environ.get("MTP_STORAGE_PATH") or "mtp_results")
    global _last_error
    _last_error = ""
    code = _dispatch(args, argv)
    if args.scheduled is not None:
        args.scheduled.ended(code, _last_error)
    return code


_last_error = ""  # the line the command printed for its error (reported to the scheduler)


def _dispatch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    try:
        if getattr(args, "database_url", None):
            from database.url import DATABASE_ENV, database_url

            database_url(None, override=args.database_url)  # a bad URL: one line, exit 2
            os.environ[DATABASE_ENV] = args.database_url  # this process and what it starts
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        return _interrupted(args, argv)
    except MtpError as err:
        if _Signals.received is not None:  # the error is how the interrupted work ended
            return _interrupted(args, argv)
        return _report(err, exit_code_for(err))
    except ValidationError as err:
        # the platform's own models; a user's files are checked where they are read
        return _report(err, EXIT_FAILED)
    except OSError as err:
        # a path given on the command line (or under it) that cannot be read or written
        return _report(err, EXIT_BAD_INPUT if isinstance(err, _PATH_ERRORS) else EXIT_FAILED)
    except Exception:
        if _Signals.received is not None:
            return _interrupted(args, argv)
        raise


_PATH_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                NotADirectoryError)


def _error_message(err: BaseException) -> str:
    """What ``mtp`` prints for ``err``: the message, without a remote traceback."""
    err = raised_error(err)
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        return f"invalid {err.title}: {where}: {first['msg']}{more}"
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.strerror or err}: {str(err.filename)!r}"
    return str(err).strip() or type(err).__name__


def _is_training_failure(err: BaseException) -> bool:
    # a TrainerError can only have been raised once trainer.errors was imported; importing it
    # here would load torch for every error of every command
    errors = sys.modules.get("trainer.errors")
    return (errors is not None and isinstance(err, errors.TrainerError)
            and not isinstance(err, InputError))


def _report(err: BaseException, code: int) -> int:
    cause = raised_error(err)
    if code == EXIT_BAD_INPUT:
        prefix = "mtp: error: "
    elif code == EXIT_DIVERGED:
        prefix = "mtp: training diverged: "
    elif _is_training_failure(cause):
        prefix = "mtp: training failed: "
    else:
        prefix = "mtp: failed: "
    logger.debug("%s%s", prefix, type(cause).__name__, exc_info=err)
    global _last_error
    _last_error = prefix + _error_message(err)
    print(_last_error, file=sys.stderr)
    return code


def entry() -> None:
    """The ``mtp`` command (and ``python -m mtp.cli``): :func:`main`, then the process ends,
    without relaying the Ray workers' last words (they are stopped as the driver exits).

    After an interrupt the run's fit thread may still be inside Ray's client code, and letting
    the interpreter finalize under it (Ray's atexit shutdown, then the thread's teardown) can
    crash the process with SIGSEGV once the ``mtp: interrupted`` line is printed. So an
    interrupted command flushes its output and ends at once with its exit code (128 + the
    signal); an embedded Ray's processes go with it (Ray's reaper), a cluster's actors of this
    job end with the job. Callers of :func:`main` (driver scripts, tests) are not affected.
    """
    code = main()
    # the command is done: what its Ray workers print from here on is how they die as the
    # driver leaves (Ray's SIGTERM handler raising in a worker), not news for the user
    mute_worker_logs()
    if _Signals.received is not None:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing left to deliver
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
