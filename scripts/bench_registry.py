"""Result registry on the platform database: registrations and lookups at up to 1,000,000 entries.

One run, three measurements:

1. **The registry on the database, by size.** For each backend (SQLite in WAL mode under the
   storage path, the default; PostgreSQL when ``pg_ctl`` is there, a throwaway server from
   ``tests/support/postgres.py``) the database is filled to each of ``--sizes`` entries (one
   ``RegistryStore.add_missing`` transaction per 10,000 entries; timed, not a figure; the fill
   switches to multi-row ``INSERT``s of the same rows when ``add_missing`` projects more than
   ``--fill-limit-s`` to the largest size), then:

   - through the real ``mtp-result-registry`` actor (made by ``get_result_registry``, on a
     local ``ray.init(num_cpus=2)``, loopback only): ``--registrations`` registrations of new
     keys and ``--lookups`` lookups each of random existing and of missing keys, one sequential
     ``ray.get`` per call from the driver; rate and per-call latency (p50, p99);
   - the same calls in-process on a ``RegistryStore`` over the same database (no Ray), so the
     actor's share is visible; plus an actor ``ping`` and an empty read and write transaction,
     which split a call into Ray, connection and statement costs;
   - the database size (SQLite: the file after a WAL checkpoint; PostgreSQL: the tables with
     their indexes and TOAST) and bytes per entry.

   Every result is a realistic ``RegistryEntry``: its ``result`` is a ``TrainingResult`` (the
   digits MLP's, one epoch of history, with the task it ran) validated by
   ``trainer.result.TrainingResult``, about 3.9 KB of JSON.
2. **Baseline: the JSON-file store of the previous version.** The text of
   ``consistency/store.py`` at commit 7b1d146 (``git show``) is loaded into a temporary module,
   unchanged. Its actor called ``RegistryStore.save(path)`` after every ``register``: the whole
   file rewritten as canonical JSON with a sha256 per entry, the previous file parsed and kept
   as ``.bak``. Measured in-process at ``--json-sizes`` (a registration is ``register`` +
   ``save``; few of them at 100,000, where one takes seconds), and its lookups.
3. **Targets** (at the largest size, through the actor): a registration under 10 ms, a lookup
   under 2 ms (medians; the p99 is printed beside them). PASS/FAIL each, then the ratio
   JSON-store registration / database registration (in-process, SQLite) at the largest size
   both reached, last.

Usage::

    python scripts/bench_registry.py [--sizes 10000,100000,1000000] [--no-postgres]
        [--registrations 500] [--lookups 2000] [--json-sizes 10000,100000] [--json OUT]
"""

from __future__ import annotations

import os

os.environ["RAY_AUTH_MODE"] = "disabled"  # a local, loopback-only Ray: no token to set up
os.environ.pop("MTP_DATABASE_URL", None)  # the backends are chosen below

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# the checkout's packages, also those an editable install made before they existed
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import hashlib  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from functools import partial  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import ray  # noqa: E402
from bench_common import load_average, machine, machine_line, ratio, write_json  # noqa: E402
from sqlalchemy import Connection, text  # noqa: E402

from consistency.actors import REGISTRY_NAME, get_result_registry  # noqa: E402
from consistency.store import RegistryEntry, RegistryStore, _row  # noqa: E402
from database import Database, open_database  # noqa: E402
from database.schema import RESULTS  # noqa: E402
from mtp_core.hashing import canonical_json  # noqa: E402
from mtp_core.ray_env import NAMESPACE  # noqa: E402
from trainer.result import TrainingResult  # noqa: E402

logger = logging.getLogger("bench_registry")
REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "7b1d146"  # the last consistency/store.py with the JSON-file registry
TARGET_REGISTER_S = 0.010
TARGET_LOOKUP_S = 0.002
FILL_CHUNK = 10_000
NODE_ID = "a3c1e5f0b7d94c2e8f6a1b3d5c7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a"  # a Ray node id's form


# ---------------------------------------------------------------------------------------------
# Entries


