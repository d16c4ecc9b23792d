from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster import ClusterConfigError, validate_cluster_config
from tests.conftest import REPO


def test_shipped_cluster_yaml_passes_rays_schema() -> None:
    cfg = validate_cluster_config(REPO / "ray-cluster.yaml")
    assert cfg["provider"]["type"] == "local"
    setup = " ".join(cfg["setup_commands"])
    assert "-c constraints.txt" in setup  # every node installs the tested pins


def test_schema_violations_are_reported(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "ray-cluster.yaml").read_text())
    raw["idle_timeout_minutes"] = "soon"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ClusterConfigError, match="'soon' is not of type 'number'"):
        validate_cluster_config(bad)
    raw = yaml.safe_load((REPO / "ray-cluster.yaml").read_text())
    raw["no_such_key"] = 1
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ClusterConfigError, match="no_such_key"):
        validate_cluster_config(bad)
    with pytest.raises(ClusterConfigError, match="does not exist"):
        validate_cluster_config(tmp_path / "missing.yaml")
