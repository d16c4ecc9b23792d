"""The ``search`` section of a study config: the space, the searcher, the budget.

A study config is a task config (see ``mtp_core.spec``) with one more top-level section::

    search:
      space:
        training.learning_rate: {type: loguniform, low: 1.0e-4, high: 1.0e-1}
        model.dropout: {type: uniform, low: 0.0, high: 0.5}
        training.batch_size: {type: choice, values: [16, 32, 64]}
        model.hidden_sizes: {type: choice, values: [[64], [128], [128, 64]]}
      searcher: bayesian        # bayesian | tpe | random | grid
      metric: val_accuracy      # train_loss or a validation metric of the task's kind
      mode: max                 # default: the way the metric improves (val_loss: min)
      num_samples: 20
      max_concurrent_trials: 1
      scheduler: asha           # fifo | asha

Parameter names are dotted paths into the task (the same paths as ``--set``); each trial's
task is the base task with its sampled values applied, validated like any task.

A study is bounded: at most :data:`MAX_TRIALS` trials (``num_samples``, or the grid times
``num_samples``), a failing trial is retried at most 100 times, and a study in which no trial
can start training for ``trial_start_timeout_s`` (no free CPUs) ends with an error.
"""

from __future__ import annotations

import enum
import math
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from hpo.metrics import metric_direction
from mtp_core.base import StrictModel
from mtp_core.direction import Direction

__all__ = [
    "MAX_TRIALS",
    "ChoiceParam",
    "FloatParam",
    "GridParam",
    "IntParam",
    "ParamSpec",
    "SchedulerName",
    "SearchSpec",
    "SearcherName",
]


MAX_TRIALS = 100_000  # trials one study may run (num_samples, or grid size x num_samples)


class FloatParam(StrictModel):
    """``uniform`` or ``loguniform`` on [low, high]."""

    type: Literal["uniform", "loguniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(f"empty range: low={self.low:g} must be below high={self.high:g}")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0 (log of a non-positive bound), "
                             f"got low={self.low:g}")
        return self


