"""The ``mtp.v1`` gRPC API against a real cluster (``tests/api/conftest.py``'s): reflection and
health, the bearer token, the status codes and their messages, idempotent submits, watching a
task from two clients (one leaves mid-stream, the task is cancelled under the other), a real
``mtp serve`` process stopped with SIGTERM under an open stream, and the CLI's ``--server``.

Few trainings: one long task (priority 99, not preemptible) holds the cluster's one CPU while
the tests that need a task that stays PENDING run, and is cancelled by the watch test; every
other task is refused at submit or cancelled while it waits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.api.conftest import RUN_TIMEOUT_S, TOKEN, ApiCluster, digits
from tests.conftest import REPO
from tests.support.ray_head import free_port
from tests.support.wait import wait_for

AUTH = (("authorization", f"Bearer {TOKEN}"),)
WRONG = (("authorization", "Bearer not-the-token-of-this-server"),)


def _pb() -> Any:
    from mtp.v1 import training_pb2

    return training_pb2


def _stub(target: str) -> tuple[grpc.Channel, Any]:
    from mtp.v1 import training_pb2_grpc

    channel = grpc.insecure_channel(target)
    return channel, training_pb2_grpc.TrainingServiceStub(channel)


def _refused(call: Any) -> grpc.RpcError:
    """The RpcError ``call()`` raises (fails the test if it returns)."""
    try:
        got = call()
        if isinstance(got, Iterator):
            got = list(got)
    except grpc.RpcError as err:
        return err
    pytest.fail(f"expected the call to be refused, got {got!r}")


def _state(name: str) -> int:
    return int(getattr(_pb(), f"TASK_STATE_{name}"))


# -- reflection, health, the token -----------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.slow
def test_reflection_lists_the_services_and_health_needs_no_token(api_cluster: ApiCluster
                                                                  ) -> None:
    """A client with no generated stubs of mtp.v1: the reflection service lists the three
    services and describes WatchTask as a server stream; health answers without a token."""
    from google.protobuf import descriptor_pb2
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(api_cluster.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="mtp.v1.TrainingService")]
        responses = list(stub.ServerReflectionInfo(iter(requests), metadata=AUTH, timeout=30))
        assert len(responses) == 2
        listed = {s.name for s in responses[0].list_services_response.service}
        assert {"mtp.v1.TrainingService", "mtp.v1.ModelRegistry",
                "grpc.health.v1.Health"} <= listed, listed
        files = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in
                 responses[1].file_descriptor_response.file_descriptor_proto]
        training = next(f for f in files if f.name == "mtp/v1/training.proto")
        methods = {m.name: m for s in training.service if s.name == "TrainingService"
                   for m in s.method}
        assert {"SubmitTask", "GetTask", "ListTasks", "CancelTask", "UpdatePriority",
                "WatchTask"} <= set(methods), sorted(methods)
        assert methods["WatchTask"].server_streaming
        assert methods["WatchTask"].output_type == ".mtp.v1.TaskEvent"

        # no token: the health service answers, reflection does not
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "mtp.v1.TrainingService", "mtp.v1.ModelRegistry"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        err = _refused(lambda: list(stub.ServerReflectionInfo(iter(requests[:1]), timeout=30)))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.ray
@pytest.mark.slow
def test_no_token_or_a_wrong_token_is_unauthenticated(api_cluster: ApiCluster) -> None:
    pb = _pb()
    channel, stub = _stub(api_cluster.target)
    with channel:
        for metadata, says in (((), "no `authorization: Bearer <token>` metadata"),
                               (WRONG, "the bearer token is not this server's")):
            get = _refused(lambda m=metadata: stub.GetTask(pb.GetTaskRequest(id="t-0000000000"),
                                                           metadata=m, timeout=10))
            assert get.code() == grpc.StatusCode.UNAUTHENTICATED, get
            assert get.details() == f"/mtp.v1.TrainingService/GetTask: {says}"
            watch = _refused(lambda m=metadata: stub.WatchTask(
                pb.WatchTaskRequest(id="t-0000000000"), metadata=m, timeout=10))
            assert watch.code() == grpc.StatusCode.UNAUTHENTICATED, watch
            assert watch.details() == f"/mtp.v1.TrainingService/WatchTask: {says}"
        # the same calls with the token get past the check (to the scheduler's answer)
        found = _refused(lambda: stub.GetTask(pb.GetTaskRequest(id="t-0000000000"),
                                              metadata=AUTH, timeout=30))
        assert found.code() == grpc.StatusCode.NOT_FOUND, found


# -- status codes ----------------------------------------------------------------------------------

_BAD_CONFIGS = {
    "unknown-field": ("training.epochz", """\
