"""Paged-out queue entries as parallel arrays: a few dozen bytes a message, not objects.

Why: a ready entry in memory is a ``QueueEntry`` and a ``Message`` with its properties, strings
and body, about 600 bytes of Python objects for a 100-byte message. A durable queue holding
millions of stored messages cannot afford that, and it needs none of it until a message comes
near the head: the store has the record. So entries past a window at the head are kept here
as one row of typed arrays each (RabbitMQ's classic queue index plays this part): the store id,
the queue position (``seq``), the body size (every byte count stays the logical one), the
expiry, the redelivered flag, the delivery count, the priority, and where the record is: the
store (-1) or an offset in the queue's paging file (transient messages, ``pagefile.py``).
``ENTRY_BYTES`` is what the broker's accounting charges for a row.

A run is consumed from the front (``take``) and only ever grows at the back; the consumed
prefix is cut off once it is at least half of the arrays, so the cost per entry stays
constant. An entry that cannot be paged (a transient message, one shared with other queues)
but sits between paged ones keeps its place as a *pinned* entry, an ordinary ``QueueEntry``
remembered by its row, so queue order never changes.
"""

from __future__ import annotations

import math
from array import array
from typing import Callable, Iterator, Sequence

from ..model.message import QueueEntry

#: Broker memory charged per row: the eight array items (8+8+8+8+4+1+1+8 bytes) and the
#: arrays' growth slack, rounded up.
ENTRY_BYTES = 56
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


class CompactRun:
    """Paged-out entries of one FIFO, in queue order (see the module docstring)."""

    __slots__ = ("ids", "seqs", "sizes", "expires", "counts", "flags", "prios", "wheres",
                 "start", "pinned", "bytes", "paged_bytes", "in_file")

    def __init__(self) -> None:
        self.ids = array("q")
        self.seqs = array("q")
        self.sizes = array("q")
        self.expires = array("d")
        self.counts = array("L")
        self.flags = array("B")
        self.prios = array("B")
        self.wheres = array("q")
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

    @property
    def first_seq(self) -> int:
        return self.seqs[self.start]

    @property
    def last_seq(self) -> int:
        return self.seqs[-1]

    def push(self, msg_id: int, seq: int, size: int, expires_at: float | None,
             flags: int, count: int, priority: int, where: int = -1) -> None:
        """Append a paged-out row (the message itself is in the store or the paging file)."""
        self.ids.append(msg_id)
        self.seqs.append(seq)
        self.sizes.append(size)
        self.expires.append(_NONE if expires_at is None else expires_at)
        self.counts.append(min(count, 0xFFFFFFFF))
        self.flags.append(int(flags))
        self.prios.append(min(priority or 0, 255))
        self.wheres.append(where)
        self.bytes += size
        self.paged_bytes += size
        if where >= 0:
            self.in_file += 1

    def extend(self, ids: Sequence[int], first_seq: int, sizes: Sequence[int],
               expires_at: float | None) -> None:
        """Append store rows for ``ids`` (consecutive seqs, one expiry, nothing delivered,
        own TTLs unknown): recovery of a deep queue, a few array operations, not a call per
        row (ids and sizes as ``array("q")``s, the journal's: one copy each)."""
        n = len(ids)
        self.ids.extend(ids)
        self.seqs.extend(range(first_seq, first_seq + n))
        self.sizes.extend(sizes)
        self.expires.extend(array("d", [_NONE if expires_at is None else expires_at]) * n)
        self.counts.extend(array("L", [0]) * n)
        self.flags.frombytes(bytes((TTL_UNKNOWN,)) * n)
        self.prios.frombytes(bytes(n))
        self.wheres.extend(array("q", [-1]) * n)
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
        """Append an entry that stays in memory, at its place in the run."""
        self.pinned[len(self.ids)] = entry
        self.push(0, entry.seq, len(entry.message.body), entry.expires_at,
                  0, entry.delivery_count, 0)
        self.paged_bytes -= len(entry.message.body)

    def _row(self, i: int) -> Row:
        expires = self.expires[i]
        return (self.ids[i], self.seqs[i], self.sizes[i],
                None if expires != expires else expires, self.flags[i], self.counts[i],
                self.prios[i], self.wheres[i])

    def take(self, n: int) -> list[Row | QueueEntry]:
        """The first ``n`` entries, removed: rows for paged ones, pinned entries as such."""
        start = self.start
        end = min(start + n, len(self.ids))
        out: list[Row | QueueEntry] = []
        pinned = self.pinned
        for i in range(start, end):
            entry = pinned.pop(i, None) if pinned else None
            size = self.sizes[i]
            self.bytes -= size
            if entry is not None:
                out.append(entry)
            else:
                self.paged_bytes -= size
                if self.wheres[i] >= 0:
                    self.in_file -= 1
                out.append(self._row(i))
        self.start = end
        if end >= TRIM_AT and end * 2 >= len(self.ids):
            self._trim()
        return out

    def _trim(self) -> None:
        start = self.start
        for column in (self.ids, self.seqs, self.sizes, self.expires, self.counts, self.flags,
                       self.prios, self.wheres):
            del column[:start]
        if self.pinned:
            self.pinned = {i - start: e for i, e in self.pinned.items()}
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
            if wheres[i] >= 0:
                in_file += 1
            else:
                ids.append(self.ids[i])
        return ids, in_file, rows

    def next_expiry(self) -> float | None:
        """The earliest expiry of any entry in the run (NaN rows have none)."""
        best = None
        for i in range(self.start, len(self.ids)):
            at = self.expires[i]
            if at == at and (best is None or at < best):
                best = at
        return best

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
