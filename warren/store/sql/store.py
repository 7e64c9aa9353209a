"""The SQL message store: SQLAlchemy Core on SQLite or PostgreSQL, with group commit.

Why it is shaped this way:

- **Group commit.** Calls made on the reactor thread only change an in-memory
  :class:`PendingBatch`; at the end of the reactor turn (``callLater(0)``) every queued batch is
  written in *one* transaction on a single worker thread, with one executemany per statement
  kind. ``sync()`` hands out a Deferred that fires when the transaction holding everything
  before it commits. At most one transaction is in flight, so the database sees the calls in
  the order the broker made them; batches arriving meanwhile wait and go in the next one.
  When nobody waits for those (a drain's acks and delivery flags, lazy by contract), the
  next one waits ``LAZY_COMMIT_DELAY`` for a ``sync()`` to join it: a publisher beside a
  draining consumer then waits for one commit per window, not two.
- **Cancellation in memory.** A message published and acked within one batch (a fast
  consumer) never reaches the database; a purge drops the queue's pending entries.
- **Purges in slices.** A purge (or a queue's delete) commits a marker at once; the rows go
  a slice (a transaction of about 0.05 s) after it, never in the transaction that other
  clients' waiting writes go in when the last one carried a slice, and SQLite gives the pages
  back (``purges.py``); PostgreSQL is vacuumed after, and an old SQLite file converted at open
  (``reclaim.py``): a queue of 10M messages never holds the writer for long.
- **Failure keeps data.** When a transaction fails (database gone, disk full) the batches go
  back to the head of the queue, ``healthy`` turns False, the waiting Deferreds errback with
  :class:`StoreUnavailable`, and the store retries with a backoff (0.5 s doubling to 5 s) until
  a commit succeeds and ``healthy`` is True again. Inserts ignore rows already present, so a
  transaction that committed but whose acknowledgement was lost can be replayed safely.
- **Reads off the reactor too.** Paging's read-ahead (``read_many_later``) queries on a reader
  thread of its own, beside the writer: draining a deep queue never holds the other clients
  for a query, nor for a database that is slow or gone (its errors come back as
  :class:`StoreUnavailable` in one line, and the pager retries).
- **No exclusive access assumed.** The schema is created and upgraded by Alembic under a
  cross-process lock (``migrate.py``); which of two brokers *writes* is the lease locker's
  business (``warren.ha.lease_locker`` uses the ``warren_lock`` table).
- **SQLite durability.** WAL journal, ``synchronous=FULL`` (a commit is fsync'd), a busy
  timeout so two processes wait for each other instead of failing.

Without a running reactor (start-up, shutdown, plain tests) ``sync()`` commits at once and
returns a fired Deferred; ``flush()`` is the blocking form.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, exists, func, select
from sqlalchemy import BigInteger, and_, any_, delete, insert, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from warren.store.interface import (
    BodySize,
    MessageStore,
    RecoveredQueue,
    RecoveredState,
    StoreError,
    StoreUnavailable,
)
from warren.store.sql import purges, tables
from warren.store.sql.migrate import upgrade_engine
from warren.store.sql.purges import Slicer, SliceWork, sqlite_pragmas
from warren.store.sql.reclaim import convert_old_sqlite

log = Logger()

#: Retry delays after a failed transaction: first, growth factor, ceiling (seconds).
RETRY_FIRST = 0.5
RETRY_FACTOR = 2.0
RETRY_MAX = 5.0

#: After a commit, writes nobody waits for (acks, delivery flags: lazy by contract) wait this
#: long for one that somebody does before their transaction starts (a ``sync()`` starts it at
#: once). A draining consumer keeps the writer busy with such transactions back to back; the
#: confirms of a commit bring the publisher's next window a round trip later, which then
#: found the next acks' transaction in flight and waited for two commits instead of one.
LAZY_COMMIT_DELAY = 0.02

#: SQLite waits this long for another process's write lock before failing (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: How long a PostgreSQL connection attempt may take before the store calls the database gone.
PG_CONNECT_TIMEOUT_S = 5


def _one_line(error: BaseException) -> str:
    """A database error as the one line operators read: the driver's first line, without
    SQLAlchemy's statement and background link (and no traceback: a database going away is
    an event the store handles, not a bug)."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


class UnknownMessage(StoreError, KeyError):
    """``read()`` was asked for a message no queue holds."""


