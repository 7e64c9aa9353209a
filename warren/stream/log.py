"""One stream's log: numbered records in segment files, read by offset, retained by size/age.

RabbitMQ keeps a stream in osiris segment files that only grow and are deleted whole once they
fall out of retention; warren does the same with the journal's framing (``JournalSegment``:
length, CRC32, type, payload per record), so a torn tail is found and cut on recovery exactly
as in the journal. A message record (type 1) is::

    offset     u64   position in the stream, from 0, never reused; bit 63 (``CONTINUES``)
                     set when the record goes on with the chunk of the record before it
    timestamp  i64   milliseconds since the epoch when the broker appended it
    message    the core's message record (``Message.to_record``)

Chunks: osiris writes what its writer took in one batch (the publishes that came together)
as one chunk, with one trailer, and a replay gives the chunks back as they were written. The
appends of one reactor turn are warren's batch: the first record of a turn starts a chunk
and the rest carry ``CONTINUES`` (the flag is in every message record type's offset field),
so the boundaries survive a restart; a chunk never spans segments nor grows past
``MAX_RUN_MESSAGES`` / ``MAX_RUN_BYTES``, and ``read_run`` never reads past the end of one. A
log written before the flag has each record a chunk.

A message with a filter value (stream filtering, ``filters.py``) is a type 5 record, the same
with ``length u16`` and the UTF-8 value between the timestamp and the message; the Bloom
filters of its block are in memory only, rebuilt from these records on recovery.

A compressed sub-entry batch of the Stream protocol is a type 6 record: offset and timestamp
(of its first message), then the batch as it was published (flags and compression, message
count, sizes, data), never opened, as osiris keeps it. It takes as many offsets as it holds
messages; Stream protocol readers get it whole, in its chunk; AMQP 0-9-1 and STOMP readers
pass over it, as RabbitMQ's do (it only opens uncompressed batches, which warren stores one
message a record on arrival).

The plain messages of one Stream protocol publish are a type 7 record, as osiris writes a
publish's messages into one chunk: offset and timestamp of the first, ``messages u32``,
``head size u32`` and the record head they share (``record_head``), then each body as a
chunk's simple entry carries it (``size u32`` and the bytes). A replay delivers the record's
entries as they are, without a step per message; an AMQP reader gets each message back
(head and body), splitting the record once. An uncompressed sub-entry batch is a type 8
record, the same but delivered as the one sub-entry it came as.

The record head of every message published over the Stream protocol (type 1, 5, 7 and 8)
has the ``STREAM_BODY`` flag (``model/message.py``): its body is the message as the client
sent it, and a reader of another protocol gets it converted (``amqp1_conversion.py``); a
record without it came over another protocol, and a Stream protocol reader gets it as AMQP 1.0
(``read_run``'s ``convert``). Records written before the flag existed have none.

The directory holds ``NNNNNNNN.log`` segments numbered in order. Each starts with a record
naming its first offset (type 2), then the tracking so far: each publisher reference's last
publishing id (type 3, deduplication) and each consumer reference's stored offset (type 4,
server-side offset tracking), as osiris writes a tracking snapshot into each new segment. A
stored offset after that is a chunk of its own, a type 10 record (offset and timestamp, then
one trailer entry of type offset), taking the next offset as osiris' tracking delta chunk
takes one: the message after it is one offset further on, as on RabbitMQ, and no reader gets
it. (Logs written before it have type 4 records there, taking no offset.)

The messages of a named publisher's publish are followed at once by their chunk's trailer, a
type 9 record: osiris writes the tracking of the writers of a chunk after its entries (``type
u8`` 0 for a publishing id, ``id size u8``, the reference, ``value u64``), and a Stream
protocol subscriber gets the chunk's header, which tells the trailer's length (24 bytes for
rstream's publisher ``test-reference``), without the trailer itself. ``read_run`` gives the
size of the trailers that follow the records it reads, one entry per reference (an osiris
chunk written from several publishes has one per writer); a chunk that stops inside a publish
has none. The trailer record waits in memory until something else is appended, the pending
bytes are written or a reader reaches them: the same writer's next append in the chunk goes
on before it, so an AMQP channel's messages, appended one by one, end their chunk with one
trailer record, not one each. Recovery takes the publishers' last ids from the trailers.
Logs written before trailers have a type 3 record right after such messages instead; it
counts as their trailer.
A reference too long for a trailer entry (over 255 bytes) is still a type 3 record, which
only deduplication reads. A segment is closed (a new one started)
when the next record would take it past ``max_segment_bytes``; retention runs then and deletes
the oldest closed segments while the stream is over ``max_bytes`` or their newest record is
older than ``max_age_ms``. The segment being written is never deleted, so the next offset and
the tracking survive a restart however much was retained away.

Appends are gathered in memory and written once per reactor turn (or before a read reaches
them); :meth:`StreamLog.sync` writes and fdatasyncs, and is what a publisher's confirm waits
for. In memory each segment keeps the file position and length of its messages (8 bytes a
message) and its chunks' first indexes and append times (``Segment``), so a reader far behind
goes straight to its record on disk.
"""
from __future__ import annotations

import bisect
import logging
import os
import shutil
import struct
import zlib
from array import array
from typing import Any, Callable, NamedTuple

from ..model.message import STREAM_BODY, Message
from .filters import DEFAULT_FILTER_BYTES, BlockFilters
from ..store.journal.segment import (HEADER_SIZE, RECORD_HEADER, CorruptRecord, JournalSegment,
                                     encode_record, parse_segment_number)

log = logging.getLogger("warren.stream")

