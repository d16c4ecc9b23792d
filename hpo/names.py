"""A study's name and its trials' run names: plain folder names under the storage path.

A study lives in ``<storage>/_studies/<name>`` and each of its training trials in the run
folder ``<storage>/<name>-<trial id>``, so a name is one plain path component (the platform's
rule for run and task names, ``mtp_core.names``), short enough that every trial's run name
stays within the same rule's 128 characters.
"""

from __future__ import annotations

from hpo.errors import HpoError, SearchConfigError
from mtp_core.names import MAX_NAME, NAME_RULE, derived_name, name_problem

__all__ = ["MAX_STUDY_NAME", "check_study_name", "default_study_name", "trial_run_name"]

# Tune's trial ids: 8 hex digits (a searcher's trials) or <5 hex>_<5 digits> (grid variants)
_TRIAL_ID_MAX = 11
MAX_STUDY_NAME = MAX_NAME - 1 - _TRIAL_ID_MAX


def check_study_name(name: str) -> str:
    """``name`` when it is a plain study name, else SearchConfigError naming ``--name``."""
    problem = name_problem(name) if isinstance(name, str) else f"{name!r} is not a string"
    if problem is not None:
        raise SearchConfigError(
            f"--name: {problem} (a study is the folder <storage>/_studies/<name>)")
    if len(name) > MAX_STUDY_NAME:
        raise SearchConfigError(
            f"--name: {name[:20]!r}... has {len(name)} characters; allowed: at most "
            f"{MAX_STUDY_NAME} ({NAME_RULE}; each trial's run is named <name>-<trial id>, "
            f"at most {MAX_NAME})")
    return name


def default_study_name(task_id: str) -> str:
    """``<task id>-study``; a task id too long for that keeps its first characters and a
    digest of the whole id, so two long ids never share a study."""
    return derived_name(task_id, "-study", MAX_STUDY_NAME)


def trial_run_name(study: str, trial_id: str) -> str:
    """The run folder name of one training trial."""
    name = f"{study}-{trial_id}"
    problem = name_problem(name)
    if problem is not None:  # a Tune trial id outside the form above: a platform bug
        raise HpoError(f"trial run name {problem}")
    return name
