"""The journal's vocabulary (record types and payloads) and its in-memory index.

Record types
============

``MESSAGE``     msg_id u64, seq u64, queue count u16, per queue (key length u16, flags u8,
                key utf-8, and when flag 2 is set a delivery count u32), then the message
                record. Flag 1: delivered; flag 2: the message came back to that queue
                (nack/reject with requeue, consumer gone) as often as the count says.
                Enqueueing is folded into the message record, so a message is never on disk
                without its queues nor the other way round, and a message routed to many
                queues is one record. ``seq`` orders queues: recovery sorts each queue by it,
                because compaction moves records to the head.
                A MESSAGE record for an id already known *replaces* its state (queues,
                delivered flags and delivery counts): that is how compaction rewrites a
                message's live state, and how a delivery count is recorded (the message is
                rewritten with its new count: returns are rare, and the count is then live
                state like the message itself, reclaimed and compacted with it).
``ACK``         queue key length u16, key, msg_ids (u64 each): the queue drops those messages.
``PURGE``       queue key: the queue drops every message it holds.
``DELIVERED``   as ACK: those messages were handed to a consumer (redelivered flag after a
                restart). Lazy and advisory; compaction carries the flags in the rewrite.
``DEFINITION``  JSON ``[kind, key, value]``; ``value`` null deletes. A later record for the same
                (kind, key) supersedes an earlier one.
``RETURNED``    queue key length u16, key, then (msg_id u64, count u32) pairs: those messages
                came back to that queue (nack/reject with requeue, consumer gone) as often as
                the count says; their delivered flags clear. What a return costs instead of a
                rewrite of the whole MESSAGE record, for messages one queue holds (a shared
                one is rewritten as before). Live state like the message: its segment counts
                it as live (``JournalIndex.returned_in``) until the message dies, is rewritten
                (the copy carries the count) or returns again; compaction of the segment
                rewrites the message with its count.
``CHECKPOINT``  max_msg_id u64, max_seq u64: written first in every new segment so the id
                counters survive even when every segment that held their messages is gone (the
                head, which holds the latest checkpoint, is never reclaimed).

Why definitions are journal records rather than a separate file rewritten by fsync+rename:
one fsync covers a queue declaration and the first publish to it, in order, with no second file
to keep consistent after a crash; they are few and rarely change, so they cost little space,
and compaction carries the current ones forward like live messages.

The index
=========

Built by replaying the log at recovery and kept up to date on every write, by the same methods:
``messages`` (msg_id -> where its current MESSAGE record is, packed in one int), ``queues``
(queue key -> live msg ids in queue order with their delivered flags; the queues holding a
message are the ones whose dict has it), ``shared`` and ``counts`` for the few messages routed
to several queues or returned, ``definitions`` ((kind, key) -> value and where its record is),
and per segment a :class:`SegmentLiveness` (how many records in it are live, their bytes, and
its guards). :class:`JournalIndex` says why it is shaped so (memory per queued message).

The reclaim invariant
=====================

*Replaying the segments that exist yields exactly the live state.* A segment may be deleted
when all of the following hold:

1. none of its records is live (every MESSAGE in it is acked everywhere or has a newer copy,
   every DEFINITION in it is superseded or deleted), and that became so at a log position that
   is already durable (so the record that killed them, e.g. the ACK, survives a crash);
2. none of its *guards* exists any more. A record in segment S that overrides state set by a
   record in an older segment T (an ACK or PURGE of a message whose MESSAGE record is in T, a
   DEFINITION superseding or deleting one in T, a MESSAGE rewrite of a copy in T) makes T a
   guard of S. Deleting S while T exists would let T's record come back to life on the next
   recovery (an acked message redelivered, a deleted queue back). Guards always point to older
   segments, so checking segments oldest first frees whole chains, one directory fsync apart
   (a deletion is made durable before the deletions it enables);
3. it is not the head, and all of its bytes are on disk (nothing in flight still writes to it).

Compaction rewrites a mostly dead segment T (live bytes under a quarter, no guards left) by
re-appending its live records at the head; T's live set then empties, and rule 1 deletes T once
the copies are durable. The ACKs that guarded T then guard nothing: the copies list only the
queues that still hold each message.
"""

from __future__ import annotations

import json
import struct
import time
from array import array
from bisect import bisect_right
from itertools import compress, islice, repeat
from enum import IntEnum
from typing import Any

from warren.store.interface import DefinitionKey
from warren.store.journal.array_maps import (
    LocationMap,
    QueueIds,
    ReplayQueue,
    ascending,
    present_flags as _PRESENT_FLAGS,
    location_arrays,
    queue_arrays,
)

Position = tuple[int, int]


class RecordType(IntEnum):
    MESSAGE = 1
    ACK = 2
    PURGE = 3
    DELIVERED = 4
    DEFINITION = 5
    CHECKPOINT = 6
    RETURNED = 7


_MESSAGE_HEAD = struct.Struct("<QQH")
_QUEUE_HEAD = struct.Struct("<HB")
_KEY_HEAD = struct.Struct("<H")
_CHECKPOINT = struct.Struct("<QQ")
_RETURN = struct.Struct("<QI")
#: What one message's entry in a RETURNED record counts as live bytes of its segment.
RETURN_ENTRY_BYTES = _RETURN.size
_COUNT = struct.Struct("<I")
_DELIVERED = 1
_COUNTED = 2


#: Encoded (queue key, delivered) entries of MESSAGE records: the same few keys every time.
_QUEUE_ENTRIES: dict[tuple[str, bool], bytes] = {}


def _queue_entry(key: str, delivered: bool) -> bytes:
    entry = _QUEUE_ENTRIES.get((key, delivered))
    if entry is None:
        raw = key.encode()
        entry = _QUEUE_HEAD.pack(len(raw), 1 if delivered else 0) + raw
        if len(_QUEUE_ENTRIES) >= 4096:
            _QUEUE_ENTRIES.clear()
        _QUEUE_ENTRIES[(key, delivered)] = entry
    return entry


#: Decoded queue keys by their bytes: replay decodes the same few keys for millions of records,
#: and one string each saves the copies (an index entry per message must stay small).
_KEYS: dict[bytes, str] = {}
def encode_message(msg_id: int, seq: int, queues: dict[str, bool],
                   record: bytes | memoryview, counts: dict[str, int] | None = None) -> bytes:
    if not counts and len(queues) == 1:
        for key, delivered in queues.items():
            return b"".join((_MESSAGE_HEAD.pack(msg_id, seq, 1), _queue_entry(key, delivered),
                             record))
    parts: list[bytes | memoryview] = [_MESSAGE_HEAD.pack(msg_id, seq, len(queues))]
    for key, delivered in queues.items():
        count = counts.get(key) if counts else None
        if not count:
            parts.append(_queue_entry(key, delivered))
            continue
        raw = key.encode()
        parts.append(_QUEUE_HEAD.pack(len(raw), _COUNTED | (_DELIVERED if delivered else 0))
                     + raw + _COUNT.pack(min(count, 0xFFFFFFFF)))
    parts.append(record)
    return b"".join(parts)


