"""The journal index's two per-message maps as a start loads them: arrays, not dicts.

Why: a start from a checkpoint (or the index saved at a clean stop) must not cost time in
proportion to the depth of the queues. Building a dict entry (and its int objects) per message
costs about 0.27 s per million messages, 2.7 s at 10M, before the broker can listen; copying a
few arrays from the file costs a few memcpys. So what a start loads stays as sorted arrays (the
*base*), with a plain dict beside it for what is added afterwards (the *recent* entries), and
only the entries actually touched (acked, rewritten, delivered) cost a Python step each. The
base also costs less memory: 25 bytes a message for a location, 9 for a queue's entry,
against about 100 for dict entries and their ints.

Both classes answer the dict methods :class:`~warren.store.journal.index.JournalIndex` and
the store use (``get``, ``[]``, ``pop``, ``in``, ``len``, iteration in order...), so the
index works the same on either; a queue or a map that was never loaded is a plain dict.

Lookups in the base bisect its sorted ids (C), starting with a guess just past the previous
hit (a deep queue is acked from its head, in order: one comparison). An entry removed from the
base is flagged, not moved: its slot stays until :meth:`~LocationMap.trim` drops the dead
slots at the head of the base (a queue is acked from its head), or a start loads what a
checkpoint wrote of what is left.
The ids recent entries get are above every id of the base (message ids only grow, and an id
the base holds is updated in place), so base then recent is ascending as a whole.

The index *folds* the recent entries into the base as they accumulate (``fold``: a sort that
finds them sorted and a few array extends, C loops over the recent part only, amortised), so a
queue filled while the broker runs costs what a recovered one does rather than ~130 bytes of
dict entries and ints a message (``JournalIndex.fold`` says when).
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import chain, compress, islice, repeat
from operator import gt
from typing import Any

_MASK64 = (1 << 64) - 1
#: A queue entry's flag byte: not delivered, delivered, removed.
_GONE = 2
#: Flag bytes -> 1 for the entries still there (for ``compress``), and -> delivered or not.
_PRESENT = bytes([1, 1, 0]) + bytes(253)
_DELIVERED = bytes([0, 1, 0]) + bytes(253)
#: (for the index's delta checkpoints: which of a queue's slots are still there)
present_flags = _PRESENT
_MISSING = object()


#: Dead slots at the head of a base dropped at once, at the least (``trim``).
TRIM_FROM = 4096


def _split(packed: int) -> tuple[int, int]:
    return packed >> 64, packed & _MASK64


class _LoadedIds:
    """What both maps share: the ids a start loaded, ascending in an array and found by
    bisecting (from a hint, as lookups mostly walk forward), and a dict of what came since."""

    __slots__ = ("ids", "recent", "_held", "_hint", "_top")

    def _load(self, ids: array) -> None:
        self.ids = ids
        self.recent: dict[int, Any] = {}
        self._held = len(ids)   # entries of the base still present
        self._hint = 0
        self._top = ids[-1] if ids else -1   # a new message's id is above: no bisecting

    def _index(self, msg_id: int) -> int:
        """Where ``msg_id`` is among the loaded ids, or -1; whether its entry is still
        present is the subclass's to say (``_find``)."""
        if msg_id > self._top:
            return -1
        ids = self.ids
        at = self._hint
        if not (at < len(ids) and ids[at] == msg_id):
            at = bisect_left(ids, msg_id)
            if at == len(ids) or ids[at] != msg_id:
                return -1
        return at

    def get(self, msg_id: int, default: Any = None) -> Any:
        raise NotImplementedError

    def __getitem__(self, msg_id: int) -> Any:
        value = self.get(msg_id)
        if value is None:
            raise KeyError(msg_id)
        return value

    def __contains__(self, msg_id: object) -> bool:
        return self.get(msg_id) is not None  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._held + len(self.recent)

    def keys(self) -> Iterator[int]:
        return iter(self)

    def _trim_at(self, first: int) -> bool:
        """Whether a dead head of ``first`` slots is worth dropping now: at least half of the
        base (so each slot is moved O(1) times over its life) and a few thousand."""
        return first >= TRIM_FROM and 2 * first >= len(self.ids)

    def _columns(self) -> tuple[Any, ...]:
        """The subclass's arrays beside ``ids``, one slot per id."""
        raise NotImplementedError

    def _first_present(self) -> int:
        """The first slot whose entry is still there, or -1."""
        raise NotImplementedError

    def trim(self) -> int:
        """Drop the dead slots at the head of the base (a memmove of what follows) once they
        are worth it (``_trim_at``); returns how many went."""
        if self._held == len(self.ids):
            return 0
        first = self._first_present()
        if first < 0:
            first = len(self.ids)
        if not self._trim_at(first):
            return 0
        self._trimmed_ids(first)
        for column in self._columns():
            del column[:first]
        if not self.ids:
            self._top = -1
        return first

    def nbytes(self) -> int:
        """The base's bytes as allocated: the ids and the columns beside them, with what the
        arrays hold in reserve."""
        return sum(map(sys.getsizeof, (self.ids, *self._columns())))

    def _trimmed_ids(self, first: int) -> None:
        """Drop the first ``first`` ids. The ids go first: a reader on another thread (a
        compaction's, ``JournalIndex.is_current``) that bisects meanwhile finds a slot of the
        other arrays that is still long enough, at worst another message's (not current: it
        looks again later), never an IndexError."""
        del self.ids[:first]
        self._hint = max(0, self._hint - first)


