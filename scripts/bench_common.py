"""What the benchmarks share: the machine, medians and ratios, JSON output, a bounded wait, and
the plain PyTorch loop that is the baseline of bench_train and bench_ps.

Benchmarks import it as ``import bench_common``: a script run as ``python scripts/bench_x.py``
has scripts/ on ``sys.path`` already.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtp_core.atomic import atomic_write_text
from mtp_core.spec import TaskKind
from trainer import TrainingTask
from trainer.data import feature_stats, load_dataset, split_indices
from trainer.loop import build_loss
from trainer.models import build_model, count_parameters

__all__ = ["PLAIN_THREADS", "PlainRun", "load_average", "machine", "machine_line", "median",
           "ratio", "run_plain", "steady", "wait_until", "write_json"]

logger = logging.getLogger("bench_common")

PLAIN_THREADS = 2
_EVAL_CHUNK = 8192  # the platform's validation chunk (trainer/loop.py)
_PLAIN_SEED = 0  # the split/initialisation seed does not change the cost of a step


# ---------------------------------------------------------------------------------------------
# The machine


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model and the versions that matter (for docs/BENCHMARKS.md)."""
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import ray

    return {"nproc": os.cpu_count(), "memory_gib": round(mem_gib, 1), "cpu_model": cpu_model,
            "torch": torch.__version__, "ray": ray.__version__,
            "python": sys.version.split()[0]}


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages: these machines are shared, the load is quoted."""
    a, b, c = os.getloadavg()
    return (round(a, 2), round(b, 2), round(c, 2))


def machine_line(m: dict[str, Any], load_before: Sequence[float],
                 load_after: Sequence[float]) -> str:
    return (f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
            f"torch {m['torch']}, ray {m['ray']}; load average {tuple(load_before)} -> "
            f"{tuple(load_after)}")


# ---------------------------------------------------------------------------------------------
# Figures


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values (a configuration that did not run)."""
    return float(statistics.median(values)) if values else math.nan


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def steady(samples: int, times: Sequence[float]) -> float:
    """Median throughput of epochs 2..N (all epochs when there is only one)."""
    rest = list(times[1:]) or list(times)
    return median([samples / t for t in rest if t > 0])


def write_json(path: Path, report: Any) -> None:
    """Every measurement, atomically (a dataclass report as its fields)."""
    data = asdict(report) if is_dataclass(report) and not isinstance(report, type) else report
    atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")
    logger.info("measurements written to %s", path)


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str,
               interval_s: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned); TimeoutError after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


# ---------------------------------------------------------------------------------------------
# The plain PyTorch baseline


@dataclass
class PlainRun:
    """One run of the plain PyTorch loop."""

    load_s: float
    stats_s: float
    build_s: float
    startup_s: float
    train_times_s: list[float]
    val_times_s: list[float]
    samples_per_epoch: int
    num_samples: int
    num_parameters: int
    steady_samples_per_s: float
    wall_s: float
    final_val_accuracy: float


