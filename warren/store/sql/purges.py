"""Purges (and deletes) of deep queues in the SQL store, a slice per transaction, with the
disk space given back.

Why: a purge of a queue of 10M messages as one ``DELETE`` holds the store's one writer for
minutes (every other publisher's confirm waits behind it), and SQLite's write-ahead log grows
by the whole delete. So a purge is a *marker* written at once, and the rows go later:

- ``purge_queue`` writes the definition ``("purged", queue_key)`` = ``{"seq": S}`` in the
  current batch, S being the last queue order number the store handed out: every reference of
  that queue with ``seq <= S`` is dead from that commit on, atomically, however many there are.
  Publishes after it get larger numbers, so a queue declared again under the same name keeps
  its new messages.
- Each later transaction of the writer deletes a slice of those references, and the records
  no queue holds any more (``Slicer.slice``), committed with whatever else the broker wrote
  meanwhile, so other clients wait for one slice at most; the last slice drops the marker.
  A slice is sized so that its whole transaction (the deletes, the commit with SQLite's
  checkpoint, the vacuum step after it) takes about ``SLICE_SECONDS`` (from ``SLICE_ROWS``,
  following the last one's time, within ``MIN_ROWS``..``MAX_ROWS``): a fast database gets
  through a purge in few transactions, a slow one still answers other writers in about that
  time. Other clients' writes come first: when some wait and the last transaction carried a
  slice, the next goes without one (``SqlStore._take_attempt``), so a confirm waits for one
  slice at most, and a purge still gets every other transaction under any load.
- Recovery skips the references a marker covers (a crash in the middle of the slices) and the
  slices go on after the start; the order counter starts past every marker, so no new
  reference is mistaken for a purged one.
- Disk space: a new SQLite database is created with ``auto_vacuum=INCREMENTAL`` and a capped
  write-ahead log (``journal_size_limit``), and after the slices ``incremental_vacuum`` hands
  the freed pages back to the file system, ``VACUUM_PAGES`` per transaction (a database made
  before has ``auto_vacuum=NONE``, which only ``VACUUM`` changes: its freed pages are reused,
  the file does not shrink; ``reclaim.convert_old_sqlite`` converts a small one at open).
  On PostgreSQL, purges that deleted many rows end with a plain ``VACUUM`` of the message
  tables on a thread of its own (``reclaim.PostgresVacuum``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, and_, select

from warren.store.sql import tables
from warren.store.sql.reclaim import VACUUM_AFTER_ROWS, PostgresVacuum

#: The definitions kind of a purge marker (never handed to the broker).
KIND = "purged"
#: Queue references (and their records) deleted by a purge's first transaction; the next
#: slices are sized to take about ``SLICE_SECONDS``, within ``MIN_ROWS``..``MAX_ROWS``.
SLICE_ROWS = 2000
SLICE_SECONDS = 0.05
MIN_ROWS = 1000
MAX_ROWS = 100_000
#: SQLite pages handed back to the file system per transaction (4 KiB each by default).
VACUUM_PAGES = 2048
#: The SQLite write-ahead log is truncated to this size after a checkpoint.
WAL_LIMIT_BYTES = 64 * 1024 * 1024


def marker(seq: int) -> str:
    """The JSON text of a purge marker's definition."""
    return json.dumps({"seq": seq})


def marker_seq(value: Any) -> int:
    """The order number of a purge marker read back (its decoded JSON)."""
    return int(value["seq"])


def sqlite_pragmas(cursor: Any) -> None:
    """Set on every SQLite connection, before anything else: ``auto_vacuum`` takes effect on
    a database without tables only (a new file), the WAL limit on every connection."""
    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")


@dataclass
class SliceWork:
    """What one transaction is to do (taken on the reactor thread), and what it did."""

    #: queue_key -> the marker's seq: delete references of the queue up to it
    purging: dict[str, int]
    vacuum: bool
    #: filled by the writer thread: queues whose references are all gone (marker dropped)
    done: list[tuple[str, int]] = field(default_factory=list)
    #: filled by the writer thread: SQLite pages still free in the file after this step
    free_pages: int = 0
    #: filled by the writer thread: references deleted, and whether the slice was a whole one
    #: (then its transaction's time sizes the next), from when
    deleted: int = 0
    whole: bool = False
    began: float = 0.0


