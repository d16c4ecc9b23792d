"""Loading a finished run's model back: a torch module, or a fitted scikit-learn pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from consistency.hashing import state_dict_hash
from mtp_core.spec import CustomModel, SklearnModel, TaskKind, TrainingTask
from trainer.errors import TrainerError
from trainer.models import build_model
from trainer.result import load_result

__all__ = ["load_model"]


def load_model(run_dir: str | Path, verify: bool = True) -> nn.Module | Any:
    """Rebuild the run's model from its stored task and load ``model.safetensors``; for
    ``model.type: sklearn`` the fitted pipeline from ``model.skops`` (standardization and
    estimator: ``predict`` takes raw features).

    The model takes raw (unstandardised) inputs: its first layer holds the training split's
    feature statistics. With ``verify`` the weights must hash to the result's ``weights_hash``.
    """
    from safetensors.torch import load_file

    result = load_result(run_dir)
    task = TrainingTask.model_validate(result.task)
    if isinstance(task.model, SklearnModel):
        return _load_estimator(Path(run_dir), result.model_path, result.weights_hash,
                               task.model, verify)
    path = Path(run_dir) / "model.safetensors"
    if not path.is_file():
        path = Path(result.model_path)
    if not path.is_file():
        raise TrainerError(f"model file {str(path)!r} is missing")
    state = load_file(str(path))
    if verify and state_dict_hash(state) != result.weights_hash:
        raise TrainerError(
            f"model weights {str(path)!r} do not match the result's weights_hash "
            f"{result.weights_hash[:12]}: the file was changed or corrupted"
        )
    trained_with = result.versions.get("model_code_sha256")
    if isinstance(task.model, CustomModel):
        from trainer.user_code import install, resolve

        code = resolve(task.model)
        if trained_with is not None and code.sha256 != trained_with:
            raise TrainerError(
                f"model.factory={task.model.factory!r}: its source found now (sha256 "
                f"{code.sha256[:12]}) is not the source this run was trained with "
                f"({trained_with[:12]}); restore that code to load the model")
        install(code)
    shape = tuple(result.sample_shape)
    model = build_model(task.model, shape, TaskKind(result.task_kind), result.num_classes,
                        np.zeros(shape, np.float32), np.ones(shape, np.float32))
    model.load_state_dict(state)
    model.eval()
    return model


def _load_estimator(run_dir: Path, model_path: str, weights_hash: str, spec: SklearnModel,
                    verify: bool) -> Any:
    import hashlib

    from trainer.classical import load_estimator

    path = run_dir / "model.skops"
    if not path.is_file():
        path = Path(model_path)
    if not path.is_file():
        raise TrainerError(f"model file {str(path)!r} is missing")
    data = path.read_bytes()
    if verify and hashlib.sha256(data).hexdigest() != weights_hash:
        raise TrainerError(f"model file {str(path)!r} does not match the result's weights_hash "
                           f"{weights_hash[:12]}: the file was changed or corrupted")
    return load_estimator(data, spec.estimator, str(path))
