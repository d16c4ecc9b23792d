"""Start-up of ``mtp run`` and ``mtp tune`` against plain scripts of the same work (issue 11).

Every row is a command run from a shell, as a user would type it, timed from its start to its
exit (the interpreter's start and the imports included), ``--runs`` times; medians (and min and
max) are quoted. Sections (``--only``, default all):

(a) ``python scripts/plain_digits.py``: the quick-start task by hand (plain PyTorch, 2 threads).
(b) ``mtp run examples/digits_mlp.yaml --no-cache --json --storage-path <fresh dir>``: cold,
    with an embedded Ray (each run its own Ray temp dir). The result's ``timings.phases`` and
    the epochs' own time (the sum of ``history[].epoch_time_s``) are kept; fixed cost = wall -
    epochs' own time. (a) and (b) are interleaved run by run.
(c) the same ``mtp run`` with ``--address`` of a Ray started once by the benchmark (``ray start
    --head --num-cpus=2`` on loopback, its own ports and temp dir, token auth off; stopped by
    ending only its own processes, as tests/support/ray_head.py does: ``ray stop`` would stop
    every Ray on the host). Fixed cost = wall - epochs' own time.
(d) a cached rerun: ``mtp run examples/digits_mlp.yaml --json --storage-path <dir>`` with the
    cache on, once to fill it (not timed), then ``--runs`` reruns that reuse the result.
(e) ``mtp tune examples/digits_mlp_tune.yaml --json --storage-path <fresh dir>`` (12 trials, 1
    CPU each) and ``python scripts/plain_optuna_digits.py`` (the same search with Optuna's GP
    sampler in one process), interleaved. Per-trial fixed cost: for each trial, stopped early
    or finished (not replayed from the cache), Tune's ``time_total_s`` at its last report
    minus its epochs' own time (the ``epoch_time_s`` of each report); the median over the
    trials of every study. Also mtp tune's wall / trials.

Printed last, the acceptance figures: (b)/(a) wall <= 2.5; (c) fixed cost <= 5 s; (e) mtp tune /
Optuna wall <= 3; (e) per-trial fixed cost < 1 s; (d) cached rerun wall < 2 s.

Usage::

    python scripts/bench_startup.py [--runs 3] [--only abcde] [--timeout-s 900]
                                    [--json-out OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_common import (
    end_processes_with,
    load_average,
    machine,
    machine_line,
    median,
    ratio,
    wait_until,
    write_json,
)

from trainer.result import PHASES

logger = logging.getLogger("bench_startup")

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
RUN_CONFIG = "examples/digits_mlp.yaml"  # relative to the repository root, as a user types it
TUNE_CONFIG = "examples/digits_mlp_tune.yaml"
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
SECTIONS = "abcde"

# the acceptance targets of issue 11
TARGET_RUN_RATIO = 2.5  # (b) / (a) wall, at most
TARGET_FIXED_S = 5.0  # (c) fixed cost, at most
TARGET_TUNE_RATIO = 3.0  # (e) mtp tune / Optuna wall, at most
TARGET_TRIAL_FIXED_S = 1.0  # (e) per-trial fixed cost, below
TARGET_CACHED_S = 2.0  # (d) cached rerun wall, below


class BenchError(RuntimeError):
    """A command of the benchmark failed or did not finish in time."""


# ---------------------------------------------------------------------------------------------
# Commands


def mtp_command() -> list[str]:
    """The ``mtp`` console script of this environment (``python -m mtp.cli`` without one)."""
    script = BIN / "mtp"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mtp.cli"]


def base_env() -> dict[str, str]:
    """This environment, without a cluster address and with Ray's usage stats off."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _short_tmp(prefix: str) -> str:
    # under /tmp and short: Ray's unix socket paths live below it (at most 107 characters)
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


@dataclass
class Proc:
    """One finished command."""

    wall_s: float
    stdout: str
    stderr: str


def _tail(text: str, n: int = 2000) -> str:
    return text[-n:].strip()


