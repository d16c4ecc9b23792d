"""A study's stored state, and whether a new run of it starts, resumes or starts over.

``<storage>/_studies/<name>/`` holds Tune's experiment state and ``mtp-study.json``: the search
section and base task the study was started with. Before a study runs, :func:`read_study`
looks at what is stored (how many trials finished, i.e. ended having reported the metric) and
:func:`decide_start` chooses:

- nothing stored: NEW (``--resume`` is refused: nothing to resume);
- stored, no finished trial (it failed or was interrupted before any trial finished, e.g. on a
  bad ``search.metric``): a plain rerun STARTS OVER, and so does ``--resume`` when the config
  changed since (the fix is what the user wants to run) or Tune cannot restore the state;
  the old folder is moved whole to ``<storage>/_studies/_superseded/`` (a name cannot start
  with ``_``, so no study can be there), never deleted or written into;
- stored with finished trials: ``--resume`` RESUMES it when the config is the one it started
  with; a different config is refused (a study's trials share one search), and so is a rerun
  without ``--resume``: one line says what to do.

While a study runs, its process holds a lock (:func:`study_lock`, ``_studies/_locks/<name>``):
a second run of the same name at the same time is refused instead of writing into, or moving
away, the first one's folder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import enum
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.errors import SearchConfigError
from hpo.spec import SearchSpec
from mtp_core.atomic import atomic_write_text

__all__ = ["CONFIG_FILE", "LOCKS", "SUPERSEDED", "StoredStudy", "StudyStart",
           "config_differences", "decide_start", "move_aside", "read_study", "study_config",
           "study_lock", "write_study_config"]

logger = logging.getLogger(__name__)

CONFIG_FILE = "mtp-study.json"
SUPERSEDED = "_superseded"  # under <storage>/_studies: studies moved aside by a start-over
LOCKS = "_locks"  # under <storage>/_studies: one lock file per study name
_SHOWN_DIFFERENCES = 3


class StudyStart(enum.StrEnum):
    NEW = "new"  # nothing stored under the name
    RESUME = "resume"  # Tune restores the stored study; finished trials are not rerun
    START_OVER = "start_over"  # the stored study is moved aside and a new one starts


@dataclass(frozen=True)
class StoredStudy:
    """What a study folder holds."""

    path: Path
    restorable: bool  # Tune can restore it (its tuner state is there)
    finished: int  # trials that ended having reported the study's metric
    config: dict[str, Any] | None  # what it was started with; None: not recorded (older)


def study_config(spec: SearchSpec, base_task: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a study is: its search section and the task its trials train (None: a plain
    objective, which cannot be compared)."""
    return {"search": spec.model_dump(mode="json"),
            "task": None if base_task is None else json.loads(json.dumps(base_task))}


def write_study_config(study_dir: Path, config: Mapping[str, Any]) -> None:
    study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(study_dir / CONFIG_FILE, json.dumps(config, indent=1, sort_keys=True))


def read_study(study_dir: Path, metric: str) -> StoredStudy | None:
    """The stored study at ``study_dir``; None when there is none (no folder, or an empty one).
    ``metric`` counts finished trials when the folder does not record its own."""
    if not study_dir.is_dir() or not any(study_dir.iterdir()):
        return None
    config = _read_config(study_dir)
    if config is not None:
        metric = str(config.get("search", {}).get("metric", metric))
    from ray import tune

    return StoredStudy(path=study_dir, restorable=tune.Tuner.can_restore(str(study_dir)),
                       finished=_finished_trials(study_dir, metric), config=config)


def _read_config(study_dir: Path) -> dict[str, Any] | None:
    path = study_dir / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:  # written atomically: unreadable means not ours
        logger.warning("study config %s is unreadable (%s); treating it as not recorded",
                       path, err)
        return None
    return data if isinstance(data, dict) else None


