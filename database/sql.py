"""Statements both databases need in their own dialect."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["insert_ignoring_conflict"]


def insert_ignoring_conflict(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING``: True when the row was inserted, False when a row
    with the same primary key (or unique value) was already there. Atomic on both databases:
    of two concurrent inserts of one key exactly one returns True."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    key = next(iter(table.primary_key.columns))
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing().returning(key)
    # RETURNING, not rowcount: psycopg's rowcount after ON CONFLICT is not the rows inserted
    return conn.execute(stmt).first() is not None