class Slicer:
    """The purges under way in one store, and the SQLite vacuum after them. Its state is
    the reactor thread's; ``slice`` and ``vacuum`` run on the writer thread with a
    :class:`SliceWork` taken from it."""

    def __init__(self, engine: Engine, chunks: Any, delete_entries: Any,
                 delete_unreferenced: Any, delete_definition: Any) -> None:
        self.engine = engine
        self._chunks = chunks   # the store's splitting of id lists per statement
        self._delete_entries = delete_entries
        self._delete_unreferenced = delete_unreferenced
        self._delete_definition = delete_definition
        self.purging: dict[str, int] = {}
        self.rows = SLICE_ROWS     # the next slice's size (the writer thread's own)
        self.incremental = False   # the SQLite file gives pages back (auto_vacuum=INCREMENTAL)
        self._vacuum_due = False
        #: PostgreSQL: the VACUUM after purges, and the rows deleted since the last one
        self.pg_vacuum = PostgresVacuum(engine) if engine.dialect.name == "postgresql" else None
        self._deleted_since_vacuum = 0

    def load(self, connection: Connection) -> int:
        """At open and recovery: the markers left in the database (a crash mid-purge) are
        purges under way; returns the highest marker seq (the order counter starts past it)."""
        d = tables.definitions
        self.purging = {
            key: marker_seq(json.loads(value)) for key, value in connection.execute(
                select(d.c.key, d.c.value).where(d.c.kind == KIND))}
        if self.engine.dialect.name == "sqlite":
            self.incremental = connection.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
            # pages a vacuum stopped by a crash left free go back after the start
            self._vacuum_due = self.incremental and bool(
                connection.exec_driver_sql("PRAGMA freelist_count").scalar())
        return max(self.purging.values(), default=0)

    def purge(self, queue_key: str, seq: int) -> None:
        """A purge was written (its marker is in the current batch)."""
        self.purging[queue_key] = seq

    @property
    def busy(self) -> bool:
        return bool(self.purging) or self._vacuum_due

    def take(self) -> SliceWork | None:
        """The work for the next transaction, if any."""
        if not self.busy:
            return None
        return SliceWork(dict(self.purging), self.incremental)

    def slice(self, connection: Connection, work: SliceWork) -> None:
        """Writer thread, inside the transaction: a slice of ``rows`` references of the
        purged queues deleted, with the records nobody holds any more; a queue with none
        left loses its marker."""
        qm = tables.queue_messages
        work.began = time.monotonic()
        budget = max(MIN_ROWS, min(self.rows, MAX_ROWS))
        for queue_key, upto in work.purging.items():
            if budget <= 0:
                break
            ids = list(connection.execute(
                select(qm.c.msg_id).where(and_(qm.c.queue_key == queue_key, qm.c.seq <= upto))
                .limit(budget)).scalars())
            for chunk in self._chunks(ids):
                connection.execute(self._delete_entries, {"q": queue_key, "ids": chunk})
            for chunk in self._chunks(sorted(ids)):
                connection.execute(self._delete_unreferenced, {"ids": chunk})
            budget -= len(ids)
            work.deleted += len(ids)
            if budget > 0:   # fewer than asked: this queue's purge is complete
                connection.execute(self._delete_definition, [{"k": KIND, "n": queue_key}])
                work.done.append((queue_key, upto))
        work.whole = budget <= 0

    def sized(self, work: SliceWork) -> None:
        """Writer thread, after the commit and the vacuum step: a whole slice sizes the next
        one to the time its transaction took from the slice on (at most x2 either way)."""
        if not work.whole:
            return
        rows = work.deleted
        wanted = rows * SLICE_SECONDS / max(time.monotonic() - work.began, 1e-3)
        self.rows = int(max(rows // 2, min(rows * 2, wanted)))

    def vacuum(self, work: SliceWork) -> None:
        """Writer thread, after the commit: SQLite pages freed so far go back to the file
        system, ``VACUUM_PAGES`` at a time. (``incremental_vacuum`` frees one page per step
        of its statement, which Python's sqlite3 steps once but in ``executescript``.)"""
        if not work.vacuum:
            return
        with self.engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None   # a checked-out connection
            raw.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
            work.free_pages = int(connection.exec_driver_sql("PRAGMA freelist_count").scalar()
                                  or 0)

    def finished(self, work: SliceWork) -> None:
        """Reactor thread, after a commit: forget the purges done (unless purged again
        since), and vacuum on while pages are free."""
        for queue_key, upto in work.done:
            if self.purging.get(queue_key) == upto:
                del self.purging[queue_key]
        self._deleted_since_vacuum += work.deleted
        if (self.pg_vacuum is not None and work.done
                and self._deleted_since_vacuum >= VACUUM_AFTER_ROWS):
            self._deleted_since_vacuum = 0
            self.pg_vacuum.request()
        if work.vacuum:
            self._vacuum_due = bool(self.purging) or work.free_pages > 0