@dataclass
class PendingBatch:
    """The writes of one or more reactor turns, not yet committed, reduced to their net effect."""

    #: Records of messages published in this batch, by id.
    records: dict[int, bytes] = field(default_factory=dict)
    #: Queue references added in this batch: (queue_key, msg_id) -> [seq, delivered, count].
    entries: dict[tuple[str, int], list[Any]] = field(default_factory=dict)
    #: How many of ``entries`` point at each record of ``records`` (0 -> drop the record).
    refs: dict[int, int] = field(default_factory=dict)
    #: Queue references already in the database to delete, in call order.
    acks: list[tuple[str, int]] = field(default_factory=list)
    #: Queue references already in the database to flag delivered (a set, kept in call
    #: order): an ack in the same batch takes its reference out, as the row goes anyway.
    delivered: dict[tuple[str, int], None] = field(default_factory=dict)
    #: Queue references already in the database with a new delivery count (delivered then
    #: cleared), applied before ``delivered``; the last count of a reference wins.
    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Definitions to upsert (JSON text) or delete (None); the last call wins.
    definitions: dict[tuple[str, str], str | None] = field(default_factory=dict)
    #: Deferreds from ``sync()`` calls made while this batch was the newest.
    waiters: list[Deferred] = field(default_factory=list)

    def has_writes(self) -> bool:
        return bool(
            self.records or self.entries or self.acks or self.delivered
            or self.definitions or self.counts
        )


@dataclass
class CommitAttempt:
    """One transaction handed to the worker thread, and what became of it."""

    batches: list[PendingBatch]
    max_msg_id: int
    #: a slice of the purges under way (and the SQLite vacuum after them), if any
    slicing: SliceWork | None = None
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    handled: bool = False


class _DaemonThread(threading.Thread):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True


