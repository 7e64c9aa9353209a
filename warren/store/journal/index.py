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
``messages`` (msg_id -> where its current MESSAGE record is, its seq, its queues with delivered
flags: the refcount is ``len(queues)``), ``queues`` (queue key -> live msg ids in queue order),
``definitions`` ((kind, key) -> value and where its record is), and per segment a
:class:`SegmentLiveness` (which records in it are live, their bytes, and its guards).

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
from enum import IntEnum
from typing import Any

from warren.store.interface import DefinitionKey

Position = tuple[int, int]


class RecordType(IntEnum):
    MESSAGE = 1
    ACK = 2
    PURGE = 3
    DELIVERED = 4
    DEFINITION = 5
    CHECKPOINT = 6


_MESSAGE_HEAD = struct.Struct("<QQH")
_QUEUE_HEAD = struct.Struct("<HB")
_KEY_HEAD = struct.Struct("<H")
_CHECKPOINT = struct.Struct("<QQ")
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
#: The queue state of a message held by one queue, shared by every such message of the index:
#: read-only, replaced (never changed) when the message's state changes (``_solo``).
_SOLO: dict[tuple[str, bool], dict[str, bool]] = {}


def _solo(queues: dict[str, bool]) -> dict[str, bool]:
    """The shared copy of a one-queue state (see ``_SOLO``); other states as they are."""
    if len(queues) != 1:
        return queues
    for item in queues.items():
        shared = _SOLO.get(item)
        if shared is None:
            if len(_SOLO) >= 8192:
                _SOLO.clear()
            shared = _SOLO[item] = dict((item,))
        return shared
    return queues


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


def encode_definition(kind: str, key: str, value: dict[str, Any] | None) -> bytes:
    return json.dumps([kind, key, value], separators=(",", ":")).encode()


def decode_definition(payload: bytes | memoryview) -> tuple[str, str, dict[str, Any] | None]:
    kind, key, value = json.loads(bytes(payload))
    return kind, key, value


def encode_checkpoint(max_msg_id: int, max_seq: int) -> bytes:
    return _CHECKPOINT.pack(max_msg_id, max_seq)


def decode_checkpoint(payload: bytes | memoryview) -> tuple[int, int]:
    return _CHECKPOINT.unpack(bytes(payload))


class MessageLocation:
    """Where a live message's current MESSAGE record is, and which queues still hold it."""

    __slots__ = ("segment", "offset", "length", "seq", "queues", "counts", "size")

    def __init__(self, segment: int, offset: int, length: int, seq: int,
                 queues: dict[str, bool], counts: dict[str, int] | None = None) -> None:
        self.size = 0  # the body's size, set by a lazy recovery (``recover(body_size=...)``)
        self.segment = segment
        self.offset = offset
        self.length = length  # framed length, header included
        self.seq = seq  # publish order; queues are sorted by it at recovery
        self.queues = queues  # queue key -> delivered flag; empty means dead
        self.counts = counts  # queue key -> delivery count, for queues it came back to


class DefinitionLocation:
    __slots__ = ("value", "segment", "offset", "length")

    def __init__(self, value: dict[str, Any], segment: int, offset: int, length: int) -> None:
        self.value = value
        self.segment = segment
        self.offset = offset
        self.length = length


class SegmentLiveness:
    """What keeps one segment alive: its live records and the older segments it guards."""

    __slots__ = ("live", "live_bytes", "guards", "released_at")

    def __init__(self) -> None:
        self.live: dict[int | DefinitionKey, None] = {}  # msg ids and (kind, key)s, in order
        self.live_bytes = 0
        self.guards: set[int] = set()  # older segments whose records this one overrides
        self.released_at: Position = (0, 0)  # log position of the last record that killed one