RECORD_MESSAGE = 1
RECORD_SEGMENT = 2       # a segment's first record: the offset its messages start at
RECORD_WRITER = 3        # a publisher's last publishing id (deduplication), not a message
RECORD_CONSUMER = 4      # a consumer's stored offset (server-side offset tracking)
RECORD_FILTERED = 5      # a message with a filter value (stream filtering)
RECORD_BATCH = 6         # a compressed sub-entry batch, kept as published
RECORD_RUN = 7           # a publish's plain messages, framed as a chunk carries them
RECORD_PLAIN_BATCH = 8   # an uncompressed sub-entry batch: a run delivered as one entry
RECORD_TRAILER = 9       # the tracking a publish's chunk carries: osiris' chunk trailer
RECORD_TRACKING = 10     # a stored offset as a chunk of its own, taking an offset (osiris)
#: in a message record's offset field: the record continues the chunk of the one before it
#: (a record without it starts a chunk; offsets never reach bit 63)
CONTINUES = 1 << 63
#: tracking types of a trailer entry (``osiris_tracking``): a publisher's publishing id, a
#: consumer's offset
TRACK_SEQUENCE, TRACK_OFFSET = 0, 1
#: a tracking id's longest (its size is a byte in the trailer)
MAX_TRACKING_ID = 255
#: how many publishers' last ids a segment's snapshot carries, the most recent ones (osiris'
#: ``max_sequences``): every AMQP channel that published into a stream is a writer
MAX_WRITERS = 255
_TRAILER_ENTRY = struct.Struct(">BB")   # tracking type, id size; then the id and a u64
#: how far past a chunk's last record a read goes for the trailer after it (one entry of
#: the longest id and its framing fit)
_TRAILER_READ = 512
_HEAD = struct.Struct(">Qq")
_MESSAGE_CRC = zlib.crc32(bytes((RECORD_MESSAGE,)))   # the journal's CRC covers the type first
_FILTERED_CRC = zlib.crc32(bytes((RECORD_FILTERED,)))
_BATCH_CRC = zlib.crc32(bytes((RECORD_BATCH,)))
_RUN_CRC = zlib.crc32(bytes((RECORD_RUN,)))
_PLAIN_BATCH_CRC = zlib.crc32(bytes((RECORD_PLAIN_BATCH,)))
_TRACKING_CRCS = {RECORD_TRAILER: zlib.crc32(bytes((RECORD_TRAILER,))),
                  RECORD_WRITER: zlib.crc32(bytes((RECORD_WRITER,)))}
_RECORD_CRCS = {RECORD_MESSAGE: _MESSAGE_CRC, RECORD_FILTERED: _FILTERED_CRC,
                RECORD_BATCH: _BATCH_CRC, RECORD_RUN: _RUN_CRC,
                RECORD_PLAIN_BATCH: _PLAIN_BATCH_CRC}
_RUNS = (RECORD_RUN, RECORD_PLAIN_BATCH)
_SUB_ENTRY = struct.Struct(">BHII")   # an uncompressed sub-entry batch's header
_RUN = struct.Struct(">QqII")   # offset, timestamp, messages, size of the shared head
_BATCH_COUNT = struct.Struct(">H")   # a batch's message count, after its flags byte
#: in a type 1 record's payload: after offset and timestamp, the message record's header
#: (``Message.to_record``: version, flags, exchange and routing key sizes), and where its
#: properties' size follows the header (plus those two sizes)
_MESSAGE_ADDRESSES = struct.Struct(">18xHI")
_MESSAGE_PROPS_AT = _HEAD.size + 8
_U32 = struct.Struct(">I")
_FIRST = struct.Struct(">Q")
_NAME = struct.Struct(">H")
_VALUE = struct.Struct(">Q")

#: RabbitMQ's default ``stream-max-segment-size-bytes`` (500 MB) and its ceiling (3 GB)
DEFAULT_SEGMENT_BYTES = 500_000_000
MAX_SEGMENT_BYTES = 3_000_000_000


class SubEntryBatch(NamedTuple):
    """A compressed sub-entry batch: ``messages`` in it, ``entry`` the batch as the Stream
    protocol carries it. What ``append_many`` takes among message records, and what
    ``read_run`` gives back in its place."""

    messages: int
    entry: bytes


#: a run record's bounds (``append_many`` cuts a longer run), and a chunk's: what one chunk
#: of a replay carries at most, so a chunk stays well within a client's frame_max (1 MiB for
#: rstream and rbfly) however big the publish frame was, and an AMQP reader splits little at
#: once (osiris' chunks are bounded by its writer's batch: a 5,000-message publish is 8
#: chunks on RabbitMQ 3.10.8, 5 here, and ``last`` reads only the last)
MAX_RUN_MESSAGES = 1024
MAX_RUN_BYTES = 256 * 1024


def _cut_runs(records: list[bytes | SubEntryBatch | BodyRun],
              values: list[str | None] | None) -> Any:
    """``records`` with their filter values, each ``BodyRun`` cut into runs within the
    bounds above."""
    for i, record in enumerate(records):
        value = values[i] if values is not None else None
        if not isinstance(record, BodyRun) or record.batch:
            yield record, value   # a batch stays whole, as it came
            continue
        bodies, start, size = record.bodies, 0, 0
        if len(bodies) <= MAX_RUN_MESSAGES and \
                sum(map(len, bodies)) + 4 * len(bodies) < MAX_RUN_BYTES:
            yield record, None   # the usual publish: one run
            continue
        for k, body in enumerate(bodies):
            size += len(body) + 4
            if k + 1 - start == MAX_RUN_MESSAGES or size >= MAX_RUN_BYTES:
                yield BodyRun(record.head, bodies[start:k + 1]), None
                start, size = k + 1, 0
        if start < len(bodies):
            yield BodyRun(record.head, bodies[start:]), None


class BodyRun(NamedTuple):
    """Messages published together with one address and properties (a Stream protocol
    publish frame's): ``head`` is their record head (``record_head``), ``bodies`` their
    bodies. What ``append_many`` takes to keep them as one record."""

    head: bytes
    bodies: list[bytes]
    batch: bool = False   # an uncompressed sub-entry batch, delivered as one


class ChunkPart(NamedTuple):
    """What ``read_run`` gives for a record holding several messages: ``entries`` of a
    chunk (a compressed batch is one; a run's messages one each) over ``messages`` offsets,
    ``data`` those entries as a chunk carries them."""

    entries: int
    messages: int
    data: bytes


