"""The study of ``examples/digits_mlp_tune.yaml`` written by hand: the baseline of ``mtp tune``.

One process, Optuna's Gaussian-process sampler (``GPSampler(seed=0, n_startup_trials=10)``: the
platform's ``bayesian`` searcher with ``search.seed: 0`` and Optuna's 10 random start-up
suggestions, ``SearchSpec.startup_trials()``), 12 trials over the same space: learning rate
loguniform 1e-4..3e-2, weight decay loguniform 1e-6..1e-2, hidden sizes one of [32], [64], [128],
[128, 64], dropout uniform 0..0.5, batch size one of 16, 32, 64. Each trial trains the digits MLP
(``plain_digits.train_mlp``: the same split, standardisation, Adam) for 6 epochs on 1 torch
thread, like a 1-CPU trial, and returns its best validation accuracy. The data is loaded once.
There is no pruning: every trial runs its 6 epochs (``mtp tune``'s ASHA stops poor trials after
2, so the platform does at most as many epochs).

Prints one line per trial (its training time), then the best value, the wall time (data load,
sampler and trials; the interpreter's start and the imports are not in it) and the mean time
per trial, of which training (the GP sampler's own work is the rest).

Usage::

    python scripts/plain_optuna_digits.py [--trials 12] [--epochs 6] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import optuna
import torch
from plain_digits import load_digits_split, train_mlp

__all__ = ["HIDDEN_CHOICES", "main"]

#: Optuna's categorical takes scalars: the lists are JSON strings, as hpo.space encodes them
HIDDEN_CHOICES = [json.dumps(h) for h in ([32], [64], [128], [128, 64])]
STARTUP_TRIALS = 10  # hpo.spec.SearchSpec.startup_trials() without search.initial_random_trials


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--json", action="store_true",
                   help="last line: the result as one JSON object")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_digits_split(0.2, 0)
    trial_times: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("training.learning_rate", 1e-4, 3e-2, log=True)
        wd = trial.suggest_float("hyperparameters.weight_decay", 1e-6, 1e-2, log=True)
        hidden = json.loads(trial.suggest_categorical("model.hidden_sizes", HIDDEN_CHOICES))
        dropout = trial.suggest_float("model.dropout", 0.0, 0.5)
        batch = trial.suggest_categorical("training.batch_size", [16, 32, 64])
        t = time.perf_counter()  # the sampler works at the first suggestion: not training
        accuracies = train_mlp(data, hidden=hidden, dropout=dropout, learning_rate=lr,
                               weight_decay=wd, batch_size=batch, epochs=args.epochs)
        best = max(accuracies)
        trial_times.append(time.perf_counter() - t)
        print(f"trial {trial.number + 1:>3}/{args.trials}  value {best:.4f}  "
              f"{trial_times[-1]:5.2f} s  lr={lr:.4g} wd={wd:.4g} hidden={hidden} "
              f"dropout={dropout:.3f} batch={batch}", flush=True)
        return best

    sampler = optuna.samplers.GPSampler(seed=args.seed, n_startup_trials=STARTUP_TRIALS)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=args.trials)
    wall = time.perf_counter() - t0
    per_trial = wall / max(len(study.trials), 1)
    training = sum(trial_times) / max(len(trial_times), 1)
    print(f"best val_accuracy {study.best_value:.4f}  wall {wall:.2f} s  "
          f"{per_trial:.2f} s per trial (training {training:.2f} s, sampler and the rest "
          f"{per_trial - training:.2f} s)")
    print(f"best params {study.best_params}")
    if args.json:
        print(json.dumps({"best_value": study.best_value, "wall_s": wall,
                          "trials": len(study.trials), "per_trial_mean_s": per_trial,
                          "trial_times_s": trial_times, "best_params": study.best_params}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
