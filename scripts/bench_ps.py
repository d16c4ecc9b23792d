"""Parameter-server throughput against DDP, a plain loop and a naive parameter server, in one run.

For MLPs of about 100k, 1M and 10M parameters on a synthetic classification task (256 features,
10 classes, per-worker batch 128, Adam), and the 10M model again with a per-worker batch of 16
(``10m-b16``: communication-bound), training samples/s of:

(a) plain: a single-process PyTorch loop with 2 threads (``bench_common.run_plain``);
(b) ddp: ``trainer.train`` with ``strategy: ddp``, 2 workers x 1 CPU (Ray Train, gloo);
(c) ps-sync: ``trainer.train`` with ``strategy: parameter_server``, ``mode: sync``, 2 workers
    x 1 CPU, 2 shards;
(d) ps-async: the same with ``mode: async``, ``max_staleness: 4``;
(e) naive: a parameter server in the style of Ray's documented example (one actor holding the
    whole model; every step each of 2 worker actors gets the whole weights as a dict of numpy
    arrays, sets them, computes gradients and returns them as a list of numpy arrays; the
    driver passes them to ``apply_gradients``, which returns the new weights).

(b)-(d) report steady throughput (median of epochs 2..N of the training steps); (a) the same
measure; (e) the median over windows of ``--naive-steps`` steps after one warm-up window. Ray is
started once before anything is measured. Ratios printed last: ps-sync/ddp, ps-async/ddp and
ps-sync/naive per size.

Usage::

    python scripts/bench_ps.py [--epochs 3] [--sizes 100k,1m,10m,10m-b16] [--json OUT]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from bench_common import load_average, machine, machine_line, median, ratio, run_plain, write_json

from mtp_core.spec import TaskKind
from trainer import TrainingTask, connect, parse_task, prepare, train
from trainer.data import task_split
from trainer.loop import build_loss
from trainer.models import build_model, count_parameters

logger = logging.getLogger("bench_ps")

FEATURES = 256
BATCH = 128
WORKERS = 2
SIZES: dict[str, dict[str, Any]] = {
    "100k": {"hidden": [256, 128], "samples": 24_000},
    "1m": {"hidden": [1024, 768], "samples": 16_000},
    "10m": {"hidden": [2560, 2560, 1024], "samples": 6_000},
    # the same 10M model with a per-worker batch of 16: little compute per step, so the step
    # time is mostly moving 40 MB of gradients and parameters (the communication-bound case)
    "10m-b16": {"hidden": [2560, 2560, 1024], "samples": 3_000, "batch": 16},
}


def make_task(size: str, epochs: int, strategy: str, mode: str | None = None) -> TrainingTask:
    cfg = SIZES[size]
    raw: dict[str, Any] = {
        "name": f"bench-ps-{size}-{strategy}-{mode or 'x'}",
        "model": {"type": "mlp", "hidden_sizes": cfg["hidden"]},
        "dataset": {"source": "synthetic", "kind": "classification", "n_samples": cfg["samples"],
                    "n_features": FEATURES, "n_classes": 10, "n_informative": 32, "seed": 7},
        "training": {"epochs": epochs, "batch_size": cfg.get("batch", BATCH),
                     "learning_rate": 0.001, "optimizer": "adam",
                     "checkpoint": {"every_n_epochs": 0, "on_best": False}},
        "resources": {"num_workers": WORKERS, "cpus_per_worker": 1},
        "strategy": strategy,
    }
    if strategy == "parameter_server":
        raw["ps"] = {"mode": mode, "num_shards": 2, "max_staleness": 4}
    return parse_task(raw)


def run_mtp(task: TrainingTask) -> dict[str, Any]:
    storage = Path(tempfile.mkdtemp(prefix="mtp-bench-ps-"))
    try:
        result = train(task, storage_path=storage, use_cache=False)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return {"steady_samples_per_s": result.timings.steady_samples_per_s,
            "wall_s": result.timings.wall_time_s,
            "epoch_samples_per_s": [r.samples_per_s for r in result.history],
            "val_accuracy": result.final_metrics.get("val_accuracy")}


# ---------------------------------------------------------------------------------------------
# (e) the naive parameter server of Ray's documentation


def _weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


class NaiveServer:
    def __init__(self, task: dict[str, Any], shape: tuple[int, ...], classes: int) -> None:
        spec = parse_task(task)
        torch.manual_seed(0)
        self.model = build_model(spec.model, shape, TaskKind.CLASSIFICATION, classes,
                                 np.zeros(shape, np.float32), np.ones(shape, np.float32))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=spec.training.learning_rate)

    def get_weights(self) -> dict[str, np.ndarray]:
        return _weights(self.model)

    def apply_gradients(self, *gradients: list[np.ndarray]) -> dict[str, np.ndarray]:
        summed = [np.stack(g).sum(axis=0) / len(g) for g in zip(*gradients, strict=True)]
        self.optimizer.zero_grad()
        for g, p in zip(summed, self.model.parameters(), strict=True):
            p.grad = torch.from_numpy(g)
        self.optimizer.step()
        return _weights(self.model)


class NaiveWorker:
    def __init__(self, task: dict[str, Any], x: np.ndarray, y: np.ndarray, classes: int) -> None:
        torch.set_num_threads(1)
        spec = parse_task(task)
        self.batch = spec.training.batch_size
        shape = tuple(x.shape[1:])
        self.model = build_model(spec.model, shape, TaskKind.CLASSIFICATION, classes,
                                 np.zeros(shape, np.float32), np.ones(shape, np.float32))
        self.loss_fn = build_loss(spec, TaskKind.CLASSIFICATION)
        self.x, self.y = torch.from_numpy(x.copy()), torch.from_numpy(y.copy())
        self.pos = 0

    def compute_gradients(self, weights: dict[str, np.ndarray]) -> list[np.ndarray]:
        with warnings.catch_warnings():  # read-only arrays from the object store, copied here
            warnings.simplefilter("ignore", UserWarning)
            self.model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        b = self.batch
        if self.pos + b > len(self.x):
            self.pos = 0
        xb, yb = self.x[self.pos : self.pos + b], self.y[self.pos : self.pos + b]
        self.pos += b
        self.model.zero_grad()
        self.loss_fn(self.model(xb), yb).backward()
        return [p.grad.detach().numpy().copy() for p in self.model.parameters()
                if p.grad is not None]


def run_naive(task: TrainingTask, steps: int, windows: int) -> dict[str, Any]:
    prepared = prepare(task)
    ds = prepared.dataset
    train_idx = task_split(task, ds.targets, ds.kind, prepared.seed).train
    raw = task.canonical_dict()
    shape = ds.sample_shape
    server = ray.remote(NaiveServer).options(num_cpus=0).remote(raw, shape, ds.num_classes)
    shards = np.array_split(train_idx, WORKERS)
    workers = [ray.remote(NaiveWorker).options(num_cpus=1).remote(
        raw, ds.features[s], ds.targets[s], ds.num_classes) for s in shards]
    weights = server.get_weights.remote()
    rates = []
    try:
        for w in range(windows + 1):  # window 0 warms up
            t0 = time.perf_counter()
            for _ in range(steps):
                grads = [wk.compute_gradients.remote(weights) for wk in workers]
                weights = server.apply_gradients.remote(*grads)
            ray.get(weights)
            dt = time.perf_counter() - t0
            if w > 0:
                rates.append(steps * task.training.batch_size * WORKERS / dt)
    finally:
        for h in [server, *workers]:
            ray.kill(h)
    return {"steady_samples_per_s": median(rates), "window_samples_per_s": rates}


# ---------------------------------------------------------------------------------------------


def run_benchmark(sizes: Sequence[str], epochs: int, naive_steps: int,
                  naive_windows: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    connect()
    report: dict[str, Any] = {"machine": machine(), "ray_start_s": time.perf_counter() - t0,
                              "load_before": load_average(), "sizes": {}}
    for size in sizes:
        ddp_task = make_task(size, epochs, "ddp")
        params = count_parameters(build_model(
            ddp_task.model, (FEATURES,), TaskKind.CLASSIFICATION, 10,
            np.zeros(FEATURES, np.float32), np.ones(FEATURES, np.float32)))
        row: dict[str, Any] = {"num_parameters": params}
        logger.info("size %s: %d parameters", size, params)
        plain = run_plain(make_task(size, epochs, "ddp"))
        row["plain"] = {"steady_samples_per_s": plain.steady_samples_per_s}
        row["ddp"] = run_mtp(ddp_task)
        row["ps_sync"] = run_mtp(make_task(size, epochs, "parameter_server", "sync"))
        row["ps_async"] = run_mtp(make_task(size, epochs, "parameter_server", "async"))
        row["naive"] = run_naive(ddp_task, naive_steps, naive_windows)
        for k in ("plain", "ddp", "ps_sync", "ps_async", "naive"):
            logger.info("  %-8s %10.0f samples/s", k, row[k]["steady_samples_per_s"])
        report["sizes"][size] = row
    report["load_after"] = load_average()
    return report


def format_report(r: dict[str, Any]) -> str:
    lines = [machine_line(r["machine"], r["load_before"], r["load_after"]), "",
             f"{'size':>5} {'params':>11} {'plain':>9} {'ddp':>9} {'ps-sync':>9} "
             f"{'ps-async':>9} {'naive':>9}   (training samples/s)"]
    for size, row in r["sizes"].items():
        v = [row[k]["steady_samples_per_s"] for k in ("plain", "ddp", "ps_sync", "ps_async",
                                                        "naive")]
        lines.append(f"{size:>5} {row['num_parameters']:>11,} " +
                     " ".join(f"{x:>9,.0f}" for x in v))
    lines.append("")
    for size, row in r["sizes"].items():
        s = {k: row[k]["steady_samples_per_s"] for k in row if isinstance(row[k], dict)}
        lines.append(f"{size:>5}: ps-sync/ddp {ratio(s['ps_sync'], s['ddp']):.2f}  "
                     f"ps-async/ddp {ratio(s['ps_async'], s['ddp']):.2f}  "
                     f"ps-sync/naive {ratio(s['ps_sync'], s['naive']):.2f}  "
                     f"ddp/plain {ratio(s['ddp'], s['plain']):.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--sizes", default=",".join(SIZES))
    p.add_argument("--naive-steps", type=int, default=20)
    p.add_argument("--naive-windows", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        if s not in SIZES:
            p.error(f"--sizes: unknown size {s!r}; allowed: {', '.join(SIZES)}")
    report = run_benchmark(sizes, args.epochs, args.naive_steps, args.naive_windows)
    if args.json:
        write_json(args.json, report)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
