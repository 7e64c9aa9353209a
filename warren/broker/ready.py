"""The ready messages of a queue: one FIFO, or one FIFO per priority level.

Entries keep their ``seq`` forever, so a requeued entry goes back to the place it had (RabbitMQ
keeps requeued messages' positions). The common case, requeue of entries older than every ready
one, is an ``appendleft``; the rare case walks the deque once.

A deep FIFO is three parts in queue order: the *head* (a deque of entries in memory, the next
to go out), the *run* of paged-out entries (``compact.py``: arrays, no objects) and the *tail*
(a deque of entries published since the run was made). ``page_out`` (the pager) moves
everything past the head's first entries into the run; ``popleft`` refills the head from the
run ``REFILL`` entries at a time through ``restore``, which turns a row back into an entry
whose message body is still paged (``Pager.stub``: no store I/O; the body is read back in
batches just before delivery). When the run is empty the tail becomes part of the head.

Iterating a FIFO yields the entries in memory (head, pinned ones, tail), not the paged rows:
whoever must look at every entry uses ``remove_where`` / ``next_expiry``, which see the rows
too.

Both kinds keep their entry count in the plain attribute ``count`` (paged rows included):
``Queue.enqueue`` asks whether anything waits for every message it takes, and reading an
attribute costs a fraction of a Python-level ``__bool__`` or ``__len__`` call (1-2% of a
message's instructions in every protocol, callgrind).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from itertools import chain
from typing import Callable, Iterable, Iterator, Sequence

from ..model.message import QueueEntry
from .compact import REDELIVERED, CompactRun, Row

#: The entries at the head of a recovered queue made objects (the rest stay rows).
WINDOW = 512
#: Entries brought back from the run into the head at a time (half of it is the head's low
#: mark): two of the pager's drain read-ahead batches (``paging.DRAIN_READ_AHEAD``), so the
#: next batch is always in the head to be read while consumers take this one.
REFILL = 2048

#: Turns a paged row into an entry with a stub message (``Pager.stub``), doing the accounting.
Restore = Callable[[Row], QueueEntry]


def _insert_by_seq(fifo: deque, entry: QueueEntry) -> None:
    if not fifo or entry.seq < fifo[0].seq:
        fifo.appendleft(entry)
    elif entry.seq > fifo[-1].seq:
        fifo.append(entry)
    else:
        fifo.insert(bisect_left(fifo, entry.seq, key=lambda e: e.seq), entry)


def _view(row: Row) -> QueueEntry:
    """A throwaway entry showing a paged row's queue state to a predicate (no message)."""
    _msg_id, seq, _size, expires_at, flags, count, _prio, _where = row
    return QueueEntry(None, seq, expires_at, bool(flags & REDELIVERED),  # type: ignore[arg-type]
                      count)


