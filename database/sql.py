"""Statements both databases need in their own dialect."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["insert_ignoring_conflict", "insert_returning_key"]


def insert_returning_key(conn: Connection, table: Table, values: Mapping[str, Any]) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING <primary key>``: the new row's key, or
    None when a row with the same primary key (or unique value) was already there. Atomic on
    both databases: of two concurrent inserts of one key exactly one gets a key (PostgreSQL
    makes the second wait for the first to commit)."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    key = next(iter(table.primary_key.columns))
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing().returning(key)
    # RETURNING, not rowcount: psycopg's rowcount after ON CONFLICT is not the rows inserted
    row = conn.execute(stmt).first()
    return None if row is None else row[0]


def insert_ignoring_conflict(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING``: True when the row was inserted, False when a row
    with the same primary key (or unique value) was already there (see
    :func:`insert_returning_key`)."""
    return insert_returning_key(conn, table, values) is not None
