"""Searchers compared on the digits MLP: trials needed to get near the best, and Tune's overhead.

The objective is the digits MLP (``examples/digits_mlp_tune.yaml``'s base task: 1 worker,
``--epochs`` epochs) over five hyperparameters: learning rate (log), weight decay (log), hidden
width (choice), dropout and batch size (choice). Each trial trains the task for real with the
platform's training loop in the trial's own process (``trainer.train_local``: the same
``TrainLoop``, world size 1, no Ray Train start-up), so a study of dozens of trials fits in
minutes on 2 cores; the full path (Ray Train inside each trial) is timed separately.

1. A long random search (``--reference-trials``, seed 1000) sets the reference: the best
   validation accuracy it finds, ``best``.
2. For each searcher (bayesian = Optuna GP with expected improvement, tpe, random) and each of
   ``--seeds`` seeds, a study of ``--budget`` trials; the number of trials until one reaches
   ``best - 0.005`` (within 0.5 accuracy points) is recorded (``budget + 1`` when none did).
3. Wall time per trial and Tune's overhead per trial (wall time per trial minus the time spent
   inside the objective), medians; and the wall time per trial of ``mtp tune``'s full path (Ray
   Train inside each trial) for ``--full-trials`` trials.

Printed last: the median trials-to-target per searcher and the ratio bayesian / random.

Usage::

    python scripts/bench_hpo.py [--seeds 3] [--first-seed 0] [--budget 20]
                                [--reference-trials 40] [--initial-random-trials N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import _load_triplet, _machine  # noqa: E402

from hpo.space import apply_params  # noqa: E402
from hpo.spec import SearchSpec  # noqa: E402
from hpo.study import run_study, tune_task  # noqa: E402
from mtp_core.spec import load_raw_config  # noqa: E402
from trainer import connect, parse_task  # noqa: E402

logger = logging.getLogger("bench_hpo")
REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "digits_mlp_tune.yaml"


def _base_and_space(epochs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = load_raw_config(CONFIG, [f"training.epochs={epochs}"])
    search = raw.pop("search")
    return raw, search["space"]


def make_objective(base: dict[str, Any]) -> Any:
    def objective(params: dict[str, Any]) -> dict[str, float]:
        from trainer.api import train_local

        t0 = time.perf_counter()
        task = parse_task(apply_params(base, params))
        with tempfile.TemporaryDirectory(prefix="mtp-bench-hpo-") as tmp:
            summary = train_local(task, storage_path=tmp)
        best = max(h["val_accuracy"] for h in summary["history"])
        return {"val_accuracy": best, "objective_s": time.perf_counter() - t0}

    return objective


def study(space: dict[str, Any], searcher: str, seed: int, trials: int, objective: Any,
          storage: str, initial_random_trials: int | None = None) -> dict[str, Any]:
    extra = ({"initial_random_trials": initial_random_trials}
             if initial_random_trials is not None and searcher in ("bayesian", "tpe") else {})
    spec = SearchSpec.model_validate({"space": space, "searcher": searcher,
                                      "metric": "val_accuracy", "mode": "max",
                                      "num_samples": trials, "max_concurrent_trials": 1,
                                      "seed": seed, **extra})
    t0 = time.perf_counter()
    r = run_study(spec, name=f"{searcher}-{seed}", storage=storage, objective=objective)
    wall = time.perf_counter() - t0
    values = [t.value for t in r.trials]
    inside = [t.last.get("objective_s", 0.0) for t in r.trials]
    return {"values": values, "wall_s": wall, "objective_s": inside,
            "per_trial_s": wall / len(values),
            "overhead_per_trial_s": (wall - sum(inside)) / len(values)}


def trials_to(values: list[float], target: float) -> int:
    for i, v in enumerate(values):
        if v >= target:
            return i + 1
    return len(values) + 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds are first-seed .. first-seed + seeds - 1")
    p.add_argument("--budget", type=int, default=20)
    p.add_argument("--reference-trials", type=int, default=40)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--initial-random-trials", type=int, default=None,
                   help="bayesian and tpe: search.initial_random_trials (default: Optuna's 10)")
    p.add_argument("--full-trials", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("ray").setLevel(logging.WARNING)
    connect()
    storage = tempfile.mkdtemp(prefix="mtp-bench-hpo-")
    base, space = _base_and_space(args.epochs)
    objective = make_objective(base)
    report: dict[str, Any] = {"machine": _machine(), "load_before": _load_triplet(),
                              "epochs": args.epochs, "budget": args.budget}
    ref = study(space, "random", 1000, args.reference_trials, objective, storage)
    best = max(ref["values"])
    target = best - 0.005
    report["reference"] = {**ref, "best": best, "target": target}
    logger.info("reference: best %.4f over %d random trials", best, args.reference_trials)
    per: dict[str, list[int]] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for searcher in ("bayesian", "tpe", "random"):
            r = study(space, searcher, seed, args.budget, objective, storage,
                      args.initial_random_trials)
            n = trials_to(r["values"], target)
            per.setdefault(searcher, []).append(n)
            runs.setdefault(searcher, []).append(r)
            logger.info("%s seed %d: %d trials to %.4f (best %.4f)", searcher, seed, n,
                        target, max(r["values"]))
    report["trials_to_target"] = per
    report["runs"] = runs
    # the full path: Ray Train inside each trial
    with tempfile.TemporaryDirectory(prefix="mtp-bench-hpo-full-") as tmp:
        t0 = time.perf_counter()
        full = tune_task(CONFIG, overrides=[f"training.epochs={args.epochs}",
                                            f"search.num_samples={args.full_trials}",
                                            "search.scheduler=fifo",
                                            "search.max_concurrent_trials=1"],
                         storage_path=tmp)
        report["full_path_per_trial_s"] = (time.perf_counter() - t0) / len(full.trials)
    report["load_after"] = _load_triplet()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))

    med = {s: statistics.median(v) for s, v in per.items()}
    print(f"load {report['load_before']} -> {report['load_after']}")
    print(f"reference: best val_accuracy {best:.4f} in {args.reference_trials} random trials; "
          f"target {target:.4f} (within 0.5 points)")
    for s in ("bayesian", "tpe", "random"):
        walls = [r["per_trial_s"] for r in runs[s]]
        over = [r["overhead_per_trial_s"] for r in runs[s]]
        print(f"{s:<9} trials to target {per[s]} median {med[s]:g}   wall/trial "
              f"{statistics.median(walls):.2f} s   Tune overhead/trial "
              f"{statistics.median(over):.2f} s")
    print(f"full path (Ray Train inside each trial): {report['full_path_per_trial_s']:.1f} s "
          "per trial")
    print(f"ratio bayesian/random trials to target = {med['bayesian'] / med['random']:.2f}  "
          f"tpe/random = {med['tpe'] / med['random']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
