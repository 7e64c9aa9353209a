"""Paged-out queue entries as parallel arrays: a few dozen bytes a message, not objects.

Why: a ready entry in memory is a ``QueueEntry`` and a ``Message`` with its properties, strings
and body, about 600 bytes of Python objects for a 100-byte message. A durable queue holding
millions of stored messages cannot afford that, and it needs none of it until a message comes
near the head: the store has the record. So entries past a window at the head are kept here
as one row of typed arrays each (RabbitMQ's classic queue index plays this part): the store id,
the queue position (``seq``), the body size (every byte count stays the logical one), the
expiry, the redelivered flag, the delivery count, the priority, and where the record is: the
store (-1) or an offset in the queue's paging file (transient messages, ``pagefile.py``).
``ENTRY_BYTES`` is what the broker's accounting charges for a row (a deep queue's: see below).

Only the ids and the sizes are an array of a row each. Every other column (``_Column``) is an
array for its first rows and one value, its *fill*, for every row after them: a row with
the fill's value costs nothing, one that differs writes the fill's rows out first. Recovery
of a deep queue appends millions of rows that share their expiry, flags, count, priority and
place (``extend``); building six arrays of ten million equal items was most of a 10M-deep
recovery (0.8 s of CPU), and a few delivered messages at the head no longer make the rest
pay it either. The seqs are kept as ``seq - (base + row)``, ``base`` counting the rows cut
off the front, so consecutive seqs (a recovered stretch, a FIFO's publishes) are one value
too. ``take`` makes its rows from slices of the columns zipped, no call per row.

A run is consumed from the front (``take``) and only ever grows at the back; the consumed
prefix is cut off once it is at least half of the arrays, so the cost per entry stays
constant. An entry that cannot be paged (a transient message, one shared with other queues)
but sits between paged ones keeps its place as a *pinned* entry, an ordinary ``QueueEntry``
remembered by its row, so queue order never changes.
"""

from __future__ import annotations

import math
from array import array
from itertools import chain, repeat
from operator import add
from typing import Callable, Iterable, Iterator, Sequence

from ..model.message import QueueEntry

#: Broker memory charged per row: what a row of a deep queue costs, its id and size (8+8
#: bytes) and the arrays' growth slack (measured with tracemalloc: 16.0 B a recovered row,
#: 16.4 B a persistent FIFO's row paged out while running). Every other column is one fill
#: value for such rows; a row that differs from a fill adds that column's item (8 B for a
#: transient row's paging-file offset: 24.6 B; a redelivered row's flag and count: up to
#: 25.6 B; all eight columns: 46 B), which this does not charge: the few rows that differ
#: would otherwise make every row cost three times what it does.
ENTRY_BYTES = 18
#: The consumed prefix is cut off once it is this long and at least half the run.
TRIM_AT = 4096

#: One paged row: (msg_id, seq, size, expires_at or None, flags (``REDELIVERED``,
#: ``TTL_UNKNOWN``), delivery_count, priority, where: -1 for the store, else the offset in
#: the queue's paging file)
Row = tuple[int, int, int, "float | None", int, int, int, int]

_NONE = math.nan
#: Row flags: the entry was delivered before; its message's own TTL (``expiration``) is not
#: in ``expires_at`` yet (a row made by recovery, which reads no record: applied on read-back)
REDELIVERED = 1
TTL_UNKNOWN = 2
#: ``Message.ttl`` of a stub made from a ``TTL_UNKNOWN`` row (a real TTL is never negative)
TTL_PENDING = -1


class _Column:
    """One column of a run past the ids and sizes: ``items`` for the first rows, and ``fill``
    the value of every row after them. A row with the fill's value costs nothing; one that
    differs writes out the fill's rows before it (``set``), so a column is never longer than
    the run, and a stretch of one value (a recovered queue's millions of rows) is one item."""

    __slots__ = ("items", "fill", "code")

    def __init__(self, code: str, fill: int) -> None:
        self.items = array(code)
        self.fill = fill
        self.code = code

    def set(self, value: int, n: int) -> None:
        """Rows from ``n`` (the run's length) on have ``value`` (not the fill's)."""
        items = self.items
        if len(items) < n:
            items.extend(array(self.code, [self.fill]) * (n - len(items)))
        self.fill = value

    def at(self, i: int) -> int:
        items = self.items
        return items[i] if i < len(items) else self.fill

    def slice(self, start: int, end: int) -> Iterable[int]:
        items = self.items
        if start >= len(items):
            return repeat(self.fill, end - start)
        if end <= len(items):
            return items[start:end]
        return chain(items[start:], repeat(self.fill, end - len(items)))