name: bad-epochz
model: {type: mlp, hidden_sizes: [32]}
dataset: {source: sklearn, name: digits}
training: {epochz: 3, batch_size: 32}
resources: {num_workers: 1, cpus_per_worker: 1}
"""),
    "negative-learning-rate": ("training.learning_rate", """\
name: bad-lr
model: {type: mlp, hidden_sizes: [32]}
dataset: {source: sklearn, name: digits}
training: {epochs: 3, batch_size: 32, learning_rate: -1}
resources: {num_workers: 1, cpus_per_worker: 1}
"""),
}
#: how the server names a config that came as a request's text (the CLI names the file)
SERVER_ORIGIN = "the request's config"


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(_BAD_CONFIGS))
def test_a_bad_config_is_invalid_argument_with_the_line_the_cli_prints(
        api_cluster: ApiCluster, case: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from mtp.cli import main

    field, text = _BAD_CONFIGS[case]
    path = tmp_path / "task.yaml"
    path.write_text(text)
    assert main(["submit", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtp: error: ") and "\n" not in err, err
    cli_line = err.removeprefix("mtp: error: ")
    assert f"{path}: {field}: " in cli_line, cli_line

    pb = _pb()
    channel, stub = _stub(api_cluster.target)
    with channel:
        refused = _refused(lambda: stub.SubmitTask(pb.SubmitTaskRequest(config_text=text),
                                                   metadata=AUTH, timeout=60))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, refused
    # the CLI's line, word for word, but for where the config came from
    assert refused.details() == cli_line.replace(str(path), SERVER_ORIGIN), (
        refused.details(), cli_line)
    assert f"{SERVER_ORIGIN}: {field}: " in refused.details()


@pytest.mark.ray
@pytest.mark.slow
def test_never_fits_not_found_priority_range_and_deadline(api_cluster: ApiCluster) -> None:
    pb = _pb()
    channel, stub = _stub(api_cluster.target)
    with channel:
        big = json.dumps(digits("api-big", 1, resources__cpus_per_worker=4))
        never = _refused(lambda: stub.SubmitTask(pb.SubmitTaskRequest(config_text=big),
                                                 metadata=AUTH, timeout=120))
        assert never.code() == grpc.StatusCode.FAILED_PRECONDITION, never
        assert never.details().startswith("task 'api-big' can never run on this cluster"), \
            never.details()
        assert "4 CPUs" in never.details() and "the cluster has 1" in never.details()
        listed = stub.ListTasks(pb.ListTasksRequest(name="api-big"), metadata=AUTH, timeout=30)
        assert list(listed.tasks) == []

        for call in (lambda: stub.GetTask(pb.GetTaskRequest(id="t-0000000000"),
                                          metadata=AUTH, timeout=30),
                     lambda: stub.CancelTask(pb.CancelTaskRequest(id="t-0000000000"),
                                             metadata=AUTH, timeout=30),
                     lambda: stub.WatchTask(pb.WatchTaskRequest(id="t-0000000000"),
                                            metadata=AUTH, timeout=30)):
            missing = _refused(call)
            assert missing.code() == grpc.StatusCode.NOT_FOUND, missing
            assert "no task 't-0000000000'" in missing.details(), missing.details()

        for priority in (0, 100):
            bad = _refused(lambda p=priority: stub.UpdatePriority(
                pb.UpdatePriorityRequest(id="t-0000000000", priority=p), metadata=AUTH,
                timeout=30))
            assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert bad.details() == (f"priority {priority} is out of range; allowed: 1 to 99")

        late = _refused(lambda: stub.GetTask(pb.GetTaskRequest(id="t-0000000000"),
                                             metadata=AUTH, timeout=0.001))
        assert late.code() == grpc.StatusCode.DEADLINE_EXCEEDED, late
        # the server still answers after the abandoned call
        again = _refused(lambda: stub.GetTask(pb.GetTaskRequest(id="t-0000000000"),
                                              metadata=AUTH, timeout=30))
        assert again.code() == grpc.StatusCode.NOT_FOUND


# -- with a task holding the cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def long_task(api_cluster: ApiCluster) -> Iterator[Any]:
    """A task of 3000 epochs that holds the cluster's one CPU (priority 99, not preemptible),
    RUNNING; cancelled (and waited for) at the end of the module if a test has not."""
    with api_cluster.client() as api:
        task = api.submit(digits("api-long", 3000, scheduling__priority=99,
                                 scheduling__preemptible=False))
        assert task.state == _state("PENDING") and task.priority == 99

        def running() -> Any:
            got = api.get(task.id)
            assert got.state in (_state("PENDING"), _state("RUNNING")), got
            return got if got.state == _state("RUNNING") else None

        yield wait_for(running, RUN_TIMEOUT_S, interval_s=0.5, what="the long task to run")
        ended = (_state("SUCCEEDED"), _state("FAILED"), _state("CANCELLED"))
        if api.get(task.id).state not in ended:
            api.cancel(task.id)
        wait_for(lambda: api.get(task.id).state in ended, RUN_TIMEOUT_S, interval_s=0.5,
                 what="the long task to end")


def _pending(stub: Any, name: str, request_id: str = "") -> Any:
    """Submit a small task behind the long one: it waits (priority 1)."""
    pb = _pb()
    reply = stub.SubmitTask(pb.SubmitTaskRequest(
        config_text=json.dumps(digits(name, 2)), priority=1, request_id=request_id),
        metadata=AUTH, timeout=120)
    assert reply.task.state == _state("PENDING"), reply.task
    return reply


@pytest.mark.ray
@pytest.mark.slow
def test_a_retried_submit_with_the_same_request_id_returns_the_first_task(
        api_cluster: ApiCluster, long_task: Any) -> None:
    pb = _pb()
    rid = f"retry-{uuid.uuid4().hex}"
    name = f"api-idem-{uuid.uuid4().hex[:8]}"
    channel, stub = _stub(api_cluster.target)
    with channel:
        first = _pending(stub, name, rid)
        second = _pending(stub, name, rid)
        assert first.created is True and second.created is False
        assert second.task.id == first.task.id and second.task.request_id == rid
        rows = stub.ListTasks(pb.ListTasksRequest(name=name), metadata=AUTH, timeout=30).tasks
        assert [t.id for t in rows] == [first.task.id]
        # another request id is another task
        other = _pending(stub, name, rid + "-2")
        assert other.created is True and other.task.id != first.task.id
        rows = stub.ListTasks(pb.ListTasksRequest(name=name, page_size=1), metadata=AUTH,
                              timeout=30)
        assert [t.id for t in rows.tasks] == [first.task.id] and rows.next_page_token
        rest = stub.ListTasks(pb.ListTasksRequest(name=name, page_token=rows.next_page_token),
                              metadata=AUTH, timeout=30)
        assert [t.id for t in rest.tasks] == [other.task.id] and not rest.next_page_token
        # the same new request from four clients at once: one task, and one of them created it
        # (each may pass the server's lookup before any has queued it; the scheduler decides)
        rid3 = rid + "-3"
        folders = Path(api_cluster.storage) / "_queue"
        before = {p.name for p in folders.iterdir()}
        with ThreadPoolExecutor(4) as pool:
            raced = list(pool.map(lambda _: _pending(stub, name, rid3), range(4)))
        assert len({r.task.id for r in raced}) == 1, raced
        assert sorted(r.created for r in raced) == [False, False, False, True], raced
        third = raced[0].task.id
        for task_id in (first.task.id, other.task.id, third):  # never started
            done = stub.CancelTask(pb.CancelTaskRequest(id=task_id), metadata=AUTH, timeout=30)
            assert done.state == _state("CANCELLED") and done.attempts == 0
        # one folder more: the task's; a submit that lost the race removed the one it wrote
        assert {p.name for p in folders.iterdir()} - before == {third}


@pytest.mark.ray
@pytest.mark.slow
def test_the_cli_talks_to_a_server(api_cluster: ApiCluster, long_task: Any, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from mtp.cli import main

    monkeypatch.setenv("MTP_API_TOKEN", TOKEN)
    server = ["--server", api_cluster.target]
    capsys.readouterr()
    assert main(["status", long_task.id, *server]) == 0
    out = capsys.readouterr().out
    assert f"task       {long_task.id}  api-long  (task id {long_task.task_id})" in out, out
    assert "state      RUNNING: " in out and "priority   99  (not preemptible)" in out, out
    assert f"run dir    {long_task.run_dir}" in out, out

    assert main(["status", long_task.id, "--json", *server]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert (as_json["id"], as_json["state"], as_json["priority"]) == (long_task.id, "RUNNING",
                                                                      99)

    assert main(["queue", *server]) == 0
    out = capsys.readouterr().out
    assert "cluster    2 nodes: total" in out, out
    row = next(line for line in out.splitlines() if line.startswith(long_task.id))
    assert row.split()[1:4] == ["api-long", "99", "RUNNING"], row

    # its log lines through the server's stream, as the cluster's `mtp logs` shows them
    from mtp import queue

    wait_for(lambda: any("\n" in text for _, _, text in queue.task_logs(long_task.id)), 120,
             interval_s=0.5, what="a whole line in the long task's log")
    assert main(["logs", long_task.id, *server]) == 0
    remote = capsys.readouterr().out.splitlines()
    assert main(["logs", long_task.id]) == 0
    local = capsys.readouterr().out.splitlines()
    assert remote and len(remote) <= len(local), (remote[-5:], local[-5:])
    assert remote == local[:len(remote)], (remote[-5:], local[-5:])

    # submit, reprioritize and cancel through the server: a task waiting behind the long one
    path = tmp_path / "waits.json"
    path.write_text(json.dumps(digits("api-cli-waits", 2)))
    assert main(["submit", str(path), "--priority", "1", *server]) == 0
    waiting = capsys.readouterr().out.strip()
    assert re.fullmatch(r"t-[0-9a-f]{10}", waiting), waiting
    assert main(["priority", waiting, "2", *server]) == 0
    assert capsys.readouterr().out.strip() == f"{waiting} priority 2 (PENDING)"
    assert main(["cancel", waiting, *server]) == 0
    assert capsys.readouterr().out.startswith(f"{waiting} CANCELLED: ")

    assert main(["status", "t-0000000000", *server]) == 2
    assert "NOT_FOUND: no task 't-0000000000'" in capsys.readouterr().err
    monkeypatch.setenv("MTP_API_TOKEN", "not-the-token-of-this-server")
    assert main(["status", long_task.id, *server]) == 2
    assert "UNAUTHENTICATED" in capsys.readouterr().err


def _serve_env() -> dict[str, str]:
    env = {**os.environ, "MTP_API_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.mark.ray
@pytest.mark.slow
def test_mtp_serve_ends_open_streams_with_unavailable_on_sigterm(
        api_cluster: ApiCluster, long_task: Any, tmp_path: Path) -> None:
    """A real `mtp serve` process: SERVING on its health service, a watch of a waiting task
    open through it; SIGTERM ends the stream with UNAVAILABLE and the process with 0."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    pb = _pb()
    port = free_port()
    out, err = (tmp_path / "serve.out").open("w+"), (tmp_path / "serve.err").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "mtp.cli", "serve", "--address",
                             api_cluster.address, "--port", str(port), "--grace-s", "10"],
                            stdout=out, stderr=err, env=_serve_env(), cwd=REPO)
    target = f"127.0.0.1:{port}"
    waiting = None
    try:
        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def serving() -> bool:
                assert proc.poll() is None, _ended(proc, out, err)
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(
                        service="mtp.v1.TrainingService"), timeout=2)
                except grpc.RpcError:
                    return False
                return reply.status == health_pb2.HealthCheckResponse.SERVING

            wait_for(serving, 120, interval_s=0.5, what="`mtp serve` to be SERVING")
            stub = _stub_on(channel)
            waiting = _pending(stub, "api-waits").task
            stream = stub.WatchTask(pb.WatchTaskRequest(id=waiting.id), metadata=AUTH,
                                    timeout=RUN_TIMEOUT_S)
            first = next(stream)
            assert first.WhichOneof("event") == "task"
            assert (first.task.id, first.task.state) == (waiting.id, _state("PENDING"))
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.RpcError) as ended:
                for event in stream:  # nothing changes for a waiting task: no more events
                    assert event.WhichOneof("event") == "task", event
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value
            assert "shutting down" in ended.value.details(), ended.value.details()
            assert proc.wait(timeout=30) == 0, _ended(proc, out, err)
            assert time.monotonic() - sent < 30
        out.seek(0)
        printed = out.read()
        assert f"mtp API (mtp.v1) on 127.0.0.1:{port}" in printed, printed
        assert "mtp API stopped" in printed, printed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if waiting is not None:
            with api_cluster.client() as api:
                assert api.cancel(waiting.id).state == _state("CANCELLED")


