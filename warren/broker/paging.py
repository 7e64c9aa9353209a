"""Paging queued messages out of memory (RabbitMQ's lazy / v2 classic queues), under a budget.

Why: a durable queue may hold millions of persistent messages; every one is already in the
store, so keeping it in RAM as well only costs memory, and as Python objects a lot of it
(about 600 bytes for a 100-byte message). The broker accounts for what messages cost it
(``Broker.memory_used``: bodies plus ``OVERHEAD`` per message in memory, plus
``compact.ENTRY_BYTES`` per paged-out entry, the part kept in ``Broker.index_bytes``). Once the
part in memory (``resident``) passes ``paging_budget`` a paging pass runs at the end of the
reactor turn and pages out until it is back under three quarters of the budget (hysteresis,
so passes are not made for every publish).

Paging out an entry drops its ``QueueEntry`` and ``Message`` altogether: the queue keeps a row
of arrays (``compact.py``) with what it needs to order, expire and count it. Which entries go
(all must hold):

- its only holder is this queue (``refs == 1``), so the record lives exactly as long as the
  queue keeps the entry: a ``stored`` message's record is in the store already; any other
  (transient, or in a non-durable queue) is written to the queue's paging file
  (``pagefile.py``), as RabbitMQ pages transient messages too. A message shared with other
  queues stays in memory (pinned at its place);
- the entry is *ready* (not out with a consumer) and not among the ``HEAD_KEEP`` first ready
  entries of its queue: those go to consumers next and would only be read straight back.

Which go first: queues with the most ready bytes in memory first, everything past each one's
head. A pass that cannot get under the target (what is left is unpageable: heads, unacked,
transient messages) is remembered, and no new pass starts until the resident bytes grew by
another quarter of the budget from their lowest point since, so a full walk is never repeated
per publish, and a queue filling after the unpageable ones drained still pages out.

Coming back is in two steps. The queue turns rows back into entries ``ready.REFILL`` at a time
as its head drains (:meth:`Pager.stub`: a ``Message`` that knows its id, size and priority,
whose body is a :class:`PagedBody` and whose ``paged`` is True; no store I/O). Just before a
body is needed (hand-over to a consumer, a basic.get, dead-lettering, a move)
:meth:`Pager.page_in` reads the record back, with up to ``READ_AHEAD`` more paged entries from
the head of the same queue, so draining a paged queue costs one store round trip per batch;
while consumers drain it, the next ``DRAIN_READ_AHEAD`` are read while they take the
last batch (:meth:`Pager.read_ahead`).
The store is never read on the reactor thread (``store.read_many_later``: the journal's
reader thread, the SQL store's): a slow or unreachable database holds no other client. The
one who needs the body waits for it (:meth:`Pager.when_read`): a dispatching queue is
dispatched again, a basic.get is answered then (``Queue.get_later``), a dead-lettering waits
aside in its turn, a move goes on. Every byte count (``ready.bytes``, ``max-length-bytes``,
the API's ``message_bytes``) stays the message's logical size throughout; any attempt to use
a paged body's bytes fails loudly. A store that is momentarily unreachable (database gone)
leaves the entry where it was and the read is retried every ``STORE_RETRY_S``; a record the
store does not have in two reads (corruption) is logged and the entry is dropped, never
delivered empty.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from enum import Enum
from itertools import islice
from functools import partial
from typing import TYPE_CHECKING, Any, Iterable, cast

from twisted.internet.defer import Deferred

from ..model.message import OVERHEAD, Message, QueueEntry
from .compact import ENTRY_BYTES, REDELIVERED, TTL_PENDING, TTL_UNKNOWN, Row
from .pagefile import PageFile

if TYPE_CHECKING:
    from .broker import Broker
    from .queue import Queue

log = logging.getLogger("warren.paging")

#: Default budget for messages in memory before paging starts (``--paging-budget``).
DEFAULT_BUDGET = 256 * 1024 * 1024
#: The oldest ready entries of each queue keep their bodies: they are delivered next.
HEAD_KEEP = 256
#: Paged entries at the head of a queue read back with the one being delivered (one store call).
READ_AHEAD = 256
#: Paged entries read in one store call by the read-ahead of a queue that consumers drain
#: (``read_ahead``): bigger batches, as a drain takes them all anyway, cost fewer hand-overs
#: to the reader thread and back (each a wait for the GIL on both sides); half a batch is
#: ``ready.REFILL // 4``, so the next batch is always among the stubs the head holds.
DRAIN_READ_AHEAD = 1024
#: Stubs a queue keeps as the read-ahead's candidates (``Queue.unread``); past this many the
#: oldest go (a bound on what a queue whose consumers hold it up keeps alive).
UNREAD_KEPT = 4 * DRAIN_READ_AHEAD
#: While the store cannot be read (the database is gone), how often a read is tried again.
STORE_RETRY_S = 1.0
#: A pass stops once resident bodies are at or under this share of the budget.
LOW_SHARE = 0.75


class PageIn(Enum):
    """What :meth:`Pager.page_in` made of a paged-out message."""

    LOADED = "loaded"     # the body is back in memory
    LATER = "later"       # the store cannot answer now; leave the entry and retry
    PENDING = "pending"   # being read off the reactor thread; the queue is dispatched after
    LOST = "lost"         # the store no longer has the record; drop the entry


class PagedBody:
    """Stands in for a body that lives only in the store (``where`` -1) or in the queue's
    paging file (``where``: the offset): has a length and nothing else."""

    __slots__ = ("size", "where")

    def __init__(self, size: int, where: int = -1) -> None:
        self.size = size
        self.where = where

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        raise RuntimeError("message body is paged out: call Pager.page_in first")

    def __repr__(self) -> str:
        return f"PagedBody({self.size})"


def paged_location(message: Message) -> int:
    """Where a paged message's body lives: -1 in the store, else its offset in the queue's
    paging file. (``Message.body`` is typed as the bytes it holds while not paged.)"""
    body = message.body
    assert isinstance(body, PagedBody)   # message.paged: _page_out put a PagedBody there
    return body.where


class Pager:
    """Decides when and which entries leave memory, and brings them back on demand."""

    def __init__(self, broker: "Broker", budget: int = DEFAULT_BUDGET,
                 head_keep: int = HEAD_KEEP) -> None:
        self.broker = broker
        self.budget = budget            # resident message bytes that start a pass; <= 0: never
        self.head_keep = head_keep
        self.paged_out = 0              # counters for metrics and tests
        self.paged_in = 0
        self._scheduled: Any = None     # the pending end-of-turn pass
        self._futile_at = -1            # resident bytes when a pass last could not get under
        # where the queues' paging files go (``pagefile.py``): the server sets it in the data
        # directory and empties it at start; a temporary directory otherwise
        self.directory: str | None = None
        self._files = 0
        self._file_error = False   # a paging file could not be written (logged once)
        # messages whose records the store is reading off the reactor thread (by id()), who
        # waits for them (``when_read``), those such a read did not find (read once more),
        # and those not found twice (lost: their queue drops them)
        self._reading: dict[int, Message] = {}
        self._waiters: dict[int, list[Deferred]] = {}
        # (the last two keep the message itself: an id() alone could be a new message's)
        self._missing: dict[int, Message] = {}
        self._lost: dict[int, Message] = {}
        # reads of paged-out bodies are failing (store unreachable): logged once, and once
        # more when a read works again, however many retries there are in between; while
        # they fail, ``page_in`` starts a read at most once a second (a dead-lettering of a
        # thousand paged messages must not queue a thousand failing connects)
        self._read_failing = False
        self._failed_at = 0.0

    @property
    def resident(self) -> int:
        """Accounted bytes of messages in memory (the paged-out entries' rows left out)."""
        return self.broker.memory_used - self.broker.index_bytes

    # ---------------------------------------------------------------- when
    def note_growth(self) -> None:
        """Called when resident messages grew (``Broker.track``): schedule a pass if over."""
        broker = self.broker
        resident = self.resident
        if (self.budget <= 0 or resident <= self.budget or self._scheduled is not None
                or broker.store is None):
            return
        if self._futile_at >= 0:
            # the mark follows the resident bytes down (what was unpageable was consumed):
            # growth is counted from the lowest point, else a queue filling after a drained
            # one would wait for the old peak and never page out
            self._futile_at = min(self._futile_at, resident)
            if resident < self._futile_at + max(self.budget // 4, 65536):
                return
        self._scheduled = broker.clock.callLater(0, self.run)

    def run(self) -> int:
        """One paging pass (see the module docstring); returns how many entries went."""
        self._scheduled = None
        broker = self.broker
        target = int(self.budget * LOW_SHARE)
        if self.resident <= target:
            self._futile_at = -1
            return 0
        queues = [q for vh in list(broker.vhosts.values()) for q in vh.queues.values()
                  if not q.deleted and len(q.ready) > self.head_keep]
        queues.sort(key=lambda q: q.ready.bytes - q.ready.paged_bytes, reverse=True)
        count = 0
        for queue in queues:
            for entry in queue.ready.page_out(self.head_keep, partial(self._locate, queue)):
                self._page_out(entry.message)
                count += 1
            if self.resident <= target:
                break
        self._futile_at = -1 if self.resident <= target else self.resident
        if count:
            self.paged_out += count
            log.debug("paged out %d messages; %d bytes of messages resident", count,
                      self.resident)
            broker.after_settle(None)  # memory went down: the memory alarm may clear
        return count

    def _page_out(self, message: Message) -> None:
        """The accounts of a message whose entry became a row (``compact.py``)."""
        broker = self.broker
        if message.paged:   # a stub whose body was never read back
            broker.memory_used -= OVERHEAD
        else:
            size = len(message.body)
            broker.body_bytes -= size
            broker.memory_used -= size + OVERHEAD
        message.refs -= 1
        self.note_row()

    def _locate(self, queue: "Queue", entry: QueueEntry) -> int | None:
        """Where a paged-out entry's record will be: -1 the store, else the offset in the
        queue's paging file (written now); None: it cannot be paged (shared)."""
        message = entry.message
        if message.refs != 1:
            return None
        if message.stored and queue.durable:
            return -1
        if message.paged:   # a stub of the paging file, never read back: written again
            return None
        try:
            if queue.page_file is None:
                queue.page_file = PageFile(self._page_file_path(queue))
            return queue.page_file.append(message.to_record())
        except OSError as error:   # disk full, directory gone: it stays in memory
            if not self._file_error:
                log.warning("queue '%s': cannot write its paging file (%s); transient "
                            "messages stay in memory", queue.name, error)
            self._file_error = True
            return None

    def use_directory(self, path: str) -> None:
        """Paging files go under ``path`` (a subdirectory per process: a fenced HA master may
        still be using its own); what a previous run left there is transient and is removed."""
        shutil.rmtree(path, ignore_errors=True)
        self.directory = os.path.join(path, str(os.getpid()))

    def _page_file_path(self, queue: "Queue") -> str:
        if self.directory is None:
            self.directory = tempfile.mkdtemp(prefix="warren-paging-")
        os.makedirs(self.directory, exist_ok=True)
        self._files += 1
        return os.path.join(self.directory, f"queue-{self._files}.page")

    def note_row(self, count: int = 1) -> None:
        """More paged-out rows (paging out, or recovery building a deep queue)."""
        self.broker.memory_used += count * ENTRY_BYTES
        self.broker.index_bytes += count * ENTRY_BYTES

    def forget_rows(self, count: int) -> None:
        """``count`` rows are gone without coming back (purge, delete)."""
        self.broker.memory_used -= count * ENTRY_BYTES
        self.broker.index_bytes -= count * ENTRY_BYTES

    def stub(self, row: Row) -> QueueEntry:
        """A row back as an entry whose message's body is still paged (no store I/O): the
        exchange, routing key and properties come back with the body (``page_in``)."""
        msg_id, seq, size, expires_at, flags, count, priority, where = row
        message = Message.__new__(Message)
        message.id = msg_id
        message.exchange = message.routing_key = ""
        # stands in for the bytes until page_in: Message (the model) knows no paging
        message.body = cast(bytes, PagedBody(size, where))
        message.raw_props = None
        message._props = None
        message.amqp1_sections = None
        message.cc = None
        message.deaths = None
        message.codec = self.broker.codec
        message.persistent = where < 0
        message.priority = priority
        message.ttl = TTL_PENDING if flags & TTL_UNKNOWN else None
        message.stored = where < 0
        message.refs = 1
        message.paged = True
        broker = self.broker
        broker.memory_used += OVERHEAD - ENTRY_BYTES
        broker.index_bytes -= ENTRY_BYTES
        return QueueEntry(message, seq, expires_at, bool(flags & REDELIVERED), count)

    # ---------------------------------------------------------------- back in
    def page_in(self, message: Message, queue: "Queue", entry: QueueEntry | None = None,
                along: Iterable[QueueEntry] | None = None) -> PageIn:
        """Bring a paged-out body back (LOADED at once for a resident one). Never reads the
        store on the reactor thread.

        The next paged entries of ``along`` (the queue's ready list unless given) come back
        in the same store call (``READ_AHEAD``): a drained lazy queue then costs one store
        round trip per batch, not per message. A record in the queue's paging file (a local
        file of this process) is read at once; the store's are read off the reactor thread
        (``MessageStore.read_many_later``): PENDING, and whoever waits for the body asks
        :meth:`when_read` (a queue being dispatched is dispatched again once they are in).
        LATER: the store failed less than ``STORE_RETRY_S`` ago; try again after that.
        LOST: the store no longer has the record (read twice, logged here); drop the entry.

        A recovered message's own TTL, unknown until now (``compact.TTL_UNKNOWN``), is
        applied to its entry (``entry`` for ``message``), counted from the broker's start as
        a recovery that read it would have.
        """
        if not message.paged:
            return PageIn.LOADED
        key = id(message)
        if self._lost.get(key) is message:
            del self._lost[key]
            log.error("message %d: body paged out but the store no longer has it; dropping it",
                      message.id)
            return PageIn.LOST
        if key in self._reading:
            return PageIn.PENDING
        if (self._read_failing and paged_location(message) < 0
                and self.broker.clock.seconds() - self._failed_at < STORE_RETRY_S):
            return PageIn.LATER
        wanted = [message]
        entries = {key: entry}
        reading, missing = self._reading, self._missing
        for queued in islice(iter(queue.ready) if along is None else along, READ_AHEAD):
            m = queued.message
            if (m.paged and m is not message and id(m) not in reading
                    and missing.get(id(m)) is not m):
                wanted.append(m)
                entries[id(m)] = queued
        self._read_later(queue, wanted, entries)
        # a record of the paging file, or a store that read at once, is loaded already
        if not message.paged:
            return PageIn.LOADED
        if key in self._reading:
            return PageIn.PENDING
        # the store answered at once: without the record (once more, then it is lost), or
        # failing
        if self._missing.get(key) is message or self._lost.get(key) is message:
            return self.page_in(message, queue, entry, along)
        return PageIn.LATER

    def when_read(self, message: Message) -> Deferred:
        """For a message ``page_in`` answered PENDING: fires True once its read is over and
        the body is in (or the record is known lost: ``page_in`` says LOST now), False when
        the read failed (the store is unreachable: try again after ``STORE_RETRY_S``)."""
        done: Deferred = Deferred()
        if id(message) not in self._reading:
            done.callback(True)
        else:
            self._waiters.setdefault(id(message), []).append(done)
        return done

    def _wake(self, in_store: list[Message], read: bool) -> None:
        waiters = self._waiters
        if not waiters:
            return
        for m in in_store:
            for done in waiters.pop(id(m), ()):
                done.callback(read)

    def _learn_ttls(self, pending: list[Message], queue: "Queue | None",
                    entries: dict[int, QueueEntry | None]) -> None:
        for m in pending:
            if not m.paged and m.ttl is not None and queue is not None:
                pending_entry = entries.get(id(m))
                if pending_entry is not None:
                    queue.learn_expiry(pending_entry, self.broker.started_at + m.ttl / 1000.0)

    def _read_later(self, queue: "Queue", wanted: list[Message],
                    entries: dict[int, QueueEntry | None]) -> None:
        """Records in the paging file are read now (a local file of this process), the
        store's off the reactor thread."""
        pending = [m for m in wanted if m.ttl == TTL_PENDING]
        in_store = self._load_from_file(queue, wanted)
        self._learn_ttls(pending, queue, entries)
        if not in_store:
            return
        store = self.broker.store
        assert store is not None   # a body paged to the store (where -1) is of a stored message
        for m in in_store:
            self._reading[id(m)] = m
        done = store.read_many_later([m.id for m in in_store])
        done.addCallbacks(self._arrived, self._read_failed,
                          callbackArgs=(queue, in_store, entries),
                          errbackArgs=(queue, in_store))

    def read_ahead(self, queue: "Queue") -> None:
        """Read the next paged bodies of a queue consumers drain before the dispatch reaches
        them (double buffering): up to ``DRAIN_READ_AHEAD`` in one store call once no more
        than half a batch of what was read ahead is left for the consumers to take, so
        bodies are in memory while the next batch is on its way and the dispatch does not
        stop for the disk. Called after a batch came in, and by the queue's dispatch once
        its consumers took the deliveries ``queue.read_ahead_at`` names (a count, so the
        dispatch pays one comparison for it).

        The candidates are the queue's ``unread`` stubs, in the order its head restored them
        (no walk over the entries loaded already); what the read-ahead has asked for so far
        ends at the ``queue.read_upto``-th delivery. Whether the consumers have credit right
        now does not matter: a drain's consumers are out of credit after most dispatches
        (they took all they may hold), and a read-ahead that waited for credit waited for
        their next acks, then for the disk."""
        queue.read_ahead_at = None
        if queue.deleted or not queue.consumers:
            return
        delivered = queue.delivered()
        ahead = max(queue.read_upto - delivered, 0)
        if ahead <= DRAIN_READ_AHEAD // 2:
            unread = queue.unread
            wanted: list[Message] = []
            entries: dict[int, QueueEntry | None] = {}
            reading, missing = self._reading, self._missing
            while unread and len(wanted) < DRAIN_READ_AHEAD:
                queued = unread.popleft()
                m = queued.message
                # (one delivered, read by the dispatch itself, paged out again or dropped
                # since it was restored is no longer a candidate)
                if (m.paged and m.refs > 0 and id(m) not in reading
                        and missing.get(id(m)) is not m):
                    wanted.append(m)
                    entries[id(m)] = queued
            if wanted:
                self._read_later(queue, wanted, entries)
                ahead += len(wanted)
                queue.read_upto = delivered + ahead
            elif not queue.ready.paged:
                return   # nothing left to read ahead (a stall of the dispatch starts it again)
        queue.read_ahead_at = delivered + max(ahead - DRAIN_READ_AHEAD // 2,
                                              DRAIN_READ_AHEAD // 8)

    def _arrived(self, records: dict[int, bytes], queue: "Queue", in_store: list[Message],
                 entries: dict[int, QueueEntry | None]) -> None:
        """Records read off the reactor thread: bodies of messages still queued come back.
        One the store did not find is read once more on its own (off the reactor thread
        too: a read racing a write or a compaction finds it then); missing twice, it is lost
        (``page_in`` logs it and its queue drops it)."""
        self._reads_work()
        pending = []
        missing, lost, reading = self._missing, self._lost, self._reading
        # ``_load`` in line, its accounts made once for the batch: bodies back, their bytes
        loaded = count = 0
        try:
            for m in in_store:
                reading.pop(id(m), None)
                if not m.paged or m.refs <= 0:
                    if missing:
                        missing.pop(id(m), None)
                    continue   # no longer queued
                record = records.get(m.id)
                if record is None:
                    if missing.pop(id(m), None) is m:
                        lost[id(m)] = m
                    else:
                        missing[id(m)] = m
                    continue
                if missing:
                    missing.pop(id(m), None)
                if m.ttl == TTL_PENDING:
                    pending.append(m)
                m.load_record(record)
                m.paged = False
                loaded += len(m.body)
                count += 1
        finally:
            self.paged_in += count
            broker = self.broker
            broker.body_bytes += loaded
            broker.memory_used += loaded
        self._learn_ttls(pending, queue, entries)
        self._wake(in_store, True)
        if not queue.deleted:
            clock = self.broker.clock
            clock.callLater(0, queue.dispatch)
            clock.callLater(0, self.read_ahead, queue)   # after that dispatch

    def _read_failed(self, failure: Any, queue: "Queue", in_store: list[Message]) -> None:
        for m in in_store:
            self._reading.pop(id(m), None)
        self._reads_fail(f"queue '{queue.name}'", failure.getErrorMessage())
        self._wake(in_store, False)
        if not queue.deleted:
            self.broker.clock.callLater(STORE_RETRY_S, queue.dispatch)

    def _reads_fail(self, what: str, error: object) -> None:
        if not self._read_failing:
            log.warning("%s: reading paged-out bodies failed (%s); delivery waits and is "
                        "retried until the store answers", what, error)
        self._read_failing = True
        self._failed_at = self.broker.clock.seconds()

    def _reads_work(self) -> None:
        if self._read_failing:
            log.warning("reading paged-out bodies works again; delivery resumes")
        self._read_failing = False

    def _load_from_file(self, queue: "Queue", wanted: list[Message]) -> list[Message]:
        """Load those of ``wanted`` that are in the queue's paging file; returns the others
        (in the store)."""
        page_file = queue.page_file
        if page_file is None:   # a durable queue's: every paged body is in the store
            return wanted
        in_store = []
        for m in wanted:
            where = paged_location(m)
            if where < 0:
                in_store.append(m)
            else:
                self._load(m, page_file.read(where))
                page_file.release()
        return in_store

    def _load(self, message: Message, record: bytes) -> None:
        # a stub (``stub``) gets what the record says, in place (``Message.load_record``)
        message.load_record(record)
        message.paged = False
        size = len(message.body)
        self.broker.body_bytes += size
        self.broker.memory_used += size
        self.paged_in += 1

    def stats(self) -> dict[str, float]:
        return {"paging_budget_bytes": float(self.budget),
                "paging_resident_body_bytes": float(self.broker.body_bytes),
                "paging_resident_bytes": float(self.resident),
                "paging_index_bytes": float(self.broker.index_bytes),
                "paging_paged_out_total": float(self.paged_out),
                "paging_paged_in_total": float(self.paged_in)}