class _Expiries:
    """The expiry column as ``_Column`` keeps the others: NaN items for no expiry (None)."""

    __slots__ = ("items", "fill")

    def __init__(self) -> None:
        self.items = array("d")
        self.fill: float | None = None

    def set(self, value: float | None, n: int) -> None:
        items = self.items
        if len(items) < n:
            items.extend(array("d", [_NONE if self.fill is None else self.fill])
                         * (n - len(items)))
        self.fill = value

    def at(self, i: int) -> float | None:
        items = self.items
        if i >= len(items):
            return self.fill
        at = items[i]
        return None if at != at else at

    def slice(self, start: int, end: int) -> Iterable[float | None]:
        head = [None if at != at else at for at in self.items[start:end]]
        if len(head) < end - start:
            return chain(head, repeat(self.fill, end - start - len(head)))
        return head

    def earliest(self, start: int, end: int, skip: dict[int, QueueEntry]) -> float | None:
        """The earliest expiry of rows ``start``..``end`` but those in ``skip``."""
        items = self.items
        best = min((at for i, at in enumerate(items[start:end], start)
                    if at == at and i not in skip), default=None)
        fill = self.fill
        if fill is not None and any(i not in skip for i in range(max(start, len(items)), end)):
            best = fill if best is None else min(best, fill)
        return best


