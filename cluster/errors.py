"""Exceptions of the cluster package."""

from __future__ import annotations

__all__ = ["ClusterConfigError", "ClusterError"]


class ClusterError(Exception):
    """Root of every error raised by the cluster package."""


class ClusterConfigError(ClusterError):
    """The cluster YAML is unreadable or fails Ray's cluster-config schema."""
