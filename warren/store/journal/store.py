"""JournalStore: warren's default durable store, a KahaDB-style journal plus an in-memory index.

Layers (each knowing less than the one above): :mod:`.segment` frames and checks records in one
file; :mod:`.log` appends them across segments with group commit off the reactor thread;
:mod:`.index` says what the records mean, what is live and which segments may go; this module
turns :class:`~warren.store.interface.MessageStore` calls into records and runs recovery and
reclaim.

Reclaim runs on the reactor thread after every successful flush (and after recovery): segments
with nothing live are deleted, and the oldest mostly dead segment (live bytes under
``COMPACT_BELOW`` of its size) is compacted, one at a time so the work is spread out: its
records are read and sorted out on the reader thread, the live ones re-appended a slice per
reactor turn. A candidate whose live bytes fell within ``DRAIN_QUIET`` seconds is being drained
by a consumer: it is left to empty and be deleted, as copying records about to be acked is
wasted work (looked at again once it is quiet).
Disk use thus follows live data, and so does recovery time. The rules that keep this from ever
resurrecting an acked message or a deleted definition are in :mod:`.index`.

A clean close saves the index (:mod:`.saved_index`) and a lazy recovery loads it instead of
replaying when it matches the segments on disk exactly; before the first append recovery
renames it to the checkpoint's name (it is a checkpoint at the journal's end, see below) or,
when it is not whole, deletes it.

Checkpoints, so a start after kill -9 need not replay everything either. While running, once
``checkpoint_bytes`` of journal have been appended since the last one (or
``CHECKPOINT_CHANGES`` messages changed), the store saves its index *as of a journal position*
(``saved_index.CHECKPOINT``, same format): the position (segment, offset) just past the last
record the index reflects, the stamps (size, modification time) of the segments before it and
the CRC32 of its own segment's bytes before it. A start with no usable saved index loads the
newest checkpoint and replays only the records after its position, checked as in a full replay;
acks, purges, rewrites of older messages apply on top through the same index methods as while
running, so queue order comes out as the running broker had it. A queue none of those records
touched is handed to the broker as the ids and body sizes saved with the checkpoint (by its
forked writer, as a clean close saves them): two arrays copied from the file, no pass over its
messages (a deep queue's rows take them as they are). If a covered segment still on disk
changed, or the prefix does not check out, or the file is damaged, the full replay runs instead
(a warning).

Compaction keeps a checkpoint valid, nothing is retaken for it: compaction only appends (the
copies are records after the position, replayed on top), and reclaim deletes a segment only
once all its records are dead at a durable position. A covered segment that is gone is thus
expected, and so is the position's own segment gone; whatever the checkpoint's index still
places in a gone segment was killed by records that went too (an ACK after the position in
a segment reclaimed once those it guarded had gone), and is dropped
(``JournalIndex.drop_segments``): what the full replay, which never sees them, gives.

Off the reactor: a forked child (:mod:`.forked_writer`), whose copy of the index is frozen at
the fork, marshals and writes the checkpoint once the position is durable; the reactor thread
pays for the fork (copying page tables: tens of milliseconds at 5M messages), not for a copy
of the index. If the process cannot fork, the index is copied on the reactor thread
(``JournalIndex.snapshot``: the arrays a checkpoint saves, 0.1-0.2 µs a message) and written
by the checkpoint thread. A crash mid-write leaves the previous checkpoint whole
(temporary file, then rename). The next checkpoint waits ``CHECKPOINT_IDLE_RATIO`` times as
long as the last one took, so their cost stays a small share of the work whatever the depth;
but not past ``CHECKPOINT_TAIL_BYTES`` or ``CHECKPOINT_TAIL_CHANGES`` since the last: a fill
faster than checkpoints of a deep queue (seconds each at 10M messages) would otherwise leave
a minute of journal for a start to replay. The replay after a checkpoint takes runs of new
messages at once (:mod:`.new_message_runs`).

Delta checkpoints, so a checkpoint costs what changed rather than the whole index (443 MB at
10M messages, every 300,000 changes of a fill: several times the journal itself). From each
checkpoint's fork the index records the older ids whose entry changes and the queues purged
(``JournalIndex.track_changes``); the next checkpoint, if the chain allows
(``_delta_next``: every link so far written, fewer than ``checkpoint_deltas``, and what they
changed under ``CHECKPOINT_DELTA_CHANGED`` of the full one's messages), writes only that and
what is new (``export_delta``) as ``saved_index.delta_name(n)``, naming the full one's
generation and the position of the link before. A start applies the links in order while
each names that generation and follows the previous position and is whole; the first that
does not (a crash mid-write leaves only a temporary file; a damaged one fails its CRC; one
from an older chain names another generation) ends the chain, and the journal after the last
applied link's position is replayed as after any checkpoint. A full checkpoint deletes the
deltas once renamed into place. A link that fails makes the next checkpoint full, as does
the first after a start (nothing tracked yet).
"""

from __future__ import annotations

import logging
import os
import struct
import time
from array import array
from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred, succeed

from warren.store.interface import (
    BodySize,
    MessageStore,
    RecoveredQueue,
    RecoveredState,
    StoreError,
    StoreUnavailable,
)
from warren.store.journal.index import (
    DICT_ENTRY_BYTES,
    JournalIndex,
    RecordType,
    SIZE_MASK,
    body_size_of,
    body_sizes,
    decode_checkpoint,
    decode_definition,
    decode_message,
    decode_queue_ids,
    decode_returned,
    encode_checkpoint,
    encode_definition,
    encode_message,
    encode_queue_ids,
    encode_returned,
    record_start,
    unpack_location,
)
from warren.store.journal import forked_writer, saved_index
from warren.store.journal.array_maps import (LocationMap, QueueIds, ReplayQueue, queue_order,
                                             queue_sizes)
from warren.store.journal.log import DiskThread, JournalLog
from warren.store.journal.new_message_runs import NewMessageRuns
from warren.store.journal.segment import HEADER_SIZE, CorruptRecord

logger = logging.getLogger("warren.store.journal")

_MESSAGE = int(RecordType.MESSAGE)
_RETURNED = int(RecordType.RETURNED)
#: A message record a compaction found live: offset, id, queues (delivered flags), payload;
#: or a live entry of a RETURNED record: offset, id, its queue, None (the message is read).
_LiveRecord = tuple[int, int, dict[str, bool], memoryview | None]