def decode_message(
    payload: bytes | memoryview,
) -> tuple[int, int, dict[str, bool], int, dict[str, int] | None]:
    """(msg_id, seq, queues with delivered flags, offset of the record in the payload,
    delivery counts by queue or None when none was recorded)."""
    msg_id, seq, count = _MESSAGE_HEAD.unpack_from(payload)
    at = _MESSAGE_HEAD.size
    queues: dict[str, bool] = {}
    counts: dict[str, int] | None = None
    for _ in range(count):
        length, flags = _QUEUE_HEAD.unpack_from(payload, at)
        at += _QUEUE_HEAD.size
        raw = bytes(payload[at:at + length])
        key = _KEYS.get(raw)
        if key is None:
            key = raw.decode()
            if len(_KEYS) >= 4096:
                _KEYS.clear()
            _KEYS[raw] = key
        queues[key] = bool(flags & _DELIVERED)
        at += length
        if flags & _COUNTED:
            if counts is None:
                counts = {}
            (counts[key],) = _COUNT.unpack_from(payload, at)
            at += _COUNT.size
    return msg_id, seq, queues, at, counts


def record_start(payload: bytes | memoryview) -> int:
    """Where the message record starts in a MESSAGE payload: ``decode_message``'s offset
    without decoding the queues (saving the index measures every live message)."""
    at = _MESSAGE_HEAD.size
    for _ in range(_KEY_HEAD.unpack_from(payload, at - _KEY_HEAD.size)[0]):
        length, flags = _QUEUE_HEAD.unpack_from(payload, at)
        at += _QUEUE_HEAD.size + length
        if flags & _COUNTED:
            at += _COUNT.size
    return at


def encode_queue_ids(queue_key: str, msg_ids: list[int]) -> bytes:
    raw = queue_key.encode()
    return _KEY_HEAD.pack(len(raw)) + raw + struct.pack(f"<{len(msg_ids)}Q", *msg_ids)


def decode_queue_ids(payload: bytes | memoryview) -> tuple[str, list[int]]:
    (length,) = _KEY_HEAD.unpack_from(payload)
    start = _KEY_HEAD.size + length
    key = bytes(payload[_KEY_HEAD.size:start]).decode()
    count, rest = divmod(len(payload) - start, 8)
    if rest:
        raise ValueError("id list is not a whole number of u64")
    return key, list(struct.unpack_from(f"<{count}Q", payload, start))


def encode_returned(queue_key: str, counts: dict[int, int]) -> bytes:
    raw = queue_key.encode()
    return b"".join((_KEY_HEAD.pack(len(raw)), raw, *(
        _RETURN.pack(msg_id, min(count, 0xFFFFFFFF)) for msg_id, count in counts.items())))


def decode_returned(payload: bytes | memoryview) -> tuple[str, list[tuple[int, int]]]:
    (length,) = _KEY_HEAD.unpack_from(payload)
    start = _KEY_HEAD.size + length
    key = bytes(payload[_KEY_HEAD.size:start]).decode()
    if (len(payload) - start) % _RETURN.size:
        raise ValueError("return list is not a whole number of (u64, u32)")
    return key, list(_RETURN.iter_unpack(payload[start:]))


def encode_definition(kind: str, key: str, value: dict[str, Any] | None) -> bytes:
    return json.dumps([kind, key, value], separators=(",", ":")).encode()


def decode_definition(payload: bytes | memoryview) -> tuple[str, str, dict[str, Any] | None]:
    kind, key, value = json.loads(bytes(payload))
    return kind, key, value


def encode_checkpoint(max_msg_id: int, max_seq: int) -> bytes:
    return _CHECKPOINT.pack(max_msg_id, max_seq)


def decode_checkpoint(payload: bytes | memoryview) -> tuple[int, int]:
    return _CHECKPOINT.unpack(bytes(payload))


class DefinitionLocation:
    __slots__ = ("value", "segment", "offset", "length")

    def __init__(self, value: dict[str, Any], segment: int, offset: int, length: int) -> None:
        self.value = value
        self.segment = segment
        self.offset = offset
        self.length = length


class SegmentLiveness:
    """What keeps one segment alive: its live records and the older segments it guards.

    Messages are counted, not listed (a set of ids per segment would cost a dict entry per
    message): compaction finds the live ones by reading the segment back (``JournalIndex.live``
    says whether a MESSAGE record at a position is the current copy). Definitions, few, are
    listed."""

    __slots__ = ("live", "definitions", "live_bytes", "guards", "released_at", "purging")

    def __init__(self) -> None:
        self.live = 0   # live MESSAGE records and live RETURNED entries in the segment
        self.definitions: dict[DefinitionKey, None] = {}   # live DEFINITION records, in order
        self.live_bytes = 0
        self.guards: set[int] = set()  # older segments whose records this one overrides
        self.released_at: Position = (0, 0)  # log position of the last record that killed one
        self.purging = 0   # PURGE records in it whose messages are still being released

    def holds_anything(self) -> bool:
        return bool(self.live or self.definitions or self.purging)


#: A location packed into one int: segment number, offset in it, framed length, and the
#: message body's size (what lazy recovery and a saved index report per message, kept here so
#: saving the index never reads records back: one more 30-bit digit of the int, 4-8 bytes).
_SIZE_MASK = SIZE_MASK = (1 << 40) - 1
_LENGTH_SHIFT = LENGTH_SHIFT = 40
_OFFSET_SHIFT = OFFSET_SHIFT = 72
_SEGMENT_SHIFT = SEGMENT_SHIFT = 104
_LOW32 = 0xFFFFFFFF
#: During recovery a queue's value for a message also carries its seq and body size (see
#: ``JournalIndex.finish_recovery``): seq << _SEQ_SHIFT | size << 1 | delivered.
_SEQ_SHIFT = 41


def pack_location(segment: int, offset: int, length: int, size: int = 0) -> int:
    return ((segment << _SEGMENT_SHIFT) | (offset << _OFFSET_SHIFT) | (length << _LENGTH_SHIFT)
            | min(size, _SIZE_MASK))