class _FlaggedIds(_LoadedIds):
    """A map whose loaded ids each have a presence byte (``present``, 0 once removed) and one
    value in the subclass's columns: the dict methods over the base and the recent dict are
    the same for :class:`LocationMap` and :class:`ReplayQueue`, which say only how a slot's
    value is read (``_value_at``) and written (``_store_at``)."""

    __slots__ = ("present",)

    def _load_flagged(self, ids: array) -> None:
        self._load(ids)
        self.present = bytearray(b"\x01") * len(ids)

    def _value_at(self, at: int) -> int:
        raise NotImplementedError

    def _store_at(self, at: int, value: int) -> None:
        raise NotImplementedError

    def _find(self, msg_id: int) -> int:
        at = self._index(msg_id)
        if at < 0 or not self.present[at]:
            return -1
        self._hint = at + 1
        return at

    def get(self, msg_id: int, default: Any = None) -> Any:
        value = self.recent.get(msg_id)
        if value is not None:
            return value
        if self._held:
            at = self._find(msg_id)
            if at >= 0:
                return self._value_at(at)
        return default

    def __setitem__(self, msg_id: int, value: int) -> None:
        if msg_id > self._top:   # a new message: no lookup in the base
            self.recent[msg_id] = value
            return
        if self._held and msg_id not in self.recent:
            at = self._find(msg_id)
            if at >= 0:
                self._store_at(at, value)
                return
        self.recent[msg_id] = value

    def pop(self, msg_id: int, default: Any = _MISSING) -> Any:
        value = self.recent.pop(msg_id, None)
        if value is not None:
            return value
        if self._held:
            at = self._find(msg_id)
            if at >= 0:
                self.present[at] = 0
                self._held -= 1
                return self._value_at(at)
        if default is _MISSING:
            raise KeyError(msg_id)
        return default

    def __delitem__(self, msg_id: int) -> None:
        self.pop(msg_id)

    def __iter__(self) -> Iterator[int]:
        return chain(compress(self.ids, self.present), self.recent)

    def _first_present(self) -> int:
        return self.present.find(1)


