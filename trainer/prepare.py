"""From a task to what a run needs before any worker starts: data, hash, seed, keys, checks.

Two steps, so that a result already in the cache costs no more than reading the data:

- :func:`identify` loads and checks the data, hashes it, derives the seed, the checkpoint
  fingerprint and the result cache key. It imports neither torch nor Ray.
- :func:`check_trainable` checks what only matters when training: the loss for the data's
  kind, the model's size in memory, that the model builds (and, for the parameter server,
  shards). It imports torch.

:func:`prepare` is both.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from consistency.identity import cache_key, task_params_for_key
from mtp_core.hashing import canonical_json, columns_hash, data_hash
from mtp_core.spec import CustomModel, SklearnModel, Strategy, TrainingTask
from trainer.data import Dataset, DatasetMeta, load_dataset, task_split
from trainer.errors import ConfigError
from trainer.init_weights import InitWeights

if TYPE_CHECKING:
    from trainer.preprocess import FittedPreprocess
from trainer.user_code import resolve as resolve_code
from trainer.versions import MODEL_CODE_VERSION, code_version

__all__ = ["PreparedTask", "check_trainable", "fingerprint", "identify", "identity", "prepare"]


class PreparedTask:
    """A validated task with its data loaded, hashed and its seed derived (no Ray needed)."""

    def __init__(self, task: TrainingTask, dataset: Dataset) -> None:
        self.task = task
        self.meta = DatasetMeta(dataset.kind, dataset.num_classes)
        #: the data as loaded (before dataset.preprocess), which the data report describes
        self.loaded = dataset
        self.data_hash = (columns_hash(list(dataset.raw), dataset.targets)
                          if dataset.raw is not None
                          else data_hash(dataset.features, dataset.targets))
        seed = task.consistency.deterministic.resolve_seed(task.task_id, self.data_hash)
        # deterministic.enabled=false: a fresh seed per run (results vary, as asked)
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
        self.split = task_split(task, dataset.targets, dataset.kind, self.seed)
        self._fitted: tuple[FittedPreprocess | None, Dataset] | None = (
            None if dataset.raw is not None else (None, dataset))
        #: a custom model's source (shipped to the workers); its hash keys the results
        self.user_code = (resolve_code(task.model) if isinstance(task.model, CustomModel)
                          else None)
        #: training.init_from: the starting weights (their hash keys checkpoints and results)
        self.init_weights = InitWeights.of(task)
        self.fingerprint = fingerprint(task, self.data_hash, self.seed, self.model_code_sha256,
                                       self.init_weights)
        versions = code_version() + (f"+model-code-{self.model_code_sha256}"
                                     if self.model_code_sha256 else "")
        #: scikit-learn and skops versions when the run's numbers depend on them (an
        #: estimator, or preprocessing steps): in the cache key and the result
        self.library_versions: dict[str, str] = {}
        if isinstance(task.model, SklearnModel) or task.dataset.preprocess:
            from trainer.classical import estimator_versions

            self.library_versions = estimator_versions()
        versions += "".join(f"+{lib}-{v}" for lib, v in self.library_versions.items())
        params = task_params_for_key(task.canonical_dict())
        if self.init_weights is not None:
            params.update(self.init_weights.key())
        self.cache_key = cache_key(task.task_id, params, self.data_hash, MODEL_CODE_VERSION,
                                   versions)

    def _fit(self) -> tuple[FittedPreprocess | None, Dataset]:
        """``dataset.preprocess`` fitted on the training split, on first use: a result found
        in the cache (by the key above, which needs no fit) never pays for it."""
        if self._fitted is None:
            from trainer.preprocess import fit_preprocess

            loaded = self.loaded
            assert loaded.raw is not None
            fitted, features = fit_preprocess(
                self.task.dataset.preprocess, loaded.raw, loaded.targets, self.split.train,
                loaded.kind, self.seed)
            self._fitted = (fitted, replace(loaded, features=features,
                                            feature_names=fitted.outputs))
        return self._fitted

    @property
    def dataset(self) -> Dataset:
        """The data the model trains on: after ``dataset.preprocess`` when it has steps."""
        return self._fit()[1]

    @property
    def preprocess(self) -> FittedPreprocess | None:
        """``dataset.preprocess`` fitted on the training split (None without steps)."""
        return self._fit()[0]

    @property
    def model_code_sha256(self) -> str | None:
        """The sha256 of a custom model's source (None for a built-in model)."""
        return self.user_code.sha256 if self.user_code is not None else None