def unpack_location(packed: int) -> tuple[int, int, int]:
    return (packed >> _SEGMENT_SHIFT, (packed >> _OFFSET_SHIFT) & _LOW32,
            (packed >> _LENGTH_SHIFT) & _LOW32)


def body_size_of(packed: int) -> int:
    """The body size packed with a location (0 when it was not measured)."""
    return packed & _SIZE_MASK


def body_sizes(messages: dict[int, int] | LocationMap, ids: Any) -> array:
    """The body sizes of ``ids`` (in their order) from their packed locations."""
    return array("Q", [messages[msg_id] & _SIZE_MASK for msg_id in ids])


def _array_of(typecode: str, raw: Any) -> array:
    """``raw`` (read by :mod:`.saved_index`: an array, or bytes) as an array of
    ``typecode``: itself when it is one already (no copy)."""
    if isinstance(raw, array) and raw.typecode == typecode:
        return raw
    out = array(typecode)
    out.frombytes(memoryview(raw).cast("B"))
    return out


#: From this many messages (in the index, in a queue) the maps a recovery leaves are
#: :mod:`.array_maps` arrays rather than dicts: a dict entry costs a start about 0.27 µs and
#: 130 bytes a message, but its lookups cost no Python call on the hot path (publish, ack),
#: which is what a small index keeps. (Tests set it to 0 to run the arrays on small data.)
ARRAYS_FROM = 100_000
#: Adds and removals of messages between two folds of the index (``JournalIndex.fold``): what
#: the dicts beside the arrays hold at most, about 130 bytes each (2 MiB), and what one fold
#: moves into the arrays on the reactor thread. The cost is linear in it (at 10M messages,
#: 3.7 ms of CPU for the locations and 2.1 for a queue at 16,384; 15.2 and 8.4 at 65,536),
#: so it is kept to a few milliseconds a fold (``turn_slices``' budget is 4 ms a turn).
FOLD_EVERY = 16_384
#: A queue still a dict becomes arrays at a fold once it holds this many messages (a smaller
#: one keeps the dict's faster lookups: it costs little memory).
QUEUE_ARRAYS_FROM = 16_384
#: What a dict entry beside the arrays costs (the entry, its int, the dict's slack), for the
#: store's accounting of the index (``JournalIndex.nbytes``).
DICT_ENTRY_BYTES = 130


