"""Alembic environment for the SQL store: always run with a connection handed in by ``migrate.py``.

``warren.store.sql.migrate.upgrade`` opens the connection, takes the cross-process lock and
puts the connection in ``config.attributes["connection"]``; this file only runs the migrations
on it. There is no offline (SQL script) mode and no logging set-up: the broker owns logging.
"""

from __future__ import annotations

from alembic import context

from warren.store.sql.tables import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through warren.store.sql.migrate.upgrade(url)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
