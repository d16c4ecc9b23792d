"""Exceptions of the cluster package (under the platform's root ``MtpError``)."""

from __future__ import annotations

from mtp_core.errors import InputError, MtpError

__all__ = ["ClusterConfigError", "ClusterError"]


class ClusterError(MtpError):
    """Root of every error raised by the cluster package."""


class ClusterConfigError(ClusterError, InputError):
    """The cluster YAML is unreadable or fails Ray's cluster-config schema."""
