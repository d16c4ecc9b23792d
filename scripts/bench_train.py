"""Training throughput of ``mtp`` against a plain PyTorch loop on the same task, in one run.

Three configurations train the same task (default ``examples/synthetic_large.yaml``: 200,000
samples x 256 features, an MLP of about 1M parameters, fixed epochs, batch 256, Adam):

(a) a plain single-process PyTorch loop with 2 threads: the same model (``build_model``), data
    (``load_dataset`` + ``split_indices``), batch size, optimizer and batching (a ``randperm``
    order per epoch, one ``index_select`` gather per batch, as ``ShardedBatches`` does), with a
    validation pass per epoch (``bench_common.run_plain``, shared with bench_ps);
(b) ``trainer.train`` with 1 worker x 2 CPUs;
(c) ``trainer.train`` with 2 workers x 1 CPU (gloo DDP).

Ray is started once (``trainer.connect``) before anything is measured and is timed on its own:
the wall times of (b) and (c) exclude it. All three run while Ray's daemons are up, interleaved
repeat by repeat, so background noise falls on each alike. Steady throughput is the median of
the per-epoch training-step throughput over epochs 2..N (epoch 1 warms up); end-to-end wall
time includes data loading, model building and validation. Medians over repeats are quoted and
the ratios (b)/(a), (c)/(a) are printed last.

After the repeats, the start-up of an ``mtp`` run is split into its parts: the data load, the
sha256 data hash, ``ray.put`` of the arrays, a worker's ``TrainLoop`` construction (measured
in-process) and the rest (Ray Train controller, placement group, worker processes, process
group). The per-epoch overhead (``epoch_time_s - train_time_s``: validation, metrics,
checkpoint) and the gap between epochs (the ``ray.train.report`` barrier) come from the run's
own epoch records.

Usage::

    python scripts/bench_train.py [--epochs 3] [--repeats 3] [--samples N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from bench_common import (
    PLAIN_THREADS,
    PlainRun,
    load_average,
    machine,
    machine_line,
    median,
    ratio,
    run_plain,
    write_json,
)

from mtp_core.hashing import data_hash
from mtp_core.layout import RunLayout
from trainer import TrainingTask, connect, load_task, prepare, train
from trainer._collective import SingleProcess
from trainer.loop import TrainLoop
from trainer.result import TrainingResult

logger = logging.getLogger("bench_train")

DEFAULT_TASK = Path(__file__).resolve().parent.parent / "examples" / "synthetic_large.yaml"
TARGET_RATIO = 0.9


# ---------------------------------------------------------------------------------------------
# Measurements


@dataclass
class MtpRun:
    """One ``trainer.train`` run, (b) or (c), reduced to the timings the benchmark reports."""

    label: str
    num_workers: int
    cpus_per_worker: float
    steady_samples_per_s: float
    wall_s: float
    startup_s: float
    train_times_s: list[float]
    epoch_times_s: list[float]
    report_gaps_s: list[float]
    teardown_s: float
    final_val_accuracy: float


@dataclass
class StartupProbe:
    """The parts of an mtp run's start-up that can be timed outside Ray Train."""

    prepare_s: float
    hash_s: float
    ray_put_s: float
    trainloop_init_s: float


@dataclass
class Report:
    task_file: str
    overrides: list[str]
    epochs: int
    repeats: int
    num_samples: int
    train_samples: int
    batch_size: int
    num_parameters: int
    ray_init_s: float
    plain: list[PlainRun] = field(default_factory=list)
    mtp: dict[str, list[MtpRun]] = field(default_factory=dict)
    probe: StartupProbe | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    machine: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# (b), (c) mtp


def _epoch_gaps(run_dir: Path, result: TrainingResult) -> tuple[list[float], float]:
    """Time between one epoch's end and the next one's start (the report barrier), and from
    the last epoch's end to train() returning (final model, summary, Ray Train shutdown)."""
    raw = json.loads(RunLayout.of(run_dir).final.read_text())["history"]
    starts = [float(r["start_unix"]) for r in raw]
    ends = [s + float(r["epoch_time_s"]) for s, r in zip(starts, raw, strict=True)]
    gaps = [nxt - end for end, nxt in zip(ends, starts[1:], strict=False)]
    t_begin = starts[0] - result.timings.startup_s
    teardown = (t_begin + result.timings.wall_time_s) - ends[-1]
    return gaps, teardown


