"""Alembic migrations of the platform database (version table ``mtp_alembic_version``).

Applied by :func:`database.engine.open_database` on start; a developer adds a step with
``alembic -c database/migrations/alembic.ini revision -m "..."`` and writes its upgrade by hand
(the tables in ``database/schema.py`` change with it).
"""
