"""Alembic's entry point: runs the migrations on the connection the platform hands it
(``config.attributes["connection"]``), inside the platform's own transaction."""

from __future__ import annotations

from alembic import context

from database.schema import METADATA, VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic revision` by a developer: no database needed
    context.configure(url="sqlite://", target_metadata=METADATA, version_table=VERSION_TABLE)
else:
    context.configure(connection=connection, target_metadata=METADATA,
                      version_table=VERSION_TABLE, render_as_batch=True,
                      transactional_ddl=True)
    context.run_migrations()