class ReadyFifo:
    """A single FIFO: head deque, compact run of paged entries, tail deque."""

    __slots__ = ("_q", "_run", "_tail", "bytes", "count", "restore")

    def __init__(self, restore: Restore) -> None:
        self._q: deque[QueueEntry] = deque()
        self._run: CompactRun | None = None     # paged entries after the head, if any
        self._tail: deque[QueueEntry] = deque()  # entries after the run (empty without one)
        self.bytes = 0
        self.count = 0        # entries, paged ones included (the module docstring says why)
        self.restore = restore

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[QueueEntry]:
        """Entries in memory, in queue order (see the module docstring)."""
        run = self._run
        if run is None:
            return iter(self._q)
        return chain(self._q, (run.pinned[i] for i in sorted(run.pinned)), self._tail)

    # -- paged-out figures (the management API's messages_paged_out) -------------------------
    @property
    def paged(self) -> int:
        return self._run.paged if self._run is not None else 0

    @property
    def paged_bytes(self) -> int:
        return self._run.paged_bytes if self._run is not None else 0

    # -- the queue's operations -----------------------------------------------------------
    def append(self, entry: QueueEntry) -> None:
        (self._q if self._run is None else self._tail).append(entry)
        self.bytes += len(entry.message.body)
        self.count += 1

    def push_paged(self, row: Row) -> None:
        """Append an entry that is in the store only (recovery builds deep queues so)."""
        if self._run is None:
            self._run = CompactRun()
        while self._tail:   # entries in memory before it keep their places, pinned
            self._run.pin(self._tail.popleft())
        self._run.push(*row)
        self.bytes += row[2]
        self.count += 1

    def push_paged_many(self, ids: Sequence[int], first_seq: int, sizes: Sequence[int],
                        expires_at: float | None) -> None:
        """``push_paged`` of many store rows at once (``CompactRun.extend``)."""
        if self._run is None:
            self._run = CompactRun()
        while self._tail:
            self._run.pin(self._tail.popleft())
        before = self._run.bytes
        self._run.extend(ids, first_seq, sizes, expires_at)
        self.bytes += self._run.bytes - before
        self.count += len(ids)

    def popleft(self) -> QueueEntry:
        """The next entry; an empty FIFO raises IndexError and is left as it was (dispatch
        pops without asking for emptiness first)."""
        if not self._q:
            self._refill()
        e = self._q.popleft()
        self.bytes -= len(e.message.body)
        self.count -= 1
        if self._run is not None and len(self._q) < REFILL // 2:
            self._refill()
        return e

    def peek(self) -> QueueEntry | None:
        if not self._q:
            self._refill()
        return self._q[0] if self._q else None

    def _refill(self) -> None:
        """Bring the next ``REFILL`` entries of the run into the head (no store I/O)."""
        run = self._run
        if run is None:
            return
        restore = self.restore
        q = self._q
        for item in run.take(REFILL):
            q.append(item if isinstance(item, QueueEntry) else restore(item))
        if not len(run):
            q.extend(self._tail)
            self._tail.clear()
            self._run = None

    def page_out(self, keep: int,
                 locate: Callable[[QueueEntry], int | None]) -> list[QueueEntry]:
        """Move every entry after the first ``keep`` into the run; ``locate`` says where
        each one's record is (-1: the store; else an offset in the paging file, written by
        it), and the ones it refuses (None) stay in memory at their places (pinned). Returns
        the entries paged: the caller drops their messages and does the accounting."""
        run = self._run
        if run is None:
            if len(self._q) <= keep:
                return []
            movers = [self._q.pop() for _ in range(len(self._q) - keep)]
            movers.reverse()
            run = self._run = CompactRun()
        else:
            movers = list(self._tail)
            self._tail.clear()
        paged = []
        for e in movers:
            where = locate(e)
            if where is None:
                run.pin(e)
            else:
                run.push_entry(e, where)
                paged.append(e)
        return paged

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        """Back to their places by ``seq``. Entries older than the run go to the head, newer
        ones to the tail; one that belongs inside the run (none does: the run is consumed in
        order) would go to the end of the head."""
        run = self._run
        for e in sorted(entries, key=lambda e: e.seq, reverse=True):
            if run is not None and self._tail and e.seq > run.last_seq:
                _insert_by_seq(self._tail, e)
            else:
                _insert_by_seq(self._q, e)
            self.bytes += len(e.message.body)
            self.count += 1

    def remove_where(self, pred: Callable[[QueueEntry], bool]) -> list[QueueEntry]:
        gone = [e for e in self._q if pred(e)]
        if gone:
            self._q = deque(e for e in self._q if not pred(e))
        if self._run is not None:
            for item in self._run.remove_where(pred, _view):
                gone.append(item if isinstance(item, QueueEntry) else self.restore(item))
            tail_gone = [e for e in self._tail if pred(e)]
            if tail_gone:
                self._tail = deque(e for e in self._tail if not pred(e))
                gone.extend(tail_gone)
            if not len(self._run):
                self._q.extend(self._tail)
                self._tail.clear()
                self._run = None
        self.bytes -= sum(len(e.message.body) for e in gone)
        self.count -= len(gone)
        return gone

    def next_expiry(self) -> float | None:
        """The earliest ``expires_at`` of any ready entry, paged ones included."""
        best = min((e.expires_at for e in self if e.expires_at is not None), default=None)
        if self._run is not None:
            paged = self._run.next_expiry()
            if paged is not None and (best is None or paged < best):
                best = paged
        return best

    def clear(self) -> list[QueueEntry]:
        """Empty the FIFO; paged entries come back as stubs (``restore``)."""
        entries = list(self._q)
        if self._run is not None:
            for item in self._run.take(len(self._run)):
                entries.append(item if isinstance(item, QueueEntry) else self.restore(item))
            entries.extend(self._tail)
        self._q.clear()
        self._tail.clear()
        self._run = None
        self.bytes = 0
        self.count = 0
        return entries

    def clear_split(self) -> tuple[deque[QueueEntry], list[CompactRun]]:
        """Empty the FIFO at once: the entries in memory, and the run of paged rows as it is
        (a purge of a deep queue releases its arrays a slice at a time: no object, not even a
        tuple, per paged message). The entries are the FIFO's own deque, taken whole (a copy
        of a million references, and clearing them, was 40 ms in the purging call)."""
        entries = self._q
        self._q = deque()
        runs: list[CompactRun] = []
        if self._run is not None:
            entries.extend(self._run.unpin())
            entries.extend(self._tail)
            runs.append(self._run)
        self._tail.clear()
        self._run = None
        self.bytes = 0
        self.count = 0
        return entries, runs