#: A segment older than the head whose live bytes are under this share of its size is compacted.
COMPACT_BELOW = 0.25
#: A segment whose live bytes fell within this many seconds is not compacted yet: a consumer
#: is draining it (acks at a deep queue's head), and what compaction would copy is about to
#: be acked; once it is empty it is deleted, copying nothing. Looked at again after as long.
DRAIN_QUIET = 1.0
#: Live records a compaction re-appends per reactor turn (the segment is read off it).
COMPACT_SLICE = 2_000
#: Messages of a purged (deleted) queue the index lets go of per reactor turn.
PURGE_SLICE = 5_000
#: Once a purge's messages are all let go, a head segment of at least this many bytes (or a
#: quarter of a segment, if less) that is mostly dead is rolled over, so it goes at once too.
ROLL_AFTER_PURGE_BYTES = 1024 * 1024
#: Dead segments kept only as guards (see :mod:`.index`) may total this many segment sizes (or
#: the live bytes, if more) before the root of their chain is compacted to let them go.
PINNED_BOUND_SEGMENTS = 2
#: Journal bytes appended since the last checkpoint that make the next one due (0: none).
CHECKPOINT_BYTES = 64 * 1024 * 1024
#: Messages changed since the last checkpoint (published, acked, returned, rewritten, purged)
#: that make the next one due, as bytes do: what a start replays costs by the message, and a
#: drain's acks and delivered flags are 8 bytes each (64 MiB of them would be millions of
#: messages to replay). Delivered flags are not counted: one goes with each ack of a drain,
#: and a message drained (both) replays at about the cost of one published (3-4 µs), so a
#: drain is checkpointed as often as a fill, not twice as often.
CHECKPOINT_CHANGES = 150_000
#: After a checkpoint that took t seconds, the next waits at least this many times t ...
CHECKPOINT_IDLE_RATIO = 10
#: ... unless this many bytes or changed messages have come since the last: then it is taken
#: at once, so what a start after kill -9 replays stays bounded even when a fast fill
#: outruns checkpoints that each take seconds (a deep queue's: at 10M messages a few
#: seconds each, so the idle ratio alone let a fill leave a minute of journal, over a
#: million records). At most this, plus what comes while one is written.
CHECKPOINT_TAIL_BYTES = 128 * 1024 * 1024
CHECKPOINT_TAIL_CHANGES = 300_000
#: Deltas on one full checkpoint before the next is full again (a start reads them all)...
CHECKPOINT_DELTAS = 64
#: ...or once the entries of the full one they changed (acked, moved, flagged) pass this
#: share of its messages: a start applies those one by one (about 0.5 µs each).
CHECKPOINT_DELTA_CHANGED = 0.125
#: Seconds after a recovery before the first checkpoint (the broker's own start goes first).
CHECKPOINT_AFTER_RECOVERY = 1.0
#: Seconds after a checkpoint that could not be written (disk full...) before the next try.
CHECKPOINT_RETRY = 10.0