class LocationMap(_FlaggedIds):
    """msg_id -> packed location (``index.pack_location``: more than 64 bits, so two u64
    arrays, high and low halves) for the messages a start loaded, plus a dict of the rest."""

    __slots__ = ("high", "low")

    def __init__(self, ids: array, high: array, low: array) -> None:
        if not len(ids) == len(high) == len(low):
            raise ValueError("location arrays of different lengths")
        self._load_flagged(ids)
        self.high, self.low = high, low

    def _value_at(self, at: int) -> int:
        return (self.high[at] << 64) | self.low[at]

    def _store_at(self, at: int, value: int) -> None:
        self.high[at], self.low[at] = _split(value)

    def get_many(self, msg_ids: list[int]) -> list[int | None]:
        """``get`` of each of ``msg_ids``, in one call: ids that follow each other in the
        base (a read-ahead at a recovered queue's head: the next ids in order) are found by
        stepping to the next slot, one bisect for the run instead of one per id."""
        recent, ids, present, high, low = self.recent, self.ids, self.present, self.high, self.low
        held, top, count = self._held, self._top, len(self.ids)
        out: list[int | None] = []
        at = -1
        for msg_id in msg_ids:
            value = recent.get(msg_id)
            if value is not None or not held or msg_id > top:
                out.append(value)
                continue
            at += 1
            if not (0 < at < count and ids[at] == msg_id):
                at = bisect_left(ids, msg_id)
                if at == count or ids[at] != msg_id:
                    at = -1
                    out.append(None)
                    continue
            out.append((high[at] << 64) | low[at] if present[at] else None)
        if at >= 0:
            self._hint = at + 1
        return out

    def values(self) -> Iterator[int]:
        present = self.present
        base = ((h << 64) | lo for h, lo in zip(compress(self.high, present),
                                                 compress(self.low, present)))
        return chain(base, self.recent.values())

    def items(self) -> Iterator[tuple[int, int]]:
        return zip(iter(self), self.values())

    def fold(self) -> int:
        """Move the recent entries into the base arrays; returns how many moved. An id not
        above the base's (a replay meeting the copy of a message whose first record went
        with its segment) stays in the dict. The other arrays grow before the ids, and the
        dict goes last: a reader on another thread finds each entry in one or the other
        throughout (see ``_trimmed_ids``)."""
        recent = self.recent
        if not recent:
            return 0
        keys = sorted(recent)   # timsort: one pass over ids that came in order
        cut = bisect_right(keys, self._top)
        if cut == len(keys):
            return 0
        stay = {msg_id: recent[msg_id] for msg_id in keys[:cut]}
        del keys[:cut]
        values = list(map(recent.__getitem__, keys))
        self.high.extend(array("Q", map(int.__rshift__, values, repeat(64))))
        self.low.extend(array("Q", map(int.__and__, values, repeat(_MASK64))))
        self.present.extend(b"\x01" * len(keys))
        self.ids.extend(array("q", keys))
        self._held += len(keys)
        self._top = keys[-1]
        self.recent = stay
        return len(keys)

    def _columns(self) -> tuple[Any, ...]:
        return (self.high, self.low, self.present)   # with the ids: 25 bytes a slot


def location_arrays(messages: Any, copy: bool = True) -> tuple[array, array, array]:
    """``messages`` (a dict or a :class:`LocationMap`) as three arrays, ids ascending: what
    a checkpoint saves and :class:`LocationMap` loads. New arrays, unless ``copy`` is false
    (a forked checkpoint writer's frozen index, a clean close's: nothing changes them
    before they are written) and a folded map's own are those: then no copy of 24 bytes a
    message is made."""
    if isinstance(messages, LocationMap):
        present = messages.present
        if not copy and messages._held == len(present) and not messages.recent:
            return messages.ids, messages.high, messages.low
        if messages._held == len(present):
            ids, high, low = messages.ids[:], messages.high[:], messages.low[:]
        else:
            ids = array("q", compress(messages.ids, present))
            high = array("Q", compress(messages.high, present))
            low = array("Q", compress(messages.low, present))
        recent = messages.recent
        if recent and ids and min(recent) <= ids[-1]:   # not expected (see the module doc)
            return location_arrays(dict(messages.items()))
    else:
        ids, high, low, recent = array("q"), array("Q"), array("Q"), messages
    keys = sorted(recent)
    ids.extend(keys)
    # C loops (``map`` of int methods), no list of new ints: this runs in the forked child
    # over every message after a replay, where each temporary copy is memory too
    values = list(map(recent.__getitem__, keys))
    high.extend(array("Q", map(int.__rshift__, values, repeat(64))))
    low.extend(array("Q", map(int.__and__, values, repeat(_MASK64))))
    return ids, high, low


