"""A task as MLflow parameters: flattened to dotted keys, every value within MLflow's limits.

MLflow takes at most 6000 characters per parameter value and 250 per key, keys of letters,
digits and ``_ - . space / :`` only, and 100 parameters per call. A longer value is cut and
ends with the sha256 of the whole value, so two different long values never look alike.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["MAX_KEY", "MAX_VALUE", "flatten_params", "param_value"]

MAX_VALUE = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_KEY = 250  # mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH
_BAD_KEY_CHARS = re.compile(r"[^\w\-. /:]")


def param_value(value: Any) -> str:
    """One parameter value: text as is, anything else as JSON; cut to :data:`MAX_VALUE`."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) <= MAX_VALUE:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    suffix = f"...[{len(text)} chars, sha256 {digest}]"
    return text[:MAX_VALUE - len(suffix)] + suffix


def _key(parts: list[str]) -> str:
    key = ".".join(_BAD_KEY_CHARS.sub("_", p) or "_" for p in parts)
    if len(key) > MAX_KEY:
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        key = key[:MAX_KEY - 13] + "~" + digest
    return key


def _walk(value: Any, parts: list[str]) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping) and value:
        for k in sorted(value, key=str):
            yield from _walk(value[k], [*parts, str(k)])
    else:  # a leaf: a scalar, a list (as JSON), an empty mapping
        yield _key(parts), param_value(value)


def flatten_params(task: Mapping[str, Any]) -> dict[str, str]:
    """``{"training": {"epochs": 2}}`` -> ``{"training.epochs": "2"}``; lists stay one JSON
    value (``"[64, 32]"``), ``None`` is ``"null"``."""
    return dict(_walk(task, []))