class JournalStore(MessageStore):
    """Messages and definitions in an append-only segmented journal under ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], *,
                 segment_size: int = 32 * 1024 * 1024, reactor: Any = None,
                 checkpoint_bytes: int = CHECKPOINT_BYTES,
                 checkpoint_changes: int = CHECKPOINT_CHANGES,
                 checkpoint_tail: tuple[int, int] = (CHECKPOINT_TAIL_BYTES,
                                                     CHECKPOINT_TAIL_CHANGES),
                 checkpoint_deltas: int = CHECKPOINT_DELTAS) -> None:
        self.directory = os.fspath(directory)
        self._index = JournalIndex()
        self._log = JournalLog(
            self.directory,
            segment_size=segment_size,
            reactor=reactor,
            on_durable=self._reclaim,
            segment_preamble=self._counters_record,
        )
        self._reactor = self._log.reactor
        #: Paging's read-ahead reads records here (``read_many_later``), not on the reactor.
        self._reader = DiskThread(self._reactor, name="warren-journal-reader")
        self._purge_call: Any = None
        self._recovered = False
        self._body_size: BodySize | None = None  # during a lazy recovery
        #: During a start from a checkpoint: the queues the records after it changed (their
        #: body sizes saved with the checkpoint no longer match their messages).
        self._touched: set[str] | None = None
        #: The lazy recovery's measure, kept to save body sizes with the index at close.
        self._measure: BodySize | None = None
        self._abandoned = False
        self._compacting: int | None = None   # the segment being compacted (one at a time)
        #: Compaction candidates: segment -> (live bytes when last looked at, reactor time
        #: they last fell), so a segment being drained is left to empty (``DRAIN_QUIET``).
        self._shrinking: dict[int, tuple[int, float]] = {}
        self._quiet_call: Any = None
        self.compactions = 0
        self.segments_deleted = 0
        self._checkpoint_bytes = checkpoint_bytes
        self._checkpoint_changes = checkpoint_changes
        self._checkpoint_tail = checkpoint_tail   # (bytes, changes): see CHECKPOINT_TAIL_*
        #: Messages changed so far (``CHECKPOINT_CHANGES``), and as of the last checkpoint.
        self.changes = 0
        self._checkpoint_changed = 0
        #: The last recovery's records replayed one by one and in runs (``new_message_runs``).
        self.replayed_records = 0
        self.replayed_in_runs = 0
        self._checkpointer = DiskThread(self._reactor, name="warren-journal-checkpoint")
        self._checkpoint_busy = False
        #: ``JournalLog.appended`` as of the last checkpoint's position (replayed bytes count
        #: as appended: a recovery that replayed much is checkpointed soon after).
        self._checkpoint_appended = 0
        self._checkpoint_not_before = 0.0   # reactor time
        #: Reactor time before which none is taken, bound or not (after a recovery).
        self._checkpoint_held_until = 0.0
        self._checkpoint_call: Any = None
        self.checkpoints = 0
        self.checkpoint_position: tuple[int, int] | None = None   # the last one's
        self.checkpoint_seconds = 0.0   # the last one's, copy to rename
        self.checkpoint_copy_seconds = 0.0   # the last one's time on the reactor thread
        #: Deltas (``saved_index.delta_name``) on the full checkpoint of ``_generation``: how
        #: many at most, how many written, and the entries of the full one they changed.
        self._checkpoint_deltas = checkpoint_deltas
        self._generation = 0
        self._delta_seq = 0
        self._delta_changed = 0
        self._base_messages = 0
        #: Whether the next checkpoint must be full: no chain (yet) that a delta extends
        #: exactly (after a recovery, after one that failed).
        self._full_next = True
        self.checkpoint_bytes_written = 0   # by every checkpoint so far (full and delta)
        self.checkpoint_deltas_written = 0

    @property
    def healthy(self) -> bool:
        return self._log.healthy

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self) -> None:
        self._log.open()

    def recover(self, body_size: BodySize | None = None) -> RecoveredState:
        """Replay the journal into the index. Without ``body_size`` every live record is
        returned; with it (lazy) only the body sizes, and the records of messages held by
        more than one queue, so recovery holds no message bodies."""
        if self._recovered:
            raise StoreError("recover() is called once, before any write")
        self._measure = body_size
        saved = self._saved_index() if body_size is not None else None
        # before anything is appended: a saved index on disk always describes the journal;
        # a whole one is also a checkpoint (at the end of the journal as closed), and goes
        # on as the checkpoint, which stays valid as the journal grows
        if saved is None or not saved_index.promote(self.directory):
            saved_index.discard(self.directory)
        if saved is not None:
            index, saved_queues, journal, shared = saved
            self._index = index   # the log's adopt may append a checkpoint: it reads this
            if self._log.adopt(journal):
                return self._recover_saved(index, saved_queues, shared)
            self._index = JournalIndex()
            logger.warning("journal %s: saved index not used (the segments on disk are not the "
                           "ones it covers); replaying the journal", self.directory)
        if body_size is not None:
            state = self._recover_from_checkpoint(body_size)
            if state is not None:
                return state
        records: dict[int, bytes] = {}
        index = self._index
        self._body_size = body_size
        index.recovering = True
        replayed = self._replay_all(records, self._log.replay())
        ordered = index.finish_recovery()
        self._recovered = True
        self._body_size = None
        messages = index.messages
        if body_size is None:
            live = {msg_id: records[msg_id] for msg_id in messages}
            queues = {key: RecoveredQueue(key, list(ids)) for key, (ids, _) in ordered.items()}
        else:
            live = {msg_id: record for msg_id, record in records.items() if msg_id in messages}
            queues = {key: RecoveredQueue(key, ids, _signed(sizes))
                      for key, (ids, sizes) in ordered.items()}
        ordered.clear()
        records.clear()
        state = _state_of(index, live, queues)
        logger.info(
            "journal %s: recovered %d messages in %d queues, %d definitions from %d segments",
            self.directory, len(messages), len(state.queues), len(state.definitions),
            len(self._log.segment_numbers()),
        )
        self._checkpoint_soon(self._log.disk_bytes(), replayed)
        return self._recovered_state(state)

    def _recover_from_checkpoint(self, body_size: BodySize) -> RecoveredState | None:
        """Lazy recovery from the newest checkpoint and the records after its position (see
        the module doc); None when there is none or it cannot be used (then: the replay)."""
        try:
            content = saved_index.read(self.directory, saved_index.CHECKPOINT)
            if content is None:
                return None
            index = JournalIndex.restored(content)
            number, offset = content["position"]
            position = (int(number), int(offset))
            stamps = {int(n): tuple(stamp) for n, stamp in content["journal"].items()}
            prefix_crc = int(content["prefix_crc"])
            deltas = 0
            generation = content.get("generation")
            while generation is not None:   # the deltas on it, in order, while they follow
                try:
                    delta = saved_index.read(self.directory, saved_index.delta_name(deltas + 1))
                except saved_index.SavedIndexInvalid as error:
                    logger.info("journal %s: delta %d not used (%s)", self.directory,
                                deltas + 1, error)
                    break
                if (delta is None or delta.get("generation") != generation
                        or tuple(delta.get("from_position") or ()) != position):
                    break
                index.apply_delta(delta)   # raises when it does not fit: the replay
                number, offset = delta["position"]
                position = (int(number), int(offset))
                stamps = {int(n): tuple(stamp) for n, stamp in delta["journal"].items()}
                prefix_crc = int(delta["prefix_crc"])
                deltas += 1
            if deltas:
                index.deltas_applied()
        except (saved_index.SavedIndexInvalid, KeyError, TypeError, ValueError) as error:
            logger.warning("journal %s: checkpoint not used (%s); replaying the journal",
                           self.directory, error)
            return None
        log = self._log
        replay = log.replay_after(position, stamps, prefix_crc)
        if replay is None:
            logger.warning("journal %s: checkpoint not used (the segments it covers changed "
                           "since); replaying the journal", self.directory)
            return None
        self._index = index
        self._body_size = body_size
        records: dict[int, bytes] = {}
        touched = self._touched = set()
        replayed = self._replay_all(records, replay)
        self._body_size = None
        self._touched = None
        existing = set(log.segment_numbers())
        dropped = index.drop_segments({n for n in index.segments if n not in existing})
        messages = index.messages
        shared = {}
        try:
            for msg_id in index.shared:
                _, record = log.read(*unpack_location(messages[msg_id]))
                shared[msg_id] = bytes(record[record_start(record):])
        except (ValueError, KeyError, OSError, CorruptRecord, struct.error) as error:
            logger.warning("journal %s: checkpoint not used (%s); replaying the journal",
                           self.directory, error)
            log.rewind()
            self._index = JournalIndex()
            return None
        if deltas:
            logger.info("journal %s: the checkpoint and %d deltas on it", self.directory, deltas)
        if dropped:
            logger.info("journal %s: %d messages of the checkpoint were in segments reclaimed "
                        "since", self.directory, dropped)
        self._recovered = True
        # ids and body sizes saved with the checkpoint (its writer's: not the thread's copy)
        # stand for the queues no record after it changed
        saved = _saved_queues(content) if not dropped and not deltas else {}
        queues = {key: _recovered_queue(key, messages, ids, saved.get(key), key in touched)
                  for key, ids in index.queues.items()}
        state = _state_of(index, shared, queues)
        logger.info(
            "journal %s: recovered %d messages in %d queues, %d definitions from the checkpoint "
            "at segment %d offset %d and %d records after it", self.directory, len(messages),
            len(queues), len(state.definitions), position[0], position[1], replayed,
        )
        self._checkpoint_soon(self._bytes_after(position), replayed)
        return self._recovered_state(state)

    def _bytes_after(self, position: tuple[int, int]) -> int:
        """Journal bytes on disk after ``position`` (what a start from it replays)."""
        log = self._log
        return sum(log.segment_bytes(n) for n in log.segment_numbers() if n >= position[0]) \
            - position[1]

    def _recovered_state(self, state: RecoveredState) -> RecoveredState:
        """The end of either recovery: the head's checkpoint made durable, then reclaim."""
        try:
            self._log.flush()  # a checkpoint opening an empty head must be durable first
        except StoreUnavailable:
            return state  # unhealthy; logged; reclaim waits for a flush that succeeds
        self._reclaim()
        return state

    def _saved_index(
        self,
    ) -> tuple[JournalIndex, dict[str, tuple[Any, Any]], dict[int, Any],
               dict[int, bytes]] | None:
        """The index saved at the last clean close, its queues' ids and body sizes
        (``_saved_queues``), the segments it covers
        (number -> (size, modification time), which ``JournalLog.adopt`` checks)
        and the records of messages held by several queues (a lazy recovery returns them),
        if all is whole; None: replay."""
        try:
            content = saved_index.read(self.directory)
            if content is None:
                return None
            index = JournalIndex.restored(content)
            sizes = content["sizes"]
            journal = content["journal"]
            if not isinstance(sizes, dict) or not isinstance(journal, dict):
                raise TypeError("sizes or segments are not mappings")
            for key, ids in index.queues.items():
                if memoryview(sizes.get(key, b"")).nbytes != 8 * len(ids):
                    raise ValueError(f"queue {key!r}: body sizes do not match its messages")
            records = {}
            for msg_id in index.shared:
                _, payload = self._log.read(*unpack_location(index.messages[msg_id]))
                records[msg_id] = bytes(payload[record_start(payload):])
        except (saved_index.SavedIndexInvalid, KeyError, TypeError, ValueError, OSError,
                CorruptRecord, struct.error) as error:
            logger.warning("journal %s: saved index not used (%s); replaying the journal",
                           self.directory, error)
            return None
        return index, _saved_queues(content), journal, records

    def _recover_saved(self, index: JournalIndex, saved: dict[str, tuple[Any, Any]],
                       records: dict[int, bytes]) -> RecoveredState:
        """Lazy recovery from a saved index: no record read but those of messages held by
        several queues (as the replay returns them)."""
        self._recovered = True
        self._checkpoint_soon(0)   # the saved index is the checkpoint now
        messages = index.messages
        queues = {key: _recovered_queue(key, messages, ids, saved.get(key))
                  for key, ids in index.queues.items()}
        state = _state_of(index, records, queues)
        logger.info(
            "journal %s: recovered %d messages in %d queues, %d definitions from the saved "
            "index (%d segments not replayed)", self.directory, len(index.messages),
            len(queues), len(state.definitions), len(self._log.segment_numbers()),
        )
        return self._recovered_state(state)

    def _replay_all(self, records: dict[int, bytes],
                    replay: Iterable[tuple[int, int, int, memoryview]]) -> int:
        """Apply each replayed record (a whole journal, or what follows a checkpoint); a
        record that does not decode is logged and skipped. Returns how many there were.
        In a lazy recovery, runs of new messages go to the index a run at a time
        (:mod:`.new_message_runs`), the rest one record at a time, in log order."""
        replayed = 0
        runs = (NewMessageRuns(self._index, self._body_size) if self._body_size is not None
                else None)
        for segment, offset, record_type, payload in replay:
            replayed += 1
            if runs is not None:
                if record_type == _MESSAGE and runs.take(segment, offset, payload):
                    continue
                runs.apply()
            try:
                self._replay_record(records, segment, offset, record_type, payload)
            except (ValueError, KeyError, struct.error, UnicodeDecodeError) as error:
                logger.error(
                    "journal %s: segment %d offset %d: undecodable %s record skipped (%s)",
                    self.directory, segment, offset, _type_name(record_type), error,
                )
        if runs is not None:
            runs.apply()
            if self._touched is not None:
                self._touched.update(runs.queues_seen)
            self.replayed_in_runs += runs.taken
        self.replayed_records += replayed
        return replayed

    def _replay_record(
        self, records: dict[int, bytes], segment: int, offset: int, record_type: int,
        payload: memoryview,
    ) -> None:
        index = self._index
        length = HEADER_SIZE + len(payload)
        end = (segment, offset + length)
        if record_type == RecordType.MESSAGE:
            msg_id, seq, queues, at, counts = decode_message(payload)
            if self._touched is not None:
                self._touched.update(queues)
            body_size = self._body_size
            if body_size is None:
                index.add_message(msg_id, seq, queues, segment, offset, length, counts)
                records[msg_id] = bytes(payload[at:])
            else:
                index.add_message(msg_id, seq, queues, segment, offset, length, counts,
                                  body_size(payload[at:]))
                if len(queues) > 1:
                    records[msg_id] = bytes(payload[at:])
                else:
                    records.pop(msg_id, None)
        elif record_type == RecordType.ACK:
            queue_key, msg_ids = decode_queue_ids(payload)
            if self._touched is not None:
                self._touched.add(queue_key)
            for msg_id in index.ack(queue_key, msg_ids, segment, end):
                records.pop(msg_id, None)
        elif record_type == RecordType.PURGE:
            queue_key = bytes(payload).decode()
            if self._touched is not None:
                self._touched.add(queue_key)
            index.purge(queue_key, segment, end)
            for msg_id in index.release_purged(1 << 62):
                records.pop(msg_id, None)
        elif record_type == RecordType.DELIVERED:
            queue_key, msg_ids = decode_queue_ids(payload)
            index.mark_delivered(queue_key, msg_ids)
        elif record_type == RecordType.RETURNED:
            queue_key, returns = decode_returned(payload)
            index.returned(queue_key, returns, segment, end)
        elif record_type == RecordType.DEFINITION:
            kind, key, value = decode_definition(payload)
            index.put_definition((kind, key), value, segment, offset, length)
        elif record_type == RecordType.CHECKPOINT:
            max_msg_id, max_seq = decode_checkpoint(payload)
            index.max_msg_id = max(index.max_msg_id, max_msg_id)
            index.max_seq = max(index.max_seq, max_seq)
        else:
            logger.error(
                "journal %s: segment %d offset %d: unknown record type %d skipped",
                self.directory, segment, offset, record_type,
            )

    def _ready(self) -> None:
        """Writes need the index built: recover on behalf of a caller that skipped it."""
        if not self._recovered:
            self.recover()

    def close(self) -> None:
        """Flush, then save the index (see :mod:`.saved_index`) if everything is on disk."""
        for call in (self._purge_call, self._quiet_call):
            if call is not None and call.active():
                call.cancel()
        self._reader.stop()
        if self._checkpoint_call is not None and self._checkpoint_call.active():
            self._checkpoint_call.cancel()
        self._checkpointer.stop()   # a checkpoint being written finishes first
        content = None
        if (self._recovered and self._measure is not None and not self._abandoned
                and not self._log.closed):
            try:
                self._log.flush()
                content = self._saved_content()
            except (StoreUnavailable, OSError, CorruptRecord) as error:
                logger.warning("journal %s: index not saved (%s); the next start replays",
                               self.directory, error)
        self._log.close()
        if content is not None and self._log.healthy:
            try:
                content["journal"] = self._log.segment_stamps()
                # what makes it a checkpoint too, once a start has used it (``promote``)
                position = content["position"] = self._log.end
                _, content["prefix_crc"] = self._log.covered(position, [])
                written = saved_index.write(self.directory, content)
            except OSError as error:
                logger.warning("journal %s: index not saved (%s); the next start replays",
                               self.directory, error)
                try:
                    saved_index.discard(self.directory)
                except OSError:
                    pass   # a partial file fails its checks at the next start
            else:
                logger.info("journal %s: saved the index of %d messages (%d bytes)",
                            self.directory, len(self._index.messages), written)

    def _saved_content(self) -> dict[str, Any]:
        """What :mod:`.saved_index` writes: the index, the segments it covers and each
        queue's ids and body sizes in queue order (the sizes packed with the locations:
        nothing is read), as the arrays a start hands the broker (``_recovered_queue``)."""
        index = self._index
        while index.purged:
            index.release_purged(1 << 30)
        messages = index.messages
        # no copies of the big arrays: this runs in the forked writer (its index frozen at
        # the fork) or at a close, where nothing changes the index before it is written
        content = index.export(copy=False)
        content["sizes"] = {key: queue_sizes(ids, messages, SIZE_MASK, copy=False)
                            for key, ids in index.queues.items()}
        return content   # its "journal" (the segments' stamps) is added once the log is closed

    def abandon(self) -> None:
        self._abandoned = True
        self._log.abandon()
        if self._quiet_call is not None and self._quiet_call.active():
            self._quiet_call.cancel()
        self._reader.stop_soon()
        if self._checkpoint_call is not None and self._checkpoint_call.active():
            self._checkpoint_call.cancel()
        self._checkpointer.stop_soon()

    # -- writes --------------------------------------------------------------------------------

    def put_definition(self, kind: str, key: str, value: dict[str, Any] | None) -> None:
        self._ready()
        if value is None and (kind, key) not in self._index.definitions:
            return
        segment, offset, length = self._log.append(RecordType.DEFINITION,
                                                   encode_definition(kind, key, value))
        self._index.put_definition((kind, key), value, segment, offset, length)

    def publish(self, msg_id: int, record: bytes, queue_keys: list[str]) -> None:
        if not self._recovered:
            self.recover()
        if not queue_keys:
            return
        queues = dict.fromkeys(queue_keys, False)
        index = self._index
        seq = index.max_seq + 1
        segment, offset, length = self._log.append(
            _MESSAGE, encode_message(msg_id, seq, queues, record)
        )
        measure = self._measure
        index.add_message(msg_id, seq, queues, segment, offset, length, None,
                          0 if measure is None else measure(record))
        self.changes += 1

    def ack(self, queue_key: str, msg_ids: list[int]) -> None:
        self._ready()
        live = self._index.live_in_queue(queue_key, msg_ids)
        if not live:
            return
        # lazy: an ack lost to a crash is a redelivery (as RabbitMQ's acks, not fsynced each)
        segment, offset, length = self._log.append(RecordType.ACK,
                                                   encode_queue_ids(queue_key, live), lazy=True)
        self._index.ack(queue_key, live, segment, (segment, offset + length))
        self.changes += len(live)

    def mark_delivered(self, queue_key: str, msg_ids: list[int]) -> None:
        self._ready()
        fresh = self._index.deliver(queue_key, msg_ids)
        if fresh:
            self._log.append(RecordType.DELIVERED, encode_queue_ids(queue_key, fresh), lazy=True)

    def set_delivery_counts(self, queue_key: str, counts: dict[int, int]) -> None:
        """The new counts, with the delivered flags clear: one RETURNED record for the
        messages this queue alone holds (a few bytes each), a rewrite of the MESSAGE record
        for a message several queues hold (see both in ``index.py``)."""
        self._ready()
        index = self._index
        ids = index.queues.get(queue_key)
        if not ids:
            return
        returns = {}
        for msg_id, count in counts.items():
            delivered = ids.get(msg_id)
            if delivered is None:
                continue
            old = index.counts.get(msg_id) or {}
            if old.get(queue_key) == count and not delivered:
                continue
            if msg_id not in index.shared:
                returns[msg_id] = count
                continue
            queues = index.holders(msg_id, (queue_key,))
            queues[queue_key] = False
            self._rewrite(msg_id, queues, {**old, queue_key: count})
        if returns:
            segment, offset, length = self._log.append(
                RecordType.RETURNED, encode_returned(queue_key, returns), lazy=True)
            index.returned(queue_key, list(returns.items()), segment,
                           (segment, offset + length))
            self.changes += len(returns)

    def _rewrite(self, msg_id: int, queues: dict[str, bool], counts: dict[str, int] | None,
                 payload: bytes | memoryview | None = None) -> None:
        """Append a message's MESSAGE record again with the state given (compaction, counts);
        ``payload``: its current record's, when the caller has read it already."""
        packed = self._index.messages[msg_id]   # callers rewrite live messages
        if payload is None:
            _, payload = self._log.read(*unpack_location(packed))
        _, seq, _, at, _ = decode_message(payload)
        record = memoryview(payload)[at:]
        segment, offset, length = self._log.append(
            RecordType.MESSAGE, encode_message(msg_id, seq, queues, record, counts))
        self._index.add_message(msg_id, seq, queues, segment, offset, length, counts,
                                body_size_of(packed))
        self.changes += 1

    def purge_queue(self, queue_key: str) -> None:
        """One PURGE record; the index lets go of the queue's messages ``PURGE_SLICE`` per
        reactor turn (a deleted queue of 10M messages must not hold every other client)."""
        self._ready()
        if queue_key not in self._index.queues:
            return
        self.changes += len(self._index.queues[queue_key])   # a replay releases each
        segment, offset, length = self._log.append(RecordType.PURGE, queue_key.encode())
        self._index.purge(queue_key, segment, (segment, offset + length))
        if self._purge_call is None:
            self._purge_call = self._reactor.callLater(0, self._release_purged)

    def _release_purged(self) -> None:
        """One slice of the purged queues' releases (``JournalIndex.release_purged``); the next
        at the next reactor turn, until none is left; then the space is given back at once
        (``_purge_released``). A slice may also be taken by ``_reclaim``."""
        self._purge_call = None
        if self._log.closed:
            return
        if self._index.purged:
            self._index.release_purged(PURGE_SLICE)
        if self._index.purged:
            self._purge_call = self._reactor.callLater(0, self._release_purged)
        else:
            self._purge_released()

    def _purge_released(self) -> None:
        """Every purged message is let go: their segments go now, not at the next write's
        flush (an idle broker would keep them). A head left mostly dead (a queue filled then
        purged within one segment) is rolled over first, since the head is never deleted:
        after the roll it is an old segment, deleted or compacted like any other. As
        RabbitMQ's message store deletes a file once its messages are all removed."""
        log = self._log
        head = log.head
        liveness = self._index.segments.get(head)
        live = liveness.live_bytes if liveness is not None else 0
        if live < COMPACT_BELOW * log.segment_bytes(head):
            log.roll(min(ROLL_AFTER_PURGE_BYTES, log.segment_size // 4))
        log.sync().addCallbacks(self._reclaim_if_open, lambda _: None)   # (a failed write:
        # logged by the log; reclaim waits for the flush that succeeds)

    def _reclaim_if_open(self, _: object = None) -> None:
        if not self._log.closed and not self._abandoned:
            self._reclaim()

    def sync(self) -> Deferred:
        return self._log.sync()

    def flush(self) -> None:
        """Blocking sync: everything written so far is on disk when this returns."""
        self._log.flush()

    # -- reads ---------------------------------------------------------------------------------

    def read(self, msg_id: int) -> bytes:
        location = self._index.location(msg_id)
        if location is None:
            raise StoreError(f"message {msg_id} is not in the journal")
        try:
            _, payload = self._log.read(*location)
        except CorruptRecord as error:
            raise StoreError(f"message {msg_id}: {error}") from error
        return bytes(payload[decode_message(payload)[3]:])

    def read_many_later(self, msg_ids: list[int]) -> Deferred:
        """``read_many`` with the reads of records on disk done by the reader thread (those
        still in a write batch are read from memory at once), and there too each payload's
        header checked and cut off (``_read_records``): the reactor thread only looks the
        batch's locations up, once. Whatever the reader did not find where the index said
        (compaction moved it, or its segment went, meanwhile) is read again here, from where
        it is now."""
        index, log = self._index, self._log
        out: dict[int, bytes] = {}
        wanted = []
        durable_end = log.durable_end
        for msg_id, packed in zip(msg_ids, index.locations(msg_ids)):
            if packed is None:
                continue
            segment, offset, length = unpack_location(packed)
            if (segment, offset + length) > durable_end:
                try:
                    out[msg_id] = self.read(msg_id)
                except StoreError:
                    continue   # logged by the reader of ``out``: the id is missing
            else:
                wanted.append((msg_id, segment, offset, length))
        if not wanted:
            return succeed(out)
        done = self._reader.submit(self._read_records, wanted)
        done.addCallback(self._reads_arrived, wanted, out)
        return done

    def _read_records(self, wanted: list[tuple[int, int, int, int]]) -> dict[int, bytes]:
        """Reader thread: the message records of ``wanted`` (id, segment, offset, length)
        found where it says, by id. A record read back whole (its CRC checked) at a
        location with the wanted id is that message's: records are never rewritten in
        place and a message's record never changes (compaction copies it to a new
        location, and a return only adds a record), so one that moved or died meanwhile
        still reads back right, and no second lookup on the reactor thread is needed."""
        out = {}
        for msg_id, payload in self._log.read_on_disk(wanted):
            found, _, _, at, _ = decode_message(payload)
            if found == msg_id:
                out[msg_id] = payload[at:]
        return out

    def _reads_arrived(self, found: dict[int, bytes],
                       wanted: list[tuple[int, int, int, int]],
                       out: dict[int, bytes]) -> dict[int, bytes]:
        out.update(found)
        if len(found) < len(wanted):
            messages = self._index.messages
            for msg_id, _, _, _ in wanted:
                if msg_id not in found and msg_id in messages:   # moved, or its segment went
                    try:
                        out[msg_id] = self.read(msg_id)
                    except StoreError:
                        continue
        return out

    def stats(self) -> dict[str, float]:
        in_arrays, in_dicts = self._index.nbytes()
        return {
            # what the index's per-message maps cost (``JournalIndex.nbytes``): the part in
            # arrays, and the entries still in dicts beside them until the next fold
            "journal_index_array_bytes": float(in_arrays),
            "journal_index_dict_entries": float(in_dicts),
            "journal_index_bytes": float(in_arrays + in_dicts * DICT_ENTRY_BYTES),
            "journal_index_folds": float(self._index.folds),
            "journal_index_fold_seconds_max": self._index.fold_seconds_max,
            "journal_bytes": float(self._log.disk_bytes()),
            "journal_segments": float(len(self._log.segment_numbers())),
            "journal_messages": float(len(self._index.messages)),
            "journal_fsync_seconds": self._log.last_fsync_seconds,
            "journal_fsyncs": float(self._log.fsyncs),
            "journal_compactions": float(self.compactions),
            "journal_checkpoints": float(self.checkpoints),
            "journal_checkpoint_seconds": self.checkpoint_seconds,
            # what the start replayed (all of the journal, or what follows the checkpoint)
            "journal_replayed_records": float(self.replayed_records),
        }

    # -- reclaim -------------------------------------------------------------------------------

    def _counters_record(self) -> tuple[int, bytes]:
        """The record opening every segment (the id counters: see ``RecordType.CHECKPOINT``)."""
        return RecordType.CHECKPOINT, encode_checkpoint(self._index.max_msg_id, self._index.max_seq)

    # -- checkpoints (see the module doc) --------------------------------------------------------

    @property
    def checkpoint_in_progress(self) -> bool:
        """Whether a checkpoint is being taken (forked, or waiting for its position to be
        durable, or being written)."""
        return self._checkpoint_busy

    def _checkpoint_soon(self, uncovered: int, replayed: int = 0) -> None:
        """After a recovery: ``uncovered`` journal bytes (``replayed`` records) are in no
        checkpoint on disk; if that is a checkpoint's worth, one is taken
        ``CHECKPOINT_AFTER_RECOVERY`` from now."""
        self._checkpoint_appended = self._log.appended - uncovered
        self._checkpoint_changed = self.changes - replayed
        self._checkpoint_not_before = self._reactor.seconds() + CHECKPOINT_AFTER_RECOVERY
        self._checkpoint_held_until = self._checkpoint_not_before   # the broker's start first
        self._consider_checkpoint()

    def _consider_checkpoint(self) -> None:
        """Take a checkpoint if one is due (after each flush, on the reactor thread); one due
        but too soon after the last is looked at again when its time comes, appends or not."""
        log = self._log
        if (self._checkpoint_bytes <= 0 or self._checkpoint_busy or self._measure is None
                or not self._recovered or self._abandoned or log.closed):
            return
        appended = log.appended - self._checkpoint_appended
        changed = self.changes - self._checkpoint_changed
        if appended < self._checkpoint_bytes and changed < self._checkpoint_changes:
            return
        now = self._reactor.seconds()
        wait = self._checkpoint_not_before - now
        tail_bytes, tail_changes = self._checkpoint_tail
        if (wait > 0 and now >= self._checkpoint_held_until
                and (appended >= tail_bytes or changed >= tail_changes)):
            wait = 0   # the tail a start would replay is at its bound: no more waiting
        if wait > 0 or not log.healthy or self._index.purged:   # purged: a purge half released
            if self._checkpoint_call is None or not self._checkpoint_call.active():
                self._checkpoint_call = self._reactor.callLater(
                    max(wait, CHECKPOINT_AFTER_RECOVERY / 10), self._consider_checkpoint)
            return
        started = time.monotonic()
        position = log.end
        numbers = log.segment_numbers()
        appended = log.appended
        changes = self.changes
        index = self._index
        delta = self._delta_next()
        link = (self._generation, self._delta_seq + 1, self.checkpoint_position) if delta \
            else (int.from_bytes(os.urandom(8), "little") >> 1, 0, None)
        try:   # the child's index is frozen at the fork: it needs no copy
            pid, go = forked_writer.start(
                lambda: self._write_checkpoint((
                    self._delta_content() if delta else self._saved_content(), position,
                    numbers, link)))
        except OSError as error:   # no memory to fork: copy here, write on the thread
            logger.debug("journal %s: checkpoint not forked (%s)", self.directory, error)
            pid, go, content = None, -1, index.snapshot()
            link = (link[0], 0, None)   # a snapshot is always whole
        # from the fork on (the child's copy keeps what changed before it): what the next
        # delta writes; a checkpoint that fails makes the next one full (``_full_next``)
        changed = len(index.changed) if delta else 0   # repeats too: at worst fuller sooner
        index.track_changes()
        self.checkpoint_copy_seconds = time.monotonic() - started
        self._checkpoint_busy = True
        durable = log.sync()
        if pid is None:
            durable.addCallback(lambda _: self._checkpointer.submit(
                self._write_checkpoint, (content, position, numbers, link)))
        else:
            durable.addCallbacks(self._checkpoint_go, self._checkpoint_give_up,
                                 callbackArgs=(pid, go, link), errbackArgs=(pid, go))
        durable.addCallbacks(self._checkpoint_written, self._checkpoint_failed,
                             callbackArgs=(appended, changes, started, position, link,
                                           changed))

    def _delta_next(self) -> bool:
        """Whether the next checkpoint is a delta on the chain of the last full one: only
        when every link so far was written (``_full_next``), the chain is short
        (``checkpoint_deltas``) and what its deltas changed of the full one is a small share
        of it (``CHECKPOINT_DELTA_CHANGED``): else a full one, and the chain starts over."""
        if self._full_next or not self._index.tracking or self.checkpoint_position is None:
            return False
        if self._delta_seq >= self._checkpoint_deltas:
            return False
        return self._delta_changed <= CHECKPOINT_DELTA_CHANGED * max(self._base_messages,
                                                                     1_000)

    def _delta_content(self) -> dict[str, Any]:
        """What a delta checkpoint writes (``JournalIndex.export_delta``), in the forked
        writer."""
        index = self._index
        while index.purged:
            index.release_purged(1 << 30)
        return index.export_delta()

    def _checkpoint_go(self, _: object, pid: int, go: int,
                       link: tuple[int, int, Any]) -> Deferred:
        """The position is durable: the forked writer goes on; the thread reaps it."""
        forked_writer.go(go, True)
        return self._checkpointer.submit(self._reap_checkpoint_writer, (pid, link[1]))

    def _checkpoint_give_up(self, failure: Any, pid: int, go: int) -> Any:
        forked_writer.go(go, False)
        self._checkpointer.submit(forked_writer.wait, pid)
        return failure

    def _reap_checkpoint_writer(self, job: tuple[int, int]) -> int:
        """Checkpoint thread: wait for the forked writer; the checkpoint's size."""
        pid, seq = job
        code = forked_writer.wait(pid)
        if code != forked_writer.DONE:
            raise OSError(f"the checkpoint's writer (pid {pid}) exited with status {code}")
        name = saved_index.delta_name(seq) if seq else saved_index.CHECKPOINT
        return os.path.getsize(saved_index.path_in(self.directory, name))

    def _write_checkpoint(self, job: tuple[dict[str, Any], tuple[int, int], list[int],
                                           tuple[int, int, Any]]) -> int:
        """Checkpoint thread (or the forked writer): stamp what the position covers,
        serialize, write, rename. A full one names its chain (``generation``) and then
        deletes the deltas of the one before; a delta names the chain, its place in it and
        the position of the link it follows (a start applies it only on that one)."""
        content, position, numbers, (generation, seq, after) = job
        stamps, prefix_crc = self._log.covered(position, numbers)
        content["position"] = position
        content["journal"] = stamps
        content["prefix_crc"] = prefix_crc
        content["generation"] = generation
        if seq:
            content["seq"] = seq
            content["from_position"] = after
            return saved_index.write(self.directory, content, saved_index.delta_name(seq))
        written = saved_index.write(self.directory, content, saved_index.CHECKPOINT)
        saved_index.discard_deltas(self.directory)
        return written

    def _checkpoint_written(self, written: int, appended: int, changes: int, started: float,
                            position: tuple[int, int], link: tuple[int, int, Any],
                            changed: int) -> None:
        took = time.monotonic() - started
        generation, seq, _ = link
        self._generation, self._delta_seq = generation, seq
        if seq:
            self._delta_changed += changed
            self.checkpoint_deltas_written += 1
        else:
            self._delta_changed = 0
            self._base_messages = len(self._index.messages)
        self._full_next = False
        self.checkpoint_bytes_written += written
        self._checkpoint_busy = False
        self._checkpoint_appended = appended
        self._checkpoint_changed = changes
        self._checkpoint_not_before = self._reactor.seconds() + CHECKPOINT_IDLE_RATIO * took
        self.checkpoints += 1
        self.checkpoint_seconds = took
        self.checkpoint_position = position
        logger.info("journal %s: checkpoint at segment %d offset %d written (%d messages, "
                    "%d bytes, %.3f s, %.3f s of it on the reactor%s)", self.directory,
                    position[0], position[1], len(self._index.messages), written, took,
                    self.checkpoint_copy_seconds, f", delta {seq}" if seq else "")

    def _checkpoint_failed(self, failure: Any) -> None:
        self._checkpoint_busy = False
        self._full_next = True   # what changed before it is in no delta: start over
        self._checkpoint_not_before = self._reactor.seconds() + CHECKPOINT_RETRY
        if not self._log.closed and (self._checkpoint_call is None
                                     or not self._checkpoint_call.active()):
            # tried again then, appends or not
            self._checkpoint_call = self._reactor.callLater(CHECKPOINT_RETRY,
                                                            self._consider_checkpoint)
        logger.warning("journal %s: checkpoint not written (%s); the previous one stays",
                       self.directory, failure.getErrorMessage())

    def _reclaim(self) -> None:
        """Delete dead segments, then compact the oldest mostly dead one (see module doc)."""
        if not self._recovered:
            return
        if self._index.purged:   # a slice here too: progress at each flush, reactor or not
            self._index.release_purged(PURGE_SLICE)
        log, index = self._log, self._index
        durable_end = log.durable_end
        while True:
            numbers = log.segment_numbers()
            existing = set(numbers)
            deleted = []
            for number in numbers:
                if number >= durable_end[0] or number == log.head:
                    break
                liveness = index.segments.get(number)
                if liveness is None:
                    log.delete_segment(number)
                    deleted.append(number)
                    continue
                if liveness.holds_anything() or liveness.released_at > durable_end:
                    continue
                if not existing.isdisjoint(liveness.guards):
                    continue
                log.delete_segment(number)
                index.forget_segment(number)
                deleted.append(number)
            if not deleted:
                break
            log.sync_directory()  # durable before the deletions they enable (invariant rule 2)
            self.segments_deleted += len(deleted)
            logger.debug("journal %s: deleted dead segments %s", self.directory, deleted)
        target = self._compaction_target() if self._compacting is None else None
        if target is not None:
            self._compact(target)
        self._consider_checkpoint()

    def _compaction_target(self) -> int | None:
        """The segment to compact now, if any: the oldest mostly dead one, or else the root of
        the guard chains when segments kept only by guards outgrow the live data."""
        log, index = self._log, self._index
        durable_end = log.durable_end
        numbers = log.segment_numbers()
        existing = set(numbers)
        reclaimable = [n for n in numbers if n < durable_end[0] and n != log.head]
        for number in reclaimable:
            liveness = index.segments.get(number)
            if (liveness is None or not liveness.holds_anything() or liveness.purging
                    or not existing.isdisjoint(liveness.guards)):
                continue
            if (liveness.live_bytes < COMPACT_BELOW * log.segment_bytes(number)
                    and not self._draining(number, liveness.live_bytes)):
                return number
        # An old live segment keeps alive every later segment holding an ACK of one of its
        # (dead) records, and those keep the ones acking theirs: a chain that grows with
        # traffic. Past a bound, rewrite the chain's root so the whole chain can go.
        pinned = []
        for number in reclaimable:
            liveness = index.segments.get(number)
            if (liveness is not None and not liveness.holds_anything()
                    and not existing.isdisjoint(liveness.guards)):
                pinned.append(number)
        pinned_bytes = sum(log.segment_bytes(n) for n in pinned)
        live_bytes = sum(liveness.live_bytes for liveness in index.segments.values())
        if not pinned or pinned_bytes < max(PINNED_BOUND_SEGMENTS * log.segment_size, live_bytes):
            return None
        roots: set[int] = set()
        stack = [g for n in pinned for g in index.segments[n].guards if g in existing]
        while stack:
            number = stack.pop()
            if number in roots:
                continue
            roots.add(number)
            liveness = index.segments.get(number)
            if liveness is not None:
                stack.extend(g for g in liveness.guards if g in existing)
        root = min(roots)
        liveness = index.segments.get(root)
        if (root in reclaimable and liveness is not None and liveness.holds_anything()
                and not liveness.purging):
            logger.info(
                "journal %s: %d bytes in %d segments are kept only by acks of segment %d; "
                "compacting it", self.directory, pinned_bytes, len(pinned), root,
            )
            return root
        return None

    def _draining(self, number: int, live_bytes: int) -> bool:
        """Whether segment ``number``'s live bytes fell in the last ``DRAIN_QUIET`` seconds
        (or it is a candidate seen for the first time): then it is left to the consumers, and
        reclaim looks again once that much time went by. Without a running reactor (start-up,
        a blocking flush) nothing is draining."""
        reactor = self._reactor
        if not getattr(reactor, "running", False):
            return False
        now = reactor.seconds()
        seen = self._shrinking.get(number)
        if seen is None or live_bytes < seen[0]:
            self._shrinking = {n: v for n, v in self._shrinking.items()
                               if n in self._index.segments}
            self._shrinking[number] = (live_bytes, now)
        elif now - seen[1] >= DRAIN_QUIET:
            del self._shrinking[number]
            return False
        if self._quiet_call is None or not self._quiet_call.active():
            self._quiet_call = reactor.callLater(DRAIN_QUIET, self._reclaim_if_open)
        return True

    def _compact(self, number: int) -> None:
        """Re-append the live records of segment ``number`` at the head; it dies with them.

        Messages are counted, not listed, per segment, so the segment's records say which are
        live: reading and decoding a 32 MB segment of small messages is seconds of CPU, so the
        reader thread does it (:meth:`_live_records`) and the reactor re-appends what is still
        live ``COMPACT_SLICE`` records per turn. Without a running reactor (start-up, a
        blocking flush) it is done at once."""
        self._compacting = number
        if not getattr(self._reactor, "running", False):
            self._move_live(self._live_records(number), number, 0, 0)
            return
        done = self._reader.submit(self._live_records, number)
        done.addCallbacks(self._move_live, self._compaction_failed,
                          callbackArgs=(number, 0, 0), errbackArgs=(number,))

    def _live_records(self, number: int) -> list[_LiveRecord]:
        """Reader thread (or any): (offset, id, queues, payload) of segment ``number``'s
        message records that are their message's live copy now. The index changes meanwhile
        on the reactor thread, but a record that is not live never becomes live again (a
        message moved or acked stays so), and the reactor checks the rest again."""
        index = self._index
        live: list[_LiveRecord] = []
        if index.segments.get(number) is None or not index.segments[number].live:
            return live
        try:
            records = self._log.records(number)
        except (KeyError, OSError, ValueError, CorruptRecord):   # deleted meanwhile
            return live
        returned_in = index.returned_in
        for offset, record_type, payload in records:
            if record_type == _RETURNED:
                queue_key, returns = decode_returned(payload)
                live.extend((offset, msg_id, {queue_key: False}, None)
                            for msg_id, _ in returns if returned_in.get(msg_id) == number)
            if record_type != _MESSAGE:
                continue
            msg_id, _, queues, _, _ = decode_message(payload)
            if index.is_current(msg_id, number, offset):
                live.append((offset, msg_id, queues, payload))
        return live

    def _move_live(self, live: list[_LiveRecord], number: int,
                   start: int, moved: int) -> None:
        """Re-append a slice of ``live`` (from ``start``), then the next slice at the next
        reactor turn; the segment's definitions (few) go with the last."""
        if self._abandoned or self._log.closed:
            self._compacting = None
            return
        log, index = self._log, self._index
        at_once = not getattr(self._reactor, "running", False)
        end = len(live) if at_once else min(start + COMPACT_SLICE, len(live))
        for offset, msg_id, queues, payload in live[start:end]:
            if payload is None:   # a return's count: the message is rewritten with it
                if index.returned_in.get(msg_id) != number:
                    continue   # acked, rewritten or returned again since
            elif not index.is_current(msg_id, number, offset):
                continue   # acked or rewritten since it was read
            held = index.holders(msg_id, queues)
            if held:
                self._rewrite(msg_id, held, index.counts.get(msg_id), payload)
                moved += 1
            else:   # its queue was purged and its release not reached yet
                index.release_dead(msg_id, log.end)
        if end < len(live):
            self._reactor.callLater(0, self._move_live, live, number, end, moved)
            return
        self._compacting = None
        liveness = index.segments.get(number)
        for key in list(liveness.definitions) if liveness is not None else ():
            definition = index.definitions[key]
            _, definition_payload = log.read(definition.segment, definition.offset,
                                             definition.length)
            segment, offset, length = log.append(RecordType.DEFINITION, definition_payload)
            index.put_definition(key, definition.value, segment, offset, length)
            moved += 1
        self.compactions += 1
        logger.info(
            "journal %s: compacting segment %d, moved %d live records to segment %d",
            self.directory, number, moved, log.head,
        )

    def _compaction_failed(self, failure: Any, number: int) -> None:
        self._compacting = None
        logger.warning("journal %s: segment %d not compacted (%s); tried again later",
                       self.directory, number, failure.getErrorMessage())


def _type_name(record_type: int) -> str:
    try:
        return RecordType(record_type).name
    except ValueError:
        return f"type-{record_type}"


def _state_of(index: JournalIndex, records: dict[int, bytes],
              queues: dict[str, RecoveredQueue]) -> RecoveredState:
    """What either recovery (the replay, the saved index) hands the broker from the index."""
    return RecoveredState(
        definitions={key: location.value for key, location in index.definitions.items()},
        records=records,
        queues=queues,
        delivered=index.delivered(),
        delivery_counts=index.delivery_counts(),
        max_msg_id=index.max_msg_id,
    )


def _signed(sizes: array) -> array:
    """A copy of body sizes (``Q``) as the broker's rows keep them (``q``): the same bytes,
    as sizes are under 2**40."""
    signed = array("q")
    signed.frombytes(memoryview(sizes).cast("B"))
    return signed


def _saved_queues(content: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each queue's (ids, body sizes) as a checkpoint's writer or a clean close saved them
    (``JournalStore._saved_content``): bytes of u64s in queue order, or None when absent."""
    order, sizes = content.get("order"), content.get("sizes")
    if not isinstance(sizes, dict):
        return {}
    if not isinstance(order, dict):
        order = {}   # written before the ids were saved: the sizes alone
    return {key: (order.get(key), raw) for key, raw in sizes.items()}


def _recovered_queue(key: str, messages: dict[int, int] | LocationMap,
                     ids: dict[int, int] | QueueIds | ReplayQueue,
                     saved: tuple[Any, Any] | None, changed: bool = False) -> RecoveredQueue:
    """A queue's ids and body sizes in queue order, as the arrays its paged rows keep
    (``CompactRun``: one copy each), from the bytes saved with the index where they still
    describe it: whole for a queue no record after a checkpoint changed (no pass over its
    messages); for one that records after it ``changed`` (acks at its head, publishes at its
    tail: a deep queue written to until a crash), the saved sizes of what is left of the
    saved queue, found by comparing the ids, and only the new tail's sizes are read from the
    locations. Anything else (an ack in the middle, no saved arrays): the index alone."""
    saved_ids, saved_sizes = saved if saved is not None else (None, None)
    old_ids, old_sizes = array("q"), array("q")
    if (isinstance(saved_sizes, (bytes, memoryview, array))
            and memoryview(saved_sizes).nbytes % old_sizes.itemsize == 0):
        old_sizes.frombytes(memoryview(saved_sizes).cast("B"))
    if (isinstance(saved_ids, (bytes, memoryview, array))
            and memoryview(saved_ids).nbytes == len(old_sizes) * old_ids.itemsize):
        old_ids.frombytes(memoryview(saved_ids).cast("B"))
    if not changed and len(old_ids) == len(ids) and (not ids or (
            old_ids[0] == next(iter(ids)) and old_ids[-1] == next(reversed(ids)))):
        return RecoveredQueue(key, old_ids, old_sizes)
    order = queue_order(ids)
    measured = array("q")
    if isinstance(ids, QueueIds) and ids.sizes is not None:
        # its arrays carry the sizes (loaded with it, and those of the messages folded in
        # since): a C loop, where a lookup of each location costs a Python call
        measured.frombytes(memoryview(queue_sizes(ids, messages, SIZE_MASK)).cast("B"))
    elif not old_ids and not changed and len(old_sizes) == len(ids):
        measured = old_sizes   # saved before the ids were: the sizes alone
    else:
        left = _saved_head(order, old_ids)
        if left:
            measured = old_sizes[len(old_ids) - left:]
        measured.frombytes(body_sizes(messages, order[left:]).tobytes())
    return RecoveredQueue(key, order, measured)


def _saved_head(order: array, saved: array) -> int:
    """How many entries at the head of ``order`` are the tail of ``saved`` exactly (the
    saved queue less what was acked at its head since); 0 when the queue is not so."""
    if not order or not saved:
        return 0
    try:
        start = saved.index(order[0])
    except ValueError:
        return 0
    left = len(saved) - start
    if left > len(order) or order[:left] != saved[start:]:
        return 0
    return left