class JournalIndex:
    """The live state of the journal and, per segment, why it must be kept.

    What a message costs here is what decides how deep a queue the broker can hold, so a
    message is two dict entries and one int, with nothing of its own otherwise:

    - ``messages``: msg_id -> its current MESSAGE record's location, packed in one int
      (``pack_location``);
    - ``queues``: queue key -> {msg_id: delivered flag}, in queue order. Which queues hold a
      message is which of these dicts have it; a message is dead when none has;
    - ``shared``: for the few messages whose record names several queues, those keys (a
      message without an entry here is held by the one queue whose dict has it);
    - ``counts``: delivery counts by queue, for the few messages that came back to a queue.

    The record's ``seq`` is kept only during recovery (to sort queues), in the queue dicts'
    values with the body size; afterwards it is read from the record when a rewrite needs it.

    After a start from a saved index or a checkpoint, ``messages`` and the queues whose order
    is ascending are :mod:`.array_maps` objects instead of dicts (the same methods): the
    loaded entries stay in arrays, about 50 bytes a message, and only what comes after is a
    dict entry. Every ``FOLD_EVERY`` messages added or removed, :meth:`fold` moves those dict
    entries into the arrays (and turns a map grown big into arrays), so an index filled while
    running costs what a loaded one does.
    """

    def __init__(self) -> None:
        self.messages: dict[int, int] | LocationMap = {}
        self.queues: dict[str, dict[int, int] | QueueIds | ReplayQueue] = {}
        self.shared: dict[int, tuple[str, ...]] = {}
        self.counts: dict[int, dict[str, int]] = {}
        #: msg_id -> the segment of the RETURNED record that holds its count (live state:
        #: that segment counts it as live; see ``RecordType.RETURNED``)
        self.returned_in: dict[int, int] = {}
        self.definitions: dict[DefinitionKey, DefinitionLocation] = {}
        self.segments: dict[int, SegmentLiveness] = {}
        self.max_msg_id = 0
        self.max_seq = 0
        #: Set while replaying: queue values then carry seq and size (``finish_recovery``).
        self.recovering = False
        #: Detached queues of PURGE records whose messages are released a slice at a time:
        #: [iterator over the detached dict (never changed again), segment of the PURGE, its
        #: end position] (``release_purged``).
        self.purged: list[list[Any]] = []
        #: Messages added and removed since the last :meth:`fold`.
        self.changes = 0
        #: The folds so far and the longest one's seconds (the store's stats).
        self.folds = 0
        self.fold_seconds_max = 0.0
        #: Since the last checkpoint's fork (``track_changes``): the ids up to ``tracked_top``
        #: (the messages it saved) whose entry changed (location, queues, delivered flag,
        #: death), and the queues purged; a delta checkpoint (``export_delta``) writes only
        #: those and what is new. Ids appended as they change, repeats and all: one C call.
        self.tracking = False
        self.tracked_top = 0
        self.changed = array("q")
        self.reset: set[str] = set()

    def _liveness(self, segment: int) -> SegmentLiveness:
        liveness = self.segments.get(segment)
        if liveness is None:
            liveness = self.segments[segment] = SegmentLiveness()
        return liveness

    def release_dead(self, msg_id: int, at: Position) -> None:
        """A message no queue holds any more (its queue purged) is let go now (compaction
        found it before ``release_purged`` did)."""
        self._release_message(msg_id, at)

    def _release_message(self, msg_id: int, at: Position) -> int:
        """A message died (no queue holds it) at log position ``at``; returns where it was
        (its packed location)."""
        packed = self.messages.pop(msg_id)
        if self.tracking:
            self.changed.append(msg_id)
        self.shared.pop(msg_id, None)
        if self.counts:
            self.counts.pop(msg_id, None)
            self._forget_return(msg_id, at)
        liveness = self.segments[packed >> _SEGMENT_SHIFT]
        liveness.live -= 1
        liveness.live_bytes -= (packed >> _LENGTH_SHIFT) & _LOW32
        if at > liveness.released_at:
            liveness.released_at = at
        return packed

    def _forget_return(self, msg_id: int, at: Position) -> None:
        """The message's RETURNED entry (if any) is no longer live state as of ``at``."""
        segment = self.returned_in.pop(msg_id, None)
        if segment is None:
            return
        liveness = self.segments.get(segment)
        if liveness is not None:
            liveness.live -= 1
            liveness.live_bytes -= RETURN_ENTRY_BYTES
            if at > liveness.released_at:
                liveness.released_at = at

    def returned(self, queue_key: str, counts: list[tuple[int, int]], segment: int,
                 end: Position) -> None:
        """A RETURNED record in ``segment``: the messages among ``counts`` the queue holds
        came back to it that often; their delivered flags clear."""
        ids = self.queues.get(queue_key)
        if not ids:
            return
        liveness = self._liveness(segment)
        for msg_id, count in counts:
            value = ids.get(msg_id)
            if value is None:
                continue
            ids[msg_id] = value & ~1 if self.recovering else False
            if self.tracking:
                self.changed.append(msg_id)
            self.counts[msg_id] = {**self.counts.get(msg_id, {}), queue_key: count}
            self._forget_return(msg_id, end)
            self.returned_in[msg_id] = segment
            liveness.live += 1
            liveness.live_bytes += RETURN_ENTRY_BYTES

    def _guard(self, segment: int, older: int) -> None:
        if older != segment:
            self._liveness(segment).guards.add(older)

    def location(self, msg_id: int) -> tuple[int, int, int] | None:
        """(segment, offset, framed length) of a live message's record."""
        packed = self.messages.get(msg_id)
        return None if packed is None else unpack_location(packed)

    def locations(self, msg_ids: list[int]) -> list[int | None]:
        """The packed locations of ``msg_ids`` (None for one not live), in one call (a batch
        read's: ``LocationMap.get_many`` steps through adjacent ids)."""
        messages = self.messages
        if isinstance(messages, LocationMap):
            return messages.get_many(msg_ids)
        get = messages.get
        return [get(msg_id) for msg_id in msg_ids]

    def is_current(self, msg_id: int, segment: int, offset: int) -> bool:
        """Whether the MESSAGE record at (segment, offset) is ``msg_id``'s live copy."""
        packed = self.messages.get(msg_id)
        return packed is not None and packed >> _OFFSET_SHIFT == (segment << 32) | offset

    def holders(self, msg_id: int, candidates: Any) -> dict[str, bool]:
        """The queues among ``candidates`` (keys) that hold ``msg_id``, with delivered flags."""
        held = {}
        queues = self.queues
        for key in self.shared.get(msg_id, candidates):
            ids = queues.get(key)
            if ids is not None:
                value = ids.get(msg_id)
                if value is not None:
                    held[key] = bool(value & 1)
        return held

    def add_message(
        self, msg_id: int, seq: int, queues: dict[str, bool], segment: int, offset: int,
        length: int, counts: dict[str, int] | None = None, size: int = 0,
    ) -> None:
        """A MESSAGE record: a new message, or the rewrite of a known one (replaces its state).
        ``size``: the body's (packed with the location; 0 when the store has no measure)."""
        index = self.queues
        # ids only grow: one above every id so far is new, no lookup (a Python call on arrays)
        old = None if msg_id > self.max_msg_id else self.messages.get(msg_id)
        if old is not None:
            end = (segment, offset + length)
            if self.tracking:
                self.changed.append(msg_id)
            if self.returned_in:   # the copy carries the count
                self._forget_return(msg_id, end)
            old_segment = old >> _SEGMENT_SHIFT
            liveness = self.segments[old_segment]
            liveness.live -= 1
            liveness.live_bytes -= (old >> _LENGTH_SHIFT) & _LOW32
            if end > liveness.released_at:
                liveness.released_at = end
            self._guard(segment, old_segment)
            for key in self.shared.get(msg_id, ()):
                if key not in queues:
                    ids = index.get(key)
                    if ids is not None:
                        ids.pop(msg_id, None)
                        if not ids:
                            del index[key]
        if self.recovering:
            head = (seq << _SEQ_SHIFT) | (min(size, _SIZE_MASK) << 1)
            for key, delivered in queues.items():
                ids = index.get(key)
                if ids is None:
                    ids = index[key] = {}
                ids[msg_id] = head | delivered
        else:
            for key, delivered in queues.items():
                ids = index.get(key)
                if ids is None:
                    ids = index[key] = {}
                ids[msg_id] = delivered
        if len(queues) > 1:
            self.shared[msg_id] = tuple(queues)
        elif old is not None:
            self.shared.pop(msg_id, None)
        if counts:
            self.counts[msg_id] = counts
        elif old is not None and self.counts:
            self.counts.pop(msg_id, None)
        self.messages[msg_id] = ((segment << _SEGMENT_SHIFT) | (offset << _OFFSET_SHIFT)
                                 | (length << _LENGTH_SHIFT) | min(size, _SIZE_MASK))
        held = self.segments.get(segment)
        if held is None:
            held = self.segments[segment] = SegmentLiveness()
        held.live += 1
        held.live_bytes += length
        if msg_id > self.max_msg_id:
            self.max_msg_id = msg_id
        if seq > self.max_seq:
            self.max_seq = seq
        if old is None:
            self.changes += 1
            if self.changes >= FOLD_EVERY:
                self.fold()

    def add_new_messages(self, queue_key: str, msg_ids: list[int], seqs: list[int],
                         packed: list[int], sizes: list[int], segment: int,
                         nbytes: int) -> None:
        """A run of MESSAGE records in ``segment`` (``nbytes`` framed in all) of new messages
        (ids ascending, above every id so far), each held by ``queue_key`` alone, not
        delivered, with no delivery count: what :meth:`add_message` does for each of them,
        with the packed locations given, in C loops (dict updates, then the fold that moves
        them into the arrays when one is due). A replay's (``new_message_runs``)."""
        count = len(msg_ids)
        if not count:
            return
        messages = self.messages
        (messages.recent if isinstance(messages, LocationMap) else messages).update(
            zip(msg_ids, packed))
        ids = self.queues.get(queue_key)
        if ids is None:
            ids = self.queues[queue_key] = {}
        into = ids.recent if isinstance(ids, (QueueIds, ReplayQueue)) else ids
        if self.recovering:   # seq << _SEQ_SHIFT | size << 1 | delivered (0)
            into.update(zip(msg_ids, map(int.__or__, map(int.__lshift__, seqs,
                                                         repeat(_SEQ_SHIFT)),
                                         map(int.__lshift__, sizes, repeat(1)))))
        else:
            into.update(dict.fromkeys(msg_ids, False))
        held = self._liveness(segment)
        held.live += count
        held.live_bytes += nbytes
        self.max_msg_id = msg_ids[-1]
        top = max(seqs)
        if top > self.max_seq:
            self.max_seq = top
        self.changes += count
        if self.changes >= FOLD_EVERY:
            self.fold()

    def live_in_queue(self, queue_key: str, msg_ids: list[int]) -> list[int]:
        ids = self.queues.get(queue_key)
        if not ids:
            return []
        return [msg_id for msg_id in msg_ids if msg_id in ids]

    def _still_held(self, msg_id: int) -> bool:
        """After one holder let go: whether another queue of a shared message holds it."""
        keys = self.shared.get(msg_id)
        if keys is None:
            return False
        queues = self.queues
        for key in keys:
            ids = queues.get(key)
            if ids is not None and msg_id in ids:
                return True
        return False

    def ack(self, queue_key: str, msg_ids: list[int], segment: int, end: Position) -> list[int]:
        """An ACK record in ``segment``; returns the ids that died (refcount 0)."""
        ids = self.queues.get(queue_key)
        if not ids:
            return []
        dead = []
        messages = self.messages
        changed = self.changed if self.tracking else None
        for msg_id in msg_ids:
            if ids.pop(msg_id, None) is None:
                continue
            # one lookup of the location, the pop (a get first would make the pop's lookup
            # miss the map's hint, and bisect, for every message of a drain)
            if not self._still_held(msg_id):
                older = self._release_message(msg_id, end) >> _SEGMENT_SHIFT   # (tracked)
                dead.append(msg_id)
            else:
                older = messages[msg_id] >> _SEGMENT_SHIFT
                if changed is not None:
                    changed.append(msg_id)
            if older != segment:
                self._liveness(segment).guards.add(older)
        if not ids:
            del self.queues[queue_key]
        self.changes += len(dead)
        if self.changes >= FOLD_EVERY:
            self.fold()
        return dead

    def purge(self, queue_key: str, segment: int, end: Position) -> None:
        """A PURGE record in ``segment``: the queue holds nothing from now on (its dict is
        detached at once); its messages are released by ``release_purged``, a slice at a
        time, while the PURGE's segment is kept (``purging``: it guards theirs)."""
        ids = self.queues.pop(queue_key, None)
        if not ids:
            return
        if self.tracking:
            self.reset.add(queue_key)
        self._liveness(segment).purging += 1
        self.purged.append([iter(ids), segment, end])

    def release_purged(self, limit: int) -> list[int]:
        """Release up to ``limit`` messages of detached queues; returns the ids that died.
        (The loop of ``ack``, with the segments' accounts summed per slice: a deleted queue
        of millions goes through here.)"""
        dead: list[int] = []
        messages, shared, counts = self.messages, self.shared, self.counts
        while self.purged and limit > 0:
            ids, segment, end = self.purged[0]
            after = (end[0] << 32) | end[1]
            touched: dict[int, list[int]] = {}   # segment -> [records died, their bytes]
            seen = 0
            for msg_id in islice(ids, limit):
                seen += 1
                packed = messages.get(msg_id)
                if packed is None:
                    continue   # released meanwhile (compaction found it dead)
                if packed >> _OFFSET_SHIFT >= after:
                    continue   # rewritten since, with the queues that hold it then
                older = packed >> _SEGMENT_SHIFT
                died = touched.get(older)
                if died is None:
                    died = touched[older] = [0, 0]
                if msg_id in shared:
                    if self._still_held(msg_id):
                        continue
                    del shared[msg_id]
                del messages[msg_id]
                if counts:
                    counts.pop(msg_id, None)
                    self._forget_return(msg_id, end)
                died[0] += 1
                died[1] += (packed >> _LENGTH_SHIFT) & _LOW32
                dead.append(msg_id)
            liveness = self._liveness(segment)
            for older, (records, nbytes) in touched.items():
                if older != segment:
                    liveness.guards.add(older)
                held = self.segments[older]
                held.live -= records
                held.live_bytes -= nbytes
                if records and end > held.released_at:
                    held.released_at = end
            if seen == limit:
                limit = 0   # (the iterator may be exhausted exactly: the next call ends it)
            else:   # exhausted
                limit -= seen
                self.purged.pop(0)
                liveness.purging -= 1
                if end > liveness.released_at:
                    liveness.released_at = end
        self.changes += len(dead)
        if self.tracking:
            self.changed.extend(dead)
        if self.changes >= FOLD_EVERY:
            self.fold()
        return dead

    def fold(self) -> None:
        """Move what the maps hold in dicts beside their arrays into the arrays, and drop the
        dead slots at the head of the arrays (``array_maps``: C loops over the recent part,
        a memmove for the trim); a map still a dict becomes arrays once big (``messages``
        from ``ARRAYS_FROM``, a queue from ``QUEUE_ARRAYS_FROM``, when its order ascends).
        Queues first: their body sizes are read from the dict beside ``messages``.

        During a replay the queues' values carry their seq and size (sorted by
        ``finish_recovery``): a deep one is folded into a :class:`ReplayQueue` then."""
        started = time.perf_counter()
        self.changes = 0
        messages = self.messages
        for key, ids in self.queues.items():
            if isinstance(ids, QueueIds):
                if ids.recent:
                    ids.fold(self._sizes_of(ids.recent))
                ids.trim()
            elif isinstance(ids, ReplayQueue):
                ids.fold()
                ids.trim()
            elif len(ids) >= QUEUE_ARRAYS_FROM:
                order = array("q", ids)
                if not ascending(order):
                    continue
                if self.recovering:
                    self.queues[key] = ReplayQueue(order, array("Q", ids.values()))
                else:
                    self.queues[key] = QueueIds(order, bytearray(map(int, ids.values())),
                                                self._sizes_of(ids))
        if isinstance(messages, LocationMap):
            messages.fold()
            messages.trim()
        elif len(messages) >= ARRAYS_FROM:
            self.messages = LocationMap(*location_arrays(messages))
        self.folds += 1
        took = time.perf_counter() - started
        if took > self.fold_seconds_max:
            self.fold_seconds_max = took

    def _sizes_of(self, ids: Any) -> array:
        """The body sizes of ``ids`` (live messages) from their locations: from the dict beside
        the arrays of ``messages`` in a C loop, or one lookup each for those in its arrays."""
        messages = self.messages
        lookup = messages.recent if isinstance(messages, LocationMap) else messages
        try:
            return array("Q", map(int.__and__, map(lookup.__getitem__, ids),
                                  repeat(_SIZE_MASK)))
        except KeyError:
            return array("Q", [messages[msg_id] & _SIZE_MASK for msg_id in ids])

    def nbytes(self) -> tuple[int, int]:
        """What the two per-message maps cost, as (bytes in arrays, entries in dicts): the
        arrays' slots (dead ones until trimmed included) and the dict entries (about
        ``DICT_ENTRY_BYTES`` each). The store reports both (``stats``)."""
        in_arrays, in_dicts = 0, 0
        for ids in (self.messages, *self.queues.values()):
            if isinstance(ids, (LocationMap, QueueIds, ReplayQueue)):
                in_arrays += ids.nbytes()
                in_dicts += len(ids.recent)
            else:
                in_dicts += len(ids)
        return in_arrays, in_dicts

    def mark_delivered(self, queue_key: str, msg_ids: list[int]) -> None:
        ids = self.queues.get(queue_key)
        if ids is None:
            return
        for msg_id in msg_ids:
            value = ids.get(msg_id)
            if value is not None:
                ids[msg_id] = value | 1 if self.recovering else True
                if self.tracking:
                    self.changed.append(msg_id)

    def deliver(self, queue_key: str, msg_ids: list[int]) -> list[int]:
        """While running: flag ``msg_ids`` of the queue delivered; returns those that were
        not (``QueueIds.deliver``: one pass over a recovered queue's arrays)."""
        ids = self.queues.get(queue_key)
        if not ids:
            return []
        if isinstance(ids, QueueIds):
            fresh = ids.deliver(msg_ids)
        else:
            fresh = [msg_id for msg_id in msg_ids if ids.get(msg_id) is False]
            for msg_id in fresh:
                ids[msg_id] = True
        if self.tracking:
            self.changed.extend(fresh)
        return fresh

    def put_definition(
        self,
        key: DefinitionKey,
        value: dict[str, Any] | None,
        segment: int,
        offset: int,
        length: int,
    ) -> None:
        end = (segment, offset + length)
        old = self.definitions.pop(key, None)
        if old is not None:
            liveness = self.segments[old.segment]
            del liveness.definitions[key]
            liveness.live_bytes -= old.length
            if end > liveness.released_at:
                liveness.released_at = end
            self._guard(segment, old.segment)
        if value is not None:
            self.definitions[key] = DefinitionLocation(value, segment, offset, length)
            liveness = self._liveness(segment)
            liveness.definitions[key] = None
            liveness.live_bytes += length

    def finish_recovery(self) -> dict[str, tuple[array, array]]:
        """End of replay: each queue in publish order (compaction may have moved records past
        newer ones), its values back to plain delivered flags; returns each queue's ids (a
        new array: the index's own goes on changing) and body sizes in that order (those
        of the index: the caller copies them).

        In arrays and C loops throughout, no list of a queue's ids or values: at 10M
        messages each list was 80 MB, and each list of new ints (the sizes) 360 MB more,
        beside the queue's dict, at the replay's peak."""
        self.recovering = False
        while self.purged:
            self.release_purged(1 << 30)
        out = {}
        for key in list(self.queues):
            ids = self.queues[key]
            values = array("Q", ids.values())
            order = array("q", ids)
            if not ascending(values):
                pairs = sorted(zip(values, order))
                values = array("Q", [v for v, _ in pairs])
                order = array("q", [i for _, i in pairs])
                del pairs
            sizes = array("Q", map(int.__and__, map(int.__rshift__, values, repeat(1)),
                                   repeat(_SIZE_MASK)))
            flags = bytearray(map(int.__and__, values, repeat(1)))
            del values
            self.queues[key] = ids = {}   # the replay's dict goes before the next is made
            if len(order) >= ARRAYS_FROM and ascending(order):
                self.queues[key] = QueueIds(order, flags, sizes)
                out[key] = (order[:], sizes)
            else:
                self.queues[key] = dict(zip(order, map(bool, flags)))
                out[key] = (order, sizes)
        messages = self.messages
        if isinstance(messages, LocationMap):   # folded during the replay
            messages.fold()
            if messages._held == len(messages.ids) and not messages.recent:
                return out   # nothing dead in it: no copy
        if len(messages) >= ARRAYS_FROM:
            self.messages = LocationMap(*location_arrays(messages))
        return out

    def delivered(self) -> set[tuple[str, int]]:
        # ``compress`` walks the flags in C: only the (few) delivered ids cost a Python step
        return {
            (key, msg_id)
            for key, ids in self.queues.items()
            for msg_id in (ids.delivered() if isinstance(ids, QueueIds)
                           else compress(ids, ids.values()))
        }

    def delivery_counts(self) -> dict[tuple[str, int], int]:
        return {
            (key, msg_id): count
            for msg_id, counts in self.counts.items()
            for key, count in counts.items()
            if msg_id in self.queues.get(key, ())
        }

    def forget_segment(self, segment: int) -> None:
        self.segments.pop(segment, None)

    def drop_segments(self, numbers: set[int]) -> int:
        """Forget segments no longer on disk and whatever the index still places in them;
        returns the messages dropped. After a start from a checkpoint: a segment reclaimed
        since held only dead records, but the records that killed some of them may have
        been reclaimed too (an ACK after the checkpoint's position, in a segment that went
        once the segments it guarded had gone). A full replay never sees any of them: this
        gives what it gives."""
        if any(self.segments[n].live for n in numbers if n in self.segments):
            dropped = [msg_id for msg_id, packed in self.messages.items()
                       if packed >> _SEGMENT_SHIFT in numbers]
        else:
            dropped = []
        for msg_id in [m for m, n in self.returned_in.items() if n in numbers]:
            del self.returned_in[msg_id]   # its record is gone: so must its effect have been
        for key in list(self.queues):
            ids = self.queues[key]
            for msg_id in dropped:
                ids.pop(msg_id, None)
            if not ids:
                del self.queues[key]
        for msg_id in dropped:
            self._release_message(msg_id, (0, 0))
        for number in numbers:
            liveness = self.segments.pop(number, None)
            if liveness is not None:
                for definition in liveness.definitions:
                    self.definitions.pop(definition, None)
        return len(dropped)

    def export(self, copy: bool = True) -> dict[str, Any]:
        """The index as plain data for :mod:`.saved_index` (after recovery, nothing purged
        left to release: the caller releases it first). The two big maps as arrays
        (``array_maps``): ``messages`` as (ids ascending, high and low halves of their
        locations); each queue as its ids in queue order (``order``) and their delivered
        flags (``queues``, bytes), with the queues whose order is ascending listed
        (``ascending``: a start keeps those as arrays). New objects throughout, so
        :meth:`snapshot` is this one; with ``copy`` false, the big arrays may be the index's
        own (for a writer that nothing changes the index under: a forked child's frozen
        copy, a clean close; at 10M messages the copies were 400 MB of the child's)."""
        assert not self.recovering and not self.purged
        order, flags = {}, {}
        for key, ids in self.queues.items():
            order[key], flags[key] = queue_arrays(ids, copy)
        return {
            "messages": location_arrays(self.messages, copy),
            "queues": flags,
            "order": order,
            "ascending": [key for key, ids in order.items() if ascending(ids)],
            **self._small_parts(),
        }

    def snapshot(self) -> dict[str, Any]:
        """:meth:`export` with copies of the small maps too, so a checkpoint is serialized
        on another thread while the index goes on changing (when the process cannot fork:
        this runs on the reactor thread, about 0.1-0.2 µs a message)."""
        content = self.export()
        content["shared"] = self.shared.copy()
        content["counts"] = self.counts.copy()   # its values are replaced, never changed
        content["returned_in"] = self.returned_in.copy()
        return content

    def track_changes(self) -> None:
        """A checkpoint was just forked (its writer's copy is frozen): from now on record
        what changes of the messages it saves, for the next one to be a delta."""
        self.tracking = True
        self.tracked_top = self.max_msg_id
        self.changed = array("q")
        self.reset = set()

    def export_delta(self) -> dict[str, Any]:
        """What changed since the last checkpoint's fork (``track_changes``), for
        :mod:`.saved_index` to write as a delta on top of it (in the forked writer, whose
        copy is frozen): the small maps whole (definitions, segments, shared, counts,
        returns: a few entries per segment or per shared or returned message); of the
        messages, those above ``tracked_top`` (new: their locations as arrays, as a fold
        appends them) and the changed ones at or under it (their location now, or gone);
        per queue, a *patch* (its ids above the top in queue order with their flags and
        sizes, and each changed id's flag now, 2 when it left the queue), or the queue whole
        when a patch cannot say it: purged since, a dict (small, or out of order), or its
        new part not ascending from its old one. The queues not listed are gone."""
        assert not self.recovering and not self.purged and self.tracking
        top = self.tracked_top
        changed = array("q", sorted({msg_id for msg_id in self.changed if msg_id <= top}))
        messages = self.messages
        if isinstance(messages, LocationMap):
            start = bisect_right(messages.ids, top)
            present = messages.present[start:]
            new_ids = array("q", compress(messages.ids[start:], present))
            new_high = array("Q", compress(messages.high[start:], present))
            new_low = array("Q", compress(messages.low[start:], present))
            recent = {k: v for k, v in messages.recent.items() if k > top}
        else:
            new_ids, new_high, new_low = array("q"), array("Q"), array("Q")
            recent = {k: v for k, v in messages.items() if k > top}
        if recent:
            more = location_arrays(recent)
            if new_ids and more[0] and more[0][0] <= new_ids[-1]:
                raise ValueError("new message ids do not ascend")
            new_ids.extend(more[0])
            new_high.extend(more[1])
            new_low.extend(more[2])
        moved = {msg_id: messages.get(msg_id) for msg_id in changed}
        kept = {k: v for k, v in moved.items() if v is not None}
        moved_arrays = location_arrays(kept)
        gone = array("q", [k for k, v in moved.items() if v is None])
        queues: dict[str, str] = {}
        parts: dict[str, Any] = {"order": {}, "queues": {}, "sizes": {}, "changed_flags": {}}
        for key, ids in self.queues.items():
            if isinstance(ids, QueueIds) and key not in self.reset:
                new_order = array("q", ids.ids[bisect_right(ids.ids, top):])
                flags = ids.flags[len(ids.ids) - len(new_order):]
                keep = flags.translate(_PRESENT_FLAGS)
                new_order = array("q", compress(new_order, keep))
                new_flags = bytearray(compress(flags, keep))
                tail = [k for k in ids.recent]
                if all(k > top for k in tail):
                    new_order.extend(tail)
                    new_flags.extend(map(int, ids.recent.values()))
                    if ascending(new_order):
                        queues[key] = "patch"
                        parts["order"][key] = new_order
                        parts["queues"][key] = bytes(new_flags)
                        parts["sizes"][key] = body_sizes(messages, new_order)
                        held = [ids.get(msg_id) for msg_id in changed]
                        parts["changed_flags"][key] = bytes(
                            2 if value is None else int(value) for value in held)
                        continue
            queues[key] = "whole"
            parts["order"][key], parts["queues"][key] = queue_arrays(ids)
            parts["sizes"][key] = body_sizes(messages, parts["order"][key])
        return {
            "delta": True,
            "top": top,
            "messages": (new_ids, new_high, new_low, changed, *moved_arrays, gone),
            "queue_modes": queues,
            **parts,
            **self._small_parts(),
        }

    def apply_delta(self, content: dict[str, Any]) -> None:
        """Put a delta (``export_delta``) on top of this index, restored from the checkpoint
        (or delta) it follows. Raises ValueError, KeyError or TypeError when it does not
        fit; the index is then unusable (the caller replays the journal instead)."""
        top = int(content["top"])
        new_ids, new_high, new_low, changed, moved_ids, moved_high, moved_low, gone = (
            _array_of(code, raw) for code, raw in zip("qQQqqQQq", content["messages"]))
        if not len(new_ids) == len(new_high) == len(new_low):
            raise ValueError("a delta's new locations differ in length")
        messages = self.messages
        for msg_id in gone:
            messages.pop(msg_id, None)
        for msg_id, high, low in zip(moved_ids, moved_high, moved_low):
            if msg_id not in messages:
                raise ValueError(f"a delta moves message {msg_id}, not in its base")
            messages[msg_id] = (high << 64) | low
        if new_ids and new_ids[0] <= top:
            raise ValueError("a delta's new messages are not above its top")
        if isinstance(messages, LocationMap) and not messages.recent and (
                not messages.ids or messages.ids[-1] < (new_ids[0] if new_ids else top + 1)):
            messages.ids.extend(new_ids)
            messages.high.extend(new_high)
            messages.low.extend(new_low)
            messages.present.extend(b"\x01" * len(new_ids))
            messages._held += len(new_ids)
            if new_ids:
                messages._top = new_ids[-1]
        else:
            into = messages.recent if isinstance(messages, LocationMap) else messages
            into.update(zip(new_ids, map(int.__or__, map(int.__lshift__, new_high, repeat(64)),
                                         new_low)))
        queues: dict[str, Any] = {}
        modes = content["queue_modes"]
        for key, mode in modes.items():
            order = _array_of("q", content["order"][key])
            flags = content["queues"][key]
            sizes = _array_of("Q", content["sizes"][key])
            if not len(order) == len(flags) == len(sizes):
                raise ValueError(f"queue {key!r}: a delta's parts differ in length")
            if mode == "whole":
                if len(order) >= ARRAYS_FROM and ascending(order):
                    queues[key] = QueueIds(order, bytearray(flags), sizes)
                else:
                    queues[key] = dict(zip(order, map(bool, flags)))
                continue
            if mode != "patch":
                raise ValueError(f"queue {key!r}: no such delta mode {mode!r}")
            ids = self.queues.get(key)
            if ids is None:
                ids = {}
            held = content["changed_flags"][key]
            if len(held) != len(changed):
                raise ValueError(f"queue {key!r}: changed flags differ in length")
            for msg_id, flag in zip(changed, held):
                if flag == 2:
                    ids.pop(msg_id, None)
                elif msg_id in ids:
                    ids[msg_id] = bool(flag)
                else:
                    raise ValueError(f"queue {key!r}: message {msg_id} not in the base")
            if isinstance(ids, QueueIds):
                if ids.recent or (ids.ids and order and order[0] <= ids.ids[-1]) or \
                        not ascending(order):
                    raise ValueError(f"queue {key!r}: a patch does not follow its base")
                if order:   # what ``QueueIds.fold`` does, from arrays: no dict between
                    if ids.sizes is not None:
                        ids.sizes.extend(sizes)
                    ids.flags.extend(flags)
                    ids.ids.extend(order)
                    ids._held += len(order)
                    ids._top = order[-1]
            elif isinstance(ids, dict):
                ids.update(zip(order, map(bool, flags)))
                if len(ids) >= ARRAYS_FROM:
                    whole = array("q", ids)
                    if ascending(whole):
                        ids = QueueIds(whole, bytearray(map(int, ids.values())),
                                       body_sizes(messages, whole))
            else:
                raise TypeError(f"queue {key!r}: a replay's map after a recovery")
            queues[key] = ids
        self.queues = {key: ids for key, ids in queues.items() if ids}
        self.shared = content["shared"]
        self.counts = content["counts"]
        self.returned_in = content["returned_in"]
        if not all(isinstance(part, dict) for part in (self.shared, self.counts,
                                                      self.returned_in)):
            raise TypeError("a delta's small maps are not mappings")
        self.definitions = {}
        self.segments = {}
        self._restore_small_parts(content)

    def deltas_applied(self) -> None:
        """After the deltas on a restored index: maps grown big as dicts become arrays (as
        ``restored`` leaves them), the queues' dead slots at the head dropped."""
        messages = self.messages
        if isinstance(messages, dict) and len(messages) >= ARRAYS_FROM:
            self.messages = LocationMap(*location_arrays(messages))
        elif isinstance(messages, LocationMap):
            messages.fold()
            messages.trim()
        for ids in self.queues.values():
            if isinstance(ids, QueueIds):
                ids.trim()

    @classmethod
    def restored(cls, content: dict[str, Any]) -> "JournalIndex":
        """An index from :meth:`export`'s data; raises KeyError, TypeError or ValueError when
        the data is not shaped so."""
        index = cls()
        ids, high, low = (_array_of(code, raw) for code, raw in zip("qQQ", content["messages"]))
        messages: Any = LocationMap(ids, high, low)
        shared = content["shared"]
        counts = content["counts"]
        flags_of, order_of = content["queues"], content["order"]
        if not all(isinstance(part, dict) for part in (flags_of, order_of, shared, counts)):
            raise TypeError("saved index parts are not mappings")
        kept = set(content["ascending"])
        queues: dict[str, Any] = {}
        for key, flags in flags_of.items():
            if not isinstance(key, str):
                raise TypeError("a saved queue's name is not a string")
            order = _array_of("q", order_of[key])
            if len(order) != len(flags):
                raise ValueError(f"queue {key!r}: ids and delivered flags differ in length")
            # what can be checked without a pass over the messages (the CRC covers the rest)
            if order and (order[0] not in messages or order[-1] not in messages):
                raise ValueError(f"queue {key!r} holds messages without a location")
            if key in kept and len(order) >= ARRAYS_FROM:
                raw = content.get("sizes", {}).get(key)
                sizes = None
                if raw is not None and memoryview(raw).nbytes == 8 * len(order):
                    sizes = _array_of("Q", raw)
                queues[key] = QueueIds(order, bytearray(flags), sizes)
            else:   # not ascending: no bisecting it
                queues[key] = dict(zip(order, map(bool, flags)))
        if len(messages) < ARRAYS_FROM:   # small: dicts, whose lookups cost no Python call
            messages = dict(messages.items())
        index.messages, index.queues, index.shared, index.counts = messages, queues, shared, counts
        index.returned_in = content["returned_in"]
        if not isinstance(index.returned_in, dict):
            raise TypeError("saved returns are not a mapping")
        index._restore_small_parts(content)
        return index

    def _small_parts(self) -> dict[str, Any]:
        """The parts a checkpoint and a delta both save whole: the shared, counts and returns
        maps (by reference: a snapshot copies them), definitions, segments, the highest id
        and seq."""
        return {
            "shared": self.shared,
            "counts": self.counts,
            "returned_in": self.returned_in,
            "definitions": [(kind, key, d.value, d.segment, d.offset, d.length)
                            for (kind, key), d in self.definitions.items()],
            "segments": [(number, s.live, list(s.definitions), s.live_bytes, list(s.guards),
                          s.released_at, s.purging) for number, s in self.segments.items()],
            "max_msg_id": self.max_msg_id,
            "max_seq": self.max_seq,
        }

    def _restore_small_parts(self, content: dict[str, Any]) -> None:
        """The parts a checkpoint and a delta both save whole (definitions, segments, the
        highest id and seq), into this index's empty maps."""
        for kind, key, value, segment, offset, length in content["definitions"]:
            self.definitions[(kind, key)] = DefinitionLocation(value, segment, offset, length)
        for number, live, definitions, live_bytes, guards, released_at, purging in \
                content["segments"]:
            liveness = self.segments[number] = SegmentLiveness()
            liveness.live = live
            liveness.definitions = {(kind, key): None for kind, key in definitions}
            liveness.live_bytes = live_bytes
            liveness.guards = set(guards)
            liveness.released_at = tuple(released_at)
            liveness.purging = purging
        self.max_msg_id = int(content["max_msg_id"])
        self.max_seq = int(content["max_seq"])
