"""Consensus across replicas: do independent runs of one task agree?

The same task trained on several nodes should give bit-identical weights (same seed, same
data, deterministic kernels). When it does not (other hardware, other library builds), the
final metrics must still agree within a relative tolerance. :func:`compare_results` compares
every replica against the first one (the reference, usually the local or registered result)
and says whether enough replicas agree for the reference to count as verified.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from consistency.errors import ConsistencyError

__all__ = ["ConsistencyReport", "MetricComparison", "compare_results", "metric_difference"]

logger = logging.getLogger(__name__)

#: Smallest denominator of a relative difference, so a reference value of 0 does not divide by 0.
EPSILON = 1e-12


class MetricComparison(BaseModel):
    """One metric of one replica against the reference replica."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    node: str = Field(description="Node of the compared (remote) replica.")
    name: str
    local: float | None = Field(description="Reference value; None: the reference lacks it.")
    remote: float | None = Field(description="Replica's value; None: the replica lacks it.")
    diff: float | None = Field(description="remote - local (None when a value is missing).")
    diff_percent: float | None = Field(
        description="100 * |remote - local| / max(|local|, 1e-12); inf when only one is NaN.")
    within_tolerance: bool


class ConsistencyReport(BaseModel):
    """The verdict of a consensus check; ``model_dump(mode="json")`` goes to the registry.

    ``confidence`` is the fraction of replicas, the reference included, that agree with the
    reference: every metric within ``tolerance_percentage`` (bit-identical weights alone do not
    count: a stored result whose metrics were altered must not pass). The
    result is consistent when at least ``min_consensus_nodes`` replicas agree and confidence
    reaches ``confidence_threshold``. NaN/inf values serialise as the strings "NaN"/"Infinity".
    """

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    is_consistent: bool
    bitwise_equal: bool = Field(
        description="Two or more replicas, all with the same non-empty weights hash.")
    confidence: float = Field(ge=0.0, le=1.0)
    reference_node: str
    agreeing_nodes: list[str] = Field(description="Nodes agreeing with the reference (incl.).")
    metrics: list[MetricComparison]
    nodes: list[str]
    weights_hashes: list[str] = Field(description="Per node, in order; '' when unknown.")
    tolerance_percentage: float
    min_consensus_nodes: int
    confidence_threshold: float
    reason: str = Field(description="One line explaining the verdict.")

    def to_json_dict(self) -> dict[str, Any]:
        """Strict-JSON dict (NaN/inf as strings): what ``RegistryStore.mark_verified`` takes."""
        out: dict[str, Any] = json.loads(self.model_dump_json())
        return out


def metric_difference(local: float, remote: float) -> tuple[float, float]:
    """``(remote - local, percent of |local|)``; equal values (two NaNs, two zeros, two equal
    infinities) give ``(0, 0)``; a NaN or infinity against anything else gives percent inf."""
    if local == remote or (math.isnan(local) and math.isnan(remote)):
        return 0.0, 0.0
    diff = remote - local
    if not (math.isfinite(local) and math.isfinite(remote)):
        return diff, math.inf
    return diff, abs(diff) / max(abs(local), EPSILON) * 100.0


def _metrics_of(result: Mapping[str, Any], node: str) -> dict[str, float]:
    if "final_metrics" not in result:
        raise ConsistencyError(f"compare_results: result of node {node!r} has no 'final_metrics'")
    raw = result["final_metrics"]
    if not isinstance(raw, Mapping):
        raise ConsistencyError(
            f"compare_results: final_metrics of node {node!r} must be a mapping, got "
            f"{type(raw).__name__}")
    out: dict[str, float] = {}
    for name, value in raw.items():
        try:
            # a NaN serialised with ser_json_inf_nan="strings" arrives as "NaN"
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            raise ConsistencyError(
                f"compare_results: metric {name!r} of node {node!r} is not a number: {value!r}"
            ) from None
    return out


def _check_settings(tolerance_percentage: float, min_consensus_nodes: int,
                    confidence_threshold: float) -> None:
    if not (0.0 <= tolerance_percentage <= 100.0):
        raise ConsistencyError(
            f"tolerance_percentage={tolerance_percentage!r} is outside [0, 100] "
            "(consistency.consensus.tolerance_percentage)")
    if not (isinstance(min_consensus_nodes, int) and min_consensus_nodes >= 1):
        raise ConsistencyError(
            f"min_consensus_nodes={min_consensus_nodes!r} must be an integer >= 1 "
            "(consistency.consensus.min_consensus_nodes)")
    if not (0.0 <= confidence_threshold <= 1.0):
        raise ConsistencyError(
            f"confidence_threshold={confidence_threshold!r} is outside [0, 1] "
            "(consistency.consensus.confidence_threshold)")


