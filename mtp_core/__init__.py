"""The platform's vocabulary: the bottom layer, importing neither torch nor Ray.

The task spec and its enums (:mod:`mtp_core.spec`, :mod:`mtp_core.consistency_spec`), the
strict config base (:mod:`mtp_core.base`), the error root (:mod:`mtp_core.errors`), atomic
file I/O (:mod:`mtp_core.atomic`), content hashing and seed derivation
(:mod:`mtp_core.hashing`), the metric direction (:mod:`mtp_core.direction`), what a task needs
from the cluster (:mod:`mtp_core.resources`) and the Ray namespace and connection helper
(:mod:`mtp_core.ray_env`, which imports Ray only when called).
"""

from mtp_core.atomic import (
    CorruptFileError,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json,
)
from mtp_core.base import StrictModel
from mtp_core.direction import Direction
from mtp_core.errors import ConfigError, DataError, InputError, MtpError, exit_code_for
from mtp_core.hashing import canonical_json, data_hash, deterministic_seed, rank_seed
from mtp_core.ray_env import NAMESPACE, connect, control_plane_options
from mtp_core.resources import TaskResources
from mtp_core.spec import TrainingTask, load_task, parse_task
from mtp_core.version import __version__

__all__ = [
    "NAMESPACE",
    "ConfigError",
    "CorruptFileError",
    "DataError",
    "Direction",
    "InputError",
    "MtpError",
    "StrictModel",
    "TaskResources",
    "TrainingTask",
    "__version__",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "canonical_json",
    "connect",
    "control_plane_options",
    "data_hash",
    "deterministic_seed",
    "exit_code_for",
    "load_task",
    "parse_task",
    "rank_seed",
    "read_json",
]
