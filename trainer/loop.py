"""The data-parallel training loop that runs on every worker.

:class:`TrainLoop` is a plain class: Ray Train's worker function (``ray_train_worker``) wraps it
with the process group, ``prepare_model`` and ``ray.train.report``; tests drive it in-process with
``SingleProcess`` and call ``run_epoch`` one epoch at a time.

Lifecycle: ``__init__`` seeds, splits, builds the model and its gradient exchange
(:mod:`trainer.exchange`: the local optimizer for DDP, the server shards for the parameter
server), resumes from the newest checkpoint that verifies (model, optimizer, position in the data
order, every rank's RNG state, early-stopping state and metric history) and starts the exchange.
``run`` calls ``run_epoch`` until the last epoch or early stopping, checkpointing by policy, then
``finish`` writes the final model and a summary (rank 0 only).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from consistency.hashing import state_dict_hash
from mtp_core.atomic import atomic_write_bytes, atomic_write_text
from mtp_core.hashing import rank_seed
from mtp_core.layout import RunLayout
from mtp_core.spec import LossName, OptimizerName, TaskKind, TrainingTask
from trainer._collective import Collective
from trainer.batches import ShardedBatches
from trainer.checkpoint import CheckpointScheduler, CheckpointStore, SaveReason
from trainer.data import DatasetMeta, feature_stats, task_split, validation_shard
from trainer.determinism import (
    capture_rng_state,
    enable_deterministic_algorithms,
    restore_rng_state,
    seed_everything,
)
from trainer.errors import ConfigError
from trainer.exchange import DDPExchange, GradientExchange
from trainer.init_weights import InitWeights, load_initial_weights
from trainer.metrics import (
    classification_metrics,
    classification_stats,
    first_non_finite,
    regression_metrics,
    regression_stats,
    time_inference,
)
from trainer.models import build_model, count_parameters

__all__ = ["DatasetMeta", "TrainLoop", "build_loss", "build_optimizer", "first_non_finite"]

logger = logging.getLogger(__name__)

_EVAL_CHUNK = 8192


@dataclass
class _EarlyStopState:
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.best_value = d["best_value"]
        self.best_epoch = int(d["best_epoch"])
        self.bad_epochs = int(d["bad_epochs"])


@dataclass
class _RunState:
    epoch: int = 0  # completed epochs
    global_step: int = 0  # optimizer steps taken, all epochs
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    # {"epoch", "metric", "value"}: the first non-finite loss or metric; training stops there
    diverged: dict[str, Any] | None = None


def build_loss(task: TrainingTask, kind: TaskKind) -> nn.Module:
    name = task.training.loss
    if name is LossName.AUTO:
        name = LossName.CROSS_ENTROPY if kind is TaskKind.CLASSIFICATION else LossName.MSE
    if kind is TaskKind.CLASSIFICATION and name is not LossName.CROSS_ENTROPY:
        raise ConfigError(
            f"training.loss={name.value} does not fit a classification dataset; "
            "allowed: cross_entropy or auto"
        )
    if kind is TaskKind.REGRESSION and name is LossName.CROSS_ENTROPY:
        raise ConfigError(
            "training.loss=cross_entropy does not fit a regression dataset; "
            "allowed: mse, l1, huber or auto"
        )
    return {
        LossName.CROSS_ENTROPY: nn.CrossEntropyLoss,
        LossName.MSE: nn.MSELoss,
        LossName.L1: nn.L1Loss,
        LossName.HUBER: nn.HuberLoss,
    }[name]()


def build_optimizer(task: TrainingTask, params: Any, fused: bool = False) -> torch.optim.Optimizer:
    """The task's optimizer; ``fused`` picks torch's single-kernel update (the parameter
    server's shards use it on their one flat tensor; its rounding differs from the default
    foreach update in the last bits, so a run keeps one choice throughout)."""
    hp, lr = task.hyperparameters, task.training.learning_rate
    opt = task.training.optimizer
    extra: dict[str, Any] = {"fused": True} if fused else {}
    if opt is OptimizerName.SGD:
        return torch.optim.SGD(params, lr=lr, momentum=hp.momentum, nesterov=hp.nesterov,
                               weight_decay=hp.weight_decay, **extra)
    cls = torch.optim.Adam if opt is OptimizerName.ADAM else torch.optim.AdamW
    return cls(params, lr=lr, betas=hp.betas, eps=hp.eps, weight_decay=hp.weight_decay,
               **extra)


@torch.no_grad()
def measure_inference(module: nn.Module, x: torch.Tensor, batch_size: int,
                      device: torch.device) -> dict[str, Any]:
    """:func:`trainer.metrics.time_inference` of ``module`` on ``x``, on ``device`` with this
    process's torch threads (a GPU is synchronised after each call)."""
    module.eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def call(start: int, stop: int) -> None:
        module(x[start:stop].to(device))
        sync()

    return time_inference(call, len(x), batch_size, device=str(device),
                          threads=torch.get_num_threads())