def compare_results(results: Sequence[Mapping[str, Any]], nodes: Sequence[str],
                    tolerance_percentage: float, min_consensus_nodes: int,
                    confidence_threshold: float) -> ConsistencyReport:
    """Compare replicas (``TrainingResult`` dicts: ``final_metrics``, ``weights_hash``) of one
    task, run on ``nodes`` (same order), against ``results[0]``.

    A metric present in only one of two replicas is a disagreement. Every disagreement is
    logged at WARNING with the metric, both values and the difference.
    """
    if len(results) != len(nodes):
        raise ConsistencyError(
            f"compare_results: {len(results)} results but {len(nodes)} node names")
    if not results:
        raise ConsistencyError("compare_results: no results to compare")
    _check_settings(tolerance_percentage, min_consensus_nodes, confidence_threshold)
    names = [str(n) for n in nodes]
    metrics = [_metrics_of(r, n) for r, n in zip(results, names, strict=True)]
    hashes = [str(r.get("weights_hash") or "") for r in results]
    ref_node, ref_metrics, ref_hash = names[0], metrics[0], hashes[0]

    comparisons: list[MetricComparison] = []
    agreeing = [ref_node]
    for node, rep_metrics, rep_hash in zip(names[1:], metrics[1:], hashes[1:], strict=True):
        same_weights = bool(ref_hash) and rep_hash == ref_hash
        rows = [_compare_one(node, name, ref_node, ref_metrics.get(name), rep_metrics.get(name),
                             tolerance_percentage)
                for name in sorted(ref_metrics.keys() | rep_metrics.keys())]
        comparisons.extend(rows)
        # with no metrics on either side only equal weights can agree
        metrics_agree = all(r.within_tolerance for r in rows) if rows else same_weights
        # metrics decide: equal weights with other metrics means one of the two results was
        # altered after training (or evaluation is not deterministic); it does not agree
        if metrics_agree:
            agreeing.append(node)
        if same_weights and not metrics_agree:
            logger.warning("consensus: node %s has the reference's weights hash but other "
                           "metrics: one result was altered, or evaluation is not "
                           "deterministic", node)

    confidence = len(agreeing) / len(names)
    bitwise = len(names) >= 2 and bool(ref_hash) and all(h == ref_hash for h in hashes)
    enough = len(agreeing) >= min_consensus_nodes
    confident = confidence >= confidence_threshold
    consistent = enough and confident
    reason = (
        f"{len(agreeing)} of {len(names)} replicas agree with reference node {ref_node} "
        f"(min_consensus_nodes={min_consensus_nodes}: {'met' if enough else 'NOT met'}); "
        f"confidence {confidence:.2f} {'>=' if confident else '<'} "
        f"confidence_threshold={confidence_threshold:g}"
        + ("; weights bit-identical" if bitwise else "")
    )
    if consistent:
        logger.info("consensus: consistent: %s", reason)
    else:
        logger.warning("consensus: INCONSISTENT: %s", reason)
    return ConsistencyReport(
        is_consistent=consistent, bitwise_equal=bitwise, confidence=confidence,
        reference_node=ref_node, agreeing_nodes=agreeing, metrics=comparisons, nodes=names,
        weights_hashes=hashes, tolerance_percentage=tolerance_percentage,
        min_consensus_nodes=min_consensus_nodes, confidence_threshold=confidence_threshold,
        reason=reason,
    )


def _compare_one(node: str, name: str, ref_node: str, local: float | None,
                 remote: float | None, tolerance: float) -> MetricComparison:
    if local is None or remote is None:
        missing_on = ref_node if local is None else node
        logger.warning("consensus: metric %s is missing on node %s (reference %s=%s, "
                       "node %s=%s)", name, missing_on, ref_node, local, node, remote)
        return MetricComparison(node=node, name=name, local=local, remote=remote, diff=None,
                                diff_percent=None, within_tolerance=False)
    diff, pct = metric_difference(local, remote)
    ok = pct <= tolerance
    if not ok:
        logger.warning("consensus: metric %s differs: reference node %s=%r, node %s=%r, "
                       "diff %r (%.4g%% > tolerance_percentage=%g)", name, ref_node, local,
                       node, remote, diff, pct, tolerance)
    return MetricComparison(node=node, name=name, local=local, remote=remote, diff=diff,
                            diff_percent=pct, within_tolerance=ok)