class QueueIds(_LoadedIds):
    """A queue's msg_id -> delivered flag, in queue order, for the ids a start loaded (ascending:
    a queue whose saved order is not stays a dict) plus a dict of those added since."""

    __slots__ = ("flags", "sizes")

    def __init__(self, ids: array, flags: bytearray, sizes: array | None = None) -> None:
        if len(ids) != len(flags) or (sizes is not None and len(sizes) != len(ids)):
            raise ValueError("a queue's ids, flags and sizes differ in length")
        self._load(ids)
        self.flags = flags
        #: the body sizes of ``ids`` as saved (what saving the queue again needs, without a
        #: lookup of each location: ``queue_sizes``)
        self.sizes = sizes

    def _find(self, msg_id: int) -> int:
        at = self._index(msg_id)
        if at < 0 or self.flags[at] == _GONE:
            return -1
        self._hint = at + 1
        return at

    def get(self, msg_id: int, default: Any = None) -> Any:
        value = self.recent.get(msg_id)
        if value is not None:
            return value
        if self._held:
            at = self._find(msg_id)
            if at >= 0:
                return self.flags[at] == 1
        return default

    def __setitem__(self, msg_id: int, delivered: int) -> None:
        if msg_id > self._top:   # a new message: no lookup in the base
            self.recent[msg_id] = bool(delivered)
            return
        if self._held and msg_id not in self.recent:
            at = self._find(msg_id)
            if at >= 0:
                self.flags[at] = 1 if delivered else 0
                return
        self.recent[msg_id] = bool(delivered)

    def deliver(self, msg_ids: list[int]) -> list[int]:
        """Flag each of ``msg_ids`` this queue holds delivered; returns those that were not
        (what a DELIVERED record must say). One pass: ids that follow each other in the base
        (a consumer taking a recovered queue's head in order) are found by stepping to the
        next slot, not by a bisect and three lookups each."""
        recent, ids, flags = self.recent, self.ids, self.flags
        top, count = self._top, len(self.ids)
        fresh = []
        at = -1
        for msg_id in msg_ids:
            value = recent.get(msg_id)
            if value is not None or msg_id > top or not self._held:
                if value is False:
                    recent[msg_id] = True
                    fresh.append(msg_id)
                continue
            at += 1
            if not (0 < at < count and ids[at] == msg_id):
                at = bisect_left(ids, msg_id)
                if at == count or ids[at] != msg_id:
                    at = -1
                    continue
            if flags[at] == 0:
                flags[at] = 1
                fresh.append(msg_id)
        if at >= 0:
            self._hint = at + 1
        return fresh

    def pop(self, msg_id: int, default: Any = _MISSING) -> Any:
        value = self.recent.pop(msg_id, None)
        if value is not None:
            return value
        if self._held:
            at = self._find(msg_id)
            if at >= 0:
                value = self.flags[at] == 1
                self.flags[at] = _GONE
                self._held -= 1
                return value
        if default is _MISSING:
            raise KeyError(msg_id)
        return default

    def __iter__(self) -> Iterator[int]:
        if self._held == len(self.ids):
            return chain(self.ids, self.recent)
        return chain(compress(self.ids, self.flags.translate(_PRESENT)), self.recent)

    def __reversed__(self) -> Iterator[int]:
        yield from reversed(self.recent)
        if self._held:
            ids, flags = self.ids, self.flags
            for at in range(len(ids) - 1, -1, -1):
                if flags[at] != _GONE:
                    yield ids[at]

    def values(self) -> Iterator[bool]:
        flags = self.flags
        base = map(bool, compress(flags.translate(_DELIVERED), flags.translate(_PRESENT)))
        return chain(base, self.recent.values())

    def fold(self, sizes: array | None) -> int:
        """Move the recent entries into the base arrays, ``sizes`` their body sizes in queue
        order (None: the base then keeps none, ``queue_sizes`` looks them up); returns how
        many moved: none when their order does not ascend from the base's (a queue whose
        recent part is not so keeps it as a dict). Ordered for readers as ``LocationMap``'s."""
        recent = self.recent
        if not recent:
            return 0
        keys = array("q", recent)
        if keys[0] <= self._top or not ascending(keys):
            return 0
        if self.sizes is not None:
            if sizes is None or len(sizes) != len(keys):
                self.sizes = None
            else:
                self.sizes.extend(sizes)
        self.flags.extend(map(int, recent.values()))
        self.ids.extend(keys)
        self._held += len(keys)
        self._top = keys[-1]
        self.recent = {}
        return len(keys)

    def _columns(self) -> tuple[Any, ...]:
        # with the ids: 9 bytes a slot, 17 with sizes
        return (self.flags,) if self.sizes is None else (self.flags, self.sizes)

    def _first_present(self) -> int:
        return self.flags.translate(_PRESENT).find(1)

    def delivered(self) -> Iterator[int]:
        """The ids with their delivered flag set: ``find`` jumps from one to the next in C
        (after a crash they are the few that were out with consumers)."""
        ids, flags = self.ids, self.flags
        found = []
        at = flags.find(1)
        while at >= 0:
            found.append(ids[at])
            at = flags.find(1, at + 1)
        return chain(found, (msg_id for msg_id, flag in self.recent.items() if flag))


