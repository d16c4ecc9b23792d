from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mtp_core.consistency_spec import CacheSpec, ConsistencySpec, DeterministicSpec
from mtp_core.hashing import deterministic_seed

DATA = "d" * 64


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        ConsistencySpec.model_validate(raw)
    return str(info.value)


def test_defaults_match_the_issue() -> None:
    spec = ConsistencySpec()
    assert spec.deterministic == DeterministicSpec(enabled=True, global_seed=None,
                                                   use_task_based_seed=True)
    assert (spec.cache.enabled, spec.cache.ttl_hours, spec.cache.max_cache_size) == (
        True, 168.0, 1000)
    assert spec.cache.ttl_s == 168 * 3600
    assert spec.sharing.enabled is True
    c = spec.consensus
    assert (c.tolerance_percentage, c.min_consensus_nodes, c.confidence_threshold) == (
        0.1, 2, 0.5)


def test_full_section_parses_and_is_frozen() -> None:
    spec = ConsistencySpec.model_validate({
        "deterministic": {"enabled": True, "global_seed": 42, "use_task_based_seed": False},
        "cache": {"enabled": False, "ttl_hours": 0.5, "max_cache_size": 1},
        "sharing": {"enabled": False},
        "consensus": {"tolerance_percentage": 0, "min_consensus_nodes": 1,
                      "confidence_threshold": 1},
    })
    assert spec.cache.ttl_s == 1800 and spec.consensus.min_consensus_nodes == 1
    with pytest.raises(ValidationError, match="frozen"):
        spec.cache.ttl_hours = 2  # type: ignore[misc]


@pytest.mark.parametrize(("raw", "field", "message"), [
    ({"cache": {"ttl_hours": 0}}, "cache.ttl_hours", "greater than 0"),
    ({"cache": {"ttl_hours": float("inf")}}, "cache.ttl_hours", "finite number"),
    ({"cache": {"max_cache_size": 0}}, "cache.max_cache_size", "greater than or equal to 1"),
    ({"consensus": {"tolerance_percentage": 101}}, "consensus.tolerance_percentage",
     "less than or equal to 100"),
    ({"consensus": {"tolerance_percentage": -0.1}}, "consensus.tolerance_percentage",
     "greater than or equal to 0"),
    ({"consensus": {"min_consensus_nodes": 0}}, "consensus.min_consensus_nodes",
     "greater than or equal to 1"),
    ({"consensus": {"confidence_threshold": 1.5}}, "consensus.confidence_threshold",
     "less than or equal to 1"),
    ({"deterministic": {"global_seed": -1}}, "deterministic.global_seed",
     "greater than or equal to 0"),
    ({"cache": {"ttl": 5}}, "cache.ttl", "Extra inputs are not permitted"),
    ({"sharing": {"enabled": "maybe"}}, "sharing.enabled", "valid boolean"),
])
def test_bad_values_name_the_field(raw: dict[str, Any], field: str, message: str) -> None:
    text = _error(raw)
    assert field in text and message in text


def test_fixed_seed_needs_global_seed() -> None:
    text = _error({"deterministic": {"use_task_based_seed": False}})
    assert "use_task_based_seed=false needs consistency.deterministic.global_seed" in text


def test_global_seed_rejected_when_determinism_is_off() -> None:
    text = _error({"deterministic": {"enabled": False, "global_seed": 3}})
    assert "global_seed=3 has no effect when consistency.deterministic.enabled=false" in text
    # use_task_based_seed alone is ignored, not an error
    spec = DeterministicSpec(enabled=False, use_task_based_seed=False)
    assert spec.resolve_seed("t", DATA) is None


def test_resolve_seed() -> None:
    assert DeterministicSpec().resolve_seed("t", DATA) == deterministic_seed("t", DATA)
    fixed = DeterministicSpec(global_seed=7, use_task_based_seed=False)
    assert fixed.resolve_seed("t", DATA) == fixed.resolve_seed("u", "e" * 64) == 7
    mixed_a = DeterministicSpec(global_seed=1).resolve_seed("t", DATA)
    mixed_b = DeterministicSpec(global_seed=2).resolve_seed("t", DATA)
    assert mixed_a is not None and mixed_b is not None
    assert len({mixed_a, mixed_b, deterministic_seed("t", DATA)}) == 3
    assert 0 <= mixed_a < 2**63
    assert DeterministicSpec(global_seed=1).resolve_seed("t", DATA) == mixed_a  # stable


def test_cache_spec_standalone() -> None:
    assert CacheSpec(ttl_hours=1).ttl_s == 3600.0