def _stub_on(channel: grpc.Channel) -> Any:
    from mtp.v1 import training_pb2_grpc

    return training_pb2_grpc.TrainingServiceStub(channel)


def _ended(proc: subprocess.Popen[bytes], *files: Any) -> str:
    texts = []
    for f in files:
        f.flush()
        f.seek(0)
        texts.append(f.read()[-3000:])
    return f"`mtp serve` exited {proc.poll()}: " + " | ".join(texts)


@pytest.mark.ray
@pytest.mark.slow
def test_open_watches_are_capped_so_other_calls_keep_a_thread(
        api_cluster: ApiCluster, long_task: Any) -> None:
    """A second server on the same cluster with 5 threads: one keeps 4 for other calls, so one
    watch may be open; a second is RESOURCE_EXHAUSTED, and GetTask and the health check still
    answer while the first stays open."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from mtp.api.server import ServerConfig, start_server

    # before the test below cancels the long task: a watch of it stays open while it runs
    with api_cluster.client() as api:
        assert api.get(long_task.id).state == _state("RUNNING")
    small = start_server(ServerConfig(port=0, token=TOKEN, max_workers=5))
    try:
        channel, stub = _stub(f"127.0.0.1:{small.port}")
        with channel:
            pb = _pb()
            first = stub.WatchTask(pb.WatchTaskRequest(id=long_task.id), metadata=AUTH,
                                   timeout=120)
            assert next(first).task.id == long_task.id
            wait_for(lambda: small.active_watches == 1, 30, what="the first watch to count")
            err = _refused(lambda: stub.WatchTask(pb.WatchTaskRequest(id=long_task.id),
                                                  metadata=AUTH, timeout=30))
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
            assert "1 WatchTask streams are open" in (err.details() or ""), err.details()
            got = stub.GetTask(pb.GetTaskRequest(id=long_task.id), metadata=AUTH, timeout=30)
            assert got.id == long_task.id
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=30)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            first.cancel()
            wait_for(lambda: small.active_watches == 0, 30, what="the watch to be freed")
    finally:
        small.stop(grace_s=1.0)


@pytest.mark.ray
@pytest.mark.slow
def test_watch_from_two_clients_one_leaves_then_the_task_is_cancelled(
        api_cluster: ApiCluster, long_task: Any) -> None:
    """Client 1 sees an epoch's progress; client 2 leaves mid-stream and the server frees its
    stream; a watch with a short deadline ends DEADLINE_EXCEEDED and is freed too; then the
    task is cancelled: client 1's stream delivers CANCELLED and ends OK."""
    pb = _pb()
    server = api_cluster.server
    before = server.active_watches
    request = pb.WatchTaskRequest(id=long_task.id)
    channel1, stub1 = _stub(api_cluster.target)
    channel2, stub2 = _stub(api_cluster.target)
    with channel1, channel2:
        call1 = stub1.WatchTask(request, metadata=AUTH, timeout=RUN_TIMEOUT_S)
        events: list[Any] = [next(call1)]
        assert events[0].task.id == long_task.id and events[0].task.state == _state("RUNNING")
        call2 = stub2.WatchTask(request, metadata=AUTH, timeout=RUN_TIMEOUT_S)
        assert next(call2).task.id == long_task.id
        wait_for(lambda: server.active_watches == before + 2, 10, interval_s=0.05,
                 what="two open watches on the server")

        epochs = []
        for event in call1:  # until an epoch's progress arrives
            events.append(event)
            if event.WhichOneof("event") == "progress":
                epochs.append(event.progress)
                break
        assert epochs and epochs[0].epoch >= 1 and epochs[0].epochs == 3000, events
        assert "train_loss" in epochs[0].metrics and "val_accuracy" in epochs[0].metrics

        call2.cancel()  # client 2 disconnects mid-stream
        wait_for(lambda: server.active_watches == before + 1, 10, interval_s=0.05,
                 what="the server to free the stream of the client that left")
        assert call2.code() == grpc.StatusCode.CANCELLED

        short = stub2.WatchTask(request, metadata=AUTH, timeout=1.5)
        late = _refused(lambda: list(short))
        assert late.code() == grpc.StatusCode.DEADLINE_EXCEEDED, late
        wait_for(lambda: server.active_watches == before + 1, 10, interval_s=0.05,
                 what="the server to free the stream whose deadline passed")

        stub1.CancelTask(pb.CancelTaskRequest(id=long_task.id), metadata=AUTH, timeout=60)
        rest = _collect(call1, RUN_TIMEOUT_S)
        assert call1.code() == grpc.StatusCode.OK, (call1.code(), call1.details())
    events += rest
    last = events[-1]
    assert last.WhichOneof("event") == "task", last
    assert last.task.state == _state("CANCELLED") and last.task.id == long_task.id, last.task
    assert "checkpoints are kept" in last.task.reason, last.task.reason
    states = [e.task.state for e in events if e.WhichOneof("event") == "task"]
    assert states.count(_state("CANCELLED")) == 1, states
    wait_for(lambda: server.active_watches == before, 10, interval_s=0.05,
             what="no open watches once the stream ended")


def _collect(call: Any, timeout_s: float) -> list[Any]:
    """Every event left on ``call``, read in a thread (the test fails rather than hangs)."""
    got: list[Any] = []
    done = threading.Event()

    def read() -> None:
        try:
            got.extend(call)
        finally:
            done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(timeout_s):
        call.cancel()
        pytest.fail(f"the stream did not end within {timeout_s:g} s: {got[-3:]}")
    return got


# -- `mtp serve` refuses to start ------------------------------------------------------------------


@pytest.mark.parametrize(("args", "token", "says"), [
    (["--host", "0.0.0.0"], TOKEN, "mtp: error: --host 0.0.0.0: serving beyond this machine "
     "without TLS sends the token in the clear"),
    ([], "", "mtp: error: mtp serve needs a token: set MTP_API_TOKEN or give --token-file"),
], ids=["non-loopback-without-tls", "no-token"])
def test_mtp_serve_refuses_insecure_or_tokenless_serving(args: list[str], token: str,
                                                         says: str) -> None:
    env = {**_serve_env(), "MTP_API_TOKEN": token}
    done = subprocess.run([sys.executable, "-m", "mtp.cli", "serve", "--port", "0", *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(says), done.stderr
    assert done.stdout == ""

