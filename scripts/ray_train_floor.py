"""The floor under any Ray Train run: ``TorchTrainer.fit()`` of a function that only reports
once, on a running Ray (``--address``), ``--runs`` times in one driver; prints one JSON line
``{"plain": [s, ...], "lean": [s, ...], "cpu": {...}}``: the wall times of Ray Train's own
``TorchTrainer`` and the platform's ``LeanTorchTrainer`` (interleaved), and for each the CPU
seconds the run's Ray processes used, by role (medians over the runs): the workers count their
own CPU when they report (``getrusage``), the controller, the synchronization actor and Ray
Train's other helper actors are read from ``/proc`` every 0.1 s while ``fit()`` runs (Linux,
one machine; a process there before the run counts only if it was an idle Ray worker then).
Used by scripts/bench_startup.py, section (c).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: the Ray process title (``ray::<class>``) of each role seen from outside
ROLES: dict[str, tuple[str, ...]] = {
    "controller": ("ray::TrainController",), "sync_actor": ("ray::SynchronizationActor",),
    "other_actors": ("ray::PlacementGroupCleaner", "ray::DatasetManager",
                          "ray::_AutoscalingCoordinatorActor")}


def _report(config: dict[str, str]) -> None:
    """Reports once; first writes the CPU this worker process has used so far."""
    import ray.train

    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(config["out"], f"{os.getpid()}.cpu").write_text(str(usage.ru_utime + usage.ru_stime))
    ray.train.report({"pid": os.getpid()})


def _ray_processes() -> dict[int, tuple[str, float]]:
    """pid -> (title, CPU seconds so far) of this machine's ``ray::`` processes."""
    found: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace")
            if not title.startswith("ray::"):
                continue
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            found[int(entry)] = (title, (int(fields[11]) + int(fields[12])) / _CLK)
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return found


class CpuSampler:
    """The CPU every ``ray::`` process used while the sampler ran (the last count seen minus
    the count at the start: a run's controller may be an idle worker Ray started earlier)."""

    def __init__(self) -> None:
        self.before = _ray_processes()
        self.seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(_ray_processes())
            time.sleep(0.1)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seen.update(_ray_processes())

    def by_role(self) -> dict[str, float]:
        """CPU seconds by role."""
        out = {role: 0.0 for role in ROLES}
        for pid, (title, cpu) in self.seen.items():
            was_title, was_cpu = self.before.get(pid, ("ray::IDLE", 0.0))
            role = next((r for r, prefix in ROLES.items() if title.startswith(prefix)), None)
            if role is not None and was_title.startswith("ray::IDLE"):
                out[role] += cpu - was_cpu
        return {r: round(v, 2) for r, v in out.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from mtp_core.ray_env import apply_train_env, own_cluster_options
    from trainer._ray_train import LeanTorchTrainer

    apply_train_env()
    ray.init(address=args.address, logging_level="ERROR",
             **own_cluster_options(args.address, embedded=False))
    times: dict[str, list[float]] = {"plain": [], "lean": []}
    cpu: dict[str, list[dict[str, float]]] = {"plain": [], "lean": []}
    for _ in range(args.runs):
        for name, cls in (("plain", TorchTrainer), ("lean", LeanTorchTrainer)):
            with tempfile.TemporaryDirectory() as out, CpuSampler() as sampler:
                t0 = time.perf_counter()
                cls(_report, train_loop_config={"out": out},
                    scaling_config=ScalingConfig(num_workers=args.workers)).fit()
                times[name].append(time.perf_counter() - t0)
                workers = sum(float(p.read_text()) for p in Path(out).glob("*.cpu"))
            cpu[name].append({**sampler.by_role(), "workers": round(workers, 2)})
    medians = {name: {role: round(statistics.median(run[role] for run in runs), 2)
                      for role in runs[0]} for name, runs in cpu.items()}
    print(json.dumps({**times, "cpu": medians}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