def run_command(cmd: Sequence[str], env: dict[str, str], timeout_s: float, what: str) -> Proc:
    """Run ``cmd`` from the repository root, wall-timed; BenchError when it fails or runs past
    ``timeout_s`` (then its process group is killed)."""
    logger.info("%s: %s", what, " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate(timeout=60)
        raise BenchError(f"{what} did not finish within {timeout_s:g} s: {_tail(err)}") from None
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(f"{what} exited with {proc.returncode}: {_tail(err)}\n{_tail(out)}")
    return Proc(wall, out, err)


def json_from(stdout: str, what: str) -> dict[str, Any]:
    """The JSON object a command printed: the first line that opens one, to the object's end
    (``mtp run --json`` prints its epoch lines first)."""
    decoder = json.JSONDecoder()
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("{"):
            try:
                value, _ = decoder.raw_decode("\n".join(lines[i:]))
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    raise BenchError(f"{what} printed no JSON object: {_tail(stdout)}")


# ---------------------------------------------------------------------------------------------
# Samples


@dataclass
class PlainSample:
    """(a): one run of plain_digits.py."""

    wall_s: float
    script_wall_s: float  # the script's own clock: data load to the last validation
    val_accuracy: float


@dataclass
class RunSample:
    """(b), (c), (d): one ``mtp run``."""

    wall_s: float
    epochs_s: float  # the epochs' own time: the sum of history[].epoch_time_s
    fixed_s: float  # wall_s - epochs_s
    phases: dict[str, float]
    result_wall_s: float  # timings.wall_time_s: train() alone
    val_accuracy: float
    cache_hit: str | None
    leftover_processes: int = 0  # the embedded Ray's processes still there after the exit


@dataclass
class TuneSample:
    """(e): one ``mtp tune``."""

    wall_s: float
    trials: int
    best_value: float
    finished: int  # trials with a result.json (not stopped early), 1 worker, not reused
    trial_fixed_s: list[float]
    trial_phases: list[dict[str, float]]
    leftover_processes: int = 0

    @property
    def per_trial_s(self) -> float:
        return ratio(self.wall_s, self.trials)


@dataclass
class OptunaSample:
    """(e): one run of plain_optuna_digits.py."""

    wall_s: float
    script_wall_s: float
    trials: int
    per_trial_mean_s: float
    best_value: float


@dataclass
class Report:
    runs: int
    sections: str
    machine: dict[str, Any]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    plain: list[PlainSample] = field(default_factory=list)
    cold: list[RunSample] = field(default_factory=list)
    running: list[RunSample] = field(default_factory=list)
    ray_start_s: float = math.nan
    floor_plain: list[float] = field(default_factory=list)
    floor_lean: list[float] = field(default_factory=list)
    floor_cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    cached_fill_s: float = math.nan
    cached: list[RunSample] = field(default_factory=list)
    tune: list[TuneSample] = field(default_factory=list)
    optuna: list[OptunaSample] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The sections


def run_plain(timeout_s: float) -> PlainSample:
    p = run_command([sys.executable, str(SCRIPTS / "plain_digits.py"), "--json"], base_env(),
                    timeout_s, "(a) plain_digits.py")
    out = json_from(p.stdout, "plain_digits.py")
    sample = PlainSample(p.wall_s, float(out["wall_s"]), float(out["val_accuracy"]))
    logger.info("(a) wall %.2f s (script %.2f s), val_accuracy %.4f", sample.wall_s,
                sample.script_wall_s, sample.val_accuracy)
    return sample


def run_sample(p: Proc, what: str, leftover: int = 0) -> RunSample:
    """A RunSample from ``mtp run --json``'s output."""
    result = json_from(p.stdout, what)
    epochs = sum(float(h["epoch_time_s"]) for h in result.get("history", []))
    timings = result.get("timings", {})
    final = result.get("final_metrics", {})
    acc = final.get("val_accuracy", math.nan)
    sample = RunSample(
        wall_s=p.wall_s, epochs_s=epochs, fixed_s=p.wall_s - epochs,
        phases={k: float(v) for k, v in timings.get("phases", {}).items()},
        result_wall_s=float(timings.get("wall_time_s", math.nan)),
        val_accuracy=float(acc) if isinstance(acc, int | float) else math.nan,
        cache_hit=result.get("cache_hit"), leftover_processes=leftover)
    logger.info("%s: wall %.2f s, epochs %.2f s, fixed %.2f s, cache %s, phases %s", what,
                sample.wall_s, sample.epochs_s, sample.fixed_s, sample.cache_hit,
                {k: round(v, 2) for k, v in sample.phases.items()})
    return sample


def run_embedded(args: list[str], timeout_s: float, what: str) -> tuple[Proc, int]:
    """An ``mtp`` command with an embedded Ray of its own: its own Ray temp dir, so what it
    leaves behind is found (and ended) by that dir alone."""
    ray_tmp = _short_tmp("mtpb")
    env = base_env()
    env["RAY_TMPDIR"] = ray_tmp
    try:
        p = run_command([*mtp_command(), *args], env, timeout_s, what)
    finally:
        leftover = end_processes_with(ray_tmp, grace_s=5.0)
        if leftover:
            logger.warning("%s: %d process(es) of its embedded Ray were still there 5 s after "
                           "it exited (ended now)", what, leftover)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return p, leftover


def run_cold(timeout_s: float) -> RunSample:
    with tempfile.TemporaryDirectory(prefix="mtp-bench-startup-") as storage:
        p, leftover = run_embedded(["run", RUN_CONFIG, "--no-cache", "--json",
                                    "--storage-path", storage], timeout_s, "(b) mtp run cold")
    return run_sample(p, "(b) mtp run cold", leftover)


@dataclass(frozen=True)
class Head:
    address: str
    env: dict[str, str]
    start_s: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dashboard_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2) as r:
            return bool(json.load(r).get("ray_version"))
    except (OSError, ValueError):
        return False


