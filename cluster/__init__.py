"""Cluster-level services: Ray cluster configuration checks (and, later, fault detection)."""

from cluster.config import ClusterConfigError, validate_cluster_config

__all__ = ["ClusterConfigError", "validate_cluster_config"]