def run_mtp(task: TrainingTask, label: str, run_name: str) -> MtpRun:
    """One ``trainer.train`` run in a fresh storage directory (so it never resumes)."""
    storage = Path(tempfile.mkdtemp(prefix="mtp-bench-"))
    try:
        result = train(task, storage_path=storage, run_name=run_name, use_cache=False)
        gaps, teardown = _epoch_gaps(Path(result.run_dir), result)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    t = result.timings
    res = task.resources
    run = MtpRun(
        label=label, num_workers=res.num_workers, cpus_per_worker=res.cpus_per_worker,
        steady_samples_per_s=t.steady_samples_per_s, wall_s=t.wall_time_s,
        startup_s=t.startup_s, train_times_s=[r.train_time_s for r in result.history],
        epoch_times_s=[r.epoch_time_s for r in result.history], report_gaps_s=gaps,
        teardown_s=teardown,
        final_val_accuracy=result.final_metrics.get("val_accuracy", math.nan),
    )
    logger.info("%s: steady %.0f samples/s, wall %.1f s, start-up %.1f s, epochs %s, "
                "report gaps %s, teardown %.1f s", label, run.steady_samples_per_s, run.wall_s,
                run.startup_s, [f"{e:.2f}" for e in run.epoch_times_s],
                [f"{g:.2f}" for g in gaps], teardown)
    return run


def probe_startup(task: TrainingTask) -> StartupProbe:
    """Time the parts of an mtp start-up that run outside Ray Train's own machinery.

    Runs last: constructing a TrainLoop turns on torch's deterministic algorithms in this
    process, which the plain loop must not inherit.
    """
    import ray

    t0 = time.perf_counter()
    prepared = prepare(task)
    t1 = time.perf_counter()
    data_hash(prepared.dataset.features, prepared.dataset.targets)
    t2 = time.perf_counter()
    ref = ray.put((prepared.dataset.features, prepared.dataset.targets))
    t3 = time.perf_counter()
    del ref
    with tempfile.TemporaryDirectory(prefix="mtp-bench-probe-") as tmp:
        torch.set_num_threads(PLAIN_THREADS)
        t4 = time.perf_counter()
        TrainLoop(task, prepared.dataset.features, prepared.dataset.targets, prepared.meta,
                  prepared.seed, Path(tmp) / "probe", prepared.fingerprint, SingleProcess())
        t5 = time.perf_counter()
    torch.use_deterministic_algorithms(False)
    return StartupProbe(prepare_s=t1 - t0, hash_s=t2 - t1, ray_put_s=t3 - t2,
                        trainloop_init_s=t5 - t4)


# ---------------------------------------------------------------------------------------------
# Driver


def run_benchmark(task_file: Path, epochs: int, repeats: int, samples: int | None) -> Report:
    base = [f"training.epochs={epochs}", "training.early_stopping.patience=0"]
    if samples is not None:
        base.append(f"dataset.n_samples={samples}")
    plain_task = load_task(task_file, base)
    one = load_task(task_file, [*base, "resources.num_workers=1", "resources.cpus_per_worker=2"])
    two = load_task(task_file, [*base, "resources.num_workers=2", "resources.cpus_per_worker=1"])
    configs = [("(b) mtp 1 worker x 2 CPU", "mtp-1x2", one),
               ("(c) mtp 2 workers x 1 CPU", "mtp-2x1", two)]

    load_before = load_average()
    logger.info("load average before: %s", load_before)
    t0 = time.perf_counter()
    connect()
    ray_init = time.perf_counter() - t0
    logger.info("Ray start-up (trainer.connect): %.1f s", ray_init)

    report = Report(task_file=str(task_file), overrides=base, epochs=epochs, repeats=repeats,
                    num_samples=0, train_samples=0, batch_size=plain_task.training.batch_size,
                    num_parameters=0, ray_init_s=ray_init, load_before=load_before,
                    mtp={label: [] for label, _, _ in configs}, machine=machine())
    for rep in range(repeats):
        logger.info("repeat %d/%d: (a) plain PyTorch", rep + 1, repeats)
        report.plain.append(run_plain(plain_task))
        for label, tag, task in configs:
            logger.info("repeat %d/%d: %s", rep + 1, repeats, label)
            report.mtp[label].append(run_mtp(task, label, f"{tag}-r{rep + 1}"))

    logger.info("start-up probe (prepare, hash, ray.put, TrainLoop init)")
    report.probe = probe_startup(one)
    report.load_after = load_average()
    logger.info("load average after: %s", report.load_after)
    report.num_samples = report.plain[0].num_samples
    report.train_samples = report.plain[0].samples_per_epoch
    report.num_parameters = report.plain[0].num_parameters
    return report


