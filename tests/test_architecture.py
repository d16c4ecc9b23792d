"""The shape of the code: layers without cycles, and a vocabulary that loads without torch/Ray.

``lint-imports`` (contracts in pyproject.toml) enforces the layers in CI; these tests make the
same guarantees fail in the ordinary test run, with the offending imports in the message.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mtp", "hpo", "trainer", "cluster", "consistency", "tracking", "database",
            "mtp_core")
# top to bottom; a package may import only from packages further down this list
LAYERS: tuple[tuple[str, ...], ...] = (
    ("mtp",), ("hpo",), ("trainer",), ("cluster", "consistency", "tracking"), ("database",),
    ("mtp_core",))


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # every import statement counts, at module level or inside a function
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def _package_edges(graph: grimp.ImportGraph) -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for module in graph.modules:
        src = module.split(".")[0]
        for imported in graph.find_modules_directly_imported_by(module):
            dst = imported.split(".")[0]
            if dst != src and dst in PACKAGES:
                edges.setdefault((src, dst), []).append(f"{module} -> {imported}")
    return edges


def test_no_package_imports_a_package_above_or_beside_it(graph: grimp.ImportGraph) -> None:
    level = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
    bad = [f"{src} -> {dst}: {', '.join(sorted(how))}"
           for (src, dst), how in _package_edges(graph).items() if level[dst] <= level[src]]
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_the_package_graph_has_no_cycle(graph: grimp.ImportGraph) -> None:
    edges = _package_edges(graph)
    succ: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for src, dst in edges:
        succ[src].add(dst)
    state: dict[str, int] = {}

    def visit(p: str, path: list[str]) -> list[str] | None:
        state[p] = 1
        for q in sorted(succ[p]):
            if state.get(q) == 1:
                return [*path, p, q]
            if q not in state and (cycle := visit(q, [*path, p])):
                return cycle
        state[p] = 2
        return None

    for p in PACKAGES:
        if p not in state:
            cycle = visit(p, [])
            assert cycle is None, f"package import cycle: {' -> '.join(cycle)}"


def test_the_vocabulary_and_the_facade_load_without_torch_or_ray() -> None:
    code = ("import sys, mtp, mtp_core, mtp_core.spec, mtp_core.ray_env; "
            "heavy = sorted(m for m in ('torch', 'ray') if m in sys.modules); print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True).stdout.strip()
    assert out == "[]", f"importing mtp / mtp_core loaded {out}"


def test_the_private_ray_hooks_the_platform_relies_on_still_exist() -> None:
    """``mute_worker_logs`` removes Ray's worker-log relay by name; a Ray upgrade that renames
    it would silently bring the dying workers' tracebacks back after an interrupt."""
    import ray._private.worker as worker

    dispatcher = worker.global_worker_stdstream_dispatcher
    assert callable(dispatcher.remove_handler)
    assert "ray_print_logs" in inspect.getsource(worker.connect)


def test_the_placement_group_table_fields_the_reaper_reads_still_exist() -> None:
    """``reap_orphan_placement_groups`` reads Ray's private placement-group table."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    fields = {f.name for f in gcs_pb2.PlacementGroupTableData.DESCRIPTOR.fields}
    assert {"placement_group_id", "state", "creator_job_id", "creator_actor_id",
            "creator_actor_dead", "is_detached"} <= fields
    assert callable(state._connect_and_get_accessor)


def test_the_lean_trainer_drops_exactly_the_callbacks_it_names() -> None:
    """``trainer._ray_train.LeanTorchTrainer`` overrides Ray Train's private
    ``_create_default_callbacks``: a Ray upgrade that renames it (or stops creating those
    callbacks) would silently bring the dataset manager and cleaner processes back."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from trainer._ray_train import DROPPED_CALLBACKS, LeanTorchTrainer

    def kinds(trainer: Any) -> set[type]:
        return {type(c) for c in trainer._create_default_callbacks()}

    plain = kinds(TorchTrainer(lambda: None, scaling_config=ScalingConfig(num_workers=1)))
    lean = kinds(LeanTorchTrainer(lambda: None, scaling_config=ScalingConfig(num_workers=1)))
    assert set(DROPPED_CALLBACKS) <= plain, plain
    assert lean == plain - set(DROPPED_CALLBACKS)


def test_the_lean_trainer_swaps_in_its_fixed_size_policy_where_ray_builds_it() -> None:
    """``LeanTorchTrainer._initialize_and_run_controller`` replaces the scaling policy that
    Ray Train's ``fit()`` passes by keyword; a Ray upgrade that renames the method, the keyword
    or the coordinator calls would bring the autoscaling coordinator back silently."""
    from ray.train.v2._internal.execution.scaling_policy.fixed import FixedScalingPolicy
    from ray.train.v2._internal.execution.scaling_policy.scaling_policy import ScalingPolicy
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from trainer._ray_train import FixedSizePolicy

    assert "scaling_policy=create_scaling_policy(" in inspect.getsource(DataParallelTrainer.fit)
    assert "_initialize_and_run_controller" in inspect.getsource(DataParallelTrainer.fit)
    for name in ("after_controller_start", "_maybe_send_resource_request",
                 "_send_resource_request"):
        assert name in vars(ScalingPolicy), name
        assert name in vars(FixedSizePolicy), name
    # the only coordinator calls left are the ones FixedSizePolicy overrides (and the cancel,
    # a no-op without a client)
    assert "_coordinator_client" not in inspect.getsource(FixedScalingPolicy)


#: sha256 (first 16 hex digits) of the source of Ray Train's ``_TorchBackend`` methods that
#: ``trainer._ray_train_controller._LeanTorchBackend`` follows (Ray 2.60.0)
_RAY_TORCH_BACKEND_SOURCES = {"on_start": "2d82fd3c05311849",
                              "on_shutdown": "7dab1784f3fc07e5",
                              "on_training_start": "df438bd024c211de"}


def test_the_lean_torch_backend_follows_the_ray_methods_it_was_written_from() -> None:
    """The lean backend takes Ray's process-group steps without torch in the controller: a
    Ray upgrade that changes those steps fails here until the lean backend is checked against
    the new ones (and these digests are updated)."""
    import hashlib

    from ray.train.torch.config import _TorchBackend

    now = {name: hashlib.sha256(inspect.getsource(getattr(_TorchBackend, name)).encode())
           .hexdigest()[:16] for name in _RAY_TORCH_BACKEND_SOURCES}
    assert now == _RAY_TORCH_BACKEND_SOURCES


def test_what_a_controller_unpickles_imports_no_torch() -> None:
    code = ("import sys, trainer._ray_train_controller as m; "
            "m.LeanTorchConfig(backend='gloo').backend_cls(); "
            "print(sorted(n for n in sys.modules if n == 'torch' or n.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "[]"


def test_a_lean_torch_config_is_the_torch_config_it_was_made_from() -> None:
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig

    from trainer._ray_train import LeanTorchTrainer
    from trainer._ray_train_controller import LeanTorchConfig

    given = TorchConfig(backend="gloo", init_method="tcp", timeout_s=77)
    lean = LeanTorchTrainer(lambda: None, torch_config=given,
                            scaling_config=ScalingConfig(num_workers=2)).backend_config
    assert type(lean) is LeanTorchConfig and lean.to_dict() == given.to_dict()
    assert lean.ray_config() == given and lean.framework == given.framework
    default = LeanTorchTrainer(lambda: None, scaling_config=ScalingConfig(num_workers=1))
    assert default.backend_config.to_dict() == {**TorchConfig().to_dict(), "backend": "gloo"}
