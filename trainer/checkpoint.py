"""Checkpoint policy and an atomic, checksummed checkpoint store.

Lifecycle: the training loop asks :class:`CheckpointScheduler` at the end of every epoch whether
to save (``decide``); if so, rank 0 hands the state to :class:`CheckpointStore.save`, which
writes a new ``ckpt-<epoch>`` directory next to the old ones under a temporary name, then
renames it into place (``os.replace``), then prunes. Each checkpoint has a ``manifest.json``
with the payload's sha256 and size; ``load_latest`` walks checkpoints newest first and skips
(with a warning) any whose manifest is unreadable or not a manifest (``null``, a list, missing
or mistyped fields) or whose payload is missing, truncated or altered, so a crash in the middle
of a write never produces a checkpoint that is used.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtp_core.atomic import atomic_write_text
from mtp_core.spec import CheckpointPolicy, Compression
from trainer.errors import CheckpointError

__all__ = [
    "CheckpointInfo",
    "CheckpointScheduler",
    "CheckpointStore",
    "SaveReason",
]

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1
_PAYLOAD = {Compression.NONE: "state.pt", Compression.GZIP: "state.pt.gz",
            Compression.LZMA: "state.pt.xz"}


class SaveReason(enum.StrEnum):
    INTERVAL = "interval"
    TIME = "time"
    BEST = "best"
    FINAL = "final"


class CheckpointScheduler:
    """Decides, at the end of each epoch, whether a checkpoint is due and why.

    The decision for the time rule uses the clock of the caller; in distributed training only
    rank 0 calls ``decide`` and broadcasts the answer, so all ranks agree.
    """

    def __init__(self, policy: CheckpointPolicy, clock: Any = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._last_save = clock()

    def decide(self, epoch: int, total_epochs: int, is_best: bool,
               stopping: bool = False) -> SaveReason | None:
        """``epoch`` is 1-based (the number of completed epochs)."""
        p = self.policy
        if epoch >= total_epochs or stopping:
            return SaveReason.FINAL
        if p.on_best and is_best:
            return SaveReason.BEST
        if p.every_n_epochs and epoch % p.every_n_epochs == 0:
            return SaveReason.INTERVAL
        if p.every_minutes and self._clock() - self._last_save >= p.every_minutes * 60:
            return SaveReason.TIME
        return None

    def saved(self) -> None:
        self._last_save = self._clock()


_REQUIRED_FIELDS = frozenset({"epoch", "is_best", "reason", "sha256", "size"})
_OPTIONAL_DEFAULTS: dict[str, Any] = {"metrics": {}, "fingerprint": ""}
_FIELD_TYPES: dict[str, type] = {"epoch": int, "is_best": bool, "reason": str, "sha256": str,
                                 "size": int, "metrics": dict, "fingerprint": str}
_TYPE_NAMES = {int: "a whole number", bool: "true or false", str: "a string",
               dict: "an object"}


def _json_type(value: object) -> str:
    """``value``'s JSON type, as a reader of the file would call it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    epoch: int
    is_best: bool
    reason: str
    sha256: str
    size: int
    metrics: dict[str, float]
    fingerprint: str

    @classmethod
    def from_manifest(cls, path: Path, m: object) -> CheckpointInfo:
        """The checkpoint described by manifest ``m`` (parsed JSON); :class:`ValueError` naming
        the first problem when ``m`` is not a manifest: any JSON can sit in the file (``null``
        from a tool that zeroed it, a list, a manifest missing fields or with mistyped ones),
        and the loader must skip such a checkpoint as it skips a truncated one."""
        if not isinstance(m, dict):
            raise ValueError(f"expected a JSON object, got {_json_type(m)}")
        missing = sorted(_REQUIRED_FIELDS - m.keys())
        if missing:
            raise ValueError(f"missing fields {missing}")
        for name, kind in _FIELD_TYPES.items():
            value = m.get(name, _OPTIONAL_DEFAULTS.get(name))
            # bool is an int in Python: an epoch of `true` is not an epoch
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"field {name!r} must be {_TYPE_NAMES[kind]}, got "
                                 f"{_json_type(value)}")
        if m["epoch"] < 0 or m["size"] < 0:
            raise ValueError(f"epoch and size must be >= 0, got {m['epoch']} and {m['size']}")
        metrics = m.get("metrics", {})
        bad = [k for k, v in metrics.items()
               if not isinstance(v, int | float) or isinstance(v, bool)]
        if bad:
            raise ValueError(f"metrics {bad} are not numbers")
        return cls(path, m["epoch"], m["is_best"], m["reason"], m["sha256"], m["size"],
                   dict(metrics), m.get("fingerprint", ""))


def _compress(data: bytes, how: Compression) -> bytes:
    if how is Compression.GZIP:
        return gzip.compress(data, compresslevel=6, mtime=0)
    if how is Compression.LZMA:
        return lzma.compress(data)
    return data


def _decompress(data: bytes, name: str) -> bytes:
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".xz"):
        return lzma.decompress(data)
    return data


