"""One broker per store, also without ``--ha``: the lock a standalone broker takes first.

Two brokers writing one journal (or one SQLite file) interleave their records and each later
recovers only what it believes it wrote: confirmed messages are lost. So a broker started
without ``--ha`` takes the same lock an HA pair would, *once*, and refuses to start when
another broker holds it, naming the store and the holder (pid, host, start time):

``journal``
    the ``fcntl`` lock on ``DATA_DIR/lock``, the very file ``--ha shared-file`` uses, so a
    standalone broker and an HA pair exclude each other too. The kernel drops it when the
    process dies, however it dies.
``sql`` on an SQLite file
    the same kind of lock on ``<database file>.lock`` beside the file: two brokers with
    different data directories but one ``--store-url sqlite:///...`` collide there.
``sql`` on PostgreSQL
    a session advisory lock held for the broker's life (:mod:`warren.ha.database_guard`): a
    file lock cannot span hosts. It also refuses a database whose HA lease a master holds,
    and every ``--ha shared-db`` member holds the lock shared (``ha_member_guard``), so
    neither kind of broker starts while the other serves that database.
``memory``, SQLite ``:memory:``
    nothing is shared, nothing is locked.
"""

from __future__ import annotations

import os

from ..config import Config
from .file_locker import SharedFileLocker
from .locker import Locker, LockUnavailable, describe_owner, new_owner_id


class StoreInUse(Exception):
    """Another broker holds the store this one was told to serve; the message says who."""


def exclusive_locker(config: Config) -> Locker | None:
    """The lock that keeps a second broker off this configuration's store, or None."""
    owner = new_owner_id(config.node_name)
    if config.store == "journal":
        return SharedFileLocker(config.data_dir, owner=owner)
    if config.store != "sql":
        return None
    # SQLAlchemy only for an SQL store: its import is a third of a second of every start
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        url = make_url(config.sql_url)
    except ArgumentError:
        raise ValueError("the store URL is not a database URL (dialect+driver://user:password"
                         "@host/database, or sqlite:///path)") from None
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            return None
        path = os.path.abspath(database)
        return SharedFileLocker(os.path.dirname(path), owner=owner,
                                filename=os.path.basename(path) + ".lock")
    if url.get_backend_name() == "postgresql":
        from .database_guard import DatabaseGuard
        return DatabaseGuard(config.sql_url, owner=owner)
    return None


def ha_member_guard(config: Config) -> Locker | None:
    """What an HA member holds against standalone brokers: on PostgreSQL with
    ``--ha shared-db``, its share of the standalone guard's lock; None elsewhere (a shared
    file is one lock for standalone brokers and pairs alike)."""
    if config.ha != "shared-db" or config.store != "sql":
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        backend = make_url(config.sql_url).get_backend_name()
    except ArgumentError:
        return None   # the runner says what is wrong with the URL
    if backend != "postgresql":
        return None
    from .database_guard import DatabaseGuard
    return DatabaseGuard(config.sql_url, owner=new_owner_id(config.node_name), shared=True)


def take_exclusive(locker: Locker, config: Config) -> None:
    """Take ``locker`` now, or raise :class:`StoreInUse` naming the store and its holder."""
    try:
        won = locker.acquire()
        holder = None if won else locker.holder()
    except LockUnavailable as error:
        raise StoreInUse(f"cannot lock the store: {error}") from error
    if won:
        return
    who = describe_owner(holder) if holder else "a broker that is just starting or stopping"
    if isinstance(locker, SharedFileLocker):
        if config.store == "journal":
            what = f"data directory {os.path.abspath(config.data_dir)}"
            hint = "stop that broker or give this one another --data-dir"
        else:
            what = f"SQLite database {locker.path[:-len('.lock')]}"
            hint = "stop that broker or give this one another --store-url"
    elif getattr(locker, "shared", False):
        what = locker.description
        who = f"{who}, without --ha"
        hint = ("stop that broker, or run it with --ha shared-db too to make it a member of "
                "this master/slave pair")
    else:
        what = locker.description
        hint = ("stop that broker, or run both with --ha shared-db to make them a "
                "master/slave pair")
    raise StoreInUse(f"the {what} is in use by another broker ({who}): {hint}")