def format_report(r: Report) -> str:
    """The CLI table: medians over repeats, the start-up breakdown, the ratios last."""
    plain = r.plain
    a_steady = median([p.steady_samples_per_s for p in plain])
    a_wall = median([p.wall_s for p in plain])
    a_start = median([p.startup_s for p in plain])
    lines = [
        f"task {r.task_file} {' '.join(r.overrides)}",
        f"  {r.num_samples:,} samples ({r.train_samples:,} train/epoch), batch "
        f"{r.batch_size}, {r.num_parameters:,} parameters, {r.epochs} epochs, "
        f"medians of {r.repeats} repeats",
        f"  {machine_line(r.machine, r.load_before, r.load_after)}",
        "",
        f"{'run':<30}{'steady samples/s':>18}{'wall s':>10}{'start-up s':>12}{'val acc':>9}",
        f"{'(a) plain PyTorch, 2 threads':<30}{a_steady:>18,.0f}{a_wall:>10.1f}{a_start:>12.1f}"
        f"{median([p.final_val_accuracy for p in plain]):>9.4f}",
    ]
    steady: dict[str, float] = {}
    for label, runs in r.mtp.items():
        steady[label] = median([m.steady_samples_per_s for m in runs])
        lines.append(
            f"{label:<30}{steady[label]:>18,.0f}{median([m.wall_s for m in runs]):>10.1f}"
            f"{median([m.startup_s for m in runs]):>12.1f}"
            f"{median([m.final_val_accuracy for m in runs]):>9.4f}")
    lines.append(f"Ray start-up (trainer.connect, once, not in the wall times above): "
                 f"{r.ray_init_s:.1f} s")
    lines.append("")
    a_load = median([p.load_s for p in plain])
    a_stats = median([p.stats_s for p in plain])
    a_build = median([p.build_s for p in plain])
    a_val = median([v for p in plain for v in p.val_times_s])
    lines.append(f"plain start-up: data load {a_load:.1f} s, split + feature stats "
                 f"{a_stats:.1f} s, model {a_build:.2f} s; validation {a_val:.2f} s/epoch")
    if r.probe is not None:
        pr = r.probe
        lines.append(f"mtp start-up parts: prepare {pr.prepare_s:.1f} s (data load ~{a_load:.1f} "
                     f"s, sha256 hash {pr.hash_s:.2f} s), ray.put {pr.ray_put_s:.2f} s, "
                     f"TrainLoop init {pr.trainloop_init_s:.2f} s (per worker)")
        for label, runs in r.mtp.items():
            start = median([m.startup_s for m in runs])
            rest = start - pr.prepare_s - pr.ray_put_s - pr.trainloop_init_s
            lines.append(f"  {label}: start-up {start:.1f} s = prepare {pr.prepare_s:.1f} + "
                         f"ray.put {pr.ray_put_s:.2f} + TrainLoop init "
                         f"{pr.trainloop_init_s:.2f} + Ray Train controller/workers/process "
                         f"group {rest:.1f}")
    for label, runs in r.mtp.items():
        over = median([e - t for m in runs
                        for e, t in zip(m.epoch_times_s, m.train_times_s, strict=True)])
        gaps = median([g for m in runs for g in m.report_gaps_s])
        tear = median([m.teardown_s for m in runs])
        lines.append(f"  {label}: per epoch outside training steps {over:.2f} s (validation, "
                     f"metrics, checkpoint), report gap {gaps:.2f} s, teardown {tear:.1f} s")
    lines.append("")
    first = next(iter(steady), None)
    if first is not None and a_steady > 0:
        met = steady[first] / a_steady >= TARGET_RATIO
        lines.append(f"target {first.split()[0]}/(a) >= {TARGET_RATIO}: "
                     + ("met" if met else "NOT met"))
    for label, value in steady.items():
        wall = ratio(median([m.wall_s for m in r.mtp[label]]), a_wall)
        lines.append(f"{label.split()[0]}/(a) steady throughput ratio = "
                     f"{ratio(value, a_steady):.3f}   "
                     f"(end-to-end wall ratio {wall:.2f}x)")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--task", type=Path, default=DEFAULT_TASK, help="task config (YAML/JSON)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2 for steady)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each configuration")
    p.add_argument("--samples", type=int, default=None,
                   help="override dataset.n_samples (default: the task's)")
    p.add_argument("--json", type=Path, default=None, help="write every measurement here")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        p.error("--epochs and --repeats must be >= 1")
    if args.samples is not None and args.samples < 2:
        p.error("--samples must be >= 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.epochs < 2:
        logger.warning("--epochs %d: steady throughput needs >= 2 epochs; using epoch 1",
                       args.epochs)
    report = run_benchmark(args.task, args.epochs, args.repeats, args.samples)
    if args.json is not None:
        write_json(args.json, report)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
