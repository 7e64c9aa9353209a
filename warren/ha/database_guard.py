"""The guard that keeps a second standalone broker off a shared database (PostgreSQL).

A broker without ``--ha`` on a server database holds, for as long as it runs, a session
advisory lock (:data:`STANDALONE_KEY`) on a connection of its own whose ``application_name``
names it (``warren standalone <pid>@<host>``; the name is cut at 63 bytes, too short for a
whole owner id), so the refusal can say who holds the database and since when.
PostgreSQL frees the lock when the process dies however it dies (its kernel closes the socket),
so a restarted broker is never locked out by its dead predecessor.

It also refuses a database whose HA lease (:mod:`warren.ha.lease_locker`) an HA master holds:
that master serves the same rows.

Why not the lease itself: a standalone broker rides out a database restart by blocking its
publishers until the database is back (tests/durability), while a lease holder must fence and
drop every client. The guard is a start-up check; if its session is cut later the broker goes
on serving, as before, and logs nothing new.

The other way round, each member of an HA pair (``--ha shared-db``) holds the same key
*shared* (``shared=True``) from its start: members never exclude each other, but a member
cannot start while a standalone broker holds the key exclusively (it refuses with one line
naming that broker), and a standalone broker cannot start while any member runs, master or
still waiting for the lease.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from typing import Any

from sqlalchemy.engine import make_url

from .locker import Locker, LockUnavailable, new_owner_id

#: A fixed signed bigint from "warren_lock:standalone" (distinct from the lease's key).
STANDALONE_KEY = int.from_bytes(hashlib.sha256(b"warren_lock:standalone").digest()[:8],
                                "big", signed=True)
#: ``application_name`` prefix of the guard's session: a standalone broker's, an HA member's.
STANDALONE_APP = "warren standalone "
HA_MEMBER_APP = "warren ha "

_UNSIGNED = STANDALONE_KEY & 0xFFFF_FFFF_FFFF_FFFF
#: pg_locks shows a bigint advisory key as classid (high half), objid (low half), objsubid 1
_HOLDER = (
    "SELECT a.application_name, to_char(a.backend_start AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD HH24:MI:SS') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    f"AND l.classid = {_UNSIGNED >> 32} AND l.objid = {_UNSIGNED & 0xFFFF_FFFF}")
_HAS_LEASE_TABLE = "SELECT to_regclass('warren_lock') IS NOT NULL"
_LEASE = (
    "SELECT owner FROM warren_lock WHERE name = 'master' AND owner IS NOT NULL "
    "AND expires_at > extract(epoch from clock_timestamp())")


def _lease_owner(conn: Any) -> str | None:
    """The owner of an unexpired HA lease on this database (the table may not exist yet)."""
    if not conn.execute(_HAS_LEASE_TABLE).fetchone()[0]:
        return None
    row = conn.execute(_LEASE).fetchone()
    return row[0] if row is not None else None


class DatabaseGuard(Locker):
    """Exclusive use of one PostgreSQL database by one broker without ``--ha``, or (with
    ``shared``) the share of it an HA member holds against such a broker."""

    def __init__(self, url: str, owner: str | None = None, *, timeout: float = 5.0,
                 shared: bool = False) -> None:
        import psycopg  # only PostgreSQL brokers need it
        self._psycopg = psycopg
        self.shared = shared
        self.owner = owner or new_owner_id()
        self.description = f"database {make_url(url).render_as_string()}"
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)
        self._timeout = timeout
        self._conn: Any = None          # the session holding STANDALONE_KEY

    def acquire(self) -> bool:
        if self._conn is not None:
            return True
        try:
            conn = self._psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=max(1, int(self._timeout)),
                application_name=f"{HA_MEMBER_APP if self.shared else STANDALONE_APP}"
                                 f"{os.getpid()}@{socket.gethostname()}"[:63])
        except self._psycopg.Error as error:
            raise LockUnavailable(f"cannot reach the {self.description}: "
                                  f"{str(error).strip().splitlines()[0]}") from error
        try:
            lock = "pg_try_advisory_lock_shared" if self.shared else "pg_try_advisory_lock"
            row = conn.execute(f"SELECT {lock}(%s)", (STANDALONE_KEY,)).fetchone()
            won = row is not None and row[0]   # (a SELECT of a function: always one row)
            if won and not self.shared and _lease_owner(conn) is not None:
                won = False  # an HA master serves this database
        except self._psycopg.Error as error:
            conn.close()
            raise LockUnavailable(f"cannot lock the {self.description}: {error}") from error
        if not won:
            conn.close()
            return False
        self._conn = conn
        return True

    def renew(self) -> bool:
        return self._conn is not None

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing the session frees the lock anyway
                conn.close()

    def holder(self) -> str | None:
        if self._conn is not None:
            return self.owner
        try:
            with self._psycopg.connect(self._conninfo, autocommit=True,
                                       connect_timeout=max(1, int(self._timeout))) as conn:
                row = conn.execute(_HOLDER).fetchone()
                if row is not None:
                    name, since = row[0] or "", row[1]
                    for prefix in (STANDALONE_APP, HA_MEMBER_APP):
                        pid, _, host = name[len(prefix):].partition("@")
                        if name.startswith(prefix) and pid.isdigit():
                            return f"pid {pid} on host {host}, started {since} UTC"
                    return f"session '{name}' since {since} UTC"
                return _lease_owner(conn)
        except self._psycopg.Error as error:
            raise LockUnavailable(f"cannot ask the {self.description}: {error}") from error

    def close(self) -> None:
        self.release()