class JournalIndex:
    """The live state of the journal and, per segment, why it must be kept."""

    def __init__(self) -> None:
        self.messages: dict[int, MessageLocation] = {}
        self.queues: dict[str, dict[int, None]] = {}
        self.definitions: dict[DefinitionKey, DefinitionLocation] = {}
        self.segments: dict[int, SegmentLiveness] = {}
        self.max_msg_id = 0
        self.max_seq = 0

    def _liveness(self, segment: int) -> SegmentLiveness:
        liveness = self.segments.get(segment)
        if liveness is None:
            liveness = self.segments[segment] = SegmentLiveness()
        return liveness

    def _hold(self, segment: int, key: int | DefinitionKey, length: int) -> None:
        liveness = self._liveness(segment)
        liveness.live[key] = None
        liveness.live_bytes += length

    def _release(self, segment: int, key: int | DefinitionKey, length: int, at: Position) -> None:
        liveness = self.segments[segment]
        del liveness.live[key]
        liveness.live_bytes -= length
        if at > liveness.released_at:
            liveness.released_at = at

    def _guard(self, segment: int, older: int) -> None:
        if older != segment:
            self._liveness(segment).guards.add(older)

    def add_message(
        self, msg_id: int, seq: int, queues: dict[str, bool], segment: int, offset: int,
        length: int, counts: dict[str, int] | None = None,
    ) -> None:
        """A MESSAGE record: a new message, or the rewrite of a known one (replaces its state)."""
        old = self.messages.get(msg_id)
        if old is None:
            # a new message (the publish path): no earlier copy to release or guard
            index = self.queues
            for key in queues:
                ids = index.get(key)
                if ids is None:
                    index[key] = {msg_id: None}
                else:
                    ids[msg_id] = None
            self.messages[msg_id] = MessageLocation(segment, offset, length, seq, _solo(queues),
                                                    counts)
            liveness = self.segments.get(segment)
            if liveness is None:
                liveness = self.segments[segment] = SegmentLiveness()
            liveness.live[msg_id] = None
            liveness.live_bytes += length
            if msg_id > self.max_msg_id:
                self.max_msg_id = msg_id
            if seq > self.max_seq:
                self.max_seq = seq
            return
        end = (segment, offset + length)
        if old is not None:
            self._release(old.segment, msg_id, old.length, end)
            self._guard(segment, old.segment)
            for key in old.queues:
                if key not in queues:
                    self._drop_from_queue(key, msg_id)
        for key in queues:
            if old is None or key not in old.queues:
                self.queues.setdefault(key, {})[msg_id] = None
        self.messages[msg_id] = MessageLocation(segment, offset, length, seq, _solo(queues),
                                                counts)
        self._hold(segment, msg_id, length)
        if msg_id > self.max_msg_id:
            self.max_msg_id = msg_id
        if seq > self.max_seq:
            self.max_seq = seq

    def _drop_from_queue(self, queue_key: str, msg_id: int) -> None:
        ids = self.queues.get(queue_key)
        if ids is not None:
            ids.pop(msg_id, None)
            if not ids:
                del self.queues[queue_key]

    def live_in_queue(self, queue_key: str, msg_ids: list[int]) -> list[int]:
        ids = self.queues.get(queue_key)
        if not ids:
            return []
        return [msg_id for msg_id in msg_ids if msg_id in ids]

    def ack(self, queue_key: str, msg_ids: list[int], segment: int, end: Position) -> list[int]:
        """An ACK (or PURGE) record in ``segment``; returns the ids that died (refcount 0)."""
        ids = self.queues.get(queue_key)
        if not ids:
            return []
        dead = []
        for msg_id in msg_ids:
            if msg_id not in ids:
                continue
            del ids[msg_id]
            location = self.messages[msg_id]
            # replaced, not changed: the dict may be shared (``_solo``)
            location.queues = {k: v for k, v in location.queues.items() if k != queue_key}
            self._guard(segment, location.segment)
            if not location.queues:
                del self.messages[msg_id]
                self._release(location.segment, msg_id, location.length, end)
                dead.append(msg_id)
        if not ids:
            del self.queues[queue_key]
        return dead

    def purge(self, queue_key: str, segment: int, end: Position) -> list[int]:
        return self.ack(queue_key, list(self.queues.get(queue_key, ())), segment, end)

    def mark_delivered(self, queue_key: str, msg_ids: list[int]) -> None:
        for msg_id in msg_ids:
            location = self.messages.get(msg_id)
            if location is not None and queue_key in location.queues:
                location.queues = _solo({**location.queues, queue_key: True})

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
            self._release(old.segment, key, old.length, end)
            self._guard(segment, old.segment)
        if value is not None:
            self.definitions[key] = DefinitionLocation(value, segment, offset, length)
            self._hold(segment, key, length)

    def sort_queues(self) -> None:
        """Put each queue in publish order (compaction may have moved records past newer ones)."""
        messages = self.messages
        for key, ids in self.queues.items():
            ordered = sorted(ids, key=lambda msg_id: messages[msg_id].seq)
            self.queues[key] = dict.fromkeys(ordered)

    def delivered(self) -> set[tuple[str, int]]:
        return {
            (key, msg_id)
            for msg_id, location in self.messages.items()
            for key, flag in location.queues.items()
            if flag
        }

    def delivery_counts(self) -> dict[tuple[str, int], int]:
        return {
            (key, msg_id): count
            for msg_id, location in self.messages.items() if location.counts
            for key, count in location.counts.items()
            if key in location.queues
        }

    def forget_segment(self, segment: int) -> None:
        self.segments.pop(segment, None)