def batch_count(entry: Any) -> int:
    """The message count in a sub-entry batch's header."""
    return _BATCH_COUNT.unpack_from(entry, 1)[0]


class Segment:
    """One segment file and the positions of its records.

    Per message 8 bytes: its file position (u32: a segment never reaches 4 GiB, its size
    being capped at 3 GB) and its length. Chunks (what one append wrote: osiris writes a
    writer's batch as one chunk, and a replay gives them back as they were written) are
    kept as runs: each one's first index and append time (12 bytes a chunk), as osiris keeps
    one timestamp per chunk; ``tracking`` holds the indexes of the stored-offset chunks,
    which no reader gets."""

    __slots__ = ("file", "first_offset", "positions", "lengths", "run_starts", "run_times",
                 "tracking", "size")

    def __init__(self, file: JournalSegment, first_offset: int) -> None:
        self.file = file
        self.first_offset = first_offset
        self.positions = array("I")    # file position of each message record
        self.lengths = array("I")      # its length, framing included
        self.run_starts = array("I")   # index of the first message of each run
        self.run_times = array("q")    # the run's append time (ms)
        self.tracking = array("I")     # index of each stored-offset chunk
        self.size = 0                  # bytes, written or pending

    @property
    def count(self) -> int:
        return len(self.positions)

    @property
    def last_timestamp(self) -> int:
        return self.run_times[-1]

    def add(self, position: int, length: int, ts: int, count: int = 1,
            new_chunk: bool = True) -> None:
        """``count`` offsets in the record at ``position`` (more than one: a record of
        several messages, each of its offsets pointing at it); ``new_chunk``: it starts a
        chunk (else it goes on with the chunk of the record before)."""
        if new_chunk or not self.run_times:
            self.run_starts.append(len(self.positions))
            self.run_times.append(ts)
        if count == 1:
            self.positions.append(position)
            self.lengths.append(length)
        else:
            self.positions.extend(array("I", (position,)) * count)
            self.lengths.extend(array("I", (length,)) * count)

    def index_at(self, ts_ms: int) -> int:
        """The index of the first message appended at or after ``ts_ms`` (``count`` when
        none is)."""
        run = bisect.bisect_left(self.run_times, ts_ms)
        return self.run_starts[run] if run < len(self.run_starts) else self.count

    def chunk_of(self, index: int) -> tuple[int, int]:
        """The first index of the chunk holding ``index`` and the index after the chunk."""
        run = bisect.bisect_right(self.run_starts, index) - 1
        starts = self.run_starts
        return starts[run], starts[run + 1] if run + 1 < len(starts) else self.count

    def is_tracking(self, index: int) -> bool:
        k = bisect.bisect_left(self.tracking, index)
        return k < len(self.tracking) and self.tracking[k] == index


