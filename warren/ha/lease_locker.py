"""The database lease locker: a row in ``warren_lock`` whose owner may serve until it expires.

As ActiveMQ's ``LeaseDatabaseLocker``. The row ``name='master'`` holds ``owner``,
``expires_at`` (epoch seconds, *the database's* clock) and ``bound_owner`` (below). Taking and
keeping the lease is one conditional UPDATE:

    UPDATE warren_lock SET owner=:me, expires_at=<db now> + :ttl, bound_owner=NULL
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

The liveness fast path (PostgreSQL)
-----------------------------------
Expiry alone makes a killed master cost a whole TTL (10 s by default) before anyone may take
over. So a master on PostgreSQL also holds a *session* advisory lock, ``LIVENESS_KEY``, on a
dedicated long-lived connection, its *liveness session*. When the master process dies (kill -9,
crash, OOM) its kernel closes the socket, the backend reads EOF and PostgreSQL frees the lock at
once. A stopped (SIGSTOP) master keeps its socket — its kernel still answers TCP — so its lock
stays held and only the lease's expiry frees the lease, as before.

The lease is *bound* when ``bound_owner = owner``. The rule that makes this safe:
**``bound_owner`` is only ever set to an owner by a statement run on that owner's liveness
session while the session holds the advisory lock** (the lock is taken, then the UPDATE runs on
the same connection; a session lock is held until unlocked or the session ends, and this code
unlocks only when giving the lease up). So a broker that *gets* the advisory lock and finds the
lease bound knows the owner's liveness session has ended, and may take the lease although it
has not expired. (An owner id, not a flag: a broker of the previous version takes a lease
without touching the column, and a stale id names someone else, so its lease is not bound.)
``acquire()``:

1. ``pg_try_advisory_lock`` on our own liveness session.
2. Got it: in one transaction, ``SELECT ... FOR UPDATE`` the row and take it (owner=me,
   bound_owner=me, expiry = db now + TTL) if it is free, expired, ours, or bound to a
   session that is gone. Otherwise — a live owner that never bound itself — unlock at once, so
   that owner can bind, and report "not ours".
3. Did not get it: the plain expiry UPDATE above; a master won that way is *unbound* and tries
   the advisory lock again at every ``renew()``, binding itself when it gets it.

A bound master renews on its liveness session (one statement renews *and* proves the session
is alive and still ours); any error there is a lost lease (``renew()`` returns False) because a
slave may already be taking over. Between renewals the runner's 0.1 s watchdog calls
:meth:`LeaseLocker.liveness_lost`, a non-blocking look at the session's socket: EOF, a socket
error or an unsolicited ErrorResponse (``pg_terminate_backend``, server shutdown) means the
session is gone and the master fences itself. Fencing releases the lease and closes the
liveness session, so the next master can bind.

Slaves probe the fast path every 0.25 s (:meth:`LeaseLocker.probe`: one
``pg_try_advisory_lock`` round trip on their persistent liveness session while a master holds
it); the full attempt with the expiry rule stays at ``lease_renew``. A broker that won by the
fast path from a *live-looking* owner says so in :attr:`LeaseLocker.took_over_from`, and the
runner waits ``LIVENESS_GRACE`` before opening the store, so that an owner whose session was
terminated while the process lives has certainly seen its socket close and fenced.

Residual windows, written down:

- Session killed, process alive (``pg_terminate_backend``, server restart): the owner sees
  EOF within one watchdog tick (0.1 s) plus its reactor's latency; the new master waits the
  0.5 s grace first. An owner whose reactor stalls longer than that keeps serving past the
  grace — the same assumption the lease margin makes of a live process.
- Silent session loss (database host power loss, network cut): the database frees the lock
  only when its TCP keepalive gives up on the session. The liveness session sets its server-side
  keepalive so that this takes at least ``2 * TTL`` of silence, and the owner's own deadline
  (last renewal start + TTL) passes first, so it has fenced by then. The owner's side also
  keepalives every second, so it notices a dead server socket in about 3 s.
- A master that won by expiry while a stopped old master's session still holds the advisory
  lock stays unbound (expiry-only failover) until that old session ends.
- Over TLS the socket's bytes cannot be read without the connection, so *any* unsolicited data
  on an idle liveness session counts as lost: a spurious fence, never a second master.

SQLite (one host) has no fast path: its lease works by expiry alone.

The row is created by an INSERT that skips an existing key (``ON CONFLICT DO NOTHING``), so two
brokers starting together cannot fail on a duplicate. The schema itself comes from the SQL
store's migrations (run here too, so the locker works before the store is opened).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import select
import socket
import threading
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

#: The advisory lock a bound master holds on its liveness session: a fixed signed bigint from
#: "warren_lock:master" (distinct from the migration lock's key).
LIVENESS_KEY = int.from_bytes(hashlib.sha256(f"warren_lock:{LEASE_NAME}".encode()).digest()[:8],
                              "big", signed=True)
#: ``application_name`` prefix of liveness sessions (pg_stat_activity shows whose it is).
LIVENESS_APP = "warren liveness "


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


class LivenessSession:
    """One long-lived PostgreSQL connection that may hold :data:`LIVENESS_KEY`.

    Used from the locker's thread (every statement) and from the reactor thread
    (:meth:`gone`, which only looks at the socket). ``_using`` keeps the two apart: while a
    statement runs, bytes on the socket are its answer, not news.
    """

    def __init__(self, url: str, owner: str, ttl: float, timeout: float) -> None:
        import psycopg  # only PostgreSQL brokers need it
        self._psycopg = psycopg
        self.conninfo = make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)
        self.owner = owner
        self.ttl = ttl
        self.timeout = timeout
        self.conn: Any = None
        self.held = False               # this connection holds the advisory lock
        self._sock: socket.socket | None = None
        self._tls = False
        self._using = threading.Lock()

    # ---------------------------------------------------------------- locker thread
    def try_lock(self) -> bool:
        """Take the advisory lock if free (True also if this session already holds it)."""
        if self.held:
            return True
        row = self.run("SELECT pg_try_advisory_lock(%s)", (LIVENESS_KEY,)).fetchone()
        self.held = bool(row[0])
        return self.held

    def unlock(self) -> None:
        """Let the advisory lock go; on any trouble, drop the whole session (which frees it)."""
        if not self.held:
            return
        try:
            self.run("SELECT pg_advisory_unlock(%s)", (LIVENESS_KEY,))
            self.held = False
        except self._psycopg.Error:
            self.reset()

    def run(self, sql: str, params: tuple = ()) -> Any:
        """One statement (autocommit) on the session, connecting first if needed.

        Any error closes the session: a session that failed once may have lost the lock.
        """
        with self._using:
            try:
                if self.conn is None:
                    self._connect()
                return self.conn.execute(sql, params)
            except self._psycopg.Error:
                self._close_locked()
                raise

    def transaction(self, work: Any) -> Any:
        """``work(conn)`` inside one transaction on the session (errors as for :meth:`run`)."""
        with self._using:
            try:
                if self.conn is None:
                    self._connect()
                with self.conn.transaction():
                    return work(self.conn)
            except self._psycopg.Error:
                self._close_locked()
                raise

    def reset(self) -> None:
        """Close the session: PostgreSQL frees the advisory lock with it."""
        with self._using:
            self._close_locked()

    # ---------------------------------------------------------------- reactor thread
    def gone(self) -> bool:
        """Non-blocking: has the server closed (or killed) this session?

        Only meaningful between statements; while one runs (``_using`` taken) the answer is
        False and the statement itself finds out.
        """
        if not self._using.acquire(blocking=False):
            return False
        try:
            if self.conn is None or self._sock is None:
                return True
            readable, _, broken = select.select([self._sock], [], [self._sock], 0)
            if not readable and not broken:
                return False
            try:
                data = self._sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return True
            return not data or self._tls or _has_error_response(data)
        finally:
            self._using.release()

    # ---------------------------------------------------------------- internals
    def _connect(self) -> None:
        whole = max(1, int(self.timeout))
        # The server must not give up on a silent liveness session before the owner's own
        # lease deadline has passed (see the module docstring): keepalive >= 2 * TTL.
        server_keepalive = max(1, math.ceil(self.ttl))
        conn = self._psycopg.connect(
            self.conninfo, autocommit=True, connect_timeout=whole,
            application_name=(LIVENESS_APP + self.owner)[:63],
            options=(f"-c statement_timeout={int(self.timeout * 1000)} "
                     f"-c lock_timeout={int(self.timeout * 1000)} "
                     f"-c idle_in_transaction_session_timeout=0 "
                     f"-c tcp_keepalives_idle={server_keepalive} "
                     f"-c tcp_keepalives_interval={server_keepalive} "
                     f"-c tcp_keepalives_count=2 "
                     f"-c tcp_user_timeout={int(2 * self.ttl * 1000)}"),
            tcp_user_timeout=int(self.timeout * 1000),
            keepalives=1, keepalives_idle=whole, keepalives_interval=1, keepalives_count=2)
        try:
            if conn.info.server_version >= 140000:
                conn.execute("SET idle_session_timeout = 0")
            self._tls = bool(conn.pgconn.ssl_in_use)
            self._sock = socket.socket(fileno=os.dup(conn.fileno()))
        except Exception:
            conn.close()
            raise
        self.conn = conn
        self.held = False

    def _close_locked(self) -> None:
        conn, self.conn = self.conn, None
        sock, self._sock = self._sock, None
        self.held = False
        if sock is not None:
            sock.close()
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection: nothing to save
                conn.close()


def _has_error_response(data: bytes) -> bool:
    """True if the server messages in ``data`` include an ErrorResponse ('E').

    An idle session receives nothing but notices ('N'), parameter changes ('S') or
    notifications ('A') — or, when the server ends it, an ErrorResponse (FATAL) and EOF.
    """
    at = 0
    while at < len(data):
        if data[at:at + 1] == b"E":
            return True
        if at + 5 > len(data):
            return False
        at += 1 + int.from_bytes(data[at + 1:at + 5], "big")
    return False


class LeaseLocker(Locker):
    """Master lock = unexpired lease row in ``warren_lock`` of the database at ``url``."""

    def __init__(self, url: str, *, ttl: float = 10.0, owner: str | None = None,
                 timeout: float | None = None, migrate: bool = True,
                 liveness: bool = True) -> None:
        if ttl <= 0:
            raise ValueError("lease ttl must be positive")
        self.url = url
        self.ttl = float(ttl)
        self.owner = owner or new_owner_id()
        self.description = f"lease '{LEASE_NAME}' in {make_url(url).render_as_string()}"
        self.timeout = timeout if timeout is not None else max(0.5, ttl / 4)
        self.engine = _engine(url, self.timeout)
        dialect = self.engine.dialect.name
        now = DB_NOW[dialect]
        #: True when the fast path is on (PostgreSQL): the runner then probes often
        self.liveness = liveness and dialect == "postgresql"
        self._live = (LivenessSession(url, self.owner, self.ttl, self.timeout)
                      if self.liveness else None)
        self._bound = False             # our lease row is bound to our liveness session
        #: the live-looking owner the last acquire() took the lease from (fast path), else None
        self.took_over_from: str | None = None
        #: why the last renew() returned False, when it knows more than "not the owner"
        self.loss_reason: str | None = None
        self._take = text(
            f"UPDATE warren_lock SET owner = :me, expires_at = {now} + :ttl, "
            f"bound_owner = NULL "
            f"WHERE name = :name AND (owner = :me OR owner IS NULL OR expires_at IS NULL "
            f"OR expires_at < {now})")
        self._keep = text(
            f"UPDATE warren_lock SET expires_at = {now} + :ttl "
            f"WHERE name = :name AND owner = :me")
        self._give_up = text(
            "UPDATE warren_lock SET owner = NULL, expires_at = NULL, bound_owner = NULL "
            "WHERE name = :name AND owner = :me")
        self._read = text(
            f"SELECT owner, expires_at, {now} AS now FROM warren_lock WHERE name = :name")
        self._create = text(
            "INSERT INTO warren_lock (name, owner, expires_at) VALUES (:name, NULL, NULL) "
            "ON CONFLICT (name) DO NOTHING")
        pg_now = DB_NOW["postgresql"]
        self._pg_read_locked = (
            f"SELECT owner, expires_at, COALESCE(bound_owner = owner, false), {pg_now} "
            f"FROM warren_lock WHERE name = %s FOR UPDATE")
        self._pg_take_bound = (
            f"UPDATE warren_lock SET owner = %s, expires_at = {pg_now} + %s, "
            f"bound_owner = %s WHERE name = %s")
        self._pg_keep_bound = (
            f"UPDATE warren_lock SET expires_at = {pg_now} + %s, bound_owner = owner "
            f"WHERE name = %s AND owner = %s")
        self._migrate = migrate
        self._row_ready = False

    # -------------------------------------------------------------- Locker
    def acquire(self) -> bool:
        self.took_over_from = None
        if self._live is not None:
            if not self._row_ready:
                self._run(lambda conn: None)  # schema and row (LockUnavailable if unreachable)
            won = self._fast_take()
            if won is not None:
                return won
        self._bound = False
        return self._update(self._take)

    def probe(self) -> bool:
        """The fast path alone (one round trip while a live master holds the liveness lock).

        Never raises: an unreachable database is the full attempt's news to report.
        """
        self.took_over_from = None
        if self._live is None:
            return False
        try:
            if not self._row_ready:
                self._prepare()
            return bool(self._fast_take())
        except (LockUnavailable, SQLAlchemyError):
            return False

    def renew(self) -> bool:
        self.loss_reason = None
        if self._bound:
            live = self._live
            assert live is not None   # only the liveness session binds (_fast_take, _bind)
            try:
                held = live.run(self._pg_keep_bound,
                                (self.ttl, LEASE_NAME, self.owner)).rowcount == 1
            except live._psycopg.Error as error:
                held = False
                self.loss_reason = (f"the liveness session failed "
                                    f"({error.__class__.__name__}: {_first_line(error)})")
            if not held:
                self._bound = False
                live.reset()
            return held
        held = self._update(self._keep)
        if held and self._live is not None:
            held = self._bind()
        return held

    def release(self) -> None:
        self._bound = False
        if self._live is not None:
            self._live.reset()  # frees the liveness lock: the next master can bind
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
        if self._live is not None:
            self._live.reset()
        self.engine.dispose()

    def liveness_lost(self) -> bool:
        """Non-blocking, from any thread: we are bound and our liveness session is gone."""
        return self._bound and self._live is not None and self._live.gone()

    @property
    def bound(self) -> bool:
        """Our lease row is bound (``bound_owner`` written by our liveness session)."""
        return self._bound

    # -------------------------------------------------------------- fast path
    def _fast_take(self) -> bool | None:
        """None if the liveness lock is not ours; else whether the lease now is (bound)."""
        live = self._live
        assert live is not None   # callers take the fast path only with a liveness session
        try:
            if not live.try_lock():
                return None
        except live._psycopg.Error:
            return None  # the plain rule decides (and reports an unreachable database)
        now_owner: list[str | None] = [None]

        def take(conn: Any) -> bool:
            row = conn.execute(self._pg_read_locked, (LEASE_NAME,)).fetchone()
            if row is None:
                return False
            owner, expires_at, bound, now = row
            live_owner = owner is not None and expires_at is not None and expires_at >= now
            if live_owner and owner != self.owner and not bound:
                return False  # a live master that never bound itself: only expiry frees it
            if live_owner and owner != self.owner:
                now_owner[0] = owner  # bound, and we hold its lock: its session is gone
            conn.execute(self._pg_take_bound, (self.owner, self.ttl, self.owner, LEASE_NAME))
            return True
        try:
            won = live.transaction(take)
        except live._psycopg.Error as error:
            raise LockUnavailable(f"lease database unavailable: {error.__class__.__name__}: "
                                  f"{_first_line(error)}") from error
        if not won:
            live.unlock()  # so the unbound owner can bind at its next renewal
            return False
        self._bound = True
        self.took_over_from = now_owner[0]
        return True

    def _bind(self) -> bool:
        """An unbound master tries to bind: False only if the lease turned out not ours."""
        live = self._live
        assert live is not None   # renew binds only with a liveness session
        try:
            if not live.try_lock():
                return True
            if live.run(self._pg_keep_bound, (self.ttl, LEASE_NAME, self.owner)).rowcount == 1:
                self._bound = True
                return True
        except live._psycopg.Error:
            live.reset()
            return True  # still the owner by the plain renewal; binding waits for the next
        live.unlock()
        return False

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
                                  f"{_first_line(error)}") from error

    def _prepare(self) -> None:
        """The schema (migrations are idempotent and locked) and the lease row."""
        if self._migrate:
            from warren.store.sql.migrate import upgrade_engine
            upgrade_engine(self.engine)
        with self.engine.begin() as conn:
            conn.execute(self._create, {"name": LEASE_NAME})
        self._row_ready = True


def _first_line(error: BaseException) -> str:
    lines = str(error).splitlines()
    return lines[0] if lines else ""


__all__ = ["LEASE_NAME", "LIVENESS_APP", "LIVENESS_KEY", "LeaseLocker", "LivenessSession"]
