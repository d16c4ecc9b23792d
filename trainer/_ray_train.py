"""Ray Train's ``TorchTrainer`` without the helper processes a run of in-memory arrays never uses.

Every ``TorchTrainer.fit()`` starts, besides its controller, a synchronization actor and the
workers, a ``DatasetManager`` actor (even when the run has no Ray Dataset) and a detached
``PlacementGroupCleaner`` actor; each is a new Python process importing ``ray.train`` (about
1.2 s of CPU), the cleaner is waited for at start-up (registration) and at teardown (its stop
may take up to 12 s). The platform's runs hand their arrays through the object store, and the
placement groups a dead controller leaves behind are freed by
:func:`mtp_core.ray_env.reap_orphan_placement_groups` (a driver's own exit frees them too). So
this trainer drops both callbacks. Its fixed scaling policy does not register the run with
Ray Train's ``AutoscalingCoordinator`` (one more actor process, started and waited for by the
first run on a cluster) unless ``MTP_ALLOW_AUTOSCALE`` is set: without it the platform refuses
a task the cluster cannot hold now, so there is nothing for an autoscaler to add. Everything
else (controller, worker group, failure handling, checkpoints, reports) is Ray Train's own.

Its backend config is :class:`trainer._ray_train_controller.LeanTorchConfig` (Ray's
``TorchConfig`` given to it is converted): the same process-group set-up, without importing
torch in the controller before the workers start.

The callbacks and the policy are built by private methods (``_create_default_callbacks``,
``_initialize_and_run_controller``): this module is the one place that relies on them, and
tests/test_architecture.py fails when a Ray upgrade moves them.
"""

from __future__ import annotations

import os
from typing import Any

from ray.train.torch import TorchConfig, TorchTrainer
from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
from ray.train.v2._internal.callbacks.placement_group_callback import (
    PlacementGroupCleanerCallback,
)
from ray.train.v2._internal.execution.scaling_policy.fixed import FixedScalingPolicy

from trainer._ray_train_controller import FixedSizePolicy, LeanTorchConfig

__all__ = ["DROPPED_CALLBACKS", "FixedSizePolicy", "LeanTorchTrainer"]

#: Ray Train's default callbacks a run without Ray Datasets does not need.
DROPPED_CALLBACKS: tuple[type, ...] = (DatasetsCallback, PlacementGroupCleanerCallback)


class LeanTorchTrainer(TorchTrainer):
    """A ``TorchTrainer`` without a dataset manager and placement-group cleaner (see above).

    A run that is given Ray Datasets keeps its ``DatasetsCallback``. A ``TorchConfig`` (or
    none) becomes the equal :class:`LeanTorchConfig`; its subclasses are left as they are.
    """

    def __init__(self, *args: Any, torch_config: Any = None, **kwargs: Any) -> None:
        if torch_config is None or type(torch_config) is TorchConfig:
            given = torch_config.to_dict() if torch_config is not None else {}
            torch_config = LeanTorchConfig(**given)
        super().__init__(*args, torch_config=torch_config, **kwargs)

    def _initialize_and_run_controller(self, **kwargs: Any) -> Any:
        if (type(kwargs.get("scaling_policy")) is FixedScalingPolicy
                and not os.environ.get("MTP_ALLOW_AUTOSCALE")):
            kwargs["scaling_policy"] = FixedSizePolicy(self.scaling_config)
        return super()._initialize_and_run_controller(**kwargs)

    def _create_default_callbacks(self) -> list[Any]:
        callbacks: list[Any] = super()._create_default_callbacks()
        drop = DROPPED_CALLBACKS if not self.datasets else (PlacementGroupCleanerCallback,)
        return [c for c in callbacks if not isinstance(c, drop)]
