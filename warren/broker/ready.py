"""The ready messages of a queue: one FIFO, or one FIFO per priority level.

Entries keep their ``seq`` forever, so a requeued entry goes back to the place it had (RabbitMQ
keeps requeued messages' positions). The common case, requeue of entries older than every ready
one, is an ``appendleft``; the rare case walks the deque once.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from itertools import islice
from typing import Callable, Iterable, Iterator

from ..model.message import QueueEntry


def _insert_by_seq(fifo: deque, entry: QueueEntry) -> None:
    if not fifo or entry.seq < fifo[0].seq:
        fifo.appendleft(entry)
    elif entry.seq > fifo[-1].seq:
        fifo.append(entry)
    else:
        fifo.insert(bisect_left(fifo, entry.seq, key=lambda e: e.seq), entry)


class ReadyFifo:
    """A single FIFO."""

    __slots__ = ("_q", "bytes")

    def __init__(self) -> None:
        self._q: deque[QueueEntry] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._q)

    def __bool__(self) -> bool:
        return bool(self._q)

    def __iter__(self) -> Iterator[QueueEntry]:
        return iter(self._q)

    def append(self, entry: QueueEntry) -> None:
        self._q.append(entry)
        self.bytes += len(entry.message.body)

    def popleft(self) -> QueueEntry:
        e = self._q.popleft()
        self.bytes -= len(e.message.body)
        return e

    def peek(self) -> QueueEntry | None:
        return self._q[0] if self._q else None

    def newest_first(self, keep_oldest: int = 0) -> Iterator[QueueEntry]:
        """Entries from the tail back, leaving out the ``keep_oldest`` at the head (paging)."""
        return islice(reversed(self._q), max(0, len(self._q) - keep_oldest))

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        for e in sorted(entries, key=lambda e: e.seq, reverse=True):
            _insert_by_seq(self._q, e)
            self.bytes += len(e.message.body)

    def remove_where(self, pred: Callable[[QueueEntry], bool]) -> list[QueueEntry]:
        gone = [e for e in self._q if pred(e)]
        if gone:
            self._q = deque(e for e in self._q if not pred(e))
            self.bytes -= sum(len(e.message.body) for e in gone)
        return gone

    def clear(self) -> list[QueueEntry]:
        gone = list(self._q)
        self._q.clear()
        self.bytes = 0
        return gone


class ReadyByPriority:
    """One FIFO per priority level 0..max; the highest non-empty level is served first."""

    __slots__ = ("_levels", "_max", "_len", "bytes")

    def __init__(self, max_priority: int) -> None:
        self._max = max_priority
        self._levels: list[deque[QueueEntry]] = [deque() for _ in range(max_priority + 1)]
        self._len = 0
        self.bytes = 0

    def _level(self, entry: QueueEntry) -> deque:
        return self._levels[min(entry.message.priority or 0, self._max)]

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[QueueEntry]:
        for level in reversed(self._levels):
            yield from level

    def append(self, entry: QueueEntry) -> None:
        self._level(entry).append(entry)
        self._len += 1
        self.bytes += len(entry.message.body)

    def popleft(self) -> QueueEntry:
        for level in reversed(self._levels):
            if level:
                e = level.popleft()
                self._len -= 1
                self.bytes -= len(e.message.body)
                return e
        raise IndexError("pop from an empty queue")

    def peek(self) -> QueueEntry | None:
        for level in reversed(self._levels):
            if level:
                return level[0]
        return None

    def newest_first(self, keep_oldest: int = 0) -> Iterator[QueueEntry]:
        """Entries in reverse serving order, leaving out the ``keep_oldest`` served first."""
        return islice(reversed(list(self)), max(0, self._len - keep_oldest))

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        for e in sorted(entries, key=lambda e: e.seq, reverse=True):
            _insert_by_seq(self._level(e), e)
            self._len += 1
            self.bytes += len(e.message.body)

    def remove_where(self, pred: Callable[[QueueEntry], bool]) -> list[QueueEntry]:
        gone: list[QueueEntry] = []
        for i, level in enumerate(self._levels):
            out = [e for e in level if pred(e)]
            if out:
                self._levels[i] = deque(e for e in level if not pred(e))
                gone.extend(out)
        self._len -= len(gone)
        self.bytes -= sum(len(e.message.body) for e in gone)
        return gone

    def clear(self) -> list[QueueEntry]:
        gone = list(self)
        for level in self._levels:
            level.clear()
        self._len = 0
        self.bytes = 0
        return gone
