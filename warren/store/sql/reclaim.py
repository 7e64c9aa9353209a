"""Disk space the SQL store gives back after its purges, beyond what ``purges.py``'s slices
do: PostgreSQL's ``VACUUM``, and SQLite files made before ``auto_vacuum=INCREMENTAL``.

Why:

- **PostgreSQL.** A deleted row's space is reusable only once a ``VACUUM`` has passed over
  its page, and only a ``VACUUM`` cuts the empty pages at the end of a table off its file.
  Autovacuum gets there in the end, but on its own schedule (a share of the table changed,
  checked every minute or so), while a purge of a deep queue is the moment an operator
  watches the disk. So once purges have deleted ``VACUUM_AFTER_ROWS`` rows or more and one
  of them is done, the store runs a plain ``VACUUM`` of its message tables itself, outside any
  transaction, on a thread of its own: on 10M rows it takes a while, and the writer goes
  on meanwhile. A plain ``VACUUM`` takes a lock that lets reads, inserts and deletes go on;
  only its last step, cutting the empty trailing pages, takes the table exclusively, and
  PostgreSQL gives that lock up as soon as another session waits for it (the cut is then
  left for a later vacuum). Never ``VACUUM FULL``: it rewrites the table under an
  exclusive lock, every publish waiting. What an operator sees: a queue purged whole,
  whose rows were the tables' last pages, gives those pages back (``pg_total_relation_size``
  falls by them); rows freed in the middle of a table stay in the file, reusable by the next
  publishes, and so do the purged rows when other queues' messages written during the purge
  sit after them (they land at the table's end: nothing was free before the VACUUM) until
  those are consumed and a later vacuum cuts the end; the indexes keep their size, their
  emptied pages reused.
  Requests while a ``VACUUM`` runs make one more run after it, not one each; ``close`` cancels
  a run under way (a cancelled ``VACUUM`` loses nothing, the next one or autovacuum goes on).
- **SQLite files made before** ``auto_vacuum=INCREMENTAL`` (``auto_vacuum=NONE``) reuse
  their freed pages but never shrink, and only a whole ``VACUUM`` changes the mode. It
  rewrites the live pages (its time follows them, not the file's size) and holds the write
  lock meanwhile, so ``convert_old_sqlite`` does it at open when the live data is at most
  ``CONVERT_LIVE_BYTES`` (51 MB of live data took 2.0 s on a two-core machine at load 10: an
  old file emptied by a purge is converted and shrinks at the next start; a second broker
  opening the file meanwhile waits that long for its writes); above that the start would be
  held too long, and the log says
  the manual step (with the broker stopped, ``PRAGMA auto_vacuum=INCREMENTAL; VACUUM;`` in
  the ``sqlite3`` shell on the file, which needs free disk for a copy of the live data).
"""

from __future__ import annotations

import sqlite3
import threading

from sqlalchemy import Engine, text
from twisted.logger import Logger

from warren.store.sql import tables

log = Logger()

#: Rows purges deleted (since the last VACUUM) worth a VACUUM of their own on PostgreSQL;
#: below it autovacuum's schedule is good enough.
VACUUM_AFTER_ROWS = 10_000
#: An old SQLite file (``auto_vacuum=NONE``) whose live pages hold at most this many bytes is
#: converted at open; a larger one is left, with the manual step in the log.
CONVERT_LIVE_BYTES = 64 * 1024 * 1024
#: SQLite's ``auto_vacuum`` values.
_NONE, _INCREMENTAL = 0, 2


def _one_line(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


class PostgresVacuum:
    """A plain ``VACUUM`` of the message tables on a thread of its own, requested after
    purges (any thread may ``request``; runs do not overlap, requests meanwhile make one
    more run)."""

    TABLES = (tables.queue_messages.name, tables.messages.name)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self._closed = False
        self._backend: int | None = None   # the running VACUUM's server process
        #: VACUUM runs finished (whether they succeeded or not)
        self.runs = 0

    @property
    def running(self) -> bool:
        return self._thread is not None

    def request(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._thread is not None:
                self._again = True
                return
            self._thread = threading.Thread(target=self._run, name="warren-sql-vacuum",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                with self.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT") as connection:
                    self._backend = connection.exec_driver_sql(
                        "SELECT pg_backend_pid()").scalar()
                    connection.exec_driver_sql("VACUUM " + ", ".join(self.TABLES))
            except Exception as error:   # the database gone, cancelled at close: not a bug
                if not self._closed:
                    log.warn("SQL store: VACUUM after a purge failed ({error}); autovacuum "
                             "will reclaim the space", error=_one_line(error))
            finally:
                self._backend = None
            with self._lock:
                self.runs += 1
                if not self._again or self._closed:
                    self._thread = None
                    return
                self._again = False

    def close(self, timeout: float = 5.0) -> None:
        """No more runs; a run under way is cancelled (its server process told to stop)."""
        with self._lock:
            self._closed = True
            thread, backend = self._thread, self._backend
        if thread is None:
            return
        if backend is not None:
            try:
                with self.engine.connect() as connection:
                    connection.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": backend})
                    connection.commit()
            except Exception as error:
                log.warn("SQL store: could not cancel the VACUUM under way ({error})",
                         error=_one_line(error))
        thread.join(timeout)


def convert_old_sqlite(engine: Engine) -> None:
    """At open, before the writer starts: an SQLite file with ``auto_vacuum=NONE`` is
    rewritten with ``INCREMENTAL`` when its live data is small enough (module docstring)."""
    with engine.connect() as connection:
        if connection.exec_driver_sql("PRAGMA auto_vacuum").scalar() != _NONE:
            return
        page_size = int(connection.exec_driver_sql("PRAGMA page_size").scalar() or 0)
        pages = int(connection.exec_driver_sql("PRAGMA page_count").scalar() or 0)
        free = int(connection.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
        live = (pages - free) * page_size
        if live > CONVERT_LIVE_BYTES:
            log.warn(
                "SQL store {url}: the SQLite file was made without auto_vacuum=INCREMENTAL, so "
                "it does not shrink after a purge; {live} MB of live data is too much to convert "
                "at start. To convert it, stop the broker and run "
                "'PRAGMA auto_vacuum=INCREMENTAL; VACUUM;' in the sqlite3 shell on the file "
                "(it needs free disk for a copy of the live data).",
                url=engine.url, live=live // 1_000_000)
            return
        raw = connection.connection.dbapi_connection
        assert raw is not None   # a checked-out connection
        try:
            raw.execute("PRAGMA auto_vacuum=INCREMENTAL")
            raw.execute("VACUUM")   # outside a transaction: the pysqlite driver opened none
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as error:   # another process kept it busy, the disk is full
            log.warn("SQL store {url}: could not convert the SQLite file to "
                     "auto_vacuum=INCREMENTAL ({error}); it keeps its size, the start goes on",
                     url=engine.url, error=_one_line(error))
            return
        after = int(connection.exec_driver_sql("PRAGMA page_count").scalar() or 0)
        log.info("SQL store {url}: converted to auto_vacuum=INCREMENTAL ({before} -> {after} "
                 "MB)", url=engine.url, before=pages * page_size // 1_000_000,
                 after=after * page_size // 1_000_000)
