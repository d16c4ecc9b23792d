"""Result reuse: cache-hit latency against training, registry lookup rate, data-hash speed.

One run, three measurements, each against its baseline:

1. **Cache hit vs training.** The digits MLP task (``examples/digits_mlp.yaml``, 5 epochs) is
   trained once with ``trainer.train`` (fresh storage, Ray already up), then asked for again
   ``--hits`` times: from the local cache (same storage path) and from the registry actor (a
   new, empty storage path each time, so the local cache misses). Medians; ratio training /
   hit.
2. **Registry lookups/s with 100,000 entries.** A platform database with ``--entries`` entries
   (each a copy of the real result above under its own key) is filled once, the
   ``mtp-result-registry`` actor opens it, and ``--clients`` client actors look up random keys
   (hits and misses) concurrently, each with ``--lookups`` sequential ``ray.get`` calls, then
   again with 64 lookups in flight per client. Baseline: ``RegistryStore.lookup`` in-process
   on the same entries (no Ray).
3. **data_hash throughput.** ``consistency.hashing.data_hash`` over a ``--hash-mb`` MiB float32
   feature matrix plus int64 labels against ``hashlib.sha256`` over the same bytes.

Usage::

    python scripts/bench_cache.py [--hits 10] [--entries 100000] [--clients 4] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from bench_common import load_average, machine, machine_line, median, write_json

from consistency.actors import ResultRegistryActor
from consistency.store import RegistryEntry, RegistryStore
from database import open_database
from mtp_core.hashing import data_hash
from mtp_core.ray_env import NAMESPACE
from trainer import connect, load_task, train

logger = logging.getLogger("bench_cache")
REPO = Path(__file__).resolve().parents[1]


def bench_hits(hits: int) -> dict[str, Any]:
    task = load_task(REPO / "examples" / "digits_mlp.yaml",
                     ["training.epochs=5", "training.early_stopping.patience=0",
                      "name=bench-cache-digits"])
    storage = Path(tempfile.mkdtemp(prefix="mtp-bench-cache-"))
    t0 = time.perf_counter()
    first = train(task, storage_path=storage)
    train_s = time.perf_counter() - t0
    assert first.cache_hit is None, "the first run must train"
    local, shared = [], []
    for _ in range(hits):
        t0 = time.perf_counter()
        r = train(task, storage_path=storage)
        local.append(time.perf_counter() - t0)
        assert r.cache_hit == "local" and r.weights_hash == first.weights_hash
        t0 = time.perf_counter()
        r = train(task, storage_path=Path(tempfile.mkdtemp(prefix="mtp-bench-cache-b-")))
        shared.append(time.perf_counter() - t0)
        assert r.cache_hit == "registry" and r.weights_hash == first.weights_hash
    return {"train_s": train_s, "local_hit_s": median(local),
            "registry_hit_s": median(shared), "local_all": local,
            "registry_all": shared, "result": first.model_dump(mode="json"),
            "storage": str(storage)}


class LookupClient:
    def __init__(self, keys: list[str], seed: int) -> None:
        self.keys = keys
        self.rng = random.Random(seed)

    def run(self, registry: Any, n: int, in_flight: int) -> dict[str, float]:
        hits = 0
        t0 = time.perf_counter()
        done = 0
        while done < n:
            batch = min(in_flight, n - done)
            refs = [registry.lookup.remote(self.rng.choice(self.keys)) for _ in range(batch)]
            hits += sum(1 for e in ray.get(refs) if e is not None)
            done += batch
        return {"seconds": time.perf_counter() - t0, "lookups": n, "hits": hits}


def bench_registry(template: dict[str, Any], entries: int, clients: int,
                   lookups: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="mtp-bench-registry-"))
    db = open_database(root)
    store = RegistryStore(db)
    keys = [hashlib.sha256(f"bench-{i}".encode()).hexdigest() for i in range(entries)]
    now = time.time()
    t0 = time.perf_counter()
    for start in range(0, entries, 10_000):
        store.add_missing([RegistryEntry(
            key=k, task_id=template["task_id"], result=template,
            model_path=template["model_path"], run_dir=template["run_dir"], shared_at=now,
            node_id="bench") for k in keys[start:start + 10_000]])
    fill_s = time.perf_counter() - t0
    assert db.path is not None
    size_mb = db.path.stat().st_size / 2**20

    # baseline: the same lookups in-process, no Ray
    probe = keys + [hashlib.sha256(f"miss-{i}".encode()).hexdigest() for i in range(entries // 4)]
    rng = random.Random(0)
    sample = [rng.choice(probe) for _ in range(200_000)]
    t0 = time.perf_counter()
    for k in sample:
        store.lookup(k)
    inproc = len(sample) / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    actor = ray.remote(ResultRegistryActor).options(
        name="mtp-result-registry-bench", namespace=NAMESPACE, num_cpus=0,
        max_concurrency=64).remote(str(db.url))
    assert ray.get(actor.ping.remote())
    load_s = time.perf_counter() - t0
    out: dict[str, Any] = {"entries": entries, "fill_s": fill_s, "database_mb": size_mb,
                           "actor_start_s": load_s,
                           "inprocess_lookups_per_s": inproc}
    workers = [ray.remote(LookupClient).options(num_cpus=0).remote(probe, i)
               for i in range(clients)]
    for label, in_flight in (("sequential", 1), ("pipelined_64", 64)):
        ray.get([w.run.remote(actor, 200, in_flight) for w in workers])  # warm up
        t0 = time.perf_counter()
        runs = ray.get([w.run.remote(actor, lookups, in_flight) for w in workers])
        wall = time.perf_counter() - t0
        total = sum(r["lookups"] for r in runs)
        out[label] = {"clients": clients, "lookups": total, "wall_s": wall,
                      "lookups_per_s": total / wall,
                      "hit_fraction": sum(r["hits"] for r in runs) / total}
    for h in [actor, *workers]:
        ray.kill(h)
    return out


def bench_hash(mb: int, repeats: int) -> dict[str, Any]:
    rows = mb * 2**20 // (256 * 4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 256), dtype=np.float32)
    y = rng.integers(0, 10, rows).astype(np.int64)
    nbytes = x.nbytes + y.nbytes
    ours, raw = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        data_hash(x, y)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        h = hashlib.sha256()
        h.update(x.reshape(-1).view(np.uint8).data)
        h.update(y.view(np.uint8).data)
        h.hexdigest()
        raw.append(time.perf_counter() - t0)
    gb = nbytes / 1e9
    return {"bytes": nbytes, "data_hash_gb_per_s": gb / median(ours),
            "sha256_gb_per_s": gb / median(raw)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hits", type=int, default=10)
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--lookups", type=int, default=2_000, help="per client and mode")
    p.add_argument("--hash-mb", type=int, default=1024)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    t0 = time.perf_counter()
    connect()
    report: dict[str, Any] = {"machine": machine(), "ray_start_s": time.perf_counter() - t0,
                              "load_before": load_average()}
    report["hits"] = bench_hits(args.hits)
    report["registry"] = bench_registry(report["hits"].pop("result"), args.entries,
                                        args.clients, args.lookups)
    report["hash"] = bench_hash(args.hash_mb, 3)
    report["load_after"] = load_average()
    if args.json:
        write_json(args.json, report)
    h, r, d = report["hits"], report["registry"], report["hash"]
    print(machine_line(report["machine"], report["load_before"], report["load_after"]))
    print(f"training (5 epochs digits MLP, 2 workers): {h['train_s']:.2f} s")
    print(f"local cache hit:  {h['local_hit_s'] * 1e3:.1f} ms   "
          f"registry hit: {h['registry_hit_s'] * 1e3:.1f} ms   (medians of {args.hits})")
    print(f"registry: {r['entries']:,} entries, database {r['database_mb']:.0f} MiB, actor "
          f"start {r['actor_start_s']:.1f} s; in-process lookups "
          f"{r['inprocess_lookups_per_s']:,.0f}/s")
    for label in ("sequential", "pipelined_64"):
        x = r[label]
        print(f"registry lookups, {x['clients']} clients, {label}: "
              f"{x['lookups_per_s']:,.0f}/s (hit fraction {x['hit_fraction']:.2f})")
    print(f"data_hash {d['data_hash_gb_per_s']:.2f} GB/s vs hashlib.sha256 "
          f"{d['sha256_gb_per_s']:.2f} GB/s over {d['bytes'] / 2**20:,.0f} MiB")
    print(f"ratios: training / local hit = {h['train_s'] / h['local_hit_s']:,.0f}x; "
          f"training / registry hit = {h['train_s'] / h['registry_hit_s']:,.0f}x; "
          f"data_hash / sha256 = {d['data_hash_gb_per_s'] / d['sha256_gb_per_s']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
