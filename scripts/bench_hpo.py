"""Searchers compared: the Gaussian process against random search, and Tune's overhead.

Two objectives, each part runnable alone (``--only``):

**bowl** (seconds): a known function of four parameters (two uniform, a choice, an int), minimum
0 at x=0.3, y=0.7, c=a, n=3. For each of ``--bowl-seeds`` seeds a study of ``--bowl-trials``
trials per searcher (bayesian, random); the best loss found is its distance to the optimum.
Medians, the number of seeds on which bayesian beats random, and the ratio bayesian / random.

**digits** (minutes): the objective is the digits MLP (``examples/digits_mlp_tune.yaml``'s
base task: 1 worker, ``--epochs`` epochs) over five hyperparameters: learning rate (log), weight
decay (log), hidden width (choice), dropout and batch size (choice). Each trial trains the task
for real with the platform's training loop in the trial's own process (``trainer.train_local``:
the same ``TrainLoop``, world size 1, no Ray Train start-up), so a study of dozens of trials fits
in minutes on 2 cores; the full path (Ray Train inside each trial) is timed separately.

1. A long random search (``--reference-trials``, seed 1000) sets the reference: the best
   validation accuracy it finds, ``best``.
2. For each searcher (bayesian = Optuna GP with expected improvement, tpe, random) and each of
   ``--seeds`` seeds, a study of ``--budget`` trials; the number of trials until one reaches
   ``best - 0.005`` (within 0.5 accuracy points) is recorded (``budget + 1`` when none did).
3. Wall time per trial and Tune's overhead per trial (wall time per trial minus the time spent
   inside the objective), medians; and the wall time per trial of ``mtp tune``'s full path (Ray
   Train inside each trial) for ``--full-trials`` trials.

Printed last: the ratios bayesian / random (bowl: median best loss; digits: median trials to
target; also tpe / random).

Usage::

    python scripts/bench_hpo.py [--only bowl|digits] [--bowl-seeds 10] [--bowl-trials 20]
                                [--seeds 3] [--first-seed 0] [--budget 20]
                                [--reference-trials 40] [--initial-random-trials N] [--json OUT]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_common import load_average, machine, machine_line, median, ratio, write_json

from hpo.space import apply_params
from hpo.spec import SearchSpec
from hpo.study import run_study, tune_task
from mtp_core.spec import load_raw_config
from trainer import connect, parse_task

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
          storage: str, initial_random_trials: int | None = None, metric: str = "val_accuracy",
          mode: str = "max", name: str = "") -> dict[str, Any]:
    extra = ({"initial_random_trials": initial_random_trials}
             if initial_random_trials is not None and searcher in ("bayesian", "tpe") else {})
    spec = SearchSpec.model_validate({"space": space, "searcher": searcher, "metric": metric,
                                      "mode": mode, "num_samples": trials,
                                      "max_concurrent_trials": 1, "seed": seed, **extra})
    t0 = time.perf_counter()
    r = run_study(spec, name=f"{name}{searcher}-{seed}", storage=storage, objective=objective)
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


# ---------------------------------------------------------------------------------------------
# bowl: a known objective


BOWL_SPACE: dict[str, Any] = {
    "x": {"type": "uniform", "low": 0.0, "high": 1.0},
    "y": {"type": "uniform", "low": 0.0, "high": 1.0},
    "c": {"type": "choice", "values": ["a", "b", "c"]},
    "n": {"type": "int", "low": 0, "high": 8},
}


def bowl(p: dict[str, Any]) -> dict[str, float]:
    """Minimum 0 at x=0.3, y=0.7, c=a, n=3: the best loss is the distance to the optimum."""
    penalty = {"a": 0.0, "b": 0.05, "c": 0.1}[p["c"]]
    return {"loss": (p["x"] - 0.3) ** 2 + (p["y"] - 0.7) ** 2 + penalty
            + 0.01 * abs(p["n"] - 3)}


def bench_bowl(seeds: int, first_seed: int, trials: int, storage: str) -> dict[str, Any]:
    best: dict[str, list[float]] = {"bayesian": [], "random": []}
    for seed in range(first_seed, first_seed + seeds):
        for searcher in best:
            r = study(BOWL_SPACE, searcher, seed, trials, bowl, storage, metric="loss",
                      mode="min", name="bowl-")
            best[searcher].append(min(r["values"]))
            logger.info("bowl %s seed %d: best loss %.5f", searcher, seed, best[searcher][-1])
    wins = sum(b < r for b, r in zip(best["bayesian"], best["random"], strict=True))
    return {"seeds": seeds, "first_seed": first_seed, "trials": trials, "best_loss": best,
            "bayesian_wins": wins}


# ---------------------------------------------------------------------------------------------
# digits: trials to target on a real training task


def bench_digits(args: argparse.Namespace, storage: str) -> dict[str, Any]:
    base, space = _base_and_space(args.epochs)
    objective = make_objective(base)
    report: dict[str, Any] = {"epochs": args.epochs, "budget": args.budget}
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
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [machine_line(report["machine"], report["load_before"], report["load_after"])]
    ratios: list[str] = []
    bowl_r = report.get("bowl")
    if bowl_r is not None:
        med = {s: median(v) for s, v in bowl_r["best_loss"].items()}
        lines.append(f"bowl (known optimum, loss 0): {bowl_r['trials']} trials per study, "
                     f"{bowl_r['seeds']} seeds")
        for s, v in bowl_r["best_loss"].items():
            lines.append(f"  {s:<9} best loss median {med[s]:.5f}   per seed "
                         + " ".join(f"{x:.4f}" for x in v))
        ratios.append(f"bowl: ratio bayesian/random median best loss = "
                      f"{ratio(med['bayesian'], med['random']):.2f}  (bayesian lower on "
                      f"{bowl_r['bayesian_wins']}/{bowl_r['seeds']} seeds)")
    digits = report.get("digits")
    if digits is not None:
        per = digits["trials_to_target"]
        ref = digits["reference"]
        med = {s: median(v) for s, v in per.items()}
        lines.append(f"digits reference: best val_accuracy {ref['best']:.4f} in "
                     f"{len(ref['values'])} random trials; target {ref['target']:.4f} "
                     "(within 0.5 points)")
        for s in ("bayesian", "tpe", "random"):
            runs = digits["runs"][s]
            walls = [r["per_trial_s"] for r in runs]
            over = [r["overhead_per_trial_s"] for r in runs]
            lines.append(f"  {s:<9} trials to target {per[s]} median {med[s]:g}   wall/trial "
                         f"{median(walls):.2f} s   Tune overhead/trial {median(over):.2f} s")
        lines.append(f"  full path (Ray Train inside each trial): "
                     f"{digits['full_path_per_trial_s']:.1f} s per trial")
        ratios.append(f"digits: ratio bayesian/random trials to target = "
                      f"{ratio(med['bayesian'], med['random']):.2f}  tpe/random = "
                      f"{ratio(med['tpe'], med['random']):.2f}")
    return "\n".join([*lines, "", *ratios])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--only", choices=("bowl", "digits"), default=None,
                   help="run one part (default: both)")
    p.add_argument("--bowl-seeds", type=int, default=10)
    p.add_argument("--bowl-trials", type=int, default=20)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds are first-seed .. first-seed + seeds - 1 (both parts)")
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
    report: dict[str, Any] = {"machine": machine(), "load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="mtp-bench-hpo-") as storage:
        if args.only in (None, "bowl"):
            report["bowl"] = bench_bowl(args.bowl_seeds, args.first_seed, args.bowl_trials,
                                        storage)
        if args.only in (None, "digits"):
            report["digits"] = bench_digits(args, storage)
    report["load_after"] = load_average()
    if args.json:
        write_json(args.json, report)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
