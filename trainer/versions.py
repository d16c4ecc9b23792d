"""The code versions a result's numbers depend on: part of every result cache key.

Read without importing torch (a cached rerun never loads it): the installed torch's version
is its distribution's metadata, which is what ``torch.__version__`` reports (a test keeps the
two equal).
"""

from __future__ import annotations

from importlib import metadata

import numpy as np

from mtp_core.version import __version__

__all__ = ["MODEL_CODE_VERSION", "code_version", "torch_version"]

#: Bump when a model builder (trainer/models.py) changes what it builds (layers,
#: initialisation), or the loop's numerics change: it is part of the result cache key, so
#: results of the old code stop matching. v2: classification splits are stratified.
MODEL_CODE_VERSION = "models-v2"


def torch_version() -> str:
    return metadata.version("torch")


def code_version() -> str:
    """The code whose numerics a result depends on: this platform, torch and numpy."""
    return f"mtp-{__version__}+torch-{torch_version()}+numpy-{np.__version__}"