@contextmanager
def ray_head(num_cpus: int, timeout_s: float) -> Iterator[Head]:
    """A ``ray start --head`` on loopback with its own ports and temp dir, up until the
    dashboard answers; afterwards its own processes (those naming its temp dir) are ended."""
    temp_dir = _short_tmp("mtpbh")
    gcs_port, dash_port, agent_port = _free_port(), _free_port(), _free_port()
    # token auth is on by default in Ray 2.60: this loopback-only cluster turns it off (its
    # clients get the same setting), as the test suite's does
    env = {**base_env(), "RAY_AUTH_MODE": "disabled"}
    try:
        t0 = time.perf_counter()
        run_command([RAY, "start", "--head", f"--num-cpus={num_cpus}", f"--port={gcs_port}",
                     "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
                     "--include-dashboard=true", f"--dashboard-agent-listen-port={agent_port}",
                     f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                    env, min(timeout_s, 180.0), "ray start --head")
        url = f"http://127.0.0.1:{dash_port}"
        wait_until(lambda: _dashboard_up(url), 90.0, "the Ray dashboard", interval_s=0.5)
        start = time.perf_counter() - t0
        logger.info("Ray head at 127.0.0.1:%d up in %.1f s", gcs_port, start)
        yield Head(f"127.0.0.1:{gcs_port}", env, start)
    finally:
        end_processes_with(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def run_running(head: Head, timeout_s: float) -> RunSample:
    with tempfile.TemporaryDirectory(prefix="mtp-bench-startup-") as storage:
        p = run_command([*mtp_command(), "run", RUN_CONFIG, "--no-cache", "--json",
                         "--address", head.address, "--storage-path", storage], head.env,
                        timeout_s, "(c) mtp run --address")
    return run_sample(p, "(c) mtp run --address")


def run_cached(storage: str, timeout_s: float) -> RunSample:
    p, leftover = run_embedded(["run", RUN_CONFIG, "--json", "--storage-path", storage],
                               timeout_s, "(d) mtp run cached")
    sample = run_sample(p, "(d) mtp run cached", leftover)
    if sample.cache_hit is None:
        logger.warning("(d): the rerun trained (no cache hit): not a cached rerun")
    return sample


def trial_fixed_costs(storage: Path, study: dict[str, Any]
                      ) -> tuple[list[float], list[dict[str, float]]]:
    """Every trial's fixed cost, stopped early or finished: Tune's ``time_total_s`` at its last
    report minus the epochs' own time (the ``epoch_time_s`` each report carries), from the
    trial's Tune ``result.json`` (one JSON line per report). Trials replayed from the cache
    are left out. The phases are those of the trials that finished (their mtp result.json)."""
    fixed: list[float] = []
    phases: list[dict[str, float]] = []
    for path in sorted((storage / "_studies" / study["name"]).glob("*/result.json")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not rows or any(r.get("cache_hit") for r in rows):
            continue
        epochs = sum(float(r.get("epoch_time_s", 0.0)) for r in rows)
        fixed.append(float(rows[-1]["time_total_s"]) - epochs)
    for trial in study.get("trials", []):
        path = storage / f"{study['name']}-{trial['trial_id']}" / "result.json"
        if path.is_file():
            result = json.loads(path.read_text())
            if result.get("cache_hit") is None:
                phases.append({k: float(v)
                               for k, v in result["timings"].get("phases", {}).items()})
    return fixed, phases


def run_tune(timeout_s: float) -> TuneSample:
    with tempfile.TemporaryDirectory(prefix="mtp-bench-startup-tune-") as storage:
        p, leftover = run_embedded(["tune", TUNE_CONFIG, "--json", "--storage-path", storage],
                                   timeout_s, "(e) mtp tune")
        study = json_from(p.stdout, "mtp tune")
        fixed, phases = trial_fixed_costs(Path(storage).resolve(), study)
    trials = study.get("trials", [])
    sample = TuneSample(wall_s=p.wall_s, trials=len(trials),
                        best_value=float(study.get("best_value", math.nan)),
                        finished=len(fixed), trial_fixed_s=fixed, trial_phases=phases,
                        leftover_processes=leftover)
    logger.info("(e) mtp tune: wall %.1f s, %d trials (%.2f s each), %d finished, per-trial "
                "fixed %s, best %.4f", sample.wall_s, sample.trials, sample.per_trial_s,
                sample.finished, [round(f, 2) for f in fixed], sample.best_value)
    return sample


def run_optuna(timeout_s: float) -> OptunaSample:
    p = run_command([sys.executable, str(SCRIPTS / "plain_optuna_digits.py"), "--json"],
                    base_env(), timeout_s, "(e) plain_optuna_digits.py")
    out = json_from(p.stdout, "plain_optuna_digits.py")
    sample = OptunaSample(wall_s=p.wall_s, script_wall_s=float(out["wall_s"]),
                          trials=int(out["trials"]),
                          per_trial_mean_s=float(out["per_trial_mean_s"]),
                          best_value=float(out["best_value"]))
    logger.info("(e) Optuna: wall %.1f s (script %.1f s), %.2f s per trial, best %.4f",
                sample.wall_s, sample.script_wall_s, sample.per_trial_mean_s,
                sample.best_value)
    return sample


def run_benchmark(sections: str, runs: int, timeout_s: float) -> Report:
    report = Report(runs=runs, sections=sections, machine=machine(),
                    load_before=load_average())
    logger.info("load average before: %s", report.load_before)
    if "a" in sections or "b" in sections:
        for i in range(runs):
            logger.info("run %d/%d of (a)/(b)", i + 1, runs)
            if "a" in sections:
                report.plain.append(run_plain(timeout_s))
            if "b" in sections:
                report.cold.append(run_cold(timeout_s))
    if "d" in sections:
        with tempfile.TemporaryDirectory(prefix="mtp-bench-startup-cache-") as storage:
            fill, _ = run_embedded(["run", RUN_CONFIG, "--json", "--storage-path", storage],
                                   timeout_s, "(d) fill the cache")
            report.cached_fill_s = fill.wall_s
            for _ in range(runs):
                report.cached.append(run_cached(storage, timeout_s))
    if "c" in sections:
        with ray_head(2, timeout_s) as head:
            report.ray_start_s = head.start_s
            for i in range(runs):
                logger.info("run %d/%d of (c)", i + 1, runs)
                report.running.append(run_running(head, timeout_s))
            p = run_command([sys.executable, str(SCRIPTS / "ray_train_floor.py"), "--address",
                             head.address, "--runs", str(runs)], head.env, timeout_s,
                            "(c) Ray Train's floor")
            floor = json_from(p.stdout, "(c) Ray Train's floor")
            report.floor_plain, report.floor_lean = floor["plain"], floor["lean"]
            report.floor_cpu = floor["cpu"]
    if "e" in sections:
        for i in range(runs):
            logger.info("run %d/%d of (e)", i + 1, runs)
            report.tune.append(run_tune(timeout_s))
            report.optuna.append(run_optuna(timeout_s))
    report.load_after = load_average()
    logger.info("load average after: %s", report.load_after)
    return report


# ---------------------------------------------------------------------------------------------
# The report


def _row(label: str, values: Sequence[float], unit: str = "s", extra: str = "") -> str:
    if not values:
        return f"{label:<46}{'-':>9}"
    return (f"{label:<46}{median(values):>9.2f}{min(values):>9.2f}{max(values):>9.2f}  {unit}"
            + (f"  {extra}" if extra else ""))


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def format_report(r: Report) -> str:
    lines = [f"start-up benchmark: sections {r.sections}, {r.runs} run(s) each, medians",
             f"  {machine_line(r.machine, r.load_before, r.load_after)}", "",
             f"{'row':<46}{'median':>9}{'min':>9}{'max':>9}"]
    if r.plain:
        lines.append(_row("(a) plain_digits.py (PyTorch, 2 threads)",
                          [s.wall_s for s in r.plain],
                          extra=f"script's own {median([s.script_wall_s for s in r.plain]):.2f}"
                          f" s, val_accuracy {median([s.val_accuracy for s in r.plain]):.4f}"))
    if r.cold:
        lines += [_row("(b) mtp run, cold, embedded Ray", [s.wall_s for s in r.cold],
                       extra=f"val_accuracy {median([s.val_accuracy for s in r.cold]):.4f}"),
                  _row("    epochs' own time", [s.epochs_s for s in r.cold]),
                  _row("    fixed cost (wall - epochs)", [s.fixed_s for s in r.cold])]
    if r.running:
        lines += [_row("(c) mtp run --address (running Ray)", [s.wall_s for s in r.running],
                       extra=f"val_accuracy "
                       f"{median([s.val_accuracy for s in r.running]):.4f}"),
                  _row("    epochs' own time", [s.epochs_s for s in r.running]),
                  _row("    fixed cost (wall - epochs)", [s.fixed_s for s in r.running]),
                  f"    (ray start --head, once, not in these: {r.ray_start_s:.1f} s)"]
    if r.floor_plain:
        lines += [_row("    floor: TorchTrainer.fit(), report only", r.floor_plain),
                  _row("    floor: LeanTorchTrainer.fit(), report only", r.floor_lean)]
        for name, cpu in r.floor_cpu.items():  # median CPU seconds of the run's processes
            lines.append(f"      {name} floor's CPU s: " + ", ".join(
                f"{role} {s:.2f}" for role, s in cpu.items())
                + f" (sum {sum(cpu.values()):.2f})")
    if r.cached:
        hits = sum(s.cache_hit is not None for s in r.cached)
        lines.append(_row("(d) mtp run, cached rerun", [s.wall_s for s in r.cached],
                          extra=f"{hits}/{len(r.cached)} cache hits; the run that filled it "
                          f"{r.cached_fill_s:.1f} s"))
    if r.tune:
        fixed = [f for s in r.tune for f in s.trial_fixed_s]
        lines += [_row(f"(e) mtp tune ({median([s.trials for s in r.tune]):g} trials)",
                       [s.wall_s for s in r.tune],
                       extra=f"best {median([s.best_value for s in r.tune]):.4f}"),
                  _row("    wall / trial", [s.per_trial_s for s in r.tune]),
                  _row("    per-trial fixed cost (every trial)", fixed,
                       extra=f"{len(fixed)} trials of {sum(s.trials for s in r.tune)}")]
    if r.optuna:
        lines += [_row(f"(e) plain_optuna_digits.py "
                       f"({median([s.trials for s in r.optuna]):g} trials)",
                       [s.wall_s for s in r.optuna],
                       extra=f"best {median([s.best_value for s in r.optuna]):.4f}"),
                  _row("    wall / trial (script's own)", [s.per_trial_mean_s for s in r.optuna])]
    lines += _phase_table(r)
    lines += ["", *acceptance(r)]
    return "\n".join(lines)


def _phase_table(r: Report) -> list[str]:
    cols: list[tuple[str, list[dict[str, float]]]] = [
        (label, [s.phases for s in runs]) for label, runs in
        (("(b) cold", r.cold), ("(c) running", r.running)) if runs]
    trial_phases = [ph for s in r.tune for ph in s.trial_phases]
    if trial_phases:
        cols.append(("(e) trial", trial_phases))
    if not cols:
        return []
    lines = ["", "phases of train() (median s per phase)",
             f"{'phase':<16}" + "".join(f"{label:>14}" for label, _ in cols)]
    seen = {p for _, phases in cols for ph in phases for p in ph}
    for phase in [p for p in PHASES if p in seen]:
        cells = []
        for _, phases in cols:
            values = [ph[phase] for ph in phases if phase in ph]
            cells.append(f"{median(values):>14.2f}" if values else f"{'-':>14}")
        lines.append(f"{phase:<16}" + "".join(cells))
    return lines


def acceptance(r: Report) -> list[str]:
    """The issue's targets, each with its figure (the sections that ran)."""
    # (label, figure, unit, comparison, target) for each target whose sections ran
    rows: list[tuple[str, float, str, str, float]] = []
    if r.plain and r.cold:
        rows.append(("(b)/(a) wall", ratio(median([s.wall_s for s in r.cold]),
                                           median([s.wall_s for s in r.plain])),
                     "x", "<=", TARGET_RUN_RATIO))
    if r.running:
        rows.append(("(c) fixed cost against a running Ray",
                     median([s.fixed_s for s in r.running]), " s", "<=", TARGET_FIXED_S))
    if r.tune and r.optuna:
        rows.append(("(e) mtp tune / Optuna wall", ratio(median([s.wall_s for s in r.tune]),
                                                         median([s.wall_s for s in r.optuna])),
                     "x", "<=", TARGET_TUNE_RATIO))
    if r.tune:
        rows.append(("(e) per-trial fixed cost",
                     median([f for s in r.tune for f in s.trial_fixed_s]), " s", "<",
                     TARGET_TRIAL_FIXED_S))
    if r.cached:
        rows.append(("(d) cached rerun wall", median([s.wall_s for s in r.cached]), " s", "<",
                     TARGET_CACHED_S))
    if not rows:
        return []
    lines = ["acceptance (issue 11):"]
    for label, v, unit, op, target in rows:
        met = v <= target if op == "<=" else v < target
        unit_t = "" if unit == "x" else unit
        lines.append(f"  {label} = {v:.2f}{unit}   (target {op} {target:g}{unit_t}: "
                     f"{_verdict(met)})")
    return lines


# ---------------------------------------------------------------------------------------------
# Driver


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=3, help="timed runs of each row")
    p.add_argument("--only", default=SECTIONS,
                   help="the sections to run, letters of 'abcde' (e.g. --only ab)")
    p.add_argument("--timeout-s", type=float, default=900.0,
                   help="the longest any one command may run (then the benchmark fails)")
    p.add_argument("--json-out", type=Path, default=None, help="write every measurement here")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be >= 1")
    only = args.only.replace(",", "").lower()
    if not only or any(c not in SECTIONS for c in only):
        p.error(f"--only takes letters of {SECTIONS!r}, got {args.only!r}")
    args.only = "".join(c for c in SECTIONS if c in only)
    if args.timeout_s <= 0:
        p.error("--timeout-s must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        report = run_benchmark(args.only, args.runs, args.timeout_s)
    except (BenchError, TimeoutError) as err:
        print(f"bench_startup: {err}", file=sys.stderr)
        return 1
    if args.json_out is not None:
        data = asdict(report)
        for sample, raw in zip(report.tune, data["tune"], strict=True):
            raw["per_trial_s"] = sample.per_trial_s
        write_json(args.json_out, data)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
