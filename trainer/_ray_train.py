"""Ray Train's ``TorchTrainer`` without the helper processes a run of in-memory arrays never uses.

Every ``TorchTrainer.fit()`` starts, besides its controller, a synchronization actor and the
workers, a ``DatasetManager`` actor (even when the run has no Ray Dataset) and a detached
``PlacementGroupCleaner`` actor; each is a new Python process importing ``ray.train`` (about
1.2 s of CPU), the cleaner is waited for at start-up (registration) and at teardown (its stop
may take up to 12 s). The platform's runs hand their arrays through the object store, and the
placement groups a dead controller leaves behind are freed by
:func:`mtp_core.ray_env.reap_orphan_placement_groups` (a driver's own exit frees them too). So
this trainer drops both callbacks; everything else (controller, worker group, failure
handling, checkpoints, reports) is Ray Train's own.

The callbacks are built by a private method, ``_create_default_callbacks``: this module is the
one place that relies on it, and tests/test_architecture.py fails when a Ray upgrade moves it.
"""

from __future__ import annotations

from typing import Any

from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
from ray.train.v2._internal.callbacks.placement_group_callback import (
    PlacementGroupCleanerCallback,
)

__all__ = ["DROPPED_CALLBACKS", "LeanTorchTrainer"]

#: Ray Train's default callbacks a run without Ray Datasets does not need.
DROPPED_CALLBACKS: tuple[type, ...] = (DatasetsCallback, PlacementGroupCleanerCallback)


class LeanTorchTrainer(TorchTrainer):
    """A ``TorchTrainer`` without a dataset manager and placement-group cleaner (see above).

    A run that is given Ray Datasets keeps its ``DatasetsCallback``.
    """

    def _create_default_callbacks(self) -> list[Any]:
        callbacks: list[Any] = super()._create_default_callbacks()
        drop = DROPPED_CALLBACKS if not self.datasets else (PlacementGroupCleanerCallback,)
        return [c for c in callbacks if not isinstance(c, drop)]