class CheckpointStore:
    """Checkpoints of one run under ``root`` (``<run_dir>/checkpoints``).

    Keeps the newest ``keep_last`` checkpoints plus the newest one flagged best. Only rank 0
    writes; any process may read.
    """

    def __init__(self, root: str | Path, policy: CheckpointPolicy | None = None) -> None:
        self.root = Path(root)
        self.policy = policy or CheckpointPolicy()

    # -- writing ------------------------------------------------------------------------------

    def save(
        self,
        state: dict[str, Any],
        *,
        epoch: int,
        reason: SaveReason,
        is_best: bool,
        metrics: dict[str, float],
        fingerprint: str,
    ) -> CheckpointInfo:
        import torch  # listing and verifying need no torch: a cached rerun checks run dirs

        buf = io.BytesIO()
        torch.save(state, buf)
        payload = _compress(buf.getvalue(), self.policy.compression)
        name = _PAYLOAD[self.policy.compression]
        manifest = {
            "format_version": _FORMAT_VERSION,
            "epoch": epoch,
            "reason": reason.value,
            "is_best": is_best,
            "payload": name,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "size": len(payload),
            "metrics": metrics,
            "fingerprint": fingerprint,
            "created_unix": time.time(),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"ckpt-{epoch:06d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-ckpt-{epoch:06d}-", dir=self.root))
        try:
            os.chmod(tmp, 0o755)
            with open(tmp / name, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            # the manifest goes last: a directory without one is never loaded
            atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1))
            if final.exists():  # re-save of the same epoch after a resume
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        info = CheckpointInfo.from_manifest(final, manifest)
        self._prune()
        logger.debug("checkpoint epoch %d written to %s (%s)", epoch, final, reason.value)
        return info

    def _prune(self) -> None:
        infos = self.list()
        keep = {i.path for i in infos[-self.policy.keep_last:]}
        if self.policy.keep_best:
            best = [i for i in infos if i.is_best]
            if best:
                keep.add(best[-1].path)
        for info in infos:
            if info.path not in keep:
                shutil.rmtree(info.path, ignore_errors=True)
        for stale in self.root.glob(".tmp-ckpt-*"):  # leftovers of writes that crashed
            shutil.rmtree(stale, ignore_errors=True)

    # -- reading ------------------------------------------------------------------------------

    def list(self) -> list[CheckpointInfo]:
        """Checkpoints with a readable manifest, oldest first (payloads not verified)."""
        out: list[CheckpointInfo] = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.glob("ckpt-*")):
            try:
                m = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
                out.append(CheckpointInfo.from_manifest(d, m))
            except (OSError, ValueError) as err:  # JSON and Unicode errors are ValueErrors
                logger.warning("skipping checkpoint %s: unreadable manifest (%s)", d, err)
        out.sort(key=lambda i: i.epoch)
        return out

    def verify(self, info: CheckpointInfo) -> bytes | None:
        """The payload bytes if size and sha256 match the manifest, else None (logged)."""
        payloads = [p for p in info.path.iterdir() if p.name.startswith("state.pt")]
        if len(payloads) != 1:
            logger.warning("skipping checkpoint %s: payload missing", info.path)
            return None
        data = payloads[0].read_bytes()
        if len(data) != info.size:
            logger.warning("skipping checkpoint %s: payload is %d bytes, manifest says %d "
                           "(truncated)", info.path, len(data), info.size)
            return None
        if hashlib.sha256(data).hexdigest() != info.sha256:
            logger.warning("skipping checkpoint %s: sha256 mismatch (corrupt)", info.path)
            return None
        return _decompress(data, payloads[0].name)

    def load(self, info: CheckpointInfo) -> dict[str, Any] | None:
        data = self.verify(info)
        if data is None:
            return None
        try:
            import torch

            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means unusable
            logger.warning("skipping checkpoint %s: cannot deserialize (%s)", info.path, err)
            return None
        if not isinstance(state, dict):
            logger.warning("skipping checkpoint %s: payload is not a state dict", info.path)
            return None
        return state

    def load_latest(
        self, fingerprint: str | None = None
    ) -> tuple[dict[str, Any], CheckpointInfo] | None:
        """Newest checkpoint that verifies; older ones are tried when newer ones are corrupt.

        With ``fingerprint`` given, a checkpoint of a different task is an error rather than a
        silent restart: it means the run directory is being reused for other work.
        """
        for info in reversed(self.list()):
            if fingerprint is not None and info.fingerprint and info.fingerprint != fingerprint:
                raise CheckpointError(
                    f"checkpoint {info.path} belongs to a different task configuration "
                    f"(fingerprint {info.fingerprint[:12]} != {fingerprint[:12]}); use another "
                    "--run-name or --storage-path, or delete that run directory"
                )
            state = self.load(info)
            if state is not None:
                return state, info
        return None

    def best(self) -> CheckpointInfo | None:
        best = [i for i in self.list() if i.is_best]
        return best[-1] if best else None
