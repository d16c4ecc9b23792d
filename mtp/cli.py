"""The ``mtp`` command line.

Exit codes: 0 success; 2 bad input (config, data, arguments); 1 training failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from consistency.errors import ConsistencyError
from mtp_core.errors import ConfigError, DataError
from trainer.errors import CheckpointError, TrainerError
from trainer.result import TrainingResult

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

_SHOWN_METRICS = ("val_loss", "val_accuracy", "val_f1", "val_mse", "val_r2")


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.4f}"


def format_epoch(rec: dict[str, Any], total_epochs: int) -> str:
    parts = [f"epoch {rec['epoch']:>3}/{total_epochs}", f"train_loss {_fmt(rec['train_loss'])}"]
    parts += [f"{k} {_fmt(rec[k])}" for k in _SHOWN_METRICS if k in rec]
    parts.append(f"{rec['samples_per_s']:,.0f} samples/s")
    if rec.get("checkpoint"):
        parts.append("ckpt")
    if rec.get("is_best"):
        parts.append("*best")
    return "  ".join(parts)


def format_summary(r: TrainingResult) -> str:
    best = "  ".join(f"{k} {_fmt(v)}" for k, v in sorted(r.best_metrics.items()))
    final = "  ".join(f"{k} {_fmt(v)}" for k, v in sorted(r.final_metrics.items()))
    t = r.timings
    strategy = r.strategy
    ps = r.task.get("ps") or {}
    if strategy == "parameter_server":
        strategy += f" ({ps.get('mode', 'sync')}, {ps.get('num_shards', 1)} shards)"
    lines = [
        f"run        {r.run_name}  ({r.run_dir})",
        f"task       {r.task_id}  strategy={strategy}  world_size={r.world_size}  "
        f"seed={r.seed}  params={r.num_parameters:,}",
        f"data_hash  {r.data_hash}",
        f"epochs     {r.epochs_completed}" + ("  (stopped early)" if r.stopped_early else "")
        + (f"  resumed from epoch {r.resumed_from_epoch}" if r.resumed_from_epoch else "")
        + (f"  attempts {r.attempts}" if r.attempts > 1 else ""),
        f"best       epoch {r.best_epoch} by {r.monitor_metric} ({r.monitor_mode}): {best}",
        f"final      {final}",
        f"weights    sha256 {r.weights_hash}",
        f"model      {r.model_path}",
        f"checkpoint best {r.best_checkpoint}  latest {r.latest_checkpoint}",
        f"time       wall {t.wall_time_s:.1f}s  start-up {t.startup_s:.1f}s  "
        f"training {t.train_time_s:.1f}s  {t.samples_per_s:,.0f} samples/s  "
        f"(steady {t.steady_samples_per_s:,.0f})",
    ]
    if r.cache_hit:
        where = {"local": "the local result cache", "registry": "the cluster's result registry",
                 "waited": "another driver's run of the same task (waited for it)"}
        lines.append(f"cache      reused from {where.get(r.cache_hit, r.cache_hit)}: no "
                     f"training was started (key {(r.cache_key or '')[:16]}; --no-cache "
                     "trains anyway)")
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    from mtp_core.spec import load_task
    from trainer.api import train

    task = load_task(args.config, args.set or [])
    total = task.training.epochs

    def on_epoch(rec: dict[str, Any]) -> None:
        if not args.quiet:
            print(format_epoch(rec, total), flush=True)

    result = train(task, storage_path=args.storage_path, run_name=args.run_name,
                   address=args.address, on_epoch=on_epoch, use_cache=not args.no_cache)
    if args.json:
        print(result.model_dump_json(indent=1))
    else:
        print(format_summary(result), flush=True)
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
        print(format_epoch(flat, r.epochs_completed))
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from mtp_core.spec import load_task
    from trainer.api import prepare

    task = load_task(args.config, args.set or [])
    p = prepare(task)
    print(json.dumps({"task_id": task.task_id, "samples": p.dataset.num_samples,
                      "sample_shape": list(p.dataset.sample_shape),
                      "kind": p.dataset.kind.value, "num_classes": p.dataset.num_classes,
                      "data_hash": p.data_hash, "seed": p.seed}, indent=1))
    return EXIT_OK


def _join_cluster(command: str, address: str | None) -> None:
    import ray

    if ray.is_initialized():  # a driver script (or test) that is already connected
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ConfigError(f"mtp {command} needs a cluster: pass --address HOST:PORT "
                          "(or 'auto' for a `ray start` cluster on this host) or set RAY_ADDRESS")
    try:
        if not ray.is_initialized():
            ray.init(address=address, namespace="mtp", logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise ConfigError(f"--address {address!r}: cannot connect to a Ray cluster: {err}"
                          ) from None


def _cmd_cluster_status(args: argparse.Namespace) -> int:
    from cluster.status import collect_status, format_status

    _join_cluster("cluster status", args.address)
    status = collect_status()
    if args.json:
        print(json.dumps({k: v for k, v in status.items() if k != "ray_nodes"}, indent=1,
                         default=str))
    else:
        print(format_status(status))
    return EXIT_OK


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
    from mtp_core.spec import load_task
    from trainer.verify import verify

    task = load_task(args.config, args.set or [])
    report = verify(task, args.replicas, storage_path=args.storage_path, address=args.address)
    if args.json:
        print(json.dumps(report.to_json_dict(), indent=1))
    else:
        print(format_report(report))
    return EXIT_OK if report.is_consistent else EXIT_FAILED


def _cmd_registry_stats(args: argparse.Namespace) -> int:
    import ray

    from consistency.actors import REGISTRY_NAME
    from mtp_core.ray_env import NAMESPACE

    _join_cluster("registry stats", args.address)
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
              f"{rec.time_s:>6.1f}  {params}" + ("  (reused)" if rec.cache_hit else ""),
              flush=True)

    if args.address or os.environ.get("RAY_ADDRESS"):
        from trainer.api import connect

        connect(args.address)
    result = tune_task(args.config, overrides=args.set or [], storage_path=args.storage_path,
                       name=args.name, resume=args.resume, on_trial=on_trial)
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


def _address_arg(p: argparse.ArgumentParser, local: bool) -> None:
    """``--address``: commands that can train start an embedded local Ray without one."""
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (host:port or 'auto'); default: $RAY_ADDRESS"
                   + (", else an embedded local Ray" if local else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtp", description="Ray-based model-training platform.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train a task described by a YAML/JSON config")
    run.add_argument("config", help="task config file (.yaml, .yml or .json)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a config field, e.g. --set training.epochs=5 (repeatable)")
    _address_arg(run, local=True)
    run.add_argument("--storage-path", default=None,
                     help="where runs are stored (default: $MTP_STORAGE_PATH or ./mtp_results); "
                     "must be shared by all nodes on a multi-node cluster")
    run.add_argument("--run-name", default=None,
                     help="run directory name (default: the task id); an existing run of the "
                     "same task resumes from its latest checkpoint")
    run.add_argument("--no-cache", action="store_true",
                     help="train even if the local cache or the cluster registry holds a "
                     "result of this task")
    run.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.set_defaults(func=_cmd_run)

    show = sub.add_parser("show", help="print a stored run's result")
    show.add_argument("run_dir", help="run directory (holds result.json)")
    show.add_argument("--json", action="store_true", help="print the result as JSON")
    show.set_defaults(func=_cmd_show)

    val = sub.add_parser("validate", help="check a config and its data without training")
    val.add_argument("config")
    val.add_argument("--set", action="append", metavar="KEY=VALUE")
    val.set_defaults(func=_cmd_validate)

    cluster = sub.add_parser("cluster", help="cluster health and fault handling")
    csub = cluster.add_subparsers(dest="cluster_command", required=True)
    status = csub.add_parser("status", help="nodes, health levels, tasks, failures, migrations")
    _address_arg(status, local=False)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_cluster_status)

    ver = sub.add_parser("verify", help="train a task on several nodes and compare the results")
    ver.add_argument("config")
    ver.add_argument("--set", action="append", metavar="KEY=VALUE")
    ver.add_argument("--replicas", type=int, default=2,
                     help="distinct nodes to train on (default 2)")
    _address_arg(ver, local=True)
    ver.add_argument("--storage-path", default=None)
    ver.add_argument("--json", action="store_true", help="print the ConsistencyReport as JSON")
    ver.set_defaults(func=_cmd_verify)

    tune = sub.add_parser("tune", help="hyperparameter search over a task (Ray Tune)")
    tune.add_argument("config", help="study config: a task config with a search section")
    tune.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="override a task or search field, e.g. --set search.num_samples=8")
    tune.add_argument("--name", default=None, help="study name (default: <task id>-study)")
    tune.add_argument("--resume", action="store_true",
                      help="continue an interrupted study; finished trials are not rerun")
    tune.add_argument("--storage-path", default=None,
                      help="studies live in <storage>/_studies/<name> (default ./mtp_results)")
    _address_arg(tune, local=True)
    tune.add_argument("-q", "--quiet", action="store_true", help="no per-trial lines")
    tune.add_argument("--json", action="store_true", help="print the study result as JSON")
    tune.set_defaults(func=_cmd_tune)

    reg = sub.add_parser("registry", help="the cluster-wide result registry")
    rsub = reg.add_subparsers(dest="registry_command", required=True)
    rstats = rsub.add_parser("stats", help="entries, cache hits and misses, verifications")
    _address_arg(rstats, local=False)
    rstats.add_argument("--json", action="store_true")
    rstats.set_defaults(func=_cmd_registry_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Ray's token authentication stays on; only silence its dashboard's usage prompt.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        code: int = args.func(args)
        return code
    except (ConfigError, DataError, CheckpointError, ConsistencyError) as err:
        print(f"mtp: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainerError as err:
        print(f"mtp: training failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("mtp: interrupted; rerun the same command to resume from the latest checkpoint",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
