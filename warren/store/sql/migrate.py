"""Bring an SQL store's schema to the newest revision (``warren db upgrade``; ``SqlStore.open``).

Alembic is configured in code, not by an ini file, with the migrations directory found next to
this module, so it works from an installed wheel as well as from a checkout.

Two brokers of a master/slave pair start at once against one database, so the upgrade holds a
cross-process lock from reading the current revision to committing the new one; the second
process then finds the schema at head and does nothing:

- PostgreSQL: a session advisory lock (``pg_advisory_lock``) on the migrating connection;
- SQLite: an exclusive ``fcntl`` lock on ``<database file>.migrate-lock`` (an in-memory
  database belongs to one process and needs none).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from warren.store.sql.tables import VERSION_TABLE

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Arbitrary but fixed key of the PostgreSQL advisory lock ("warren" in ASCII, as a bigint).
ADVISORY_LOCK_KEY = 0x77617272656E


def alembic_config() -> Config:
    """An Alembic Config pointing at the packaged migrations, with no ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_table", VERSION_TABLE)
    return config


def head_revision() -> str:
    """The newest revision id the package ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None for an empty database)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


@contextlib.contextmanager
def _sqlite_file_lock(database: str | None) -> Iterator[None]:
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    lock_path = Path(database).resolve().with_name(Path(database).name + ".migrate-lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def _postgres_advisory_lock(connection: Connection) -> Iterator[None]:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    connection.commit()  # a session lock outlives the transaction that took it
    try:
        yield
    finally:
        connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
        connection.commit()


@contextlib.contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Hold the cross-process migration lock for this connection's database."""
    if connection.dialect.name == "postgresql":
        with _postgres_advisory_lock(connection):
            yield
    elif connection.dialect.name == "sqlite":
        with _sqlite_file_lock(connection.engine.url.database):
            yield
    else:
        yield  # other dialects: rely on the DDL failing loudly in the loser


def upgrade_engine(engine: Engine) -> None:
    """Upgrade the database behind ``engine`` to head; a no-op when it is already there."""
    head = head_revision()
    with engine.connect() as connection:
        with migration_lock(connection):
            if current_revision(connection) == head:
                connection.rollback()
                return
            connection.rollback()
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()


def upgrade(url: str) -> None:
    """Upgrade the database at ``url`` to the newest schema (the CLI's ``warren db upgrade``)."""
    engine = create_engine(make_url(url))
    try:
        upgrade_engine(engine)
    finally:
        engine.dispose()