def training_result() -> dict[str, Any]:
    """A real-looking ``TrainingResult`` as JSON (a digits MLP run, one epoch of history)."""
    run = "/mnt/mtp-storage/digits-mlp-3f9c2a"
    metrics = {"val_loss": 0.05004497073736031, "val_accuracy": 0.9860724233983287,
               "val_precision": 0.9857841394025606, "val_recall": 0.9858081855235555,
               "val_f1": 0.9855975675252783}
    raw = {
        "task_id": "digits-mlp", "task_name": "digits-mlp", "run_name": "digits-mlp-3f9c2a",
        "run_dir": run, "strategy": "ddp",
        "data_hash": "da3d93acec0f9bbfb58ea59bd7c20155067f887ddc765f5b9f2e547c052fc29f",
        "task_kind": "classification", "num_classes": 10, "sample_shape": [1, 8, 8],
        "feature_columns": [], "feature_types": [], "class_names": [],
        "seed": 5933585672452135571, "world_size": 2, "num_parameters": 17226,
        "epochs_completed": 15, "stopped_early": False, "monitor_metric": "val_accuracy",
        "monitor_mode": "max", "best_epoch": 11, "best_metrics": metrics,
        "final_metrics": {**metrics, "val_loss": 0.04393581479455767},
        "history": [{"epoch": 1, "train_loss": 1.750724240702283,
                     "metrics": {"val_loss": 0.9223214753158909,
                                 "val_accuracy": 0.8467966573816156,
                                 "val_precision": 0.8755813743018994,
                                 "val_recall": 0.8474729728895003,
                                 "val_f1": 0.8096313000230572},
                     "train_samples": 1438, "train_time_s": 0.09152810799969302,
                     "samples_per_s": 15711.02070639134, "epoch_time_s": 0.11270427703857422,
                     "is_best": True}],
        "weights_hash": "2ae4ce10f722e15d618d7df187ef2ef7fa4b62a90fcd1b6df630f765f6fd5b8c",
        "model_path": f"{run}/model.safetensors", "checkpoint_dir": f"{run}/checkpoints",
        "best_checkpoint": f"{run}/checkpoints/ckpt-000011",
        "latest_checkpoint": f"{run}/checkpoints/ckpt-000015",
        "resumed_from_epoch": None, "attempts": 1,
        "cache_key": "10e3968337184ed3d79acd31382f46e8608778a9c5bc1d9660e5beb5e697e90e",
        "cache_hit": None, "test_metrics": {}, "test": None, "diverged": None,
        "tracking": None,
        "timings": {"wall_time_s": 30.655990839004517, "startup_s": 27.22754716873169,
                    "train_time_s": 1.6593857884981844, "samples_per_s": 12998.785544331906,
                    "steady_samples_per_s": 13281.776612392283,
                    "phases": {"imports": 3.5137, "data": 0.0285, "cache": 1.9193,
                               "ray": 5.7939, "control_plane": 1.9582,
                               "worker_start": 14.0141, "first_epoch": 0.1127,
                               "epochs": 2.7904, "teardown": 0.5148, "result": 0.0134}},
        "versions": {"mtp": "0.1.0", "torch": "2.13.0+cpu", "ray": "2.60.0",
                     "numpy": "2.4.6", "python": "3.11.7"},
        "created_at": "2026-11-29T11:12:45+00:00",
        "task": {  # the task as it was run (examples/digits_mlp.yaml)
            "name": "digits-mlp", "id": None,
            "description": "scikit-learn digits, MLP, 2 workers (gloo on CPU)",
            "model": {"type": "mlp", "hidden_sizes": [128, 64], "activation": "relu",
                      "dropout": 0.1},
            "dataset": {"standardize": True, "image_shape": None, "max_samples": None,
                        "source": "sklearn", "name": "digits"},
            "hyperparameters": {"weight_decay": 0.0001, "momentum": 0.0, "nesterov": False,
                                "betas": [0.9, 0.999], "eps": 1e-08, "grad_clip_norm": None},
            "training": {"epochs": 15, "batch_size": 32, "learning_rate": 0.002,
                         "optimizer": "adam", "loss": "auto", "validation_split": 0.2,
                         "early_stopping": {"patience": 5, "min_delta": 0.0},
                         "monitor": {"metric": "auto", "mode": "auto"},
                         "checkpoint": {"every_n_epochs": 1, "every_minutes": 0.0,
                                        "on_best": True, "keep_last": 2, "keep_best": True,
                                        "compression": "none"}},
            "resources": {"num_workers": 2, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0,
                          "use_gpu": False},
            "failure": {"max_failures": 3},
            "fault_tolerance": {"heartbeat_interval_s": 1.0, "node_failure_timeout_s": 5.0,
                                "warning_missed_heartbeats": 2,
                                "critical_missed_heartbeats": 3,
                                "enable_auto_recovery": True, "max_retry_attempts": 3,
                                "retry_backoff_s": 1.0,
                                "migration_strategy": "load_balanced",
                                "preempt_on_detection": True},
            "strategy": "ddp", "ps": None,
            "consistency": {"deterministic": {"enabled": True, "global_seed": None,
                                              "use_task_based_seed": True},
                            "cache": {"enabled": True, "ttl_hours": 168.0,
                                      "max_cache_size": 1000},
                            "sharing": {"enabled": True},
                            "consensus": {"tolerance_percentage": 0.1,
                                          "min_consensus_nodes": 2,
                                          "confidence_threshold": 0.5}}},
    }
    raw = {k: v for k, v in raw.items() if k in TrainingResult.model_fields}
    out: dict[str, Any] = TrainingResult.model_validate(raw).model_dump(mode="json")
    return out