class CompactRun:
    """Paged-out entries of one FIFO, in queue order (see the module docstring)."""

    __slots__ = ("ids", "sizes", "seqs", "expires", "counts", "flags", "prios", "wheres",
                 "base", "start", "pinned", "bytes", "paged_bytes", "in_file")

    def __init__(self) -> None:
        self.ids = array("q")
        self.sizes = array("q")
        self.seqs = _Column("q", 0)       # seq - (base + row): consecutive seqs, one value
        self.expires = _Expiries()
        self.counts = _Column("L", 0)
        self.flags = _Column("B", 0)
        self.prios = _Column("B", 0)
        self.wheres = _Column("q", -1)
        self.base = 0                             # rows cut off the front so far (``_trim``)
        self.start = 0                            # rows before it were taken
        self.pinned: dict[int, QueueEntry] = {}   # row -> entry kept in memory at its place
        self.bytes = 0                            # logical bytes of every entry in the run
        self.paged_bytes = 0                      # of those, bytes of paged rows
        self.in_file = 0                          # rows whose record is in the paging file

    def __len__(self) -> int:
        return len(self.ids) - self.start

    @property
    def paged(self) -> int:
        """Rows that are paged out (not pinned)."""
        return len(self) - len(self.pinned)

    def _seq(self, i: int) -> int:
        return self.seqs.at(i) + self.base + i

    @property
    def first_seq(self) -> int:
        return self._seq(self.start)

    @property
    def last_seq(self) -> int:
        return self._seq(len(self.ids) - 1)

    def push(self, msg_id: int, seq: int, size: int, expires_at: float | None,
             flags: int, count: int, priority: int, where: int = -1) -> None:
        """Append a paged-out row (the message itself is in the store or the paging file)."""
        n = len(self.ids)
        self.ids.append(msg_id)
        self.sizes.append(size)
        seq -= self.base + n
        if seq != self.seqs.fill:
            self.seqs.set(seq, n)
        if expires_at != self.expires.fill:
            self.expires.set(expires_at, n)
        if count != self.counts.fill:
            self.counts.set(min(count, 0xFFFFFFFF), n)
        if flags != self.flags.fill:
            self.flags.set(int(flags), n)
        if priority != self.prios.fill and (priority or self.prios.fill):
            self.prios.set(min(priority or 0, 255), n)
        if where != self.wheres.fill:
            self.wheres.set(where, n)
        self.bytes += size
        self.paged_bytes += size
        if where >= 0:
            self.in_file += 1

    def extend(self, ids: Sequence[int], first_seq: int, sizes: Sequence[int],
               expires_at: float | None) -> None:
        """Append store rows for ``ids`` (consecutive seqs, one expiry, nothing delivered,
        own TTLs unknown): recovery of a deep queue. Only the ids and sizes are copied, once
        (``array("q")``s or memoryviews of them; into an empty run not even that: arrays
        become the run's, so a caller hands over arrays of its own); every other column
        takes the stretch as its fill value."""
        n = len(self.ids)
        if not len(ids):
            return
        if not n and isinstance(ids, array) and isinstance(sizes, array):
            self.ids, self.sizes = ids, sizes
        else:
            _put_all(self.ids, ids)
            _put_all(self.sizes, sizes)
        for column, value in ((self.seqs, first_seq - self.base - n), (self.counts, 0),
                              (self.flags, TTL_UNKNOWN), (self.prios, 0), (self.wheres, -1)):
            if value != column.fill:
                column.set(value, n)
        if expires_at != self.expires.fill:
            self.expires.set(expires_at, n)
        total = sum(sizes)
        self.bytes += total
        self.paged_bytes += total

    def push_entry(self, entry: QueueEntry, where: int) -> None:
        """Append a paged-out entry: its message object is dropped by the caller."""
        m = entry.message
        flags = (REDELIVERED if entry.redelivered else 0) | (
            TTL_UNKNOWN if m.ttl == TTL_PENDING else 0)
        self.push(m.id, entry.seq, len(m.body), entry.expires_at, flags,
                  entry.delivery_count, m.priority, where)

    def pin(self, entry: QueueEntry) -> None:
        """Append an entry that stays in memory, at its place in the run. Its row holds the
        seq (``last_seq``) and the size; the other columns keep their fill for it (never
        read: the entry stands for itself), so a pin breaks no stretch of one value."""
        n = len(self.ids)
        self.pinned[n] = entry
        size = len(entry.message.body)
        self.ids.append(0)
        self.sizes.append(size)
        seq = entry.seq - self.base - n
        if seq != self.seqs.fill:
            self.seqs.set(seq, n)
        self.bytes += size

    def _row(self, i: int) -> Row:
        return (self.ids[i], self._seq(i), self.sizes[i], self.expires.at(i),
                self.flags.at(i), self.counts.at(i), self.prios.at(i), self.wheres.at(i))

    def take(self, n: int) -> list[Row | QueueEntry]:
        """The first ``n`` entries, removed: rows for paged ones, pinned entries as such.
        The rows are made a batch at a time (slices of the columns zipped), not a call and
        eight index operations a row: draining a deep queue goes through here."""
        start = self.start
        end = min(start + n, len(self.ids))
        if end <= start:
            return []
        sizes = self.sizes[start:end]
        total = sum(sizes)
        first = self.base + start
        seqs = map(add, self.seqs.slice(start, end), range(first, first + end - start))
        out: list[Row | QueueEntry] = list(zip(
            self.ids[start:end], seqs, sizes, self.expires.slice(start, end),
            self.flags.slice(start, end), self.counts.slice(start, end),
            self.prios.slice(start, end),
            self.wheres.slice(start, end)))
        paged_total = total
        if self.pinned:
            pinned = self.pinned
            for i in [i for i in pinned if start <= i < end]:
                out[i - start] = pinned.pop(i)
                paged_total -= sizes[i - start]
        if self.in_file:
            self.in_file -= sum(1 for row in out
                                if not isinstance(row, QueueEntry) and row[7] >= 0)
        self.bytes -= total
        self.paged_bytes -= paged_total
        self.start = end
        if end >= TRIM_AT and end * 2 >= len(self.ids):
            self._trim()
        return out

    def _trim(self) -> None:
        start = self.start
        for column in (self.ids, self.sizes, self.seqs.items, self.expires.items,
                       self.counts.items, self.flags.items, self.prios.items,
                       self.wheres.items):
            del column[:start]
        if self.pinned:
            self.pinned = {i - start: e for i, e in self.pinned.items()}
        self.base += start     # row i is now i - start: seq - (base + row) stays the same
        self.start = 0

    def unpin(self) -> list[QueueEntry]:
        """The pinned entries of a run let go of whole (a purge, a deleted queue): its paged
        rows are released from the arrays by ``paged_ids``, no tuple made for each."""
        return list(self.pinned.values())

    def paged_ids(self, start: int, stop: int,
                  want_ids: bool = True) -> tuple[list[int], int, int]:
        """Of the rows ``start``..``stop`` (counted from the run's first row): the store ids of
        the paged ones (unless not ``want_ids``), how many are in the paging file, and how
        many are paged in all."""
        lo, hi = self.start + start, self.start + min(stop, len(self))
        pinned = self.pinned
        if not self.in_file and not any(lo <= i < hi for i in pinned):
            return (self.ids[lo:hi].tolist() if want_ids else []), 0, hi - lo
        ids, in_file, rows = [], 0, 0
        wheres = self.wheres
        for i in range(lo, hi):
            if i in pinned:
                continue
            rows += 1
            if wheres.at(i) >= 0:
                in_file += 1
            else:
                ids.append(self.ids[i])
        return ids, in_file, rows

    def next_expiry(self) -> float | None:
        """The earliest expiry of the run's paged rows (NaN rows have none; the pinned
        entries are the FIFO's to look at, as they are in memory)."""
        return self.expires.earliest(self.start, len(self.ids), self.pinned)

    def remove_where(self, pred: Callable[[QueueEntry], bool],
                     view: Callable[[Row], QueueEntry]) -> list[Row | QueueEntry]:
        """Remove the entries ``pred`` accepts (paged rows are shown to it through ``view``,
        a throwaway entry); returns them as ``take`` does. Rebuilds the arrays: O(run)."""
        keep = CompactRun()
        gone: list[Row | QueueEntry] = []
        for item in self.take(len(self)):
            if isinstance(item, QueueEntry):
                if pred(item):
                    gone.append(item)
                else:
                    keep.pin(item)
            elif pred(view(item)):
                gone.append(item)
            else:
                keep.push(*item)
        for name in CompactRun.__slots__:
            setattr(self, name, getattr(keep, name))
        return gone

    def __iter__(self) -> Iterator[Row | QueueEntry]:
        pinned = self.pinned
        for i in range(self.start, len(self.ids)):
            entry = pinned.get(i) if pinned else None
            yield entry if entry is not None else self._row(i)


def _put_all(column: array[int], values: Sequence[int]) -> None:
    """Append ``values`` to an ``array("q")``: one copy of the bytes from an array or a
    memoryview of one (recovery passes stretches of the journal's arrays as views)."""
    if isinstance(values, memoryview):
        column.frombytes(values.cast("B"))
    else:
        column.extend(values)   # an array("q"): one memcpy