class TrainLoop:
    """One rank's share of a data-parallel training run (see module docstring)."""

    def __init__(
        self,
        task: TrainingTask,
        features: np.ndarray,
        targets: np.ndarray,
        meta: DatasetMeta,
        seed: int,
        run_dir: str | Path,
        fingerprint: str,
        collective: Collective,
        report: Callable[[dict[str, Any]], None] = lambda metrics: None,
        prepare_model: Callable[[nn.Module], nn.Module] = lambda m: m,
        device: torch.device | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        make_exchange: Callable[[nn.Module], GradientExchange] | None = None,
    ) -> None:
        self.task = task
        self.meta = meta
        self.seed = seed
        self.fingerprint = fingerprint
        self.comm = collective
        self.rank, self.world_size = collective.rank, collective.world_size
        self.report = report
        self.on_epoch = on_epoch
        self.device = device or torch.device("cpu")
        self.layout = RunLayout.of(run_dir)
        self.metric_name, self.metric_mode = task.monitor_metric(meta.kind)

        enable_deterministic_algorithms()
        seed_everything(seed)  # identical model initialisation on every rank

        split = task_split(task, targets, meta.kind, seed)
        train_idx, val_idx = split.train, split.validation
        with warnings.catch_warnings():
            # arrays from Ray's object store are read-only; they are only ever indexed (copied)
            warnings.simplefilter("ignore", UserWarning)
            x = torch.from_numpy(np.ascontiguousarray(features))
            y = torch.from_numpy(np.ascontiguousarray(targets))
        self.x_train, self.y_train = x[train_idx], y[train_idx]
        mine = torch.from_numpy(validation_shard(len(val_idx), self.rank, self.world_size))
        val = torch.from_numpy(val_idx)[mine]
        self.x_val, self.y_val = x[val], y[val]
        self.x_test, self.y_test = x[split.test], y[split.test]  # evaluated once, at the end
        self.n_val_total = len(val_idx)
        if task.dataset.standardize:
            mean, std = feature_stats(self.x_train.numpy())
        else:
            shape = tuple(features.shape[1:])
            mean, std = np.zeros(shape, np.float32), np.ones(shape, np.float32)

        self.module = build_model(task.model, tuple(features.shape[1:]), meta.kind,
                                  meta.num_classes, mean, std).to(self.device)
        self.init_weights = InitWeights.of(task)
        if self.init_weights is not None:  # a checkpoint, if any, replaces them in _resume
            load_initial_weights(self.module, self.init_weights)
        #: the starting weights' validation metrics, before the first epoch (init_from only)
        self.initial_metrics: dict[str, float] | None = None
        self.num_parameters = count_parameters(self.module)
        self.model = prepare_model(self.module)
        self.loss_fn = build_loss(task, meta.kind)
        # default: the local optimizer (DDP averages the gradients during backward)
        self.exchange: GradientExchange = (
            make_exchange(self.module) if make_exchange is not None
            else DDPExchange(build_optimizer(task, self.model.parameters())))
        self.batches = ShardedBatches(self.x_train, self.y_train, task.training.batch_size,
                                      self.rank, self.world_size, seed)
        self.store = CheckpointStore(self.layout.checkpoints, task.training.checkpoint)
        self.scheduler = CheckpointScheduler(task.training.checkpoint)
        self.early = _EarlyStopState()
        self.state = _RunState()
        self.resumed_from: int | None = None

        seed_everything(rank_seed(seed, self.rank))  # per-rank streams (dropout)
        self._resume()
        self.exchange.start()

    # -- checkpoints ---------------------------------------------------------------------------

    def _resume(self) -> None:
        found = self.store.load_latest(self.fingerprint)
        if found is None:
            return
        state, info = found
        self.module.load_state_dict(state["model"])
        self.exchange.load_state_dict(state["optimizer"])
        self.early.load_state_dict(state["early_stopping"])
        self.state = _RunState(int(state["epoch"]), int(state.get("global_step", 0)),
                               list(state["history"]), bool(state.get("stopped_early", False)))
        self.initial_metrics = state.get("initial_metrics")
        rng = state["rng"]
        if len(rng) == self.world_size:
            restore_rng_state(rng[self.rank])
        else:
            logger.warning(
                "checkpoint %s was written by %d ranks, this run has %d: RNG streams are "
                "reseeded, so the result will not be bit-identical to an uninterrupted run",
                info.path, len(rng), self.world_size)
            seed_everything(rank_seed(self.seed + self.state.epoch, self.rank))
        self.resumed_from = self.state.epoch
        if self.rank == 0:
            logger.info("resumed from %s (epoch %d)", info.path, self.state.epoch)

    def _checkpoint_state(self, rngs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": 1,
            "epoch": self.state.epoch,
            # epoch-boundary checkpoints: the next batch is batch 0 of epoch `epoch`
            "position": {"epoch": self.state.epoch, "batch": 0},
            "global_step": self.state.global_step,
            "model": self.module.state_dict(),
            "optimizer": self.exchange.state_dict(),
            "rng": rngs,
            "early_stopping": self.early.state_dict(),
            "history": self.state.history,
            "stopped_early": self.state.stopped_early,
            "world_size": self.world_size,
            "seed": self.seed,
            "initial_metrics": self.initial_metrics,
        }

    def _maybe_checkpoint(self, is_best: bool, record: dict[str, Any]) -> str | None:
        epochs = self.task.training.epochs
        reason_code = -1
        if self.rank == 0:
            reason = self.scheduler.decide(self.state.epoch, epochs, is_best,
                                           stopping=self.state.stopped_early)
            reason_code = -1 if reason is None else list(SaveReason).index(reason)
        # the time rule reads rank 0's clock: everyone follows rank 0's decision
        reason_code = self.comm.broadcast_int(reason_code)
        if reason_code < 0:
            return None
        reason = list(SaveReason)[reason_code]
        rngs = self.comm.all_gather_object(capture_rng_state())
        if self.rank != 0:
            return None
        metrics = {k: float(v) for k, v in record.items() if isinstance(v, int | float)}
        info = self.store.save(self._checkpoint_state(rngs), epoch=self.state.epoch,
                               reason=reason, is_best=is_best, metrics=metrics,
                               fingerprint=self.fingerprint)
        self.scheduler.saved()
        return str(info.path)

    # -- one epoch ------------------------------------------------------------------------------

    def _train_one_epoch(self, epoch: int) -> tuple[float, int, float]:
        self.model.train()
        self.batches.set_epoch(epoch)
        clip = self.task.hyperparameters.grad_clip_norm
        # accumulated on the device: a per-step .cpu() would synchronise every GPU step
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        start = time.perf_counter()
        for xb, yb in self.batches:
            xb, yb = xb.to(self.device), yb.to(self.device)
            self.exchange.zero_grad()
            loss = self.loss_fn(self.model(xb), yb)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.exchange.step()
            self.state.global_step += 1  # read by the heartbeat thread
            loss_sum += loss.detach().to(torch.float64) * len(yb)
            seen += len(yb)
        total = float(loss_sum)  # one synchronisation per epoch, before the clock stops
        elapsed = time.perf_counter() - start
        return total, seen, elapsed

    @torch.no_grad()
    def _split_sums(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``[loss sum, sufficient statistics...]`` of ``module`` on rows ``x, y`` (float64):
        what ranks add up, and what turns into metrics (:meth:`_metrics_of`)."""
        module.eval()
        kind = self.meta.kind
        parts = []
        loss_sum = torch.zeros((), dtype=torch.float64)
        for s in range(0, len(x), _EVAL_CHUNK):
            xb = x[s : s + _EVAL_CHUNK].to(self.device)
            yb = y[s : s + _EVAL_CHUNK].to(self.device)
            out = module(xb)
            loss_sum += self.loss_fn(out, yb).to("cpu", torch.float64) * len(yb)
            parts.append(classification_stats(out.cpu(), yb.cpu(), self.meta.num_classes)
                         if kind is TaskKind.CLASSIFICATION
                         else regression_stats(out.cpu(), yb.cpu()))
        if parts:
            stats = torch.stack(parts).sum(dim=0)
        else:  # a rank can hold no validation rows when the split is tiny
            size = self.meta.num_classes**2 if kind is TaskKind.CLASSIFICATION else 4
            stats = torch.zeros(size, dtype=torch.float64)
        return torch.cat([loss_sum.reshape(1), stats])

    def _metrics_of(self, total: np.ndarray, rows: int) -> dict[str, float]:
        metrics = {"val_loss": float(total[0]) / max(rows, 1)}
        if self.meta.kind is TaskKind.CLASSIFICATION:
            metrics.update(classification_metrics(total[1:]))
        else:
            metrics.update(regression_metrics(total[1:]))
        return metrics

    def _evaluate(self) -> dict[str, float]:
        total = self.comm.all_reduce_sum(self._split_sums(self.module, self.x_val, self.y_val))
        return self._metrics_of(total.numpy(), self.n_val_total)

    def _test_evaluation(self) -> dict[str, Any] | None:
        """Rank 0, once, after training: the best epoch's weights (its checkpoint, or the final
        weights when the last epoch was the best) on the whole test split, and how fast they
        predict. When the best epoch's checkpoint was not kept the final weights are used and
        the record says so."""
        if self.rank != 0 or len(self.y_test) == 0 or self.state.diverged is not None:
            return None
        best = self.early.best_epoch or self.state.epoch
        module, epoch, weights = self.module, self.state.epoch, "best"
        if best != self.state.epoch:
            info = self.store.best()
            state = self.store.load(info) if info is not None and info.epoch == best else None
            if state is None:
                weights = "final"
                logger.warning("the checkpoint of the best epoch (%d) was not kept: the test "
                               "split evaluates the final weights (epoch %d)", best, epoch)
            else:
                module = copy.deepcopy(self.module)
                module.load_state_dict(state["model"])
                epoch = best
        total = self._split_sums(module, self.x_test, self.y_test).numpy()
        metrics = {k.replace("val_", "test_", 1): v
                   for k, v in self._metrics_of(total, len(self.y_test)).items()}
        return {"epoch": epoch, "weights": weights, "rows": len(self.y_test),
                "metrics": metrics,
                "inference": measure_inference(module, self.x_test,
                                               self.task.training.batch_size, self.device)}

    def _improved(self, value: float) -> bool:
        return self.metric_mode.improves(value, self.early.best_value,
                                         self.task.training.early_stopping.min_delta)

    def run_epoch(self) -> dict[str, Any]:
        """Train, evaluate, update early stopping, checkpoint and report one epoch."""
        epoch = self.state.epoch  # 0-based index of the epoch about to run
        t0 = time.time()
        loss_sum, seen, train_time = self._train_one_epoch(epoch)
        totals = self.comm.all_reduce_sum(
            torch.tensor([loss_sum, float(seen), train_time], dtype=torch.float64)).numpy()
        # every rank has finished the epoch's steps (the all-reduce above): an asynchronous
        # exchange (the parameter server's async mode) brings every rank to the same, newest
        # parameters before evaluation
        self.exchange.synchronize()
        metrics = self._evaluate()
        self.state.epoch = epoch + 1
        value = metrics[self.metric_name]
        is_best = self._improved(value)
        if is_best:
            self.early.best_value, self.early.best_epoch, self.early.bad_epochs = (
                value, epoch + 1, 0)
        else:
            self.early.bad_epochs += 1
        patience = self.task.training.early_stopping.patience
        if patience and self.early.bad_epochs >= patience:
            self.state.stopped_early = True
        # throughput: global samples over the slowest rank's time ~ mean time (sync'd by DDP)
        mean_time = float(totals[2]) / self.world_size
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(totals[0]) / max(float(totals[1]), 1.0),
            **metrics,
            "train_samples": int(totals[1]),
            "train_time_s": mean_time,
            "samples_per_s": float(totals[1]) / mean_time if mean_time > 0 else math.nan,
            "epoch_time_s": 0.0,
            "is_best": is_best,
            "start_unix": t0,
        }
        self.state.history.append(record)
        bad = first_non_finite(record)
        if bad is not None:
            # every rank sees the same all-reduced numbers, so every rank stops here; the
            # epoch is not checkpointed: a rerun resumes from the last finite state
            self.state.diverged = {"epoch": epoch + 1, "metric": bad[0], "value": bad[1]}
            if self.rank == 0:
                logger.info("training diverged: %s is %s at epoch %d", bad[0], bad[1],
                               epoch + 1)
            ckpt = None
        else:
            ckpt = self._maybe_checkpoint(is_best, record)
        record["epoch_time_s"] = time.time() - t0
        report = {k: v for k, v in record.items() if k != "start_unix"}
        report["checkpoint"] = ckpt
        self.report(report)
        if self.on_epoch is not None and self.rank == 0:
            self.on_epoch(report)
        return record

    def run(self) -> dict[str, Any]:
        if self.rank == 0:
            self._event({"event": "start", "from_epoch": self.state.epoch,
                         "world_size": self.world_size})
        if self.init_weights is not None and self.state.epoch == 0:
            # where the inherited weights stand on this task's validation split: for a branch
            # on the parent's data this is the parent's last validation result
            self.initial_metrics = self._evaluate()
        while (self.state.epoch < self.task.training.epochs and not self.state.stopped_early
               and self.state.diverged is None):
            self.run_epoch()
        return self.finish()

    # -- outputs --------------------------------------------------------------------------------

    def _event(self, event: dict[str, Any]) -> None:
        path = self.layout.events
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:  # one short line: appends stay whole
            f.write(json.dumps({**event, "time_unix": time.time()}) + "\n")

    def finish(self) -> dict[str, Any]:
        """Rank 0 writes the final weights and a summary; returns the summary on every rank."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        summary = {
            "weights_hash": state_dict_hash(state),
            "epochs_completed": self.state.epoch,
            "stopped_early": self.state.stopped_early,
            "best_epoch": self.early.best_epoch,
            "monitor_metric": self.metric_name,
            "monitor_mode": self.metric_mode,
            "history": self.state.history,
            "num_parameters": self.num_parameters,
            "world_size": self.world_size,
            "seed": self.seed,
            "resumed_from_epoch": self.resumed_from,
            "initial_metrics": self.initial_metrics,
            "diverged": self.state.diverged,
            "test": self._test_evaluation(),
        }
        if self.rank == 0:
            from safetensors.torch import save as st_save

            if self.state.diverged is None:  # a diverged model never replaces a stored one
                atomic_write_bytes(self.layout.model, st_save(state))
            atomic_write_text(self.layout.final, json.dumps(summary, indent=1))
            self._event({"event": "finish", "epoch": self.state.epoch})
        return summary