class ReadyByPriority:
    """One FIFO per priority level 0..max; the highest non-empty level is served first.

    A JMS queue has ten levels and most messages sit at one of them (4, JMS's default), so
    the count of entries and the highest level that may hold one are kept here: emptiness is
    one comparison and a pop starts at that level, instead of asking each level in turn on
    every dispatch step (STOMP queues are of this kind)."""

    __slots__ = ("_levels", "_max", "count", "_top")

    def __init__(self, max_priority: int, restore: Restore) -> None:
        self._max = max_priority
        self._levels = [ReadyFifo(restore) for _ in range(max_priority + 1)]
        self.count = 0             # entries in every level, paged ones included
        self._top = 0              # no level above this one holds an entry

    def _level_of(self, priority: int) -> int:
        level = min(priority or 0, self._max)
        if level > self._top:
            self._top = level
        return level

    @property
    def bytes(self) -> int:
        return sum(level.bytes for level in self._levels)

    @property
    def paged(self) -> int:
        return sum(level.paged for level in self._levels)

    @property
    def paged_bytes(self) -> int:
        return sum(level.paged_bytes for level in self._levels)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[QueueEntry]:
        for level in reversed(self._levels):
            yield from level

    def append(self, entry: QueueEntry) -> None:
        self._levels[self._level_of(entry.message.priority)].append(entry)
        self.count += 1

    def push_paged(self, row: Row) -> None:
        self._levels[self._level_of(row[6])].push_paged(row)
        self.count += 1

    def push_paged_many(self, ids: Sequence[int], first_seq: int, sizes: Sequence[int],
                        expires_at: float | None) -> None:
        """Rows of priority 0, as ``push_paged`` files a row without one (the broker's
        recovery decodes a priority queue's messages instead, so it does not come here)."""
        self._levels[0].push_paged_many(ids, first_seq, sizes, expires_at)
        self.count += len(ids)

    def popleft(self) -> QueueEntry:
        levels = self._levels
        for i in range(self._top if self.count else -1, -1, -1):
            try:
                entry = levels[i].popleft()   # an empty level raises, unchanged
            except IndexError:
                continue
            self._top = i
            self.count -= 1
            return entry
        raise IndexError("pop from an empty queue")

    def peek(self) -> QueueEntry | None:
        if not self.count:
            return None
        levels = self._levels
        for i in range(self._top, -1, -1):
            level = levels[i]
            if level:
                self._top = i
                return level.peek()
        return None

    def page_out(self, keep: int,
                 locate: Callable[[QueueEntry], int | None]) -> list[QueueEntry]:
        """Page out every level past the first ``keep`` entries served (highest level first)."""
        paged: list[QueueEntry] = []
        for level in reversed(self._levels):
            paged.extend(level.page_out(keep, locate))
            keep = max(0, keep - len(level))
        return paged

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        by_level: dict[int, list[QueueEntry]] = {}
        for e in entries:
            by_level.setdefault(self._level_of(e.message.priority), []).append(e)
        for level, es in by_level.items():
            self._levels[level].requeue(es)
            self.count += len(es)

    def remove_where(self, pred: Callable[[QueueEntry], bool]) -> list[QueueEntry]:
        gone: list[QueueEntry] = []
        for level in self._levels:
            gone.extend(level.remove_where(pred))
        self.count -= len(gone)
        return gone

    def next_expiry(self) -> float | None:
        return min((at for at in (level.next_expiry() for level in self._levels)
                    if at is not None), default=None)

    def clear(self) -> list[QueueEntry]:
        gone: list[QueueEntry] = []
        for level in reversed(self._levels):
            gone.extend(level.clear())
        self.count = self._top = 0
        return gone

    def clear_split(self) -> tuple[deque[QueueEntry], list[CompactRun]]:
        entries: deque[QueueEntry] = deque()
        runs: list[CompactRun] = []
        for level in reversed(self._levels):
            e, r = level.clear_split()
            entries.extend(e)
            runs.extend(r)
        self.count = self._top = 0
        return entries, runs
