"""Replay of a journal's runs of new messages, a run applied to the index at once.

Why: what a start after kill -9 replays is mostly MESSAGE records of messages published since
the checkpoint, one queue each, in id order (a fill of a deep queue). Decoding each into a
dict of queues and handing it to ``JournalIndex.add_message`` cost about 5 µs a record: a
tail of a million records kept the broker from listening for five seconds. Such records
differ from one another only in their id, seq and record: the bytes between (queue count 1,
the queue's key, no flags) are the same for the whole run, and so is the record's head
before the body (exchange, routing key, properties) for a publisher's stream. So a record
joins the current run when those bytes are the run's (one comparison each), its body size is
the record's length less the known head's, and the run goes into the index in one call
(``JournalIndex.add_new_messages``: dict updates and a fold, C loops).

A record joins a run only if it is a *new* message (id above every id so far: nothing to
replace, nothing to release), held by one queue, not delivered, with no delivery count.
Anything else (an ack, a rewrite by compaction, a message routed to several queues) first
applies the run, then takes the record-by-record path, so the index sees the records in
log order. A run also ends at a segment's end (the segment's liveness counts it) and every
``RUN_MAX`` records (what the dicts hold before the fold).
"""

from __future__ import annotations

import struct
from warren.store.interface import BodySize
from warren.store.journal.index import LENGTH_SHIFT, OFFSET_SHIFT, SEGMENT_SHIFT, JournalIndex
from warren.store.journal.segment import HEADER_SIZE

_IDS = struct.Struct("<QQ")
#: queue count u16, then the one queue's key length u16 and flags u8 (``index._QUEUE_HEAD``)
_ONE_QUEUE = struct.Struct("<HHB")
#: Records applied at once at most (the index's dicts hold them until its fold).
RUN_MAX = 16_384


class NewMessageRuns:
    """Collects a run of new single-queue MESSAGE records (:meth:`take`) and applies it
    (:meth:`apply`); ``queues_seen`` gathers the keys of the queues runs went to."""

    __slots__ = ("index", "body_size", "queues_seen", "key", "segment", "fixed", "body_at",
                 "ids", "seqs", "packed", "sizes", "nbytes", "taken")

    def __init__(self, index: JournalIndex, body_size: BodySize) -> None:
        self.index = index
        self.body_size = body_size
        self.queues_seen: set[str] = set()
        self.key = ""           # the run's queue
        self.segment = -1       # and segment
        #: The bytes between seq and body the last record taken had (queue count, key,
        #: flags, the record's head), and where its body started: a record with the same
        #: bytes there has its body there too (a head's bytes say where it ends).
        self.fixed = b"\xff"
        self.body_at = 0
        self.ids: list[int] = []
        self.seqs: list[int] = []
        self.packed: list[int] = []
        self.sizes: list[int] = []
        self.nbytes = 0
        self.taken = 0   # records taken into runs so far

    def take(self, segment: int, offset: int, payload: memoryview) -> bool:
        """Add the MESSAGE record to the run if it is one of a new message for one queue;
        False (nothing taken) otherwise: the caller applies the run, then the record."""
        msg_id, seq = _IDS.unpack_from(payload)
        ids = self.ids
        if msg_id <= (ids[-1] if ids else self.index.max_msg_id):
            return False
        body_at = self.body_at
        if (payload[16:body_at] != self.fixed or segment != self.segment
                or len(ids) >= RUN_MAX):
            body_at = self._unlike_the_last(segment, payload)
            if body_at < 0:
                return False
            ids = self.ids   # a new list if a new run started
        size = len(payload) - body_at
        length = HEADER_SIZE + len(payload)
        ids.append(msg_id)
        self.seqs.append(seq)
        # ``index.pack_location`` inline (a call a record costs): a size is under 2**32
        self.packed.append((segment << SEGMENT_SHIFT) | (offset << OFFSET_SHIFT)
                           | (length << LENGTH_SHIFT) | size)
        self.sizes.append(size)
        self.nbytes += length
        return True

    def _unlike_the_last(self, segment: int, payload: memoryview) -> int:
        """A record whose bytes before its body are not the last one's: where its body
        starts, if a run takes it (one queue, no flags), else -1. The run goes on if it is
        for the same queue in the same segment (another head); else a new one starts."""
        count, length, flags = _ONE_QUEUE.unpack_from(payload, 16)
        if count != 1 or flags:
            return -1
        at = 16 + _ONE_QUEUE.size + length
        try:
            key = bytes(payload[16 + _ONE_QUEUE.size:at]).decode()
            body_at = len(payload) - self.body_size(payload[at:])
        except (ValueError, struct.error):   # (UnicodeDecodeError is a ValueError)
            return -1   # the record-by-record path says what is wrong with it
        if not at <= body_at <= len(payload):
            return -1
        if key != self.key or segment != self.segment or len(self.ids) >= RUN_MAX:
            self.apply()
            self.key, self.segment = key, segment
        self.fixed = bytes(payload[16:body_at])
        self.body_at = body_at
        return body_at

    def apply(self) -> None:
        """Hand the run to the index (nothing when it is empty)."""
        if not self.ids:
            return
        self.index.add_new_messages(self.key, self.ids, self.seqs, self.packed, self.sizes,
                                    self.segment, self.nbytes)
        self.queues_seen.add(self.key)
        self.taken += len(self.ids)
        self.ids, self.seqs, self.packed, self.sizes = [], [], [], []
        self.nbytes = 0

    def __bool__(self) -> bool:
        return bool(self.ids)

