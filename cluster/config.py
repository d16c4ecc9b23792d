"""Offline check of a ``ray up`` cluster configuration, the way ``ray up`` itself checks it.

Ray validates a cluster YAML against ``ray/autoscaler/ray-schema.json`` after filling in the
provider's defaults (``prepare_config``). Those helpers are private Ray API, so they are wrapped
here, in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cluster.errors import ClusterConfigError

__all__ = ["ClusterConfigError", "validate_cluster_config"]


def validate_cluster_config(path: str | Path) -> dict[str, Any]:
    """Validate a cluster YAML with Ray's schema; returns the prepared (defaults-filled) config."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    p = Path(path)
    if not p.is_file():
        raise ClusterConfigError(f"cluster config {str(p)!r} does not exist")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ClusterConfigError(f"cluster config {str(p)!r} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ClusterConfigError(f"cluster config {str(p)!r} must be a mapping")
    try:
        prepared: dict[str, Any] = prepare_config(raw)
        validate_config(prepared)
    except (jsonschema.ValidationError, ValueError, KeyError) as err:
        msg = getattr(err, "message", None) or str(err)
        raise ClusterConfigError(f"cluster config {str(p)!r} is invalid: {msg}") from None
    return prepared