def _finished_trials(study_dir: Path, metric: str) -> int:
    """Trials Tune's experiment state records as TERMINATED with ``metric`` reported."""
    from ray.tune import ExperimentAnalysis

    # ExperimentAnalysis warns for every trial that has no result file yet: expected here
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        analysis = ExperimentAnalysis(str(study_dir))
    except Exception as err:  # noqa: BLE001 - no state (ValueError) or a state Tune cannot
        # read: either way no trial of it can be resumed
        logger.debug("study %s: no readable experiment state (%s)", study_dir, err)
        return 0
    finally:
        quiet.setLevel(level)
    return sum(1 for t in analysis.trials
               if t.status == "TERMINATED" and metric in (t.last_result or {}))


def config_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``path: old then, new now`` for every field that differs (search fields as
    ``search.<field>``, task fields by their dotted path)."""
    old = _flatten(stored.get("search"), "search.") | _flatten(stored.get("task"), "")
    new = _flatten(current.get("search"), "search.") | _flatten(current.get("task"), "")
    missing = object()
    out = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, missing), new.get(key, missing)
        if a != b:
            out.append(f"{key}: {_show(a, missing)} then, {_show(b, missing)} now")
    return out


def _flatten(node: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        return {prefix.rstrip("."): node} if prefix and node is not None else {}
    out: dict[str, Any] = {}
    for k, v in node.items():
        if isinstance(v, Mapping) and v:
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _show(value: Any, missing: object) -> str:
    return "unset" if value is missing else json.dumps(value, default=str)


def decide_start(name: str, stored: StoredStudy | None, config: Mapping[str, Any],
                 resume: bool) -> StudyStart:
    """NEW, RESUME or START_OVER (see the module's docstring); SearchConfigError when neither
    is right, saying what to do."""
    if stored is None:
        if resume:
            raise SearchConfigError(
                f"--resume: there is no study named {name!r} to resume (start it without "
                "--resume)")
        return StudyStart.NEW
    # a plain objective's function cannot be compared, its search section can
    differences = ([] if stored.config is None
                   else config_differences(stored.config, config))
    if stored.finished == 0:
        if not resume:
            return StudyStart.START_OVER
        return (StudyStart.RESUME if stored.restorable and not differences
                else StudyStart.START_OVER)
    if not resume:
        raise SearchConfigError(
            f"--name: a study named {name!r} already exists with {stored.finished} finished "
            f"trial(s) ({stored.path}): pass --resume to continue it, or choose another --name")
    if differences:
        shown = "; ".join(differences[:_SHOWN_DIFFERENCES])
        more = (f" (and {len(differences) - _SHOWN_DIFFERENCES} more)"
                if len(differences) > _SHOWN_DIFFERENCES else "")
        raise SearchConfigError(
            f"--resume: study {name!r} has {stored.finished} finished trial(s) from another "
            f"config ({shown}{more}); a study keeps the config it started with: restore it to "
            "resume, or run this config as a new study with another --name")
    if not stored.restorable:
        raise SearchConfigError(
            f"--resume: study {name!r} at {stored.path} has no state Tune can restore; run "
            "the config as a new study with another --name")
    return StudyStart.RESUME


def move_aside(study_dir: Path, now: _dt.datetime | None = None) -> Path:
    """Move ``study_dir`` whole to a new folder under ``_studies/_superseded/``; its path."""
    now = now or _dt.datetime.now(_dt.UTC)
    root = study_dir.parent / SUPERSEDED
    root.mkdir(exist_ok=True)
    # mkdtemp makes a folder no one else has: the move can never land on another's state
    holder = Path(tempfile.mkdtemp(prefix=f"{study_dir.name}-{now:%Y%m%dT%H%M%SZ}-", dir=root))
    dest = holder / study_dir.name
    os.rename(study_dir, dest)
    return dest


@contextlib.contextmanager
def study_lock(studies: Path, name: str) -> Iterator[None]:
    """Hold study ``name``'s lock while the block runs; SearchConfigError when another process
    holds it. The operating system releases it when the process ends, however it ends."""
    locks = studies / LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SearchConfigError(
                f"--name: study {name!r} is running in another process right now; wait for "
                "it to end, or choose another --name") from None
        yield
    finally:
        os.close(fd)  # closing drops the lock