@torch.no_grad()
def _validate(model: torch.nn.Module, loss_fn: torch.nn.Module, x: torch.Tensor,
              y: torch.Tensor, kind: TaskKind) -> tuple[float, float]:
    """Validation loss and accuracy (0 for regression), chunked like the platform's."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for s in range(0, len(x), _EVAL_CHUNK):
        out = model(x[s : s + _EVAL_CHUNK])
        yb = y[s : s + _EVAL_CHUNK]
        loss_sum += float(loss_fn(out, yb)) * len(yb)
        if kind is TaskKind.CLASSIFICATION:
            correct += int((out.argmax(dim=1) == yb).sum())
    n = max(len(x), 1)
    return loss_sum / n, correct / n


def run_plain(task: TrainingTask) -> PlainRun:
    """Train ``task`` in this process with plain PyTorch (``PLAIN_THREADS`` threads): the same
    model, data, split, batch size, optimizer and batching (a ``randperm`` order per epoch, one
    ``index_select`` gather per batch, as ``ShardedBatches`` does) as the platform, with a
    validation pass per epoch; times the same phases as an mtp run."""
    torch.set_num_threads(PLAIN_THREADS)
    torch.manual_seed(_PLAIN_SEED)
    t_start = time.perf_counter()
    ds = load_dataset(task.dataset)
    t_loaded = time.perf_counter()
    train_idx, val_idx = split_indices(ds.num_samples, task.training.validation_split,
                                       _PLAIN_SEED)
    x = torch.from_numpy(ds.features)
    y = torch.from_numpy(ds.targets)
    x_train, y_train = x[train_idx], y[train_idx]
    x_val, y_val = x[val_idx], y[val_idx]
    if task.dataset.standardize:
        mean, std = feature_stats(x_train.numpy())
    else:
        mean = np.zeros(ds.sample_shape, np.float32)
        std = np.ones(ds.sample_shape, np.float32)
    t_stats = time.perf_counter()
    model = build_model(task.model, ds.sample_shape, ds.kind, ds.num_classes, mean, std)
    loss_fn = build_loss(task, ds.kind)
    hp = task.hyperparameters
    optimizer = torch.optim.Adam(model.parameters(), lr=task.training.learning_rate,
                                 betas=hp.betas, eps=hp.eps, weight_decay=hp.weight_decay)
    t_built = time.perf_counter()

    batch = task.training.batch_size
    n_train = len(x_train)
    gen = torch.Generator().manual_seed(_PLAIN_SEED)
    train_times: list[float] = []
    val_times: list[float] = []
    val_acc = math.nan
    for epoch in range(task.training.epochs):
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64)
        t0 = time.perf_counter()
        order = torch.randperm(n_train, generator=gen)
        for s in range(0, n_train, batch):
            idx = order[s : s + batch]
            xb, yb = x_train.index_select(0, idx), y_train.index_select(0, idx)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().to(torch.float64) * len(yb)
        t1 = time.perf_counter()
        val_loss, val_acc = _validate(model, loss_fn, x_val, y_val, ds.kind)
        t2 = time.perf_counter()
        train_times.append(t1 - t0)
        val_times.append(t2 - t1)
        logger.info("plain epoch %d: %.0f samples/s, train loss %.4f, val loss %.4f, "
                    "val acc %.4f, validation %.2f s", epoch + 1, n_train / (t1 - t0),
                    float(loss_sum) / n_train, val_loss, val_acc, t2 - t1)
    wall = time.perf_counter() - t_start
    return PlainRun(
        load_s=t_loaded - t_start, stats_s=t_stats - t_loaded, build_s=t_built - t_stats,
        startup_s=t_built - t_start, train_times_s=train_times, val_times_s=val_times,
        samples_per_epoch=n_train, num_samples=ds.num_samples,
        num_parameters=count_parameters(model),
        steady_samples_per_s=steady(n_train, train_times),
        wall_s=wall, final_val_accuracy=val_acc,
    )


def _names(proc: Path, marker: str) -> bool:
    """Whether the process's command line names ``marker`` or it holds a file under it open:
    Ray renames some of its processes (``ray::DashboardAgent``), which overwrites their
    command line (and environment), while their log files in its temp dir stay open."""
    try:
        if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
            return True
        for fd in (proc / "fd").iterdir():
            try:
                if os.readlink(fd).startswith(marker):
                    return True
            except OSError:
                continue
    except OSError:  # gone, or not ours to read
        return False
    return False


def processes_with(marker: str) -> list[int]:
    """Ids of the processes of ``marker`` (a temp dir a benchmark made: only the processes of
    a Ray it started), this one excepted."""
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and int(p.name) != os.getpid() and _names(p, marker)]


def end_processes_with(marker: str, grace_s: float = 0.0) -> int:
    """Wait up to ``grace_s`` for the processes naming ``marker`` to exit on their own, then
    end them (SIGTERM, then SIGKILL); how many were left after the wait."""
    try:
        wait_until(lambda: not processes_with(marker), grace_s, f"processes of {marker}",
                   interval_s=0.2)
        return 0
    except TimeoutError:
        pass
    left = len(processes_with(marker))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_with(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if sig is signal.SIGTERM:
            try:
                wait_until(lambda: not processes_with(marker), 5.0, "SIGTERM", interval_s=0.2)
                break
            except TimeoutError:
                pass
    return left
