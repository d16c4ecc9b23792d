from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from mtp_core.spec import CheckpointPolicy, Compression
from tests.support.wait import wait_for
from trainer import CheckpointError
from trainer.checkpoint import CheckpointScheduler, CheckpointStore, SaveReason


def _save(store: CheckpointStore, epoch: int, is_best: bool = False, fp: str = "fp") -> None:
    store.save({"epoch": epoch, "w": torch.full((64,), float(epoch))}, epoch=epoch,
               reason=SaveReason.INTERVAL, is_best=is_best, metrics={"val_loss": 1.0 / epoch},
               fingerprint=fp)


@pytest.mark.parametrize("compression", list(Compression))
def test_roundtrip_with_each_compression(tmp_path: Path, compression: Compression) -> None:
    store = CheckpointStore(tmp_path, CheckpointPolicy(compression=compression))
    _save(store, 1)
    found = store.load_latest("fp")
    assert found is not None
    state, info = found
    assert info.epoch == 1 and torch.equal(state["w"], torch.full((64,), 1.0))
    assert not list(tmp_path.glob(".tmp-*"))


def test_keeps_last_k_plus_best(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, CheckpointPolicy(keep_last=2))
    _save(store, 1)
    _save(store, 2, is_best=True)
    for e in (3, 4, 5):
        _save(store, e)
    assert [i.epoch for i in store.list()] == [2, 4, 5]
    best = store.best()
    assert best is not None and best.epoch == 2
    _save(store, 6, is_best=True)
    assert [i.epoch for i in store.list()] == [5, 6]


def test_corrupt_latest_falls_back_to_previous(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CheckpointStore(tmp_path, CheckpointPolicy(keep_last=3))
    for e in (1, 2, 3):
        _save(store, e)
    payload = tmp_path / "ckpt-000003" / "state.pt"
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF
    payload.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        found = store.load_latest()
    assert found is not None and found[1].epoch == 2
    assert "sha256 mismatch" in caplog.text and "ckpt-000003" in caplog.text


def test_truncated_and_half_written_checkpoints_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CheckpointStore(tmp_path, CheckpointPolicy(keep_last=3))
    for e in (1, 2):
        _save(store, e)
    payload = tmp_path / "ckpt-000002" / "state.pt"
    payload.write_bytes(payload.read_bytes()[:100])
    # a crash mid-write leaves a directory without a manifest: never a candidate
    (tmp_path / "ckpt-000003").mkdir()
    (tmp_path / "ckpt-000003" / "state.pt").write_bytes(b"partial")
    with caplog.at_level(logging.WARNING):
        found = store.load_latest()
    assert found is not None and found[1].epoch == 1
    assert "truncated" in caplog.text


def _manifest_without(field: str) -> Any:
    def edit(m: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in m.items() if k != field}
    return edit


def _manifest_with(field: str, value: Any) -> Any:
    def edit(m: dict[str, Any]) -> dict[str, Any]:
        return {**m, field: value}
    return edit


# (id, the latest checkpoint's manifest as a function of the good one, words in the warning)
NOT_A_MANIFEST: list[tuple[str, Any, str]] = [
    ("null", lambda m: None, "expected a JSON object, got null"),
    ("list", lambda m: [m], "expected a JSON object, got an array"),
    ("number", lambda m: 3, "expected a JSON object, got a number"),
    ("string", lambda m: "ckpt", "expected a JSON object, got a string"),
    ("empty-object", lambda m: {}, "missing fields ['epoch', 'is_best', 'reason', 'sha256'"),
    ("no-sha256", _manifest_without("sha256"), "missing fields ['sha256']"),
    ("epoch-null", _manifest_with("epoch", None), "field 'epoch' must be a whole number, "
     "got null"),
    ("epoch-bool", _manifest_with("epoch", True), "field 'epoch' must be a whole number"),
    ("size-string", _manifest_with("size", "12"), "field 'size' must be a whole number, "
     "got a string"),
    ("size-negative", _manifest_with("size", -1), "must be >= 0"),
    ("metrics-list", _manifest_with("metrics", [1.0]), "field 'metrics' must be an object"),
    ("metric-not-a-number", _manifest_with("metrics", {"val_loss": "low"}),
     "metrics ['val_loss'] are not numbers"),
    ("fingerprint-null", _manifest_with("fingerprint", None), "field 'fingerprint' must be a "
     "string"),
]


@pytest.mark.parametrize(("edit", "words"), [c[1:] for c in NOT_A_MANIFEST],
                         ids=[c[0] for c in NOT_A_MANIFEST])
def test_manifest_that_is_not_a_manifest_is_skipped_like_a_truncated_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, edit: Any, words: str
) -> None:
    store = CheckpointStore(tmp_path, CheckpointPolicy(keep_last=3))
    for e in (1, 2):
        _save(store, e, is_best=True)
    manifest = tmp_path / "ckpt-000002" / "manifest.json"
    manifest.write_text(json.dumps(edit(json.loads(manifest.read_text()))))
    with caplog.at_level(logging.WARNING, logger="trainer.checkpoint"):
        found = store.load_latest("fp")
        listed = [i.epoch for i in store.list()]
        best = store.best()
    assert found is not None
    state, info = found
    assert info.epoch == 1 and torch.equal(state["w"], torch.full((64,), 1.0))
    assert listed == [1] and best is not None and best.epoch == 1
    assert "skipping checkpoint" in caplog.text and "ckpt-000002" in caplog.text
    assert words in caplog.text, caplog.text
    _save(store, 3)  # a later save still works next to the unreadable one
    latest = store.load_latest("fp")
    assert latest is not None and latest[1].epoch == 3