class StreamLog:
    def __init__(self, directory: str, clock: Any,
                 filter_bytes: int = DEFAULT_FILTER_BYTES) -> None:
        self.directory = directory
        self.clock = clock
        self.filters = BlockFilters(filter_bytes)
        self.max_segment_bytes = DEFAULT_SEGMENT_BYTES
        self.segments: list[Segment] = []
        self._firsts: list[int] = []          # first offset of each segment, for bisect
        self.next_offset = 0
        self._pending = bytearray()           # appended, not yet written to the last segment
        self._pending_at = 0                  # its file position
        self._flush_call: Any = None
        # appends this reactor turn went into a chunk that the next one goes on with, and
        # the messages and bytes in it so far
        self._chunk_open = False
        self._chunk_messages = self._chunk_bytes = 0
        # the trailer entry the records appended last wait for: (publisher reference, its
        # tracking id, publishing id), written when anything else comes (``_end_trailer``)
        self._trailer: tuple[str, bytes, int] | None = None
        self._unsynced = False
        self._new_files = False               # a segment was created: fsync the directory
        self.writers: dict[str, int] = {}     # publisher reference -> last publishing id
        self.consumers: dict[str, int] = {}   # consumer reference -> stored offset
        # the last run record read message by message: ((segment, position), its
        # timestamp, the shared head, the bodies)
        self._run_cache: tuple[tuple[int, int], int, bytes, list[bytes]] | None = None
        self.closed = False

    # ---------------------------------------------------------------- opening
    def open(self, fresh: bool) -> None:
        """Open the directory; ``fresh`` throws away what an older stream of the name left."""
        if fresh and os.path.isdir(self.directory):
            shutil.rmtree(self.directory)
        os.makedirs(self.directory, exist_ok=True)
        numbers = sorted(n for n in (parse_segment_number(f) for f in os.listdir(self.directory))
                         if n is not None)
        for number in numbers:
            if not self._recover_segment(number):
                # a gap in the offsets: whatever follows cannot be placed, so it goes
                for later in numbers[numbers.index(number):]:
                    path = os.path.join(self.directory, f"{later:08d}.log")
                    log.error("stream %s: segment %s does not follow on: removed",
                              self.directory, path)
                    os.unlink(path)
                break
        if not self.segments:
            self._new_segment(numbers[-1] + 1 if numbers else 0)
            self.sync()
        self._pending_at = self.segments[-1].size   # appends go on after what is there

    def _recover_segment(self, number: int) -> bool:
        """Read one segment back; False when its offsets do not follow the previous one's."""
        file = JournalSegment(self.directory, number)
        scan = file.scan()
        if scan.dropped:
            log.warning("stream %s: segment %d: %s; %d bytes cut at %d", self.directory,
                        number, scan.problem, scan.dropped, scan.valid_end)
            file.truncate(scan.valid_end)
        records = scan.records
        if not records or records[0][1] != RECORD_SEGMENT:
            # torn before its header was written: it never held a message
            file.delete()
            return True
        (first,) = _FIRST.unpack_from(records[0][2])
        if self.segments and first != self.next_offset:
            file.close()
            return False
        seg = Segment(file, first)
        expected = first
        end = records[0][0] + HEADER_SIZE + _FIRST.size
        for position, record_type, payload in records[1:]:
            if record_type in (RECORD_WRITER, RECORD_CONSUMER):
                name, value = _unpack_tracking(payload)
                (self.writers if record_type == RECORD_WRITER else self.consumers)[name] = value
                end = position + HEADER_SIZE + len(payload)
                continue
            if record_type == RECORD_TRACKING:
                offset, ts = _HEAD.unpack_from(payload)
                if offset != expected:
                    break
                for kind, raw_name, value in trailer_entries(payload[_HEAD.size:]):
                    if kind == TRACK_OFFSET:
                        self.consumers[raw_name.decode("utf-8", "replace")] = value
                seg.tracking.append(seg.count)
                seg.add(position, HEADER_SIZE + len(payload), ts)
                expected += 1
                end = position + HEADER_SIZE + len(payload)
                continue
            if record_type == RECORD_TRAILER:
                for kind, raw_name, value in trailer_entries(payload):
                    name = raw_name.decode("utf-8", "replace")
                    if kind == TRACK_SEQUENCE:
                        self.writers.pop(name, None)   # the most recent writers last
                        self.writers[name] = value
                    elif kind == TRACK_OFFSET:
                        self.consumers[name] = value
                end = position + HEADER_SIZE + len(payload)
                continue
            if record_type not in _RECORD_CRCS:
                break
            offset, ts = _HEAD.unpack_from(payload)
            new_chunk = not offset & CONTINUES or not seg.count
            offset &= ~CONTINUES
            if offset != expected:
                break
            count = 1
            if record_type == RECORD_FILTERED:
                self.filters.add(offset, _filter_value(payload))
            elif record_type == RECORD_BATCH:
                count = batch_count(payload[_HEAD.size:])
            elif record_type in _RUNS:
                count = _RUN.unpack_from(payload)[2]
            seg.add(position, HEADER_SIZE + len(payload), ts, count, new_chunk)
            expected += count
            end = position + HEADER_SIZE + len(payload)
        if end != scan.valid_end:
            log.warning("stream %s: segment %d: records out of order cut at %d",
                        self.directory, number, end)
            file.truncate(end)
        seg.size = end
        self.segments.append(seg)
        self._firsts.append(first)
        self.next_offset = expected
        return True

    def _new_segment(self, number: int) -> Segment:
        """Start a segment whose header names its first offset (written now, synced with the
        next sync), so the next offset is known even when every older segment is gone."""
        file = JournalSegment(self.directory, number)
        # the header, then the tracking so far: retention deleting the older segments that
        # recorded it must not lose deduplication or stored offsets
        self._trim_writers()
        header = b"".join(
            [encode_record(RECORD_SEGMENT, _FIRST.pack(self.next_offset))]
            + [encode_record(RECORD_WRITER, _pack_tracking(n, v)) for n, v in self.writers.items()]
            + [encode_record(RECORD_CONSUMER, _pack_tracking(n, v))
               for n, v in self.consumers.items()])
        file.write_at(0, header)
        seg = Segment(file, self.next_offset)
        seg.size = len(header)
        self.segments.append(seg)
        self._firsts.append(self.next_offset)
        self._pending_at = seg.size
        self._new_files = True
        self._unsynced = True
        return seg

    # ---------------------------------------------------------------- facts
    @property
    def first_offset(self) -> int:
        """The oldest offset still in the log (``next_offset`` when it holds nothing)."""
        for seg in self.segments:
            if seg.count:
                return seg.first_offset
        return self.next_offset

    @property
    def count(self) -> int:
        return self.next_offset - self.first_offset

    @property
    def size(self) -> int:
        return sum(seg.size for seg in self.segments)

    @property
    def last_chunk_offset(self) -> int:
        """Where ``last`` starts: the first offset of the newest chunk of messages (osiris'
        last user chunk: a stored offset's chunk is passed over); ``next_offset`` when
        there is none."""
        for seg in reversed(self.segments):
            for start in reversed(seg.run_starts):
                if not seg.is_tracking(start):
                    return seg.first_offset + start
        return self.next_offset

    @property
    def last_chunk_id(self) -> int:
        """The first offset of the newest chunk of any kind (what osiris calls the
        committed chunk id once it is synced); -1 when the log holds none."""
        for seg in reversed(self.segments):
            if seg.run_starts:
                return seg.first_offset + seg.run_starts[-1]
        return -1

    def offset_at(self, ts_ms: int) -> int:
        """The first offset appended at or after ``ts_ms``; ``next_offset`` when none is."""
        for seg in self.segments:
            if seg.count and seg.last_timestamp >= ts_ms:
                return seg.first_offset + seg.index_at(ts_ms)
        return self.next_offset

    # ---------------------------------------------------------------- append / read
    def append(self, message_record: bytes, writer: tuple[str, int] | None = None) -> int:
        """Add one message; returns its offset. Written at the end of the turn. ``writer``:
        (publisher reference, publishing id) remembered for deduplication."""
        offset = self.next_offset
        self.append_many([message_record], writer=writer)
        return offset

    def append_many(self, message_records: list[bytes | SubEntryBatch | BodyRun],
                    filter_values: list[str | None] | None = None,
                    writer: tuple[str, int] | None = None) -> None:
        """Add messages at consecutive offsets, appended at one timestamp; ``filter_values``:
        each one's filter value or None (stream filtering). A ``SubEntryBatch`` or a
        ``BodyRun`` among them is one record taking an offset for each of its messages.
        ``writer``: the publisher reference and the publishing id of the last of them,
        remembered for deduplication in a trailer record right after them (``_track``)."""
        ts = int(self.clock.seconds() * 1000)
        seg = self.segments[-1]
        pack_head, pack_frame = _HEAD.pack, RECORD_HEADER.pack
        pending = self._pending
        # the appends of one reactor turn are one chunk, as osiris writes what its writer
        # took in one batch as one chunk: its first record starts it, the others carry
        # CONTINUES in their offset field
        goes_on = CONTINUES if self._chunk_open else 0
        chunk_messages, chunk_bytes = self._chunk_messages, self._chunk_bytes
        trailer = self._trailer
        if trailer is not None and (writer is None or not goes_on or writer[0] != trailer[0]):
            self._end_trailer()   # the same writer going on with the chunk: it waits
        for record, value in _cut_runs(message_records, filter_values):
            count = 1
            at = self.next_offset | goes_on
            if isinstance(record, BodyRun):
                count = len(record.bodies)
                pack = _U32.pack
                payload = b"".join([_RUN.pack(at, ts, count, len(record.head)),
                                    record.head] + [pack(len(b)) + b for b in record.bodies])
                kind = RECORD_PLAIN_BATCH if record.batch else RECORD_RUN
                frame = pack_frame(len(payload), zlib.crc32(payload, _RECORD_CRCS[kind]),
                                   kind) + payload
                if self.filters.blocks:
                    for k in range(count):
                        self.filters.add(self.next_offset + k, None)
            elif isinstance(record, SubEntryBatch):
                count = record.messages
                payload = pack_head(at, ts) + record.entry
                frame = pack_frame(len(payload), zlib.crc32(payload, _BATCH_CRC),
                                   RECORD_BATCH) + payload
                if self.filters.blocks:
                    for k in range(count):
                        self.filters.add(self.next_offset + k, None)
            elif value is None:
                payload = pack_head(at, ts) + record
                frame = pack_frame(len(payload), zlib.crc32(payload, _MESSAGE_CRC),
                                   RECORD_MESSAGE) + payload
                if self.filters.blocks:
                    self.filters.add(self.next_offset, None)
            else:
                raw = value.encode()
                payload = pack_head(at, ts) + _NAME.pack(len(raw)) + raw + record
                frame = pack_frame(len(payload), zlib.crc32(payload, _FILTERED_CRC),
                                   RECORD_FILTERED) + payload
                self.filters.add(self.next_offset, value)
            size = len(frame)
            if seg.size + size > self.max_segment_bytes and seg.positions:
                # a chunk never spans segments: the new one starts with a chunk
                self._write_pending()   # (and the waiting trailer ends the chunk before)
                seg = self._new_segment(_segment_number(seg) + 1)
                pending = self._pending
                goes_on = 0
            elif goes_on and (chunk_messages + count > MAX_RUN_MESSAGES
                              or chunk_bytes + size > MAX_RUN_BYTES):
                goes_on = 0   # a chunk as big as a replay delivers at once: the next starts
                if self._trailer is not None:
                    self._end_trailer()
            if not goes_on:
                if at & CONTINUES:
                    frame = _starting_chunk(frame)
                chunk_messages = chunk_bytes = 0
            chunk_messages += count
            chunk_bytes += size
            seg.add(seg.size, size, ts, count, not goes_on)
            seg.size += size
            pending += frame
            self.next_offset += count
            goes_on = CONTINUES
        self._chunk_messages, self._chunk_bytes = chunk_messages, chunk_bytes
        self._chunk_open = True
        if writer is not None:
            self._track(*writer)
        self._unsynced = True
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush_soon)

    def _track(self, reference: str, publishing_id: int) -> None:
        """A publisher's last publishing id, written right after its messages (nothing comes
        between: same segment, same turn): as osiris writes a chunk's trailer, one entry of
        type sequence, so a reader finds the trailer of the chunk it delivers next to its
        last record. A reference too long for a trailer entry (over 255 bytes) is a
        tracking record (type 3), which counts for deduplication alone.

        The trailer record waits (``_trailer``) until something else is appended, written or
        read: the same writer's next append in the chunk goes on before it and takes it
        over, so a chunk of one writer's appends ends with one trailer record, its last id,
        as osiris' chunk has one entry per writer. An AMQP 0-9-1 channel's messages come one
        by one, each with its writer's next id (``writer_ids.py``): a trailer record after
        each cost its publish a record to encode and a replay a record to pass over."""
        trailer = self._trailer
        if trailer is not None and trailer[0] == reference:
            # the same writer going on with its chunk: already the most recent writer
            self.writers[reference] = publishing_id
            self._trailer = (reference, trailer[1], publishing_id)
            return
        writers = self.writers
        writers.pop(reference, None)   # the most recent writers last
        writers[reference] = publishing_id
        if len(writers) > 2 * MAX_WRITERS:
            self._trim_writers()
        raw = reference.encode()
        if len(raw) > MAX_TRACKING_ID:
            self._add(encode_record(RECORD_WRITER, _pack_tracking(reference, publishing_id)))
        else:
            self._trailer = (reference, raw, publishing_id)

    def _end_trailer(self) -> None:
        """Append the trailer record the last records wait for (``_track``)."""
        trailer = self._trailer
        if trailer is not None:
            self._trailer = None
            frame = encode_record(RECORD_TRAILER,
                                  trailer_entry(TRACK_SEQUENCE, trailer[1], trailer[2]))
            self.segments[-1].size += len(frame)
            self._pending += frame

    def _trim_writers(self) -> None:
        """Forget all but the ``MAX_WRITERS`` publishers that wrote last, as osiris trims its
        sequences: a deduplicating publisher gone that long starts over."""
        for reference in list(self.writers)[:-MAX_WRITERS]:
            del self.writers[reference]

    def store_offset(self, reference: str, offset: int) -> None:
        """Record where a named consumer got to (the Stream protocol's store_offset): as
        osiris writes a stored offset that comes with no messages, a chunk of its own (a
        tracking delta: one trailer entry of type offset) that takes the next offset, so the
        next message's offset is one further on, as on RabbitMQ. Readers pass over it. A
        reference too long for an entry (over 255 bytes) is a type 4 record, taking none."""
        self.consumers[reference] = offset
        raw = reference.encode()
        if len(raw) > MAX_TRACKING_ID:
            self._add(encode_record(RECORD_CONSUMER, _pack_tracking(reference, offset)))
            return
        ts = int(self.clock.seconds() * 1000)
        frame = encode_record(RECORD_TRACKING, _HEAD.pack(self.next_offset, ts)
                              + trailer_entry(TRACK_OFFSET, raw, offset))
        if self._trailer is not None:
            self._end_trailer()   # the chunk before ends with it
        seg = self.segments[-1]
        if seg.size + len(frame) > self.max_segment_bytes and seg.positions:
            self._write_pending()
            seg = self._new_segment(_segment_number(seg) + 1)
        seg.tracking.append(seg.count)
        seg.add(seg.size, len(frame), ts)
        self._add(frame)
        self.next_offset += 1
        self._chunk_open = False   # messages after it start a chunk of their own

    def _add(self, frame: bytes) -> None:
        if self._trailer is not None:
            self._end_trailer()
        self.segments[-1].size += len(frame)
        self._pending += frame
        self._unsynced = True
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush_soon)

    def read(self, offset: int) -> tuple[int, bytes | None, str | None] | None:
        """(timestamp ms, message record, filter value) at ``offset``; None when it is not in
        the log; the record is None when the offset is in a compressed sub-entry batch
        (``batch_end`` is where the next message is). A message of a run record comes with
        the run's head."""
        i = bisect.bisect_right(self._firsts, offset) - 1
        if i < 0 or offset >= self.next_offset:
            return None
        seg = self.segments[i]
        index = offset - seg.first_offset
        if index >= seg.count:
            return None
        position = seg.positions[index]
        cached = self._run_cache
        if cached is not None and cached[0] == (seg.file.number, position):
            # the run record read last: no read again
            first = bisect.bisect_left(seg.positions, position, 0, index)
            return cached[1], cached[2] + cached[3][index - first], None
        if seg is self.segments[-1] and position >= self._pending_at and self._pending:
            self._write_pending()
        try:
            record_type, payload = seg.file.read_at(position, seg.lengths[index])
        except (CorruptRecord, OSError) as e:
            log.error("stream %s: offset %d unreadable: %s", self.directory, offset, e)
            return None
        ts = _HEAD.unpack_from(payload)[1]
        if record_type in (RECORD_BATCH, RECORD_TRACKING):
            return ts, None, None
        if record_type in _RUNS:
            first = bisect.bisect_left(seg.positions, position, 0, index)
            head, bodies = self._split_run(seg, position, ts, payload)
            return ts, head + bodies[index - first], None
        if record_type == RECORD_FILTERED:
            value = _filter_value(payload)
            return ts, payload[_HEAD.size + _NAME.size + len(value.encode()):], value
        return ts, payload[_HEAD.size:], None

    def _split_run(self, seg: Segment, position: int, ts: int,
                   payload: Any) -> tuple[bytes, list[bytes]]:
        """A run record's shared head and its bodies; kept as the last run read, so a
        reader going through a run message by message reads and splits it once."""
        _, _, count, head_size = _RUN.unpack_from(payload)
        at = _RUN.size
        head = bytes(payload[at:at + head_size])
        at += head_size
        bodies = []
        unpack = _U32.unpack_from
        for _ in range(count):
            (size,) = unpack(payload, at)
            bodies.append(bytes(payload[at + 4:at + 4 + size]))
            at += 4 + size
        self._run_cache = ((seg.file.number, position), ts, head, bodies)
        return head, bodies

    def batch_end(self, offset: int) -> int:
        """The offset after the record holding ``offset`` (one past it for a message or a
        stored offset's chunk; past all of them for a record of several messages, whose
        offsets share its position)."""
        i = bisect.bisect_right(self._firsts, offset) - 1
        seg = self.segments[i]
        index = offset - seg.first_offset
        after = bisect.bisect_right(seg.positions, seg.positions[index], index)
        return seg.first_offset + after

    def read_run(self, offset: int, end: int, max_records: int, max_bytes: int,
                 body_only: bool = False,
                 convert: Callable[[int, bytes], bytes] | None = None
                 ) -> tuple[int, int, list[bytes | ChunkPart], int, int]:
        """Consecutive message records from ``offset`` (not past ``end``, one segment, at
        most ``max_records``, about ``max_bytes``) read with one pread: (the first one's
        offset and timestamp, the records, the offset after them, the size of their chunk's
        trailer: the entries of the trailer records after them, one per tracking id, as
        osiris writes the tracking of a chunk's writers in its trailer); ``body_only``: each
        message's body alone (what the Stream protocol delivers), cut from the read bytes
        without copying the record first; with ``convert``, a message record without the
        ``STREAM_BODY`` flag (published over another protocol) comes as ``convert(its offset,
        the record)`` instead. A record of several messages (a compressed
        sub-entry batch, a run of a publish's messages) comes as a ``ChunkPart``, and only
        whole: a run starting inside one (a reader that asked for an offset in it) starts
        at its first offset, as an osiris reader starts at the chunk holding the offset; one
        that would end inside it stops before it, unless it is the run's only record. A
        record that does not check out ends the run; when it is the first, it is logged and
        passed over (no records)."""
        i = bisect.bisect_right(self._firsts, offset) - 1
        if i < 0 or offset >= min(end, self.next_offset):
            return offset, 0, [], offset, 0
        seg = self.segments[i]
        if self._trailer is not None and seg is self.segments[-1]:
            self._end_trailer()   # a reader in the turn's chunk: its trailer so far
        index = offset - seg.first_offset
        positions, lengths = seg.positions, seg.lengths
        if index and positions[index - 1] == positions[index]:
            # inside a record of several messages: back to its first offset
            index = bisect.bisect_left(positions, positions[index], 0, index)
            offset = seg.first_offset + index
        if seg.tracking and seg.is_tracking(index):
            return offset, 0, [], offset + 1, 0   # a stored offset: no reader gets it
        # no further than the end of the chunk holding it: a replay gives the chunks back
        # as they were written (one per append, with its own trailer), as osiris keeps them
        chunk_end = seg.chunk_of(index)[1]
        stop = min(end - seg.first_offset, chunk_end, index + max_records)
        if index >= stop:
            return offset, 0, [], offset, 0
        start = positions[index]
        # the records starting within ``max_bytes`` of the first (at least the first)...
        j = max(bisect.bisect_left(positions, start + max_bytes, index, stop), index + 1)
        if j < len(positions) and positions[j] == positions[j - 1]:
            j = bisect.bisect_right(positions, positions[j], j)   # ...and the last whole
        if j > stop:
            # the last record holds messages past the end asked for: it waits for the
            # next run, unless it is the only record
            last = bisect.bisect_left(positions, positions[j - 1], index, j)
            if last > index:
                j = last
        span_end = positions[j - 1] + lengths[j - 1]
        # and the start of what follows the last record, up to the next message record: the
        # trailer of the publish that ended with it, if it did
        read_end = span_end + min((positions[j] if j < len(positions) else seg.size) - span_end,
                                  _TRAILER_READ)
        if seg is self.segments[-1] and read_end > self._pending_at and self._pending:
            self._write_pending()
        try:
            raw = seg.file.read_span(start, read_end - start)
        except OSError as e:
            log.error("stream %s: offsets %d-%d unreadable: %s", self.directory, offset,
                      seg.first_offset + j - 1, e)
            return offset, 0, [], \
                seg.first_offset + bisect.bisect_right(positions, start, index), 0
        view = memoryview(raw)
        records: list[bytes | ChunkPart] = []
        trailer: dict[tuple[int, bytes], int] = {}
        first_ts = 0
        unpack_frame, crc32 = RECORD_HEADER.unpack_from, zlib.crc32
        body_size = Message.record_body_size
        addresses, props_size = _MESSAGE_ADDRESSES.unpack_from, _U32.unpack_from
        append = records.append
        whole = len(raw) >= span_end - start   # else the file ended early: check each
        k = index
        count = 0
        record_end = 0   # where the last record taken ends (in ``raw``)
        last_trailer: bytes | None = None
        cut = False      # a record did not check out: the chunk ends before it
        while k < j:
            at = positions[k] - start
            length = lengths[k]
            if record_end < at <= len(raw) and records:
                # records between two messages: the first, the trailer of the one before if
                # it is one. Their types and bytes but the last value: when they are the
                # last trailer's, it adds nothing (a publisher's trailers differ in the id)
                key = raw[record_end + 8:at - _VALUE.size]
                if key != last_trailer:
                    last_trailer = key
                    _gather_trailer(raw, record_end, at, trailer)
            size, crc, record_type = unpack_frame(raw, at) if whole or \
                at + HEADER_SIZE <= len(raw) else (-1, 0, 0)
            p0 = at + HEADER_SIZE
            if (HEADER_SIZE + size != length or (not whole and p0 + size > len(raw))
                    or record_type not in _RECORD_CRCS
                    or crc32(view[p0:p0 + size], _RECORD_CRCS[record_type]) != crc):
                if records:
                    cut = True
                    break
                log.error("stream %s: offset %d unreadable: record at %d does not check out",
                          self.directory, seg.first_offset + k, positions[k])
                return offset, 0, [], \
                    seg.first_offset + bisect.bisect_right(positions, start, index), 0
            record_end = at + length
            if not records:
                first_ts = _HEAD.unpack_from(raw, p0)[1]
            k += 1
            count += 1
            if record_type == RECORD_MESSAGE and body_only and \
                    (convert is None or raw[p0 + _HEAD.size + 1] & STREAM_BODY):
                # the hot path of a replay: the body's start from the record's own sizes
                ex, rk = addresses(raw, p0)
                at = p0 + _MESSAGE_PROPS_AT + ex + rk
                append(raw[at + 4 + props_size(raw, at)[0]:p0 + size])
                continue
            payload = view[p0:p0 + size]
            if record_type in _RUNS:
                _, _, n, head_size = _RUN.unpack_from(payload)
                data = payload[_RUN.size + head_size:]
                if record_type == RECORD_RUN:
                    append(ChunkPart(n, n, bytes(data)))
                else:
                    append(ChunkPart(1, n, _SUB_ENTRY.pack(0x80, n, len(data), len(data))
                                     + bytes(data)))
                k += n - 1
                count += n - 1
                continue
            if record_type == RECORD_BATCH:
                entry = bytes(payload[_HEAD.size:])
                n = batch_count(entry)
                append(ChunkPart(1, n, entry))
                k += n - 1
                count += n - 1
                continue
            head = _HEAD.size
            if record_type == RECORD_FILTERED:
                head += _NAME.size + _NAME.unpack_from(payload, _HEAD.size)[0]
            record = payload[head:]
            if body_only:
                if convert is not None and not record[1] & STREAM_BODY:
                    append(convert(seg.first_offset + k - 1, bytes(record)))
                    continue
                record = record[len(record) - body_size(record):]
            append(bytes(record))
        if not cut and len(raw) > record_end:
            _gather_trailer(raw, record_end, len(raw), trailer)
        return offset, first_ts, records, offset + count, sum(trailer.values())

    # ---------------------------------------------------------------- durability
    def _flush_soon(self) -> None:
        self._flush_call = None
        self._chunk_open = False   # the turn's chunk is complete
        if not self.closed:
            self._write_pending()

    def _write_pending(self) -> None:
        if self._trailer is not None:
            self._end_trailer()
        if self._pending and not self.closed:
            seg = self.segments[-1]
            seg.file.write_at(self._pending_at, self._pending)
            self._pending_at += len(self._pending)
            self._pending = bytearray()

    @property
    def unsynced(self) -> bool:
        return self._unsynced

    def sync(self) -> None:
        """Everything appended so far is on disk once this returns."""
        if self.closed or not self._unsynced:
            return
        self._write_pending()
        self.segments[-1].file.sync()
        if self._new_files:
            # a segment closed since the last sync was synced before the next one began
            # only if a sync came in between: sync them all, then the directory entry
            for seg in self.segments[:-1]:
                seg.file.sync()
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._new_files = False
        self._unsynced = False

    def prepare_sync(self) -> tuple[list[int], str | None] | None:
        """The reactor's half of a sync done on a disk thread: what was appended is written
        now; returns descriptors (duplicates, the caller's to close) to fdatasync and the
        directory to fsync, or None when nothing is unsynced."""
        if self.closed or not self._unsynced:
            return None
        self._write_pending()
        segments = self.segments if self._new_files else self.segments[-1:]
        directory = self.directory if self._new_files else None
        self._new_files = False
        self._unsynced = False
        return [seg.file.dup_fd() for seg in segments], directory

    # ---------------------------------------------------------------- retention
    def retain(self, max_bytes: int | None, max_age_ms: int | None) -> int:
        """Delete the oldest closed segments out of retention; returns how many went.

        The size counted is the closed segments', as osiris counts it when a segment rolls
        over (the new one still empty): so a restart, which runs retention again, deletes no
        more than the last roll did however far the segment being written has grown since.
        The newest segment is synced first: its header must be on disk before the segments
        that told the offsets before it are gone."""
        now_ms = int(self.clock.seconds() * 1000)
        gone = 0
        total = self.size - self.segments[-1].size
        while len(self.segments) > 1:
            oldest = self.segments[0]
            over_size = max_bytes is not None and total > max_bytes
            too_old = (max_age_ms is not None and oldest.count
                       and oldest.last_timestamp < now_ms - max_age_ms)
            if not (over_size or too_old):
                break
            if not gone:
                self.sync()
            total -= oldest.size
            oldest.file.delete()
            del self.segments[0]
            del self._firsts[0]
            gone += 1
        if gone and self.filters.blocks:
            self.filters.forget_before(self.first_offset)
        return gone

    # ---------------------------------------------------------------- end
    def close(self) -> None:
        if self.closed:
            return
        try:
            self.sync()
        except OSError as e:
            log.error("stream %s: last sync failed: %s", self.directory, e)
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        for seg in self.segments:
            seg.file.close()
        self.closed = True

    def abandon(self) -> None:
        """HA fencing: another broker owns the files now; nothing more is written."""
        self.closed = True
        self._pending = bytearray()
        self._trailer = None
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        for seg in self.segments:
            seg.file.close()

    def destroy(self) -> None:
        """The stream is deleted: its files go."""
        self.closed = True
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        for seg in self.segments:
            seg.file.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def sync_files(jobs: list[tuple[list[int], str | None]]) -> None:
    """The disk thread's half of a sync (``StreamLog.prepare_sync``): fdatasync, then close."""
    failure = None
    for fds, directory in jobs:
        for fd in fds:
            try:
                if failure is None:
                    os.fdatasync(fd)
            except OSError as e:
                failure = e
            finally:
                os.close(fd)
        if directory is not None and failure is None:
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    if failure is not None:
        raise failure


