"""What a run's Ray Train controller unpickles, importable without torch.

The controller of every ``fit()`` is a new process; it unpickles the run's backend config and
scaling policy before it starts a single worker. So this module imports no torch (nor anything
that does): tests/test_architecture.py checks it, and that a run's controller never loads torch.

**The torch backend.** A ``TorchTrainer`` hands its controller a ``TorchConfig``, whose module
(``ray.train.torch.config``) imports torch at its top: unpickling the config makes the
controller import torch (about 2.5 s of CPU) before it starts a single worker, on the critical
path of every ``fit()``, and its backend's hooks keep torch in the controller for the whole
run. The controller itself never calls torch: the hooks only ask the workers to set up and
shut down the process group.

:class:`LeanTorchConfig` is ``TorchConfig``'s settings in a module that imports no torch. Its
backend takes Ray's steps for gloo and NCCL from the controller (master address and port from
rank 0, ``MASTER_ADDR``/``MASTER_PORT``, the ranks' environment variables, the process group
with its timeout, the shutdown), with each of Ray's own torch functions called by name in the
workers; any other backend goes to Ray's ``_TorchBackend`` itself. The workers' train-function
context is Ray's ``TorchConfigContextManager``, imported in the worker.

**The scaling policy.** :class:`FixedSizePolicy` is Ray Train's fixed policy without resource
requests to the ``AutoscalingCoordinator`` (see :mod:`trainer._ray_train`).

Used by :class:`trainer._ray_train.LeanTorchTrainer`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from ray.train.backend import Backend, BackendConfig
from ray.train.v2._internal.execution.scaling_policy.fixed import FixedScalingPolicy
from ray.train.v2._internal.util import TrainingFramework

__all__ = ["FixedSizePolicy", "LeanTorchConfig", "TorchContext"]

logger = logging.getLogger(__name__)


class FixedSizePolicy(FixedScalingPolicy):
    """Ray Train's fixed scaling policy without resource requests to an autoscaler."""

    def after_controller_start(self, train_run_context: Any) -> None:
        self._requester_id = f"train-{train_run_context.run_id}"

    def _maybe_send_resource_request(self) -> None:
        return None

    def _send_resource_request(self) -> None:
        return None


def _ray_torch_config() -> Any:
    import ray.train.torch.config as ray_torch_config  # imports torch: here, not at the top

    return ray_torch_config


@dataclass
class LeanTorchConfig(BackendConfig):
    """``ray.train.torch.TorchConfig``'s fields and behaviour, importable without torch."""

    backend: str | None = None
    init_method: str = "env"
    timeout_s: int = 1800

    @property
    def backend_cls(self) -> type[Backend]:
        return _LeanTorchBackend

    @property
    def train_func_context(self) -> type[TorchContext]:
        return TorchContext

    @property
    def framework(self) -> TrainingFramework:
        return TrainingFramework.TORCH

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "init_method": self.init_method,
                "timeout_s": self.timeout_s}

    def ray_config(self) -> Any:
        """The equal ``TorchConfig`` (imports torch)."""
        return _ray_torch_config().TorchConfig(**self.to_dict())


def _in_worker(name: str, /, **kwargs: Any) -> Any:
    """Call ``ray.train.torch.config.<name>`` in a worker (which has torch): the controller
    ships this function, not Ray's, so it never imports that module."""
    return getattr(_ray_torch_config(), name)(**kwargs)


def _set_master(addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = addr
    os.environ["MASTER_PORT"] = str(port)


class _LeanTorchBackend(Backend):
    """Ray Train's ``_TorchBackend`` (Ray 2.60) for gloo and NCCL, run from the controller
    without torch: the same steps, each of Ray's torch functions called in the workers by
    name. Any other backend (TPU, HCCL) is handed to Ray's own ``_TorchBackend``.
    tests/test_architecture.py pins the source of the Ray methods this follows, so a Ray
    upgrade that changes them fails there until this is checked against it.
    """

    share_cuda_visible_devices: bool = True

    def __init__(self) -> None:
        self._ray_backend: Any = None

    def _ray(self) -> Any:
        if self._ray_backend is None:
            self._ray_backend = _ray_torch_config()._TorchBackend()
        return self._ray_backend

    @staticmethod
    def _own(worker_group: Any, backend_config: LeanTorchConfig) -> str | None:
        """The backend this class sets up itself, or None for Ray's."""
        from ray.train._internal.worker_group import WorkerGroup as V1WorkerGroup

        backend = backend_config.backend
        if backend is None:
            resources = worker_group.get_resources_per_worker()
            backend = ("nccl" if resources.get("GPU", 0) > 0 else
                       "tpu_dist" if resources.get("TPU", 0) > 0 else "gloo")
        if backend not in ("gloo", "nccl") or isinstance(worker_group, V1WorkerGroup):
            return None
        return backend

    def on_start(self, worker_group: Any, backend_config: LeanTorchConfig) -> None:
        backend = self._own(worker_group, backend_config)
        if backend is None:
            self._ray().on_start(worker_group, backend_config.ray_config())
            return
        import ray
        from ray._common.network_utils import build_address
        from ray.train._internal.utils import get_address_and_port

        master_addr, master_port = worker_group.execute_single(0, get_address_and_port)
        if backend_config.init_method == "env":
            worker_group.execute(_set_master, addr=master_addr, port=master_port)
            url = "env://"
        elif backend_config.init_method == "tcp":
            url = f"tcp://{build_address(master_addr, master_port)}"
        else:
            raise ValueError(f"The provided init_method ({backend_config.init_method}) is not "
                             "supported. Must be either 'env' or 'tcp'.")
        worker_group.execute(_in_worker, "_set_torch_distributed_env_vars")
        ray.get([worker_group.execute_single_async(
            i, _in_worker, "_setup_torch_process_group", backend=backend, world_rank=i,
            world_size=len(worker_group), init_method=url, timeout_s=backend_config.timeout_s)
            for i in range(len(worker_group))])

    def on_training_start(self, worker_group: Any, backend_config: LeanTorchConfig) -> None:
        if self._own(worker_group, backend_config) is None:
            self._ray().on_training_start(worker_group, backend_config.ray_config())

    def on_shutdown(self, worker_group: Any, backend_config: LeanTorchConfig) -> None:
        if self._own(worker_group, backend_config) is None:
            self._ray().on_shutdown(worker_group, backend_config.ray_config())
            return
        import ray
        from ray._private import ray_constants
        from ray.exceptions import GetTimeoutError
        from ray.train.constants import (
            DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
            TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
        )

        futures = worker_group.execute_async(_in_worker, "_shutdown_torch",
                                             destroy_process_group=len(worker_group) > 1)
        timeout_s = ray_constants.env_integer(TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
                                              DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S)
        try:
            ray.get(futures, timeout=timeout_s)
        except GetTimeoutError:
            logger.warning("Torch process group shutdown timed out after %s seconds", timeout_s)


class TorchContext:
    """Ray's ``TorchConfigContextManager`` around the train function, imported in the worker."""

    def __init__(self) -> None:
        self._inner: Any = None

    def __enter__(self) -> None:
        self._inner = _ray_torch_config().TorchConfigContextManager()
        self._inner.__enter__()

    def __exit__(self, *exc: Any) -> bool:
        return bool(self._inner.__exit__(*exc))
