"""``mtp models ...``: the model registry on the command line (see :mod:`mtp.models`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

__all__ = ["add_models_parser"]

EXIT_OK = 0


def _storage(args: argparse.Namespace) -> Path:
    from trainer.api import resolve_storage

    return Path(resolve_storage(args.storage_path))


def _registry(args: argparse.Namespace) -> Any:
    from mtp.models import open_model_registry

    return open_model_registry(_storage(args), args.tracking_uri)


def _print_version(v: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(v), indent=1, default=str))
        return
    aliases = f"  aliases: {', '.join(v.aliases)}" if v.aliases else ""
    parent = (f"  parent: v{v.parent_version} ({v.relation.value})"
              if v.parent_version is not None else "")
    print(f"{v.name} version {v.version}{parent}{aliases}")
    print(f"  run dir   {v.run_dir}")
    if v.run_id:
        print(f"  MLflow run {v.run_id}")
    for key in ("mtp.monitor_value", "mtp.weights_hash", "mtp.data_hash", "verified"):
        if key in v.tags:
            print(f"  {key.removeprefix('mtp.'):<9} {v.tags[key]}")
    for key, (old, new) in sorted(v.changes.items()):
        print(f"  changed   {key}: {old!r} -> {new!r}")


def _cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    rows = []
    for name in registry.models():
        versions = registry.versions(name)
        aliases = sorted({(a, v.version) for v in versions for a in v.aliases})
        rows.append({"name": name, "versions": len(versions),
                     "latest": versions[-1].version if versions else None,
                     "aliases": {a: v for a, v in aliases}})
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print(f"no registered models in {registry.target.shown}")
    else:
        width = max(5, *(len(r["name"]) for r in rows))
        print(f"{'model':<{width}}  {'versions':>8}  {'latest':>6}  aliases")
        for r in rows:
            shown = ", ".join(f"{a} -> {v}" for a, v in r["aliases"].items()) or "-"
            print(f"{r['name']:<{width}}  {r['versions']:>8}  {r['latest']:>6}  {shown}")
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    from tracking.models import VersionRef, check_model_name

    if "@" in args.ref or args.ref.startswith("models:/"):
        ref = VersionRef.parse(args.ref)  # a malformed reference fails before MLflow loads
        _print_version(_registry(args).resolve(ref), args.json)
        return EXIT_OK
    versions = _registry(args).versions(check_model_name(args.ref))
    if args.json:
        print(json.dumps([asdict(v) for v in versions], indent=1, default=str))
        return EXIT_OK
    for v in versions:
        _print_version(v, False)
    return EXIT_OK


def _cmd_register(args: argparse.Namespace) -> int:
    from mtp.models import register_run

    v = register_run(args.run_dir, args.name, storage=_storage(args),
                     tracking_uri=args.tracking_uri)
    if args.alias:
        _registry(args).set_alias(v.name, v.version, args.alias, reason=args.reason)
        v = _registry(args).get(v.name, v.version)
    _print_version(v, args.json)
    return EXIT_OK


def _cmd_alias(args: argparse.Namespace) -> int:
    from tracking.models import check_alias, check_model_name

    check_model_name(args.name)
    check_alias(args.alias)
    registry = _registry(args)
    move = registry.set_alias(args.name, args.version, args.alias, reason=args.reason)
    before = "(unset)" if move.from_version is None else f"version {move.from_version}"
    print(f"{args.name}@{args.alias}: {before} -> version {move.to_version}")
    return EXIT_OK


def _cmd_history(args: argparse.Namespace) -> int:
    from tracking.models import check_alias, check_model_name, format_history

    check_model_name(args.name)
    if args.alias is not None:
        check_alias(args.alias)
    moves = _registry(args).history(args.name, args.alias)
    if args.json:
        print(json.dumps([asdict(m) for m in moves], indent=1, default=str))
    else:
        print(format_history(moves))
    return EXIT_OK


def _cmd_rollback(args: argparse.Namespace) -> int:
    from tracking.models import check_alias, check_model_name

    check_model_name(args.name)
    check_alias(args.alias)
    move = _registry(args).rollback(args.name, args.alias, reason=args.reason)
    print(f"{args.name}@{args.alias}: version {move.from_version} -> version "
          f"{move.to_version} (rolled back)")
    return EXIT_OK


def _cmd_lineage(args: argparse.Namespace) -> int:
    from tracking.models import check_model_name, format_lineage

    check_model_name(args.name)
    versions = _registry(args).versions(args.name)
    if args.json:
        print(json.dumps([asdict(v) for v in versions], indent=1, default=str))
    else:
        print(format_lineage(args.name, versions))
    return EXIT_OK


def _cmd_branch(args: argparse.Namespace) -> int:
    from mtp.models import branch_version

    version, result = branch_version(args.ref, args.set or [], storage=_storage(args),
                                     tracking_uri=args.tracking_uri, address=args.address,
                                     register_as=args.name)
    metric = result.monitor_metric
    start = (result.initial_metrics or {}).get(metric)
    best = result.best_metrics.get(metric)
    print(f"trained {result.run_dir} from {args.ref}"
          + (f": {metric} {start:.4f} at the start, {best:.4f} at best"
             if start is not None and best is not None else ""))
    _print_version(version, args.json)
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from mtp.models import compare_versions
    from tracking.models import VersionRef
    from trainer.compare import format_comparison

    VersionRef.parse(args.a, "A")  # malformed references fail before MLflow loads
    VersionRef.parse(args.b, "B")
    c = compare_versions(args.a, args.b, storage=_storage(args),
                         tracking_uri=args.tracking_uri, data=args.data)
    if args.json:
        print(json.dumps(asdict(c), indent=1, default=str))
    else:
        print(format_comparison(c))
    return EXIT_OK


def _version_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number (1, 2, ...)")
    return int(text)


def add_models_parser(sub: Any, address_arg: Any, common: Any) -> None:
    """Add ``mtp models`` and its sub-commands to the CLI's sub-parsers; ``address_arg`` and
    ``common`` (``--storage-path``, ``--tracking-uri``, ``--json``) are the CLI's own."""
    _common = common
    models = sub.add_parser("models", help="the model registry: versions, aliases, lineage, "
                            "branches, comparisons, rollback")
    msub = models.add_subparsers(
        dest="models_command", required=True,
        metavar="{list,show,register,alias,history,rollback,lineage,branch,compare}")

    p = msub.add_parser("list", help="registered models with their versions and aliases")
    _common(p)
    p.set_defaults(func=_cmd_list, parser=p)

    p = msub.add_parser("show", help="a version (NAME@VERSION, NAME@ALIAS) or every version "
                        "of a model (NAME)")
    p.add_argument("ref")
    _common(p)
    p.set_defaults(func=_cmd_show, parser=p)

    p = msub.add_parser("register", help="register a finished run's model as a new version")
    p.add_argument("run_dir")
    p.add_argument("--name", required=True, help="model name (created when new)")
    p.add_argument("--alias", default=None, help="also point this alias at the new version")
    p.add_argument("--reason", default="", help="why (recorded with the alias move)")
    _common(p)
    p.set_defaults(func=_cmd_register, parser=p)

    p = msub.add_parser("alias", help="point an alias at a version (the move is recorded)")
    p.add_argument("name")
    p.add_argument("version", type=_version_number)
    p.add_argument("alias")
    p.add_argument("--reason", default="", help="why (recorded in the history)")
    _common(p)
    p.set_defaults(func=_cmd_alias, parser=p)

    p = msub.add_parser("history", help="every alias move: from, to, when, who, why")
    p.add_argument("name")
    p.add_argument("--alias", default=None, help="one alias only")
    _common(p)
    p.set_defaults(func=_cmd_history, parser=p)

    p = msub.add_parser("rollback", help="move an alias back to the version it held before")
    p.add_argument("name")
    p.add_argument("--alias", required=True)
    p.add_argument("--reason", default="", help="why (recorded in the history)")
    _common(p)
    p.set_defaults(func=_cmd_rollback, parser=p)

    p = msub.add_parser("lineage", help="the version graph with what changed at each edge")
    p.add_argument("name")
    _common(p)
    p.set_defaults(func=_cmd_lineage, parser=p)

    p = msub.add_parser("branch", help="train a child of a version from its weights with "
                        "changed settings, and register it with the parent recorded")
    p.add_argument("ref", help="NAME@VERSION or NAME@ALIAS")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a changed setting, e.g. training.learning_rate=0.0005 (repeatable)")
    p.add_argument("--name", default=None, help="register the child under this model name "
                   "(default: the parent's)")
    address_arg(p, True)
    _common(p)
    p.set_defaults(func=_cmd_branch, parser=p)

    p = msub.add_parser("compare", help="evaluate two versions on the same held-out data now, "
                        "side by side, with a significance test")
    p.add_argument("a", help="NAME@VERSION or NAME@ALIAS")
    p.add_argument("b", help="NAME@VERSION or NAME@ALIAS")
    p.add_argument("--data", type=Path, default=None,
                   help="a Parquet/CSV file with the feature and target columns (default: "
                   "A's held-out test split)")
    _common(p)
    p.set_defaults(func=_cmd_compare, parser=p)