def _in_memory_sqlite(url: Any) -> bool:
    """SQLite without a file: one connection that every thread shares (``StaticPool``)."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _engine_for(url: str) -> Engine:
    """An engine with the per-dialect settings the durability contract needs."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        in_memory = _in_memory_sqlite(parsed)
        kwargs: dict[str, Any] = {
            "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        }
        if in_memory:
            from sqlalchemy.pool import StaticPool

            kwargs["poolclass"] = StaticPool
        engine = create_engine(parsed, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            sqlite_pragmas(cursor)   # before anything creates a table (``purges.py``)
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            parsed,
            pool_pre_ping=True,
            connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
        )
    return create_engine(parsed, pool_pre_ping=True)


def _insert_ignoring_duplicates(engine: Engine, table: Any) -> Any:
    """INSERT that skips rows whose key exists, so a replayed transaction is harmless."""
    name = engine.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    return insert(table)


class SqlStore(MessageStore):
    """A :class:`MessageStore` on any SQLAlchemy URL (``sqlite:///path``,
    ``postgresql+psycopg://user@host/db``). Call its methods from the reactor thread only."""

    def __init__(self, url: str, *, reactor: Any = None) -> None:
        self.url = url
        self._healthy = True
        self._reactor = reactor
        self.engine: Engine = _engine_for(url)
        self._pool: ThreadPool | None = None
        #: Paging's read-ahead queries run here (``read_many_later``), off the reactor and
        #: beside the writer, so a slow or unreachable database never holds other clients.
        self._reader: ThreadPool | None = None
        # The newest batch is queue[-1]; failed batches are put back at the left end.
        self._queue: deque[PendingBatch] = deque([PendingBatch()])
        self._in_flight: CommitAttempt | None = None
        self._kick_call: Any = None  # the end-of-turn or retry callLater, at most one
        self._retrying = False  # the pending kick is a backoff retry: new writes don't hasten it
        self._lazy = False   # the pending kick waits LAZY_COMMIT_DELAY: a sync() hastens it
        self._retry_delay = 0.0
        self._seq = 0
        self._max_msg_id = 0
        self._committed_max_msg_id = 0
        self._closed = False
        self._statements_ready = False
        self._sliced_last = False   # the last transaction taken carried a purge's slice
        # Figures for stats().
        self.transactions = 0
        self._last_commit_seconds = 0.0
        self._failures = 0

    # ----------------------------------------------------------------- life cycle


    @property
    def healthy(self) -> bool:
        return self._healthy

    def open(self) -> None:
        """Upgrade the schema to head (under the cross-process lock) and start the writer."""
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        upgrade_engine(self.engine)
        if self.engine.dialect.name == "sqlite" and not _in_memory_sqlite(self.engine.url):
            convert_old_sqlite(self.engine)
        self._prepare_statements()
        self._load_counters()
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=f"warren-sql-store {self.url}")
        # A daemon thread: a process that exits without close() must not hang on it (what was
        # not committed was not acknowledged either).
        self._pool.threadFactory = _DaemonThread
        self._pool.start()
        # in-memory SQLite: the writer's transactions and a reader's queries must not
        # interleave on its one connection, so it reads at once
        if not _in_memory_sqlite(self.engine.url):
            self._reader = ThreadPool(minthreads=1, maxthreads=1,
                                      name=f"warren-sql-reader {self.url}")
            self._reader.threadFactory = _DaemonThread
            self._reader.start()

    def close(self) -> None:
        """Commit what is pending (blocking), stop the writer thread, drop connections."""
        if self._closed:
            return
        try:
            if self._pool is not None:
                self.flush()
        finally:
            self._closed = True
            if self._kick_call is not None and self._kick_call.active():
                self._kick_call.cancel()
            self._kick_call = None
            if self._pool is not None:
                self._pool.stop()
                self._pool = None
            if self._reader is not None:
                self._reader.stop()
                self._reader = None
            if self._statements_ready and self._purges.pg_vacuum is not None:
                self._purges.pg_vacuum.close()
            self.engine.dispose()

    def abandon(self) -> None:
        """Fenced: the writer is stopped unflushed, in the background (it may be waiting on a
        database that is gone); what is pending is dropped with its waiters failed."""
        if self._closed:
            return
        self._closed = True
        if self._kick_call is not None and self._kick_call.active():
            self._kick_call.cancel()
        self._kick_call = None
        pool, self._pool = self._pool, None
        reader, self._reader = self._reader, None
        dropped, self._queue = self._queue, deque([PendingBatch()])
        error = StoreUnavailable("the store was abandoned (fenced)")
        for batch in dropped:
            waiters, batch.waiters = batch.waiters, []
            for waiter in waiters:
                waiter.errback(Failure(error))
        engine = self.engine
        vacuum = self._purges.pg_vacuum if self._statements_ready else None

        def stop_writer() -> None:
            for threads in (pool, reader):
                if threads is not None:
                    threads.stop()
            if vacuum is not None:
                vacuum.close()
            engine.dispose()
        threading.Thread(target=stop_writer, name="warren-fenced-store", daemon=True).start()

    def _prepare_statements(self) -> None:
        qm = tables.queue_messages
        m = tables.messages
        d = tables.definitions
        self._insert_message = _insert_ignoring_duplicates(self.engine, m)
        self._insert_entry = _insert_ignoring_duplicates(self.engine, qm)
        self._insert_definition = _insert_ignoring_duplicates(self.engine, d)
        # PostgreSQL: one INSERT ... SELECT FROM unnest(arrays) per batch instead of a row per
        # statement (psycopg's executemany), about five times faster for 1000 rows.
        self._unnest_records: Any = None
        self._unnest_entries: Any = None
        if self.engine.dialect.name == "postgresql":
            self._unnest_records = text(
                "INSERT INTO warren_messages (id, record) "
                "SELECT * FROM unnest(CAST(:ids AS BIGINT[]), CAST(:records AS BYTEA[])) "
                "ON CONFLICT DO NOTHING"
            )
            self._unnest_entries = text(
                "INSERT INTO warren_queue_messages "
                "(queue_key, msg_id, seq, delivered, delivery_count) "
                "SELECT * FROM unnest(CAST(:queue_keys AS BYTEA[]), CAST(:ids AS BIGINT[]), "
                "CAST(:seqs AS BIGINT[]), CAST(:delivered AS BOOLEAN[]), "
                "CAST(:counts AS INTEGER[])) "
                "ON CONFLICT DO NOTHING"
            )
        # Acks and garbage collection take a list of ids per statement (one array parameter
        # on PostgreSQL, a chunked IN list elsewhere): far cheaper than a row per statement.
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            ids: Any = any_(bindparam("ids", type_=ARRAY(BigInteger)))
            self._ids_chunk = 1_000_000
            entry_match = qm.c.msg_id == ids
            record_match = m.c.id == ids
        else:
            self._ids_chunk = 500
            entry_match = qm.c.msg_id.in_(bindparam("ids", expanding=True))
            record_match = m.c.id.in_(bindparam("ids", expanding=True))
        self._delete_entries = delete(qm).where(and_(qm.c.queue_key == bindparam("q"), entry_match))
        # Garbage collection: records no queue references any more.
        self._delete_unreferenced = delete(m).where(
            and_(record_match, ~exists().where(qm.c.msg_id == m.c.id))
        )
        # a drain's delivery flags: a list of ids per statement like acks, not a row each
        self._mark_delivered = (
            update(qm).where(and_(qm.c.queue_key == bindparam("q"), entry_match))
            .values(delivered=True)
        )
        self._set_count = (
            update(qm)
            .where(and_(qm.c.msg_id == bindparam("m"), qm.c.queue_key == bindparam("q")))
            .values(delivery_count=bindparam("n"), delivered=False)
        )
        self._delete_definition = delete(d).where(
            and_(d.c.kind == bindparam("k"), d.c.key == bindparam("n"))
        )
        self._purges = Slicer(self.engine, self._chunks, self._delete_entries,
                              self._delete_unreferenced, self._delete_definition)
        self._statements_ready = True

    def _load_counters(self) -> None:
        with self.engine.connect() as connection:
            self._seq = max(connection.execute(
                select(func.max(tables.queue_messages.c.seq))).scalar() or 0,
                self._purges.load(connection))
            stored_max = connection.execute(
                select(tables.meta.c.value).where(tables.meta.c.name == "max_msg_id")
            ).scalar()
            max_record = connection.execute(select(func.max(tables.messages.c.id))).scalar() or 0
        self._max_msg_id = max(int(stored_max or 0), max_record)
        self._committed_max_msg_id = int(stored_max or 0)

    # ----------------------------------------------------------------- read path

    def recover(self, body_size: BodySize | None = None) -> RecoveredState:
        """Everything live, read in one snapshot; also resets the id and order counters.

        Lazy (``body_size`` given): the queues' rows are streamed joined with their records,
        each record measured and dropped (kept only when more than one queue holds it)."""
        self._load_counters()
        state = RecoveredState(max_msg_id=self._max_msg_id)
        qm = tables.queue_messages
        m = tables.messages
        d = tables.definitions
        with self.engine.connect() as connection:
            with connection.begin():
                for kind, key, value in connection.execute(select(d.c.kind, d.c.key, d.c.value)):
                    if kind != purges.KIND:   # a purge under way: the store's own
                        state.definitions[(kind, key)] = json.loads(value)
                purged = self._purges.purging
                if body_size is not None:
                    self._recover_lazily(connection, state, body_size, purged)
                    return state
                rows = connection.execute(
                    select(qm.c.queue_key, qm.c.msg_id, qm.c.delivered,
                           qm.c.delivery_count, qm.c.seq).order_by(qm.c.queue_key, qm.c.seq)
                )
                for queue_key, msg_id, delivered, count, seq in rows:
                    if purged and seq <= purged.get(queue_key, 0):
                        continue   # purged; its slices go on after the start
                    queue = state.queues.get(queue_key)
                    if queue is None:
                        queue = state.queues[queue_key] = RecoveredQueue(queue_key)
                    queue.msg_ids.append(msg_id)
                    if delivered:
                        state.delivered.add((queue_key, msg_id))
                    if count:
                        state.delivery_counts[(queue_key, msg_id)] = count
                records = connection.execute(
                    select(m.c.id, m.c.record).where(exists().where(qm.c.msg_id == m.c.id))
                )
                for msg_id, record in records:
                    state.records[msg_id] = bytes(record)
        return state

    @staticmethod
    def _recover_lazily(connection: Connection, state: RecoveredState,
                        body_size: BodySize, purged: dict[str, int]) -> None:
        qm = tables.queue_messages
        m = tables.messages
        shared = set(connection.execute(
            select(qm.c.msg_id).group_by(qm.c.msg_id).having(func.count() > 1)).scalars())
        rows = connection.execution_options(yield_per=5000).execute(
            select(qm.c.queue_key, qm.c.msg_id, qm.c.delivered, qm.c.delivery_count,
                   m.c.record, qm.c.seq)
            .join(m, m.c.id == qm.c.msg_id)
            .order_by(qm.c.queue_key, qm.c.seq))
        ids: list[int] = []
        sizes: list[int] = []
        current = None
        for queue_key, msg_id, delivered, count, record, seq in rows:
            if purged and seq <= purged.get(queue_key, 0):
                continue   # purged; its slices go on after the start
            if queue_key != current:   # rows come queue by queue
                current, ids, sizes = queue_key, [], []
                state.queues[queue_key] = RecoveredQueue(queue_key, ids, sizes)
            ids.append(msg_id)
            sizes.append(body_size(record))
            if msg_id in shared:
                state.records[msg_id] = bytes(record)
            if delivered:
                state.delivered.add((queue_key, msg_id))
            if count:
                state.delivery_counts[(queue_key, msg_id)] = count

    def read(self, msg_id: int) -> bytes:
        """The record of a live message: from the pending batches if not yet committed."""
        record = self.read_many([msg_id]).get(msg_id)
        if record is None:
            raise UnknownMessage(msg_id)
        return record

    def read_many(self, msg_ids: list[int]) -> dict[int, bytes]:
        """Several records in one query (paging reads ahead); unknown ids are left out."""
        out, rest = self._unwritten_records(msg_ids)
        if rest:
            out.update(self._select_records(rest))
        return out

    def read_many_later(self, msg_ids: list[int]) -> Deferred:
        """``read_many`` with the query on the reader thread (paging's read-ahead while
        consumers drain): a deep queue on SQLite or a PostgreSQL that is slow or gone never
        holds the reactor. What is not committed yet is taken from memory now; everything
        else was committed before this call (batches only move from pending to in flight to
        committed), so the reader's snapshot has it."""
        if self._reader is None or not self._reactor_running():
            return super().read_many_later(msg_ids)
        out, rest = self._unwritten_records(msg_ids)
        if not rest:
            return succeed(out)
        done = deferToThreadPool(self._reactor, self._reader, self._select_records, rest)

        def merged(found: dict[int, bytes]) -> dict[int, bytes]:
            out.update(found)
            return out
        return done.addCallback(merged)

    def _unwritten_records(self, msg_ids: list[int]) -> tuple[dict[int, bytes], list[int]]:
        """The records of ``msg_ids`` still in a pending or in-flight batch, and the ids that
        are not (committed, or unknown)."""
        batches = list(self._queue)
        if self._in_flight is not None:
            batches += self._in_flight.batches
        out: dict[int, bytes] = {}
        rest = []
        for msg_id in msg_ids:
            for batch in batches:
                if msg_id in batch.records:
                    out[msg_id] = batch.records[msg_id]
                    break
            else:
                rest.append(msg_id)
        return out, rest

    def _select_records(self, msg_ids: list[int]) -> dict[int, bytes]:
        """Committed records by id, ``_ids_chunk`` per query (any thread); a database that
        fails is :class:`StoreUnavailable` in one line."""
        m = tables.messages
        out: dict[int, bytes] = {}
        try:
            with self.engine.connect() as connection:
                for chunk in self._chunks(msg_ids):
                    rows = connection.execute(select(m.c.id, m.c.record).where(m.c.id.in_(chunk)))
                    for msg_id, record in rows:
                        out[msg_id] = bytes(record)
        except (SQLAlchemyError, OSError) as error:
            raise StoreUnavailable(f"database read failed: {_one_line(error)}") from None
        return out

    # ----------------------------------------------------------------- write path

    def put_definition(self, kind: str, key: str, value: dict[str, Any] | None) -> None:
        text = None if value is None else json.dumps(value, sort_keys=True)
        self._queue[-1].definitions[(kind, key)] = text
        self._schedule()

    def publish(self, msg_id: int, record: bytes, queue_keys: list[str]) -> None:
        if msg_id > self._max_msg_id:
            self._max_msg_id = msg_id
        if not queue_keys:
            return
        batch = self._queue[-1]
        batch.records[msg_id] = bytes(record)
        for queue_key in queue_keys:
            if (queue_key, msg_id) in batch.entries:
                continue
            self._seq += 1
            batch.entries[(queue_key, msg_id)] = [self._seq, False, 0]
            batch.refs[msg_id] = batch.refs.get(msg_id, 0) + 1
        self._schedule()

    def ack(self, queue_key: str, msg_ids: list[int]) -> None:
        """The references go; a delivery flag or count noted for them in this batch goes with
        them: a draining consumer's deliveries and acks mostly meet in one batch, and an
        UPDATE of a row the same transaction deletes would double the drain's writes (and the
        time a publisher's confirm waits behind them)."""
        batch = self._queue[-1]
        delivered, counts = batch.delivered, batch.counts
        for msg_id in msg_ids:
            key = (queue_key, msg_id)
            if batch.entries.pop(key, None) is not None:
                self._drop_ref(batch, msg_id)
            else:
                batch.acks.append(key)
                if delivered:
                    delivered.pop(key, None)
                if counts:
                    counts.pop(key, None)
        self._schedule()

    def mark_delivered(self, queue_key: str, msg_ids: list[int]) -> None:
        batch = self._queue[-1]
        for msg_id in msg_ids:
            entry = batch.entries.get((queue_key, msg_id))
            if entry is not None:
                entry[1] = True
            else:
                batch.delivered[(queue_key, msg_id)] = None
        self._schedule()

    def set_delivery_counts(self, queue_key: str, counts: dict[int, int]) -> None:
        batch = self._queue[-1]
        for msg_id, count in counts.items():
            entry = batch.entries.get((queue_key, msg_id))
            if entry is not None:       # published in this batch: inserted with its count
                entry[1] = False
                entry[2] = count
            else:
                batch.counts[(queue_key, msg_id)] = count
        if batch.delivered:
            # a delivery noted earlier in this batch ended in this return: not out any more
            for msg_id in counts:
                batch.delivered.pop((queue_key, msg_id), None)
        self._schedule()

    def purge_queue(self, queue_key: str) -> None:
        batch = self._queue[-1]
        for entry_key in [k for k in batch.entries if k[0] == queue_key]:
            del batch.entries[entry_key]
            self._drop_ref(batch, entry_key[1])
        batch.acks = [a for a in batch.acks if a[0] != queue_key]
        batch.delivered = {a: None for a in batch.delivered if a[0] != queue_key}
        batch.counts = {a: n for a, n in batch.counts.items() if a[0] != queue_key}
        # every reference of the queue numbered so far dies with this marker's commit; the
        # rows go a slice per transaction after it (``purges.py``)
        batch.definitions[(purges.KIND, queue_key)] = purges.marker(self._seq)
        self._purges.purge(queue_key, self._seq)
        self._schedule()

    @staticmethod
    def _drop_ref(batch: PendingBatch, msg_id: int) -> None:
        remaining = batch.refs.get(msg_id, 0) - 1
        if remaining > 0:
            batch.refs[msg_id] = remaining
        else:
            batch.refs.pop(msg_id, None)
            batch.records.pop(msg_id, None)

    # ----------------------------------------------------------------- group commit

    def sync(self) -> Deferred:
        """Fires when everything written before this call is committed."""
        if self._closed:
            return fail(StoreError("store is closed"))
        if not self._reactor_running():
            try:
                self.flush()
            except StoreUnavailable as error:
                return fail(error)
            return succeed(None)
        if not self.healthy:
            return fail(StoreUnavailable(
                "the database is unavailable; writes are kept and retried"))
        d: Deferred = Deferred()
        newest = self._queue[-1]
        if newest.has_writes():
            newest.waiters.append(d)
            if self._lazy and self._kick_call is not None and self._kick_call.active():
                self._kick_call.reset(0)
                self._lazy = False
            self._schedule()
        elif self._in_flight is not None:
            self._in_flight.batches[-1].waiters.append(d)
        elif len(self._queue) > 1:  # older batches wait for a retry
            self._queue[-2].waiters.append(d)
        else:
            d.callback(None)
        return d

    def flush(self) -> None:
        """Commit everything pending now, blocking; raise StoreUnavailable if that fails."""
        if self._closed:
            raise StoreError("store is closed")
        attempt = self._in_flight
        if attempt is not None:
            attempt.done.wait()
            self._finish(attempt)
        if self._kick_call is not None and self._kick_call.active():
            self._kick_call.cancel()
        self._kick_call = None
        self._retrying = False
        self._lazy = False
        attempt = self._take_attempt(keep_high_water_mark=True)
        if attempt is None:
            return
        self._run_attempt(attempt)
        attempt.done.set()
        self._finish(attempt)
        if attempt.error is not None:
            raise StoreUnavailable(str(attempt.error)) from attempt.error

    def _reactor_running(self) -> bool:
        return bool(getattr(self._reactor, "running", False)) and self._pool is not None

    def _schedule(self, delay: float = 0.0) -> None:
        """Start a transaction at the end of this reactor turn (or after ``delay``)."""
        if self._closed or not self._reactor_running():
            return
        if self._kick_call is not None and self._kick_call.active():
            return
        self._kick_call = self._reactor.callLater(delay, self._kick)

    def _schedule_retry(self) -> None:
        if self._kick_call is not None and self._kick_call.active():
            self._kick_call.cancel()
        self._kick_call = None
        self._schedule(self._retry_delay)
        self._retrying = self._kick_call is not None

    def _kick(self) -> None:
        self._kick_call = None
        self._retrying = False
        self._lazy = False
        if self._closed or self._in_flight is not None or self._pool is None:
            return
        attempt = self._take_attempt()
        if attempt is None:
            return
        self._in_flight = attempt
        reactor = self._reactor

        def on_result(_success: bool, _result: Any) -> None:  # on the worker thread
            attempt.done.set()
            reactor.callFromThread(self._finish, attempt)

        self._pool.callInThreadWithCallback(on_result, self._run_attempt, attempt)

    def _take_attempt(self, keep_high_water_mark: bool = False) -> CommitAttempt | None:
        batches = [b for b in self._queue if b.has_writes() or b.waiters]
        self._queue = deque([PendingBatch()])
        slicing = self._purges.take()
        if (slicing is not None and self._sliced_last
                and any(b.has_writes() for b in batches)):
            slicing = None   # other clients' writes first, then a slice again
        self._sliced_last = slicing is not None
        if slicing is not None:   # a slice of the purges under way rides along
            return CommitAttempt(batches or [PendingBatch()], self._max_msg_id, slicing)
        if not batches:
            if keep_high_water_mark and self._max_msg_id > self._committed_max_msg_id:
                # Every write cancelled in memory: still record the ids used, so a restart
                # never hands out an id twice.
                return CommitAttempt([PendingBatch()], self._max_msg_id)
            return None
        if (not any(b.has_writes() for b in batches)
                and self._max_msg_id <= self._committed_max_msg_id):
            for batch in batches:  # nothing to write: the waiters are already satisfied
                for waiter in batch.waiters:
                    waiter.callback(None)
            return None
        return CommitAttempt(batches, self._max_msg_id)

    def _run_attempt(self, attempt: CommitAttempt) -> None:
        """Write every batch of ``attempt`` in one transaction (worker thread, or flush())."""
        started = time.monotonic()
        try:
            with self.engine.begin() as connection:
                for batch in attempt.batches:
                    self._apply(connection, batch)
                if attempt.max_msg_id > self._committed_max_msg_id:
                    self._store_max_msg_id(connection, attempt.max_msg_id)
                if attempt.slicing is not None:
                    self._purges.slice(connection, attempt.slicing)
            if attempt.slicing is not None:
                self._purges.vacuum(attempt.slicing)
                self._purges.sized(attempt.slicing)
        except Exception as error:  # any failure: keep the batches, report, retry later
            attempt.error = error
        self._last_commit_seconds = time.monotonic() - started

    def _apply(self, connection: Connection, batch: PendingBatch) -> None:
        if batch.acks:
            for queue_key, msg_ids in self._by_queue(batch.acks).items():
                for chunk in self._chunks(msg_ids):
                    connection.execute(self._delete_entries, {"q": queue_key, "ids": chunk})
            for chunk in self._chunks(sorted({m for _, m in batch.acks})):
                connection.execute(self._delete_unreferenced, {"ids": chunk})
        if batch.records:
            self._insert_records(connection, batch)
        if batch.entries:
            self._insert_entries(connection, batch)
        if batch.counts:
            connection.execute(self._set_count, [{"q": q, "m": m, "n": n}
                                                 for (q, m), n in batch.counts.items()])
        if batch.delivered:
            for queue_key, msg_ids in self._by_queue(batch.delivered).items():
                for chunk in self._chunks(msg_ids):
                    connection.execute(self._mark_delivered, {"q": queue_key, "ids": chunk})
        if batch.definitions:
            connection.execute(
                self._delete_definition, [{"k": k, "n": n} for k, n in batch.definitions]
            )
            upserts = [
                {"kind": k, "key": n, "value": v} for (k, n), v in batch.definitions.items()
                if v is not None
            ]
            if upserts:
                connection.execute(self._insert_definition, upserts)

    def _insert_records(self, connection: Connection, batch: PendingBatch) -> None:
        if self._unnest_records is not None:
            connection.execute(
                self._unnest_records,
                {"ids": list(batch.records), "records": list(batch.records.values())},
            )
        else:
            connection.execute(
                self._insert_message, [{"id": i, "record": r} for i, r in batch.records.items()]
            )

    def _insert_entries(self, connection: Connection, batch: PendingBatch) -> None:
        if self._unnest_entries is not None:
            keys = list(batch.entries)
            values = list(batch.entries.values())
            connection.execute(
                self._unnest_entries,
                {
                    "queue_keys": [q.encode("utf-8", "surrogatepass") for q, _ in keys],
                    "ids": [m for _, m in keys],
                    "seqs": [v[0] for v in values],
                    "delivered": [v[1] for v in values],
                    "counts": [v[2] for v in values],
                },
            )
        else:
            connection.execute(
                self._insert_entry,
                [
                    {"queue_key": q, "msg_id": m, "seq": seq, "delivered": delivered,
                     "delivery_count": count}
                    for (q, m), (seq, delivered, count) in batch.entries.items()
                ],
            )

    @staticmethod
    def _by_queue(references: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
        """Queue references grouped by queue, for one statement per queue and chunk."""
        by_queue: dict[str, list[int]] = {}
        for queue_key, msg_id in references:
            by_queue.setdefault(queue_key, []).append(msg_id)
        return by_queue

    def _chunks(self, ids: list[int]) -> list[list[int]]:
        size = self._ids_chunk
        return [ids[i : i + size] for i in range(0, len(ids), size)]

    @staticmethod
    def _store_max_msg_id(connection: Connection, max_msg_id: int) -> None:
        meta = tables.meta
        updated = connection.execute(
            update(meta).where(meta.c.name == "max_msg_id").values(value=str(max_msg_id))
        )
        if updated.rowcount == 0:
            connection.execute(insert(meta).values(name="max_msg_id", value=str(max_msg_id)))

    def _finish(self, attempt: CommitAttempt) -> None:
        """Reactor thread: fire or errback the waiters; on failure requeue and retry later."""
        if attempt.handled:
            return
        attempt.handled = True
        if self._in_flight is attempt:
            self._in_flight = None
        if attempt.error is None:
            self.transactions += 1
            self._committed_max_msg_id = max(self._committed_max_msg_id, attempt.max_msg_id)
            self._retry_delay = 0.0
            if not self.healthy:
                log.info("SQL store {url} is writable again", url=self.url)
            self._healthy = True
            for batch in attempt.batches:
                waiters, batch.waiters = batch.waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            if attempt.slicing is not None:
                self._purges.finished(attempt.slicing)
            if ((self._queue[-1].has_writes() or self._queue[-1].waiters or self._purges.busy)
                    and not self._retrying):
                lazy = not self._purges.busy and not any(b.waiters for b in self._queue)
                self._schedule(LAZY_COMMIT_DELAY if lazy else 0.0)
                self._lazy = lazy and self._kick_call is not None
            return
        self._failures += 1
        if self.healthy:
            log.warn("SQL store {url}: transaction failed ({error}), keeping writes and "
                     "retrying", url=self.url, error=_one_line(attempt.error))
        self._healthy = False
        failure = StoreUnavailable(f"database write failed: {attempt.error}")
        waiters = []
        for batch in attempt.batches:
            waiters.extend(batch.waiters)
            batch.waiters = []
        # Put the failed batches back in front of anything that arrived meanwhile.
        self._queue.extendleft(reversed(attempt.batches))
        self._retry_delay = min(
            RETRY_MAX, RETRY_FIRST if self._retry_delay == 0 else self._retry_delay * RETRY_FACTOR
        )
        if not self._closed:
            self._schedule_retry()
        for waiter in waiters:
            waiter.errback(Failure(failure))

    def stats(self) -> dict[str, float]:
        pending = sum(len(b.records) + len(b.acks) + len(b.definitions) for b in self._queue)
        return {
            "sql_transactions_total": float(self.transactions),
            "sql_transaction_failures_total": float(self._failures),
            "sql_last_commit_seconds": self._last_commit_seconds,
            "sql_pending_writes": float(pending),
            "sql_purges_under_way": float(len(self._purges.purging)),
            "sql_vacuums_total": float(self._purges.pg_vacuum.runs
                                       if self._purges.pg_vacuum is not None else 0),
            "sql_healthy": 1.0 if self.healthy else 0.0,
        }
