"""The platform database: SQLite under the storage path by default, PostgreSQL on clusters.

SQLAlchemy 2 Core tables (``database.schema``), Alembic migrations applied on open
(``database/migrations``), transactions that retry on transient errors
(``database.engine``), and the URL the platform uses (``database.url``).
"""

from database.engine import Database, close_all, open_database
from database.errors import (
    DatabaseConfigError,
    DatabaseCorruptError,
    DatabaseError,
    DatabaseVersionError,
)
from database.url import DATABASE_ENV, database_url, default_sqlite_path, redacted

__all__ = [
    "DATABASE_ENV",
    "Database",
    "DatabaseConfigError",
    "DatabaseCorruptError",
    "DatabaseError",
    "DatabaseVersionError",
    "close_all",
    "database_url",
    "default_sqlite_path",
    "open_database",
    "redacted",
]