def key_of(prefix: str, i: int) -> str:
    """A cache key (64 hex digits, as ``identity.cache_key`` makes)."""
    return hashlib.sha256(f"{prefix}-{i}".encode()).hexdigest()


def make_entry(result: dict[str, Any], key: str, *, construct: bool = False,
               cls: Any = RegistryEntry) -> Any:
    fields = {"key": key, "task_id": result["task_id"], "result": result,
              "model_path": result["model_path"], "run_dir": result["run_dir"],
              "shared_at": time.time(), "expires_at": None, "verified": False,
              "verifications": [], "node_id": NODE_ID}
    return cls.model_construct(**fields) if construct else cls(**fields)


# ---------------------------------------------------------------------------------------------
# Timing helpers


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def timed(call: Callable[[Any], Any], items: Sequence[Any]) -> dict[str, Any]:
    """``call(item)`` for each item, one after another; rate and latency percentiles."""
    lat: list[float] = []
    t_all = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        call(item)
        lat.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_all
    return {"n": len(lat), "per_s": len(lat) / wall, "p50_ms": pct(lat, 50) * 1e3,
            "p99_ms": pct(lat, 99) * 1e3, "mean_ms": float(np.mean(lat)) * 1e3}


# ---------------------------------------------------------------------------------------------
# Filling