class ReplayQueue(_FlaggedIds):
    """A queue's msg_id -> its value during a replay (``JournalIndex.recovering``: seq, body
    size and delivered flag packed in 64 bits), in replay order, as arrays: what a full
    replay of a deep queue folds its dict into (``JournalIndex.fold``), 17 bytes a message
    where the dict cost about 150 (entry, key and value ints) at the replay's peak; the end
    of the replay sorts and turns it into a :class:`QueueIds`. The same dict methods."""

    __slots__ = ("vals",)

    def __init__(self, ids: array, vals: array) -> None:
        if len(ids) != len(vals):
            raise ValueError("a replayed queue's ids and values differ in length")
        self._load_flagged(ids)
        self.vals = vals

    def _value_at(self, at: int) -> int:
        return self.vals[at]

    def _store_at(self, at: int, value: int) -> None:
        self.vals[at] = value

    def values(self) -> Iterator[int]:
        return chain(compress(self.vals, self.present), self.recent.values())

    def fold(self) -> int:
        """As :meth:`QueueIds.fold` (the recent entries kept when they do not ascend)."""
        recent = self.recent
        if not recent:
            return 0
        keys = array("q", recent)
        if keys[0] <= self._top or not ascending(keys):
            return 0
        self.vals.extend(array("Q", recent.values()))
        self.present.extend(b"\x01" * len(keys))
        self.ids.extend(keys)
        self._held += len(keys)
        self._top = keys[-1]
        self.recent = {}
        return len(keys)

    def _columns(self) -> tuple[Any, ...]:
        return (self.vals, self.present)


def queue_order(ids: Any, copy: bool = True) -> array:
    """A queue's ids in queue order as a new array (a copy of the loaded ones when none of
    them went: a memcpy, then the recent ones); unless ``copy`` is false (as for
    ``location_arrays``), then the loaded ones themselves when they are all of it."""
    if not isinstance(ids, QueueIds):
        return array("q", ids)
    if not copy and ids._held == len(ids.ids) and not ids.recent:
        return ids.ids
    if ids._held == len(ids.ids):
        order = ids.ids[:]
    else:
        order = array("q", compress(ids.ids, ids.flags.translate(_PRESENT)))
    order.extend(ids.recent)
    return order


def queue_arrays(ids: Any, copy: bool = True) -> tuple[array, bytes]:
    """A queue's map (a dict or a :class:`QueueIds`) as its ids in queue order and their
    delivered flags (bytes of 0/1): what a checkpoint saves. New objects (see above), the
    ids possibly not (``copy``, see ``queue_order``)."""
    if isinstance(ids, QueueIds):
        if ids._held == len(ids.ids):
            flags = bytes(ids.flags)
        else:
            flags = bytes(compress(ids.flags, ids.flags.translate(_PRESENT)))
        return queue_order(ids, copy), flags + bytes(map(bool, ids.recent.values()))
    return array("q", ids), bytes(map(bool, ids.values()))


def queue_sizes(ids: Any, messages: Any, size_mask: int, copy: bool = True) -> array:
    """The body sizes of a queue's messages in queue order (``ids``: a dict or a
    :class:`QueueIds`), ``size_mask`` taking them from a message's packed location: the
    loaded part of a queue from its saved sizes (C), the rest from the locations (the recent
    ones from the dict beside a :class:`LocationMap`, no bisecting), in C loops. A new
    array, or the saved sizes themselves when they are all of it and not ``copy``."""
    rest: Any = ids
    sizes = array("Q")
    if isinstance(ids, QueueIds) and ids.sizes is not None:
        if ids._held == len(ids.ids) and not ids.recent and not copy:
            return ids.sizes
        if ids._held == len(ids.ids):
            sizes.extend(ids.sizes)
        else:
            sizes.extend(compress(ids.sizes, ids.flags.translate(_PRESENT)))
        rest = ids.recent
    elif isinstance(ids, QueueIds):
        rest = list(ids)
    lookup = messages.recent if isinstance(messages, LocationMap) else messages
    try:
        sizes.extend(array("Q", map(int.__and__, map(lookup.__getitem__, rest),
                                    repeat(size_mask))))
    except KeyError:   # one in the loaded arrays (a dict queue of loaded messages)
        sizes.extend(array("Q", [messages[msg_id] & size_mask for msg_id in rest]))
    return sizes


def ascending(order: Any) -> bool:
    """Whether ``order`` is ascending (a checkpoint's writer asks, off the reactor; so does
    the end of a replay). One C loop comparing neighbours, which makes one int at a time:
    sorting a copy to compare made an int object per message at once (400 MB at 10M)."""
    return not any(map(gt, order, islice(order, 1, None)))
