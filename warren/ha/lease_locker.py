"""The database lease locker: a row in ``warren_lock`` whose owner may serve until it expires.

As ActiveMQ's ``LeaseDatabaseLocker``. The row ``name='master'`` holds ``owner`` and
``expires_at`` (epoch seconds, *the database's* clock). Taking and keeping the lease is one
conditional UPDATE:

    UPDATE warren_lock SET owner=:me, expires_at=<db now> + :ttl
    WHERE name='master' AND (owner=:me OR owner IS NULL OR expires_at IS NULL
                             OR expires_at < <db now>)

and we hold it iff it changed one row. One statement in its own transaction is what makes two
brokers unable to both win: PostgreSQL re-checks the WHERE clause of a concurrent UPDATE against
the row the other transaction committed (so the loser sees the winner's fresh expiry and matches
nothing); SQLite runs writers one at a time. Only the database's clock is ever compared with
``expires_at`` (``clock_timestamp()`` on PostgreSQL, ``julianday('now')`` on SQLite), so skew
between the brokers' hosts does not matter.

``renew()`` is the same UPDATE restricted to ``owner=:me``: a lease that expired and was taken
by someone else is never taken back silently. The runner adds the other half of the fence: it
measures with its own monotonic clock how long ago the last successful renewal *started*, and
stops serving when that passes the TTL, whatever the database says later (a master that was
paused must not trust an answer it gets after waking up).

The row is created by an INSERT that skips an existing key (``ON CONFLICT DO NOTHING``), so two
brokers starting together cannot fail on a duplicate. The schema itself comes from the SQL
store's migrations (run here too, so the locker works before the store is opened).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from .locker import Locker, LockUnavailable, new_owner_id

LEASE_NAME = "master"

#: The database's clock as epoch seconds (a float), per dialect.
DB_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


def _engine(url: str, timeout: float) -> Engine:
    """A connection-per-call engine with timeouts shorter than a lease.

    No pool: after a database restart a pooled connection would be dead, and one connection
    every ``lease_renew`` seconds is cheap. Timeouts bound each call, so a database that went
    away turns into a failed renewal, not a thread stuck past the lease.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        whole = max(1, int(timeout))
        return create_engine(parsed, poolclass=NullPool, connect_args={
            "connect_timeout": whole,
            "options": f"-c statement_timeout={int(timeout * 1000)} "
                       f"-c lock_timeout={int(timeout * 1000)}",
            "tcp_user_timeout": int(timeout * 1000),
            "keepalives": 1, "keepalives_idle": whole, "keepalives_interval": 1,
            "keepalives_count": 2,
        })
    if backend == "sqlite":
        return create_engine(parsed, poolclass=NullPool,
                             connect_args={"timeout": timeout, "check_same_thread": False})
    raise ValueError(f"lease locker: unsupported database '{backend}' (PostgreSQL or SQLite)")


class LeaseLocker(Locker):
    """Master lock = unexpired lease row in ``warren_lock`` of the database at ``url``."""

    def __init__(self, url: str, *, ttl: float = 10.0, owner: str | None = None,
                 timeout: float | None = None, migrate: bool = True) -> None:
        if ttl <= 0:
            raise ValueError("lease ttl must be positive")
        self.url = url
        self.ttl = float(ttl)
        self.owner = owner or new_owner_id()
        self.description = f"lease '{LEASE_NAME}' in {make_url(url).render_as_string()}"
        self.engine = _engine(url, timeout if timeout is not None else max(0.5, ttl / 4))
        now = DB_NOW[self.engine.dialect.name]
        self._take = text(
            f"UPDATE warren_lock SET owner = :me, expires_at = {now} + :ttl "
            f"WHERE name = :name AND (owner = :me OR owner IS NULL OR expires_at IS NULL "
            f"OR expires_at < {now})")
        self._keep = text(
            f"UPDATE warren_lock SET expires_at = {now} + :ttl "
            f"WHERE name = :name AND owner = :me")
        self._give_up = text(
            "UPDATE warren_lock SET owner = NULL, expires_at = NULL "
            "WHERE name = :name AND owner = :me")
        self._read = text(
            f"SELECT owner, expires_at, {now} AS now FROM warren_lock WHERE name = :name")
        self._create = text(
            "INSERT INTO warren_lock (name, owner, expires_at) VALUES (:name, NULL, NULL) "
            "ON CONFLICT (name) DO NOTHING")
        self._migrate = migrate
        self._row_ready = False

    # -------------------------------------------------------------- Locker
    def acquire(self) -> bool:
        return self._update(self._take)

    def renew(self) -> bool:
        return self._update(self._keep)

    def release(self) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(self._give_up, {"name": LEASE_NAME, "me": self.owner})
        except SQLAlchemyError:
            pass  # the lease then simply expires

    def holder(self) -> str | None:
        row = self._run(lambda conn: conn.execute(self._read, {"name": LEASE_NAME}).first())
        if row is None or row.owner is None or row.expires_at is None:
            return None
        return row.owner if row.expires_at >= row.now else None

    def close(self) -> None:
        self.engine.dispose()

    # -------------------------------------------------------------- statements
    def _update(self, statement: Any) -> bool:
        params = {"name": LEASE_NAME, "me": self.owner, "ttl": self.ttl}
        return self._run(lambda conn: conn.execute(statement, params).rowcount == 1)

    def _run(self, work: Any) -> Any:
        try:
            if not self._row_ready:
                self._prepare()
            with self.engine.begin() as conn:
                return work(conn)
        except SQLAlchemyError as error:
            raise LockUnavailable(f"lease database unavailable: {error.__class__.__name__}: "
                                  f"{str(error).splitlines()[0]}") from error

    def _prepare(self) -> None:
        """The schema (migrations are idempotent and locked) and the lease row."""
        if self._migrate:
            from warren.store.sql.migrate import upgrade_engine
            upgrade_engine(self.engine)
        with self.engine.begin() as conn:
            conn.execute(self._create, {"name": LEASE_NAME})
        self._row_ready = True


__all__ = ["LEASE_NAME", "LeaseLocker"]