def test_manifest_that_is_not_utf8_is_skipped(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    store = CheckpointStore(tmp_path)
    for e in (1, 2):
        _save(store, e)
    (tmp_path / "ckpt-000002" / "manifest.json").write_bytes(b"\xff\xfe{")
    with caplog.at_level(logging.WARNING, logger="trainer.checkpoint"):
        found = store.load_latest()
    assert found is not None and found[1].epoch == 1
    assert "unreadable manifest" in caplog.text and "utf-8" in caplog.text


def test_all_corrupt_means_start_fresh(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    _save(store, 1)
    (tmp_path / "ckpt-000001" / "state.pt").write_bytes(b"")
    assert store.load_latest() is None


def test_other_tasks_checkpoint_is_an_error(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    _save(store, 1, fp="task-a")
    with pytest.raises(CheckpointError, match="belongs to a different task configuration"):
        store.load_latest("task-b")


def test_scheduler_rules() -> None:
    now = [0.0]
    s = CheckpointScheduler(CheckpointPolicy(every_n_epochs=3, every_minutes=1, on_best=True),
                            clock=lambda: now[0])
    assert s.decide(1, 10, is_best=False) is None
    assert s.decide(1, 10, is_best=True) is SaveReason.BEST
    assert s.decide(3, 10, is_best=False) is SaveReason.INTERVAL
    now[0] = 61.0
    assert s.decide(4, 10, is_best=False) is SaveReason.TIME
    s.saved()
    assert s.decide(4, 10, is_best=False) is None
    assert s.decide(10, 10, is_best=False) is SaveReason.FINAL
    assert s.decide(5, 10, is_best=False, stopping=True) is SaveReason.FINAL
    off = CheckpointScheduler(CheckpointPolicy(every_n_epochs=0, on_best=False))
    assert off.decide(2, 10, is_best=True) is None


def test_process_killed_while_writing_never_leaves_a_usable_partial_checkpoint(
    tmp_path: Path,
) -> None:
    """SIGKILL a writer in the middle of a large checkpoint write, as a node loss would."""
    import signal
    import subprocess
    import sys

    store = CheckpointStore(tmp_path, CheckpointPolicy(keep_last=3))
    _save(store, 1)
    writer = (
        "import torch, sys\n"
        "from trainer.checkpoint import CheckpointStore, SaveReason\n"
        "from mtp_core.spec import CheckpointPolicy\n"
        "s = CheckpointStore(sys.argv[1], CheckpointPolicy(keep_last=3))\n"
        "big = {'w': torch.ones(64 * 1024 * 1024)}\n"  # 256 MB: long enough to be caught
        "print('ready', flush=True)\n"
        "s.save(big, epoch=2, reason=SaveReason.INTERVAL, is_best=False, metrics={},\n"
        "       fingerprint='fp')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def mid_write() -> bool:
        assert proc.poll() is None, "the writer finished before it could be interrupted"
        return bool(list(tmp_path.glob(".tmp-ckpt-000002-*/state.pt")))

    # polled every millisecond: the temp file must be caught before the rename
    wait_for(mid_write, 60, interval_s=0.001, what="the writer's temp checkpoint file")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (tmp_path / "ckpt-000002").exists()
    found = store.load_latest("fp")
    assert found is not None and found[1].epoch == 1  # the partial one is never a candidate
    _save(store, 3)  # the next successful save clears the leftovers of the crashed one
    assert not list(tmp_path.glob(".tmp-ckpt-*"))
