"""The platform's tables (SQLAlchemy Core), all prefixed ``mtp_``.

MLflow's tables may live in the same database (the default tracking store is this database);
the prefix keeps the two apart, and the schema revision is kept in ``mtp_alembic_version``
(MLflow keeps its own in ``alembic_version``).

The tables here are the newest schema; ``database/migrations/versions`` holds the steps from
each older one. A change to a table is a new migration and a change here, together.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["ALIAS_MOVES", "CLAIMS", "META", "METADATA", "MODEL_VERSIONS", "RESULTS",
           "SCHEMA_HEAD", "STUDIES", "TASKS", "TRIALS", "VERIFICATIONS", "VERSION_TABLE"]

VERSION_TABLE = "mtp_alembic_version"

METADATA = MetaData()

META = Table(
    "mtp_meta", METADATA,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
"""Facts about the database itself: ``mtp_version`` (of the newest mtp that migrated it)."""

# -- the result registry (revision 0001) -------------------------------------------------------

RESULTS = Table(
    "mtp_results", METADATA,
    Column("key", String(128), primary_key=True),
    Column("task_id", String(256), nullable=False),
    Column("node_id", String(256), nullable=False),
    Column("run_dir", Text, nullable=False),
    Column("model_path", Text, nullable=False),
    Column("shared_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("verified", Boolean, nullable=False, default=False),
    Column("entry", Text, nullable=False),  # the RegistryEntry as canonical JSON
    Column("checksum", String(64), nullable=False),  # sha256 of entry
    Index("ix_mtp_results_task_id", "task_id"),
    Index("ix_mtp_results_expires_at", "expires_at"),
)
"""One shared result per cache key (a re-registration replaces it)."""

VERIFICATIONS = Table(
    "mtp_verifications", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(128), ForeignKey("mtp_results.key", ondelete="CASCADE"),
           nullable=False),
    Column("at", Float, nullable=False),
    Column("consistent", Boolean, nullable=False),
    Column("report", Text, nullable=False),  # ConsistencyReport JSON
    Index("ix_mtp_verifications_key", "key", "id"),
)
"""Consensus reports of a result, oldest first (the newest decides ``verified``)."""

CLAIMS = Table(
    "mtp_claims", METADATA,
    Column("key", String(128), primary_key=True),
    Column("owner", String(256), nullable=False),
    Column("claimed_at", Float, nullable=False),
)
"""Who is training a cache key now (one row per key: the unique constraint is the lock)."""

# -- the model registry's own records (revision 0002) ------------------------------------------

MODEL_VERSIONS = Table(
    "mtp_model_versions", METADATA,
    Column("model", String(256), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("run_dir", Text, nullable=False),
    Column("run_id", String(64), nullable=True),  # the MLflow run, when tracked
    Column("cache_key", String(128), nullable=True),  # the result's: `mtp verify` marks by it
    Column("parent_version", Integer, nullable=True),
    Column("relation", String(32), nullable=False),  # LineageRelation value
    Column("changes", Text, nullable=False),  # JSON {dotted field: [parent value, child value]}
    Column("created_at", Float, nullable=False),
    Column("created_by", String(256), nullable=False),
    Index("ix_mtp_model_versions_cache_key", "cache_key"),
)
"""Lineage: every registered version, its parent (if any) and what changed on the edge."""

ALIAS_MOVES = Table(
    "mtp_alias_moves", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(256), nullable=False),
    Column("alias", String(256), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),  # None: the alias was removed
    Column("at", Float, nullable=False),
    Column("user", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("kind", String(32), nullable=False),  # AliasMoveKind value
    Index("ix_mtp_alias_moves_model_alias", "model", "alias", "id"),
)
"""Every move of an alias, in order: the history ``mtp models history`` shows and the record
``mtp models rollback`` reads."""

# -- the study index (revision 0003) ---------------------------------------------------------

STUDIES = Table(
    "mtp_studies", METADATA,
    Column("name", String(256), primary_key=True),
    Column("study_dir", Text, nullable=False),
    Column("status", String(32), nullable=False),  # hpo.index.StudyStatus value
    Column("searcher", String(64), nullable=False),
    Column("metric", String(256), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("trials", Integer, nullable=False),
    Column("best_trial", String(64), nullable=True),
    Column("best_value", Float, nullable=True),
    Column("best_params", Text, nullable=True),  # JSON
    Column("run_id", String(64), nullable=True),  # the study's MLflow parent run
    Column("started_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("error", Text, nullable=True),
)
"""Every study of this database's storage: where it lives, how it ended, its best trial."""

TRIALS = Table(
    "mtp_trials", METADATA,
    Column("study", String(256), ForeignKey("mtp_studies.name", ondelete="CASCADE"),
           primary_key=True),
    Column("trial_id", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("params", Text, nullable=False),  # JSON
    Column("value", Float, nullable=True),
    Column("metrics", Text, nullable=False),  # JSON: the last report's numbers
    Column("iterations", Integer, nullable=False),
    Column("time_s", Float, nullable=False),
    Column("reused", Boolean, nullable=False),
)
"""A study's trials, one row each (written as they finish, and all again at the end)."""

# -- the scheduler's queue (revision 0004) -----------------------------------------------------

TASKS = Table(
    "mtp_tasks", METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # submit order (FCFS)
    Column("id", String(64), nullable=False, unique=True),
    Column("request_id", String(256), nullable=True, unique=True),  # a client's retry key
    Column("name", String(256), nullable=False),
    Column("task_id", String(256), nullable=False),  # the task's own id (seeds, run dir)
    Column("priority", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # cluster.queue.QueueState value
    Column("preemptible", Boolean, nullable=False),
    Column("checkpointed", Boolean, nullable=False),  # False: stopped at once to preempt
    Column("max_attempts", Integer, nullable=False),
    Column("max_runtime_s", Float, nullable=True),
    Column("resources", Text, nullable=False),  # JSON: TaskResources
    Column("submitter", String(256), nullable=False),
    Column("submitted_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),  # first start
    Column("attempt_started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("ran_s", Float, nullable=False),  # run time of the attempts that ended
    Column("preemptions", Integer, nullable=False),
    Column("reason", Text, nullable=False),  # of the last state change
    Column("request", String(16), nullable=True),  # cluster.queue.StopRequest value
    Column("requested_at", Float, nullable=True),
    Column("request_epoch", Integer, nullable=True),  # newest checkpoint when asked to stop
    Column("job_id", String(128), nullable=True),  # the current attempt's Ray job
    Column("config", Text, nullable=False),  # the task as canonical JSON
    Column("config_path", Text, nullable=False),  # the file the job's `mtp run` reads
    Column("storage", Text, nullable=False),
    Column("run_name", String(256), nullable=False),
    Column("progress", Text, nullable=True),  # JSON, written by the task's driver
    Column("progress_attempt", Integer, nullable=True),
    Column("outcome", Text, nullable=True),  # JSON, written by the task's driver at its end
    Column("outcome_attempt", Integer, nullable=True),
    Column("result", Text, nullable=True),  # JSON summary of a SUCCEEDED task
    Column("error", Text, nullable=True),
    Column("updated_at", Float, nullable=False),
    Index("ix_mtp_tasks_state", "state", "priority", "seq"),
)
"""The scheduler's queue: one row per submitted task, written by the ``mtp-scheduler`` actor
(state columns) and by the task's own driver (``progress``/``outcome`` of its attempt)."""

#: The newest revision in ``database/migrations/versions`` (a test checks they agree).
SCHEMA_HEAD = "0004"