class IntParam(StrictModel):
    """An integer in [low, high], both included; ``log`` samples on a log scale."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if not self.low < self.high:
            raise ValueError(f"empty range: low={self.low} must be below high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"int with log=true needs low > 0, got low={self.low}")
        return self


class ChoiceParam(StrictModel):
    """One of ``values`` (numbers, strings, lists such as hidden sizes)."""

    type: Literal["choice"]
    values: list[Any] = Field(min_length=1)


class GridParam(StrictModel):
    """Every one of ``values`` (searcher ``grid`` crosses all grid parameters)."""

    type: Literal["grid"]
    values: list[Any] = Field(min_length=1)


ParamSpec = Annotated[FloatParam | IntParam | ChoiceParam | GridParam,
                      Field(discriminator="type")]


class SearcherName(enum.StrEnum):
    BAYESIAN = "bayesian"  # Gaussian process + expected improvement (Optuna GPSampler)
    TPE = "tpe"
    RANDOM = "random"
    GRID = "grid"


class SchedulerName(enum.StrEnum):
    FIFO = "fifo"
    ASHA = "asha"


class SearchSpec(StrictModel):
    """How a study searches; validated on its own, then against the base task (``space``)."""

    space: dict[str, ParamSpec] = Field(min_length=1, description="dotted task path -> range")
    searcher: SearcherName = SearcherName.BAYESIAN
    metric: str = Field("val_accuracy", min_length=1,
                        description="An epoch metric, e.g. val_loss.")
    mode: Direction = Field(
        Direction.MAXIMIZE,
        description="min or max; default: the way a platform metric improves (val_loss: min, "
        "val_accuracy: max), else max.")
    num_samples: int = Field(
        16, ge=1, le=MAX_TRIALS, description="Trials; grid: repeats of the whole grid (1).")
    max_concurrent_trials: int | None = Field(
        None, ge=1, le=10_000, description="Default: as many as the cluster's CPUs hold.")
    time_budget_s: float | None = Field(None, gt=0, description="Stop starting new trials.")
    seed: int = Field(0, ge=0, lt=2**32, description="Seeds the searcher's suggestions.")
    scheduler: SchedulerName = SchedulerName.FIFO
    grace_period: int = Field(1, ge=1, description="asha: epochs before a trial may stop.")
    reduction_factor: float = Field(3.0, gt=1.0, description="asha: keep 1/rf per rung.")
    # a trial that fails every time would be retried forever with Tune's -1
    max_failures: int = Field(1, ge=0, le=100, description="Retries of a failed trial.")
    trial_start_timeout_s: float = Field(
        300.0, gt=0, le=86_400,
        description="End the study when no trial has been training for this long while "
        "trials wait to start (e.g. no free CPUs for their workers).")
    initial_random_trials: int | None = Field(
        None, ge=1, le=10_000,
        description="bayesian/tpe: random suggestions before the model takes over "
        "(default 10, Optuna's).")

    @model_validator(mode="after")
    def _startup_fits_searcher(self) -> SearchSpec:
        if (self.initial_random_trials is not None
                and self.searcher not in (SearcherName.BAYESIAN, SearcherName.TPE)):
            raise ValueError(
                f"search.initial_random_trials={self.initial_random_trials} applies to "
                f"searcher bayesian or tpe, not {self.searcher.value}; remove it")
        return self

    def startup_trials(self) -> int:
        """Random suggestions before a model-based searcher uses its model.

        Optuna's 10 by default. A budget-sized default (an eighth of ``num_samples``, at least
        4) was measured on the digits benchmark over 20 seeds and made no difference beyond
        the seed-to-seed noise (docs/BENCHMARKS.md), so Optuna's choice stands.
        """
        return 10 if self.initial_random_trials is None else self.initial_random_trials

    @model_validator(mode="after")
    def _mode_follows_metric(self) -> SearchSpec:
        direction = metric_direction(self.metric)
        if direction is None:  # not a platform metric (a plain objective's): mode as given
            return self
        if "mode" not in self.model_fields_set:
            object.__setattr__(self, "mode", direction)
        elif self.mode is not direction:
            # the searcher would steer towards, and the study report, the worst trial
            raise ValueError(
                f"search.mode {self.mode.value!r} on search.metric {self.metric!r} would pick "
                f"the worst trial: {self.metric} improves when it goes "
                f"{'down' if direction is Direction.MINIMIZE else 'up'}; allowed: mode "
                f"{direction.value!r} (or leave mode out: it follows the metric)")
        return self

    @model_validator(mode="after")
    def _grid_repeats_once(self) -> SearchSpec:
        # for grid, num_samples repeats the whole grid: once unless asked
        if self.searcher is SearcherName.GRID and "num_samples" not in self.model_fields_set:
            object.__setattr__(self, "num_samples", 1)
        return self

    @model_validator(mode="after")
    def _grid_fits_searcher(self) -> SearchSpec:
        grid = sorted(k for k, p in self.space.items() if isinstance(p, GridParam))
        if grid and self.searcher is not SearcherName.GRID:
            raise ValueError(
                f"search.space: parameters {grid} are type grid, which only searcher=grid "
                f"takes; use type choice with searcher={self.searcher.value}, or searcher: grid")
        if self.searcher is SearcherName.GRID:
            other = sorted(k for k, p in self.space.items()
                           if not isinstance(p, GridParam | ChoiceParam))
            if other:
                raise ValueError(
                    f"search.space: searcher=grid needs finite values: parameters {other} are "
                    "ranges; give them type grid (or choice) with values")
        return self

    @model_validator(mode="after")
    def _bounded(self) -> SearchSpec:
        total = self.total_trials()
        if total > MAX_TRIALS:
            sizes = " x ".join(str(len(p.values)) for p in self.space.values()
                               if isinstance(p, GridParam | ChoiceParam))
            raise ValueError(
                f"search.space: searcher=grid crosses {sizes} values x search.num_samples="
                f"{self.num_samples} = {total} trials; allowed: at most {MAX_TRIALS} (give "
                "the parameters fewer values)")
        return self

    def grid_size(self) -> int:
        sizes = [len(p.values) for p in self.space.values()
                 if isinstance(p, GridParam | ChoiceParam)]
        return math.prod(sizes) if sizes else 0

    def total_trials(self) -> int:
        return (self.grid_size() * self.num_samples if self.searcher is SearcherName.GRID
                else self.num_samples)