def identity(task: TrainingTask) -> dict[str, Any]:
    """The parts of a task a run directory's checkpoints and results depend on.

    Epoch count, early stopping, checkpoint policy and resources may change between runs of
    the same training (extending a run is allowed); model, data, optimizer, loss and split
    may not.
    """
    d = task.canonical_dict()
    d["model"].pop("code_dir", None)  # where the code was found; its content is hashed
    d["dataset"].pop("code_dir", None)
    training = {k: v for k, v in d["training"].items()
                if k not in ("epochs", "early_stopping", "checkpoint", "init_from",
                                 "max_runtime_s")}
    key = {"task_id": task.task_id, "model": d["model"], "dataset": d["dataset"],
           "hyperparameters": d["hyperparameters"], "training": training}
    if task.strategy is not Strategy.DDP:  # the optimizer state lives on the server shards
        key["strategy"] = {"name": task.strategy.value, "ps": d["ps"] or {}}
    return key


def fingerprint(task: TrainingTask, digest: str, seed: int,
                model_code_sha256: str | None = None,
                init_weights: InitWeights | None = None) -> str:
    """What must match for a checkpoint to be resumable by this task: its identity, the
    data's content hash, the seed, a custom model's source hash and the starting weights."""
    key = {**identity(task), "data": digest, "seed": seed}
    if model_code_sha256 is not None:
        key["model_code"] = model_code_sha256
    if init_weights is not None:
        key.update(init_weights.key())
    return hashlib.sha256(canonical_json(key)).hexdigest()


def identify(task: TrainingTask) -> PreparedTask:
    """Load, check and hash the data; derive seed and keys. Raises DataError / ConfigError."""
    from trainer.report import check_validation

    dataset = load_dataset(task.dataset)
    task.check_kind(dataset.kind)  # a monitor metric or loss the data's kind never produces
    check_validation(task.dataset.validation, dataset)
    return PreparedTask(task, dataset)


def check_trainable(prepared: PreparedTask) -> None:
    """Check the loss and model choice against the data; raises ConfigError. Imports torch
    (scikit-learn instead for ``model.type: sklearn``)."""
    if isinstance(prepared.task.model, SklearnModel):
        from trainer.classical import check_estimator

        check_estimator(prepared.task, prepared.dataset.kind)
        return
    import torch

    from cluster.errors import ClusterError
    from cluster.parameter_server import ShardLayout
    from trainer.loop import build_loss
    from trainer.models import build_model, check_model_size, check_output_shape

    task, dataset = prepared.task, prepared.dataset
    if prepared.user_code is not None:  # the custom model's factory, from the hashed source
        from trainer.user_code import install

        install(prepared.user_code)
    build_loss(task, dataset.kind)
    shape = dataset.sample_shape
    # before a byte of the model is allocated: a model that cannot fit is a ConfigError
    check_model_size(task.model, shape, dataset.kind, dataset.num_classes,
                     task.training.optimizer, task.hyperparameters.momentum)
    model = build_model(task.model, shape, dataset.kind, dataset.num_classes,
                        np.zeros(shape, np.float32), np.ones(shape, np.float32))
    check_output_shape(task.model, model, torch.from_numpy(
        np.ascontiguousarray(dataset.features[:2], dtype=np.float32)), dataset.kind,
        dataset.num_classes)
    if task.strategy is Strategy.PARAMETER_SERVER:
        try:
            ShardLayout.for_module(model, task.ps_spec.num_shards)
        except ClusterError as err:
            raise ConfigError(f"invalid task config: {err}") from None


def prepare(task: TrainingTask) -> PreparedTask:
    """Load and check the data and the model/loss choice; raises ConfigError / DataError."""
    prepared = identify(task)
    check_trainable(prepared)
    return prepared