def _pack_tracking(name: str, value: int) -> bytes:
    raw = name.encode()
    return _NAME.pack(len(raw)) + raw + _VALUE.pack(value)


def _unpack_tracking(payload: Any) -> tuple[str, int]:
    (n,) = _NAME.unpack_from(payload)
    name = bytes(payload[2:2 + n]).decode("utf-8", "replace")
    return name, _VALUE.unpack_from(payload, 2 + n)[0]


def trailer_entry(kind: int, tracking_id: bytes, value: int) -> bytes:
    """One tracking entry of a chunk trailer as osiris writes it: type u8, id size u8, the
    id, the value u64."""
    return _TRAILER_ENTRY.pack(kind, len(tracking_id)) + tracking_id + _VALUE.pack(value)


def trailer_entries(payload: Any) -> list[tuple[int, bytes, int]]:
    """A trailer's entries (type, id, value); what follows an entry that does not fit (a
    record written wrong) is left out."""
    entries = []
    at, size = 0, len(payload)
    while at + _TRAILER_ENTRY.size <= size:
        kind, n = _TRAILER_ENTRY.unpack_from(payload, at)
        start = at + _TRAILER_ENTRY.size
        if start + n + _VALUE.size > size:
            break
        entries.append((kind, bytes(payload[start:start + n]),
                        _VALUE.unpack_from(payload, start + n)[0]))
        at = start + n + _VALUE.size
    return entries


