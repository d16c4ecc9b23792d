"""The ``mtp.v1`` contract: the checked-in stubs are what ``proto/`` generates, and the server
implements every RPC the protos declare."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PROTOS = ("proto/mtp/v1/training.proto", "proto/mtp/v1/registry.proto")
REGENERATE = [sys.executable, "-m", "grpc_tools.protoc", "-Iproto", "--python_out=.",
              "--pyi_out=.", "--grpc_python_out=.", *PROTOS]
STUBS = REPO / "mtp" / "v1"


def _shown(cmd: list[str]) -> str:
    return " ".join(["python", *cmd[1:]])


def test_checked_in_stubs_are_what_the_protos_generate(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) regenerates stubs")
    cmd = [*REGENERATE[:4], f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
           f"--grpc_python_out={tmp_path}", *PROTOS]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    fresh = sorted(p.name for p in (tmp_path / "mtp" / "v1").glob("*_pb2*.py*"))
    checked_in = sorted(p.name for p in STUBS.glob("*_pb2*.py*"))
    assert fresh == [f"{stem}{suffix}" for stem in ("registry", "training")
                     for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]
    stale = [name for name in fresh if not (STUBS / name).is_file()
             or not filecmp.cmp(tmp_path / "mtp" / "v1" / name, STUBS / name, shallow=False)]
    extra = sorted(set(checked_in) - set(fresh))
    assert not stale and not extra, (
        f"mtp/v1 is stale (differs: {stale}; not generated: {extra}): regenerate it from the "
        f"repository root with `{_shown(REGENERATE)}` and commit the result")


def test_every_rpc_of_both_services_has_a_servicer_method() -> None:
    from mtp.api import server
    from mtp.v1 import registry_pb2, training_pb2

    services = {**training_pb2.DESCRIPTOR.services_by_name,
                **registry_pb2.DESCRIPTOR.services_by_name}
    assert sorted(services) == ["ModelRegistry", "TrainingService"]
    servicers = {"TrainingService": server.TrainingService,
                 "ModelRegistry": server.ModelRegistryService}
    missing = []
    for name, service in services.items():
        cls = servicers[name]
        for method in service.methods:
            impl = cls.__dict__.get(method.name)
            if not callable(impl):  # the generated base class's stub (UNIMPLEMENTED) is no
                missing.append(f"{service.full_name}.{method.name}")  # implementation
    assert not missing, f"RPCs without a servicer method in mtp/api/server.py: {missing}"
    assert {m.name for m in services["TrainingService"].methods} >= {
        "SubmitTask", "GetTask", "ListTasks", "CancelTask", "UpdatePriority", "WatchTask"}
    watch = services["TrainingService"].methods_by_name["WatchTask"]
    assert watch.server_streaming and not watch.client_streaming