def fill(db: Database, store: RegistryStore, result: dict[str, Any], start: int, stop: int,
         method: str, limit_s: float, final: int) -> dict[str, Any]:
    """Entries ``start..stop-1`` (keys ``bench-<i>``): ``add_missing`` per 10,000, or multi-row
    ``INSERT``s of the same rows (``_row``, as the store writes them). ``auto`` starts with
    ``add_missing`` and switches for good when the projected fill to ``final`` passes
    ``limit_s``."""
    t0 = time.perf_counter()
    used = set()
    done = start
    while done < stop:
        end = min(done + FILL_CHUNK, stop)
        t_chunk = time.perf_counter()
        if method in ("auto", "add_missing"):
            entries = [make_entry(result, key_of("bench", i), construct=True)
                       for i in range(done, end)]
            n = store.add_missing(entries)
            used.add("add_missing")
        else:
            bare = {k: v for k, v in make_entry(result, "0" * 64, construct=True)
                    .model_dump(mode="json").items() if k != "verifications"}
            rows = [_row({**bare, "key": key_of("bench", i)}) for i in range(done, end)]
            db.write(partial(_insert_rows, rows), f"fill {len(rows)}")
            n = len(rows)
            used.add("multirow")
        assert n == end - done, f"filled {n} of {end - done}"
        rate = (end - done) / (time.perf_counter() - t_chunk)
        if method == "auto" and (final - end) / rate > limit_s:
            logger.info("fill by add_missing at %.0f entries/s: %.0f s projected for the "
                        "remaining %d entries > %.0f s; switching to multi-row INSERTs",
                        rate, (final - end) / rate, final - end, limit_s)
            method = "multirow"
        done = end
        if (done - start) % 100_000 == 0:
            logger.info("filled %d / %d (%.0f s)", done, stop, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    return {"from": start, "to": stop, "seconds": seconds,
            "entries_per_s": (stop - start) / seconds if seconds > 0 else float("nan"),
            "method": "+".join(sorted(used)) or "none", "next_method": method}


def _insert_rows(rows: list[dict[str, Any]], conn: Connection) -> None:
    conn.execute(RESULTS.insert(), rows)


def _nothing(conn: Connection) -> None:
    """An empty transaction: what a connection, its PRAGMAs, BEGIN and COMMIT cost."""


def db_bytes(db: Database) -> dict[str, Any]:
    if db.is_sqlite:
        assert db.path is not None
        conn = sqlite3.connect(db.path, isolation_level=None, timeout=30)
        try:  # fold the WAL into the file (outside a transaction), then measure it
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()
        wal = db.path.with_name(db.path.name + "-wal")
        return {"bytes": db.path.stat().st_size,
                "wal_bytes": wal.stat().st_size if wal.exists() else 0}

    def sizes(conn: Any) -> dict[str, Any]:
        q = ("SELECT pg_total_relation_size('mtp_results') + "
             "pg_total_relation_size('mtp_verifications') + pg_total_relation_size('mtp_claims')")
        return {"bytes": int(conn.execute(text(q)).scalar_one()),
                "database_bytes": int(conn.execute(
                    text("SELECT pg_database_size(current_database())")).scalar_one())}

    return db.read(sizes, "sizes")


# ---------------------------------------------------------------------------------------------
# One size on one backend


def measure(backend: str, db: Database, store: RegistryStore, actor: Any,
            result: dict[str, Any], size: int, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(size)
    n_reg, n_look = args.registrations, args.lookups
    out: dict[str, Any] = {"backend": backend, "size": size}
    out.update(db_bytes(db))
    out["entries"] = len(store)
    out["bytes_per_entry"] = out["bytes"] / out["entries"]

    def hits() -> list[str]:
        return [key_of("bench", rng.randrange(size)) for _ in range(n_look)]

    def misses() -> list[str]:
        return [key_of("miss", rng.randrange(10**12)) for _ in range(n_look)]

    # through the actor, sequential ray.get from the driver
    for k in hits()[:50] + misses()[:50]:  # warm up: the actor, its connection, the pages
        ray.get(actor.lookup.remote(k))
    ray.get(actor.register.remote(key_of(f"warm-a-{backend}", size),
                                  make_entry(result, key_of(f"warm-a-{backend}", size))))
    a: dict[str, Any] = {}
    a["ping"] = timed(lambda _: ray.get(actor.ping.remote()), range(n_look))
    entries = [make_entry(result, key_of(f"new-a-{backend}-{size}", i)) for i in range(n_reg)]
    a["register"] = timed(lambda e: ray.get(actor.register.remote(e.key, e)), entries)
    keys = hits()
    found = []
    a["lookup_hit"] = timed(lambda k: found.append(ray.get(actor.lookup.remote(k))), keys)
    assert all(f is not None for f in found), "an existing key missed"
    keys = misses()
    found = []
    a["lookup_miss"] = timed(lambda k: found.append(ray.get(actor.lookup.remote(k))), keys)
    assert all(f is None for f in found), "a missing key hit"
    out["actor"] = a

    # in-process on the store, no Ray
    store.register(key_of(f"warm-i-{backend}", size),
                   make_entry(result, key_of(f"warm-i-{backend}", size)))
    p: dict[str, Any] = {}
    p["empty_read_txn"] = timed(lambda _: db.read(_nothing), range(n_look))
    p["empty_write_txn"] = timed(lambda _: db.write(_nothing), range(n_reg))
    entries = [make_entry(result, key_of(f"new-i-{backend}-{size}", i)) for i in range(n_reg)]
    p["register"] = timed(lambda e: store.register(e.key, e), entries)
    p["lookup_hit"] = timed(store.lookup, hits())
    p["lookup_miss"] = timed(store.lookup, misses())
    out["inprocess"] = p
    logger.info("%s %d: actor register p50 %.2f ms, lookup hit p50 %.2f ms; in-process "
                "register p50 %.2f ms, lookup hit p50 %.2f ms; %.0f bytes/entry", backend,
                size, a["register"]["p50_ms"], a["lookup_hit"]["p50_ms"],
                p["register"]["p50_ms"], p["lookup_hit"]["p50_ms"], out["bytes_per_entry"])
    return out


def run_backend(backend: str, storage: Path, url: str | None, result: dict[str, Any],
                args: argparse.Namespace, fill_method: str) -> dict[str, Any]:
    db = open_database(storage, override=url)
    store = RegistryStore(db)
    actor = get_result_registry(storage, url)  # as every driver gets it
    assert ray.get(actor.ping.remote())
    fills, scales = [], []
    filled = 0
    method = fill_method
    try:
        for size in args.sizes:
            f = fill(db, store, result, filled, size, method, args.fill_limit_s,
                     max(args.sizes))
            method = f.pop("next_method")
            fills.append(f)
            logger.info("%s: filled %d..%d in %.1f s (%.0f entries/s, %s)", backend,
                        f["from"], f["to"], f["seconds"], f["entries_per_s"], f["method"])
            filled = size
            scales.append(measure(backend, db, store, actor, result, size, args))
    finally:
        ray.kill(actor, no_restart=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the name is free before the next backend's
            try:
                ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
            except ValueError:
                break
            time.sleep(0.1)
        db.close()
    return {"backend": backend, "where": db.where, "fills": fills, "scales": scales}


# ---------------------------------------------------------------------------------------------
# The JSON-file baseline


def old_store_module() -> types.ModuleType:
    """``consistency/store.py`` of commit 7b1d146 (the JSON-file registry), unchanged."""
    src = subprocess.run(["git", "show", f"{OLD_COMMIT}:consistency/store.py"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    name = "bench_registry_old_store"
    mod = types.ModuleType(name)
    mod.__file__ = f"{OLD_COMMIT}:consistency/store.py"
    sys.modules[name] = mod  # dataclasses and pydantic resolve names through it
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # noqa: S102 - our own history
    return mod


def json_size(old: types.ModuleType, result: dict[str, Any], root: Path, size: int,
              n_reg: int, lookups: int) -> dict[str, Any]:
    store = old.RegistryStore(claim_timeout_s=120.0)
    store._entries = {k: make_entry(result, k, construct=True, cls=old.RegistryEntry)
                      for k in (key_of("bench", i) for i in range(size))}
    path = root / f"json-{size}" / "_registry" / "registry.json"
    path.parent.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        store.save(path)
        first_save = time.perf_counter() - t0
        file_bytes = path.stat().st_size
        entries = [make_entry(result, key_of(f"new-json-{size}", i)) for i in range(n_reg)]
        # what the old actor's register did: store.register, then store.save(path)
        reg = timed(lambda e: (store.register(e.key, e), store.save(path)), entries)
        rng = random.Random(size)
        look_hit = timed(store.lookup, [key_of("bench", rng.randrange(size))
                                        for _ in range(lookups)])
        look_miss = timed(store.lookup, [key_of("miss", rng.randrange(10**12))
                                         for _ in range(lookups)])
    finally:
        shutil.rmtree(path.parent.parent, ignore_errors=True)
    logger.info("JSON store %d: save %.2f s, register+save p50 %.0f ms, file %.0f MiB",
                size, first_save, reg["p50_ms"], file_bytes / 2**20)
    return {"size": size, "first_save_s": first_save, "file_bytes": file_bytes,
            "bytes_per_entry": file_bytes / size, "register": reg,
            "lookup_hit": look_hit, "lookup_miss": look_miss}


def run_json(result: dict[str, Any], root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    old = old_store_module()
    return [json_size(old, result, root, size, n_reg, args.lookups)
            for size, n_reg in zip(args.json_sizes, args.json_registrations, strict=True)]


# ---------------------------------------------------------------------------------------------


def ints(text_: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text_.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sizes", type=ints, default=[10_000, 100_000, 1_000_000])
    p.add_argument("--no-postgres", action="store_true", help="SQLite only")
    p.add_argument("--registrations", type=int, default=500, help="per size, backend and mode")
    p.add_argument("--lookups", type=int, default=2_000,
                   help="per size, backend and mode, each of hits and misses")
    p.add_argument("--json-sizes", type=ints, default=[10_000, 100_000])
    p.add_argument("--json-registrations", type=ints, default=[10, 3],
                   help="registrations (each a whole-file save) per --json-sizes entry")
    p.add_argument("--fill-limit-s", type=float, default=300.0,
                   help="fill by multi-row INSERTs once add_missing projects longer")
    p.add_argument("--tmp", type=Path, default=None, help="where the databases go (/tmp)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    args.sizes = sorted(args.sizes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    root = Path(tempfile.mkdtemp(prefix="mtp-bench-registry-", dir=args.tmp))
    need = max(args.sizes) * 5000 * 2 * 1.3  # about 4.5 KB a row with its index, two backends
    free = shutil.disk_usage(root).free
    logger.info("working in %s: %.1f GB free, about %.1f GB needed", root, free / 1e9,
                need / 1e9)
    if free < need:
        shutil.rmtree(root, ignore_errors=True)
        raise SystemExit(f"bench_registry: {free / 1e9:.1f} GB free under {root.parent}, "
                         f"about {need / 1e9:.1f} GB needed; pass --tmp or smaller --sizes")

    pg = None
    pg_url = None
    if not args.no_postgres:
        sys.path.insert(0, str(REPO))
        from tests.support.postgres import PostgresServer, PostgresUnavailable
        try:
            pg = PostgresServer()
        except PostgresUnavailable as err:
            logger.warning("no PostgreSQL (%s); SQLite only", err)

    report: dict[str, Any] = {"machine": machine(), "load_before": load_average(),
                              "argv": sys.argv[1:], "sizes": args.sizes}
    result = training_result()
    sample = make_entry(result, key_of("bench", 0)).model_dump(mode="json")
    report["result_json_bytes"] = len(canonical_json(result))
    report["entry_json_bytes"] = len(canonical_json(sample))
    t0 = time.perf_counter()
    ray.init(num_cpus=2, namespace=NAMESPACE, include_dashboard=False,
             _node_ip_address="127.0.0.1", logging_level=logging.WARNING)
    report["ray_start_s"] = time.perf_counter() - t0
    try:
        backends = [run_backend("sqlite", root / "sqlite", None, result, args, "auto")]
        if pg is not None:
            pg.start()
            try:
                pg_url = pg.create_database("bench_registry")
                backends.append(run_backend("postgresql", root / "pg-storage", pg_url, result,
                                            args, "auto"))
            finally:
                pg.stop()
        report["backends"] = backends
        report["json_store"] = run_json(result, root, args)
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    report["load_after"] = load_average()

    # targets, at the largest size, through the actor
    targets = []
    for b in report["backends"]:
        top = b["scales"][-1]
        for what, figure, limit in (("registration", top["actor"]["register"], TARGET_REGISTER_S),
                                    ("lookup (hit)", top["actor"]["lookup_hit"], TARGET_LOOKUP_S),
                                    ("lookup (miss)", top["actor"]["lookup_miss"],
                                     TARGET_LOOKUP_S)):
            targets.append({"backend": b["backend"], "size": top["size"], "what": what,
                            "p50_ms": figure["p50_ms"], "p99_ms": figure["p99_ms"],
                            "target_ms": limit * 1e3,
                            "pass": figure["p50_ms"] < limit * 1e3})
    report["targets"] = targets
    sqlite_by = {s["size"]: s for s in report["backends"][0]["scales"]}
    json_by = {j["size"]: j for j in report["json_store"]}
    common = sorted(set(sqlite_by) & set(json_by))
    if common:
        at = common[-1]
        report["ratio"] = {"size": at, "json_register_ms": json_by[at]["register"]["p50_ms"],
                           "db_register_ms": sqlite_by[at]["inprocess"]["register"]["p50_ms"]}
        report["ratio"]["value"] = ratio(report["ratio"]["json_register_ms"],
                                         report["ratio"]["db_register_ms"])
    if args.json:
        write_json(args.json, report)

    print(machine_line(report["machine"], report["load_before"], report["load_after"]))
    print(f"entry: {report['entry_json_bytes']:,} bytes of JSON (result "
          f"{report['result_json_bytes']:,}); {args.registrations} registrations and "
          f"{args.lookups} + {args.lookups} lookups per size and mode, sequential")
    for b in report["backends"]:
        for f in b["fills"]:
            print(f"{b['backend']}: fill {f['from']:,} -> {f['to']:,}: {f['seconds']:.1f} s "
                  f"({f['entries_per_s']:,.0f} entries/s, {f['method']})")
        for s in b["scales"]:
            a, q = s["actor"], s["inprocess"]
            print(f"{b['backend']} {s['size']:>9,}: {s['bytes'] / 2**20:8.1f} MiB, "
                  f"{s['bytes_per_entry']:,.0f} B/entry | actor: register "
                  f"{a['register']['per_s']:,.0f}/s p50 {a['register']['p50_ms']:.2f} p99 "
                  f"{a['register']['p99_ms']:.2f} ms; lookup hit "
                  f"{a['lookup_hit']['per_s']:,.0f}/s p50 {a['lookup_hit']['p50_ms']:.2f} p99 "
                  f"{a['lookup_hit']['p99_ms']:.2f} ms; miss {a['lookup_miss']['per_s']:,.0f}/s "
                  f"p50 {a['lookup_miss']['p50_ms']:.2f} p99 {a['lookup_miss']['p99_ms']:.2f} ms;"
                  f" ping p50 {a['ping']['p50_ms']:.2f} ms")
            print(f"{'':>{len(b['backend']) + 11}} in-process: register "
                  f"{q['register']['per_s']:,.0f}/s p50 {q['register']['p50_ms']:.2f} p99 "
                  f"{q['register']['p99_ms']:.2f} ms; lookup hit {q['lookup_hit']['per_s']:,.0f}"
                  f"/s p50 {q['lookup_hit']['p50_ms']:.2f} ms; miss "
                  f"{q['lookup_miss']['per_s']:,.0f}/s p50 {q['lookup_miss']['p50_ms']:.2f} ms; "
                  f"empty txn read {q['empty_read_txn']['p50_ms']:.2f} / write "
                  f"{q['empty_write_txn']['p50_ms']:.2f} ms")
    for j in report["json_store"]:
        print(f"JSON store {j['size']:>9,}: file {j['file_bytes'] / 2**20:.1f} MiB, first save "
              f"{j['first_save_s']:.2f} s; register+save {j['register']['per_s']:.3f}/s p50 "
              f"{j['register']['p50_ms']:,.0f} ms (n={j['register']['n']}); lookup hit "
              f"{j['lookup_hit']['per_s']:,.0f}/s, miss {j['lookup_miss']['per_s']:,.0f}/s")
    for t in targets:
        print(f"target {t['backend']} {t['size']:,} {t['what']} < {t['target_ms']:g} ms "
              f"(actor, p50): {t['p50_ms']:.2f} ms (p99 {t['p99_ms']:.2f}) "
              f"{'PASS' if t['pass'] else 'FAIL'}")
    if "ratio" in report:
        r = report["ratio"]
        print(f"ratio at {r['size']:,} entries: JSON store register+save "
              f"{r['json_register_ms']:,.1f} ms / SQLite register {r['db_register_ms']:.2f} ms "
              f"(in-process, p50) = {r['value']:,.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