def _gather_trailer(raw: Any, at: int, end: int, into: dict[tuple[int, bytes], int]) -> None:
    """When the record at ``at`` (within ``raw`` before ``end``) is a trailer (or, in a log
    written before trailers, the tracking record of the publish before it: type 3), its
    entries into ``into``: (type, id) -> the entry's size. One entry a tracking id, as
    osiris keeps one per id in a chunk's trailer however often the writer wrote in it."""
    if at + HEADER_SIZE > end:
        return
    size, crc, record_type = RECORD_HEADER.unpack_from(raw, at)
    p0 = at + HEADER_SIZE
    type_crc = _TRACKING_CRCS.get(record_type)
    if type_crc is None or p0 + size > end:
        return
    payload = memoryview(raw)[p0:p0 + size]
    if zlib.crc32(payload, type_crc) != crc:
        return
    if record_type == RECORD_TRAILER:
        for kind, tracking_id, _ in trailer_entries(payload):
            into[(kind, tracking_id)] = _TRAILER_ENTRY.size + len(tracking_id) + _VALUE.size
        return
    (n,) = _NAME.unpack_from(payload)
    if n <= MAX_TRACKING_ID:
        into[(TRACK_SEQUENCE, bytes(payload[2:2 + n]))] = \
            _TRAILER_ENTRY.size + n + _VALUE.size


def _starting_chunk(frame: bytes) -> bytes:
    """A message record framed to go on with the chunk before it, made to start one instead
    (``CONTINUES`` cleared, the CRC again): the rare record that rolls a segment over or
    would take its chunk past its bounds."""
    size, _, record_type = RECORD_HEADER.unpack_from(frame)
    payload = bytearray(frame[HEADER_SIZE:])
    payload[0] &= 0x7F
    return RECORD_HEADER.pack(size, zlib.crc32(payload, _RECORD_CRCS[record_type]),
                              record_type) + payload


def _filter_value(payload: Any) -> str:
    """The filter value of a type 5 record's payload."""
    (n,) = _NAME.unpack_from(payload, _HEAD.size)
    start = _HEAD.size + _NAME.size
    return bytes(payload[start:start + n]).decode("utf-8", "replace")


def _segment_number(seg: Segment) -> int:
    return seg.file.number

