"""The journal: typed records appended to a chain of segments, made durable by group commit.

Shaped like KahaDB's ``Journal`` + ``DataFileAppender``: the log knows segments, positions and
fsync, never messages. A position is ``(segment number, offset)``; tuples compare in log order.

Group commit. :meth:`JournalLog.append` only frames the record into an in-memory batch and
returns its position at once. The first append (or :meth:`sync`) of a reactor turn schedules a
flush for the end of the turn (``callLater(0)``), so every write of the turn goes to disk in one
``pwrite`` per segment touched and one ``fdatasync``. That disk work runs on one dedicated
thread, so the reactor keeps accepting and routing while the disk works; at most one flush is
in flight and writes made meanwhile gather in the next batch, so the file order is the append
order. A *lazy* record (``append(lazy=True)``: acks, delivered flags, returns, which a crash
may lose at the cost of a redelivery) makes no flush due by itself: it goes with the next
one, or ``LAZY_FLUSH_DELAY`` later. :meth:`sync` returns a Deferred that fires once the flush
covering everything appended before the call has finished. :meth:`flush` does the same work
blocking, for start-up, shutdown and tests.

Failures. When a write or fsync fails (ENOSPC, EIO) the log turns ``healthy`` False, errbacks
the waiters of that batch with :class:`StoreUnavailable` and keeps the batch's bytes in memory,
ahead of newer ones. Writes go to explicit offsets (``pwrite``), so the retry, made by the next
flush (the next append or sync schedules one), rewrites the same bytes over whatever part made
it out. Since the broker stops persistent publishers while the log is unhealthy (which is what
bounds that memory), new writes may not come to trigger the retry: a timer retries too, after
``RETRY_FIRST`` seconds doubling to ``RETRY_MAX``. Once a flush succeeds ``healthy`` is True
again. Nothing is dropped.

Recovery (:meth:`replay`) reads the segments in order. A torn or corrupt tail of the *last*
segment is what a crash mid-write leaves: it is cut (the file truncated) with a WARNING naming
the file, the offset and the bytes dropped. A bad frame in an *older* segment is corruption:
the rest of that segment is skipped with an ERROR naming the same, and replay continues with
the next segment; it never raises and never drops silently.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from warren.store.interface import StoreUnavailable
from warren.store.journal.segment import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    RECORD_HEADER,
    JournalSegment,
    SegmentScan,
    decode_one,
    parse_segment_number,
    segment_file_name,
)

logger = logging.getLogger("warren.store.journal")

Position = tuple[int, int]

#: Retry delays after a failed flush: first, ceiling (seconds); the delay doubles in between.
RETRY_FIRST = 0.5
RETRY_MAX = 5.0

#: ``read_on_disk`` reads two records in one ``pread`` when at most this many bytes lie between
#: them (what is read between is dropped: cheaper than a second system call).
READ_GAP = 4096
#: ... and reads at most this many bytes in one ``pread`` (a run longer is split).
READ_SPAN = 4 * 1024 * 1024

#: Seconds a lazy record (``append(lazy=True)``) may wait in memory for a flush.
LAZY_FLUSH_DELAY = 0.05

#: CRC32 of each valid type byte: a record's checksum continues from it over the payload
#: (the framing of ``segment.encode_record``, done here without building the frame first).
_TYPE_CRC = {t: zlib.crc32(bytes((t,))) for t in range(1, 256)}
_pack_header = RECORD_HEADER.pack
_unpack_header = RECORD_HEADER.unpack_from
_crc32 = zlib.crc32


def _runs(wanted: list[tuple[int, int, int, int]],
          ) -> list[tuple[int, int, int, list[tuple[int, int, int]]]]:
    """(segment, start, end, [(key, offset, length)...]) of ``wanted`` (key, segment, offset,
    length) grouped into spans to read at once: sorted by position, a record joins the span
    before it when it starts at most ``READ_GAP`` bytes after its end and the span stays
    within ``READ_SPAN``."""
    runs: list[tuple[int, int, int, list[tuple[int, int, int]]]] = []
    number = start = end = -1
    run: list[tuple[int, int, int]] = []
    for key, segment, offset, length in sorted(wanted, key=lambda w: (w[1], w[2])):
        if (segment == number and end <= offset <= end + READ_GAP
                and offset + length - start <= READ_SPAN):
            run.append((key, offset, length))
            end = offset + length
            continue
        if run:
            runs.append((number, start, end, run))
        number, start, end, run = segment, offset, offset + length, [(key, offset, length)]
    if run:
        runs.append((number, start, end, run))
    return runs


class _Batch:
    """Framed records waiting for one write+fsync, and the Deferreds waiting on it."""

    __slots__ = ("chunks", "waiters", "end", "written", "finished")

    def __init__(self) -> None:
        # [segment number, start offset, bytes]: contiguous runs, one per segment touched.
        self.chunks: list[list[Any]] = []
        self.waiters: list[Deferred] = []
        self.end: Position | None = None  # log position just past the last record
        self.written = False  # set by whoever wrote+fsynced it, under the disk lock
        self.finished = False  # waiters fired (success) or batch given back (failure)

    def add(self, segment: int, offset: int, frame: bytes) -> None:
        if self.chunks:
            last = self.chunks[-1]
            if last[0] == segment and last[1] + len(last[2]) == offset:
                last[2] += frame
                self.end = (segment, offset + len(frame))
                return
        self.chunks.append([segment, offset, bytearray(frame)])
        self.end = (segment, offset + len(frame))

    def add_record(self, segment: int, offset: int, header: bytes, payload: Any) -> None:
        """:meth:`add` for a record framed as header + payload, copied once, into the run."""
        end = (segment, offset + len(header) + len(payload))
        chunks = self.chunks
        if chunks:
            last = chunks[-1]
            data = last[2]
            if last[0] == segment and last[1] + len(data) == offset:
                data += header
                data += payload
                self.end = end
                return
        data = bytearray(header)
        data += payload
        chunks.append([segment, offset, data])
        self.end = end

    def nbytes(self) -> int:
        return sum(len(chunk[2]) for chunk in self.chunks)


class DiskThread:
    """One daemon thread running disk work in order (the journal's, and the stream logs'
    fsyncs: ``stream/syncer.py``); results come back as Deferreds fired on the reactor thread.
    A daemon, unlike a Twisted ThreadPool's workers, so a store someone forgot to close never
    holds the interpreter open at exit."""

    def __init__(self, reactor: Any, name: str = "warren-journal") -> None:
        self._reactor = reactor
        self._name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, work: Callable[[Any], Any], arg: Any) -> Deferred:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        done: Deferred = Deferred()
        self._jobs.put((work, arg, done))
        return done

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            work, arg, done = job
            try:
                result = work(arg)
            except BaseException:
                self._reactor.callFromThread(done.errback, Failure())
            else:
                self._reactor.callFromThread(done.callback, result)

    def stop_soon(self) -> None:
        """Ask the thread to end after the work queued, without waiting (HA fencing)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def stop(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=30)
            self._thread = None


class JournalLog:
    """Append typed records, read them back by position, make them durable in batches."""

    def __init__(
        self,
        directory: str,
        *,
        segment_size: int,
        reactor: Any = None,
        on_durable: Callable[[], None] | None = None,
        segment_preamble: Callable[[], tuple[int, bytes]] | None = None,
    ) -> None:
        self.directory = directory
        self.segment_size = segment_size
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self._reactor = reactor
        #: Called on the reactor thread after each successful flush (the store reclaims there).
        self._on_durable = on_durable
        #: Gives the (type, payload) written first in every new segment (the store's checkpoint).
        self._segment_preamble = segment_preamble
        self.healthy = True
        self._segments: dict[int, JournalSegment] = {}
        self._sizes: dict[int, int] = {}  # logical size of each segment (appended bytes)
        self._head = 0
        self._pending = _Batch()
        self._inflight: _Batch | None = None
        self._disk_lock = threading.Lock()  # held while bytes go to disk, by either path
        self._disk = DiskThread(reactor)
        self._kick_call: Any = None
        self._kick_lazy = False   # the call scheduled is the lazy one (LAZY_FLUSH_DELAY)
        self._pending_urgent = False   # the pending batch holds a record that is not lazy
        self._retry_call: Any = None
        self._retry_delay = RETRY_FIRST
        self._closed = False
        self._ready = False
        self._abandoned = False  # fenced: appends dropped, syncs fail (see abandon)
        #: Everything before this position is on disk and fsync'd.
        self.durable_end: Position = (0, 0)
        self.last_fsync_seconds = 0.0
        self.fsyncs = 0
        #: Bytes appended since open (the store's checkpoints are due by it).
        self.appended = 0

    # -- opening and recovery ---------------------------------------------------------------

    def open(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        for name in os.listdir(self.directory):
            number = parse_segment_number(name)
            if number is not None and number not in self._segments:
                self._segments[number] = JournalSegment(self.directory, number)

    def replay(self) -> Iterator[tuple[int, int, int, memoryview]]:
        """Yield (segment, offset, type, payload) of every valid record in log order.

        Payloads are views into a per-segment buffer: copy what you keep. Cuts a torn tail of
        the last segment; skips (and logs) the corrupt rest of an older one. When exhausted the
        log is ready for appends (at the end of the last segment, or in a fresh first one).
        """
        return self._replay(sorted(self._segments))

    def replay_after(self, position: Position, stamps: dict[int, Any],
                     prefix_crc: int) -> Iterator[tuple[int, int, int, memoryview]] | None:
        """Instead of :meth:`replay`: the records after ``position`` only (a checkpoint has
        the state up to there), if what is before it is provably as it was: every older
        segment still on disk has its stamp (size, modification time: unwritten since; one
        may be gone, reclaimed after the checkpoint), and the bytes of ``position``'s segment
        before it have their CRC. None, changing nothing, when not (then :meth:`replay`).
        The segments after are read and checked as :meth:`replay` reads them. If
        ``position``'s segment itself was reclaimed since, everything in it was dead at a
        durable position, so replay starts with the next (the store checks afterwards that
        no segment gone still holds anything by the index)."""
        first, offset = position
        segment = self._segments.get(first)
        numbers = sorted(self._segments)
        if not numbers or numbers[-1] < first:
            return None
        for number in numbers:
            if number >= first:
                break
            stamp = stamps.get(number)
            if not (isinstance(stamp, tuple) and len(stamp) == 2):
                return None
            if self._segments[number].stamp() != stamp:
                return None
        scan = None
        if segment is not None:
            scan = segment.scan(offset)
            if scan.prefix_crc is None or scan.prefix_crc != prefix_crc:
                return None
        for number in numbers:
            if number < first:
                self._sizes[number] = stamps[number][0]
        return self._replay([number for number in numbers if number >= first], scan)

    def rewind(self) -> None:
        """Undo a :meth:`replay_after` whose result the store could not use, before anything
        but the head's opening record was appended: ready for :meth:`replay` again."""
        if self._kick_call is not None and self._kick_call.active():
            self._kick_call.cancel()
        self._kick_call = None
        self._pending = _Batch()
        self._sizes = {}
        self._head = 0
        self._ready = False
        self.durable_end = (0, 0)

    def _replay(self, numbers: list[int], first: SegmentScan | None = None,
                ) -> Iterator[tuple[int, int, int, memoryview]]:
        """Read ``numbers``' segments (``first``: the first one's scan, already made)."""
        for index, number in enumerate(numbers):
            segment = self._segments[number]
            if index == 0 and first is not None:
                scan = first
            else:
                scan = segment.scan()
            for offset, record_type, payload in scan.records:
                yield number, offset, record_type, payload
            last = index == len(numbers) - 1
            size = scan.valid_end + scan.dropped
            if scan.dropped and last:
                logger.warning(
                    "journal %s: %s at offset %d; cut the torn tail, dropping %d bytes",
                    segment.path, scan.problem, scan.valid_end, scan.dropped,
                )
                segment.truncate(scan.valid_end)
                size = scan.valid_end
            elif scan.dropped:
                logger.error(
                    "journal %s: %s at offset %d; skipped the %d bytes from there to the end of "
                    "the segment (records after offset %d in this file are lost), continuing "
                    "with the next segment",
                    segment.path, scan.problem, scan.valid_end, scan.dropped, scan.valid_end,
                )
            self._sizes[number] = size
        if numbers:
            self._head = numbers[-1]
            self.durable_end = (self._head, self._sizes[self._head])
            self._ready = True
            if self._sizes[self._head] == 0 and self._segment_preamble is not None:
                # a crash right after a roll: the head lacks the record that opens a segment
                self.append(*self._segment_preamble())
        else:
            self._ready = True
            self._start_segment(1)
            self.durable_end = (1, 0)

    def adopt(self, stamps: dict[int, Any]) -> bool:
        """Instead of :meth:`replay`: be ready for appends at the end of segments whose content
        is already known (a saved index covers them), if the files on disk are exactly those,
        at those sizes and untouched since (their modification times, so a segment written in
        place after the save, as a disk fault or a hand would, is replayed and checked).
        Returns False, changing nothing, if they are not."""
        if not stamps or set(stamps) != set(self._segments):
            return False
        sizes: dict[int, int] = {}
        for number, segment in self._segments.items():
            stamp = stamps[number]
            if not (isinstance(stamp, tuple) and len(stamp) == 2):
                return False
            if segment.stamp() != stamp:
                return False
            sizes[number] = stamp[0]
        self._sizes = sizes
        self._head = max(sizes)
        self.durable_end = (self._head, self._sizes[self._head])
        self._ready = True
        if self._sizes[self._head] == 0 and self._segment_preamble is not None:
            self.append(*self._segment_preamble())
        return True

    def segment_stamps(self) -> dict[int, tuple[int, int]]:
        """Each segment file's size and modification time (ns), as on disk now: what a saved
        index records it covers. Taken after :meth:`close`, when nothing more is written."""
        return {number: segment.stamp() for number, segment in self._segments.items()}

    def covered(self, position: Position,
                numbers: list[int]) -> tuple[dict[int, tuple[int, int]], int]:
        """Any thread, once ``position`` is durable: what a checkpoint at ``position`` needs
        to be checked at a start (:meth:`replay_after`): the stamps of the segments among
        ``numbers`` before its segment (those reclaimed meanwhile left out) and the CRC32 of
        its segment's bytes before it. By path, not by the log's open files, which the
        reactor thread may close meanwhile; raises OSError when the segment itself is gone."""
        first, offset = position
        stamps = {}
        for number in numbers:
            if number >= first:
                continue
            try:
                st = os.stat(os.path.join(self.directory, segment_file_name(number)))
            except FileNotFoundError:
                continue
            stamps[number] = (st.st_size, st.st_mtime_ns)
        with open(os.path.join(self.directory, segment_file_name(first)), "rb") as file:
            prefix = file.read(offset)
        if len(prefix) != offset:
            raise OSError(f"segment {first} is shorter than the checkpoint's offset {offset}")
        return stamps, zlib.crc32(prefix)

    def segment_data(self, number: int) -> bytes:
        """A whole segment's bytes as on disk (call after a flush)."""
        return self._segments[number].read_span(0, self._sizes[number])

    # -- writing ------------------------------------------------------------------------------

    def append(self, record_type: int, payload: bytes | bytearray | memoryview,
               lazy: bool = False) -> tuple[int, int, int]:
        """Frame and buffer one record; return its (segment, offset, framed length).

        A ``lazy`` record (an ack, a delivered flag: a crash may lose it, and then a message
        is redelivered, never lost) does not make a flush due at the end of the turn: it goes
        with the next one that is, or after ``LAZY_FLUSH_DELAY`` (group commit over turns, so
        a consumer acking a draining queue costs a few fsyncs a second, not one a turn)."""
        if self._abandoned:
            return self._head, self._sizes.get(self._head, 0), HEADER_SIZE + len(payload)
        if not self._ready:
            raise RuntimeError("JournalLog.append before replay()")
        type_crc = _TYPE_CRC.get(record_type)
        if type_crc is None:
            raise ValueError(f"record type must be 1..255, not {record_type}")
        n = len(payload)
        if n > MAX_PAYLOAD:
            raise ValueError(f"payload of {n} bytes does not fit a u32 length")
        length = HEADER_SIZE + n
        segment = self._head
        sizes = self._sizes
        size = sizes[segment]
        if size and size + length > self.segment_size:
            self._start_segment(segment + 1)
            segment = self._head
            size = sizes[segment]
        header = _pack_header(n, _crc32(payload, type_crc), record_type)
        self._pending.add_record(segment, size, header, payload)
        sizes[segment] = size + length
        self.appended += length
        self._flush_due(lazy)
        return segment, size, length

    def roll(self, at_least: int) -> bool:
        """Start a new head segment now rather than when the head fills, so the old head can
        be reclaimed as soon as nothing in it is live (the store rolls after a purge left it
        mostly dead); False (nothing done) when the head holds fewer than ``at_least``
        bytes."""
        if self._abandoned or self._closed or not self._ready:
            return False
        if self._sizes.get(self._head, 0) < max(at_least, 1):
            return False
        self._start_segment(self._head + 1)
        return True

    def _start_segment(self, number: int) -> None:
        self._segments[number] = JournalSegment(self.directory, number)
        self._sizes[number] = 0
        self._head = number
        if self._segment_preamble is not None:
            record_type, payload = self._segment_preamble()
            self.append(record_type, payload)

    def sync(self) -> Deferred:
        """A Deferred fired once everything appended so far is durable (see module doc)."""
        if self._abandoned:
            return fail(StoreUnavailable(f"journal {self.directory} was abandoned (fenced)"))
        if self._pending.chunks:
            waiter: Deferred = Deferred()
            self._pending.waiters.append(waiter)
            self._flush_due(False)
            return waiter
        if self._inflight is not None:
            waiter = Deferred()
            self._inflight.waiters.append(waiter)
            return waiter
        return succeed(None)

    def _flush_due(self, lazy: bool) -> None:
        """Have the pending batch flushed at the end of this turn, or (``lazy``, when nothing
        sooner is due) ``LAZY_FLUSH_DELAY`` from now."""
        if self._closed:
            return
        call = self._kick_call
        if lazy:
            if call is None:
                self._kick_lazy = True
                self._kick_call = self._reactor.callLater(LAZY_FLUSH_DELAY, self._kick)
            return
        self._pending_urgent = True
        if call is not None and self._kick_lazy:
            if call.active():
                call.cancel()
            call = None
        if call is None:
            self._kick_lazy = False
            self._kick_call = self._reactor.callLater(0, self._kick)

    def _kick(self) -> None:
        self._kick_call = None
        self._kick_lazy = False
        if self._closed or self._inflight is not None or not self._pending.chunks:
            return
        batch, self._pending = self._pending, _Batch()
        self._pending_urgent = False
        self._inflight = batch
        done = self._disk.submit(self._write_batch, batch)
        done.addCallbacks(
            self._batch_done, self._batch_failed, callbackArgs=(batch,), errbackArgs=(batch,)
        )

    def _write_batch(self, batch: _Batch) -> None:
        """Disk thread: write and fsync one batch, unless the blocking path already did."""
        with self._disk_lock:
            if batch.written or batch.finished:
                return
            self._write_chunks(batch.chunks)
            batch.written = True

    def _write_chunks(self, chunks: list[list[Any]]) -> None:
        """Write runs at their offsets, fsync each file touched (and the directory when a new
        file was made). Called with the disk lock held, from either thread."""
        started = time.monotonic()
        touched: list[JournalSegment] = []
        for number, offset, data in chunks:
            segment = self._segments[number]
            segment.write_at(offset, data)
            if segment not in touched:
                touched.append(segment)
        for segment in touched:
            segment.sync()
        if any(segment.created for segment in touched):
            self.sync_directory()
            for segment in touched:
                segment.created = False
        self.last_fsync_seconds = time.monotonic() - started
        self.fsyncs += 1

    def _batch_done(self, _: object, batch: _Batch) -> None:
        if self._inflight is batch:
            self._inflight = None
        if not batch.finished:
            self._finish(batch)
        if self._pending.chunks and self._kick_call is None:
            self._flush_due(not self._pending_urgent)

    def _batch_failed(self, failure: Failure, batch: _Batch) -> None:
        if self._inflight is batch:
            self._inflight = None
        if batch.finished:
            return
        self._give_back(batch, failure.value)

    def _finish(self, batch: _Batch) -> None:
        batch.finished = True
        if batch.end is not None and batch.end > self.durable_end:
            self.durable_end = batch.end
        if not self.healthy:
            logger.warning("journal %s: writes succeed again", self.directory)
            self.healthy = True
            self._retry_delay = RETRY_FIRST
            if self._retry_call is not None and self._retry_call.active():
                self._retry_call.cancel()
            self._retry_call = None
        waiters, batch.waiters = batch.waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if self._on_durable is not None:
            self._on_durable()

    def _give_back(self, batch: _Batch, error: BaseException | None) -> None:
        """A batch failed: errback its waiters, keep its bytes at the front of the queue."""
        batch.finished = True
        self.healthy = False
        logger.error(
            "journal %s: write failed (%s); keeping %d bytes in memory to retry",
            self.directory, error, batch.nbytes() + self._pending.nbytes(),
        )
        retry = _Batch()
        for chunk in batch.chunks + self._pending.chunks:
            retry.add(chunk[0], chunk[1], chunk[2])
        retry.waiters = self._pending.waiters
        self._pending = retry
        waiters, batch.waiters = batch.waiters, []
        if not self._closed and (self._retry_call is None or not self._retry_call.active()):
            self._retry_call = self._reactor.callLater(self._retry_delay, self._retry)
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
        for waiter in waiters:
            waiter.errback(Failure(StoreUnavailable(f"journal write failed: {error}")))

    def _retry(self) -> None:
        self._retry_call = None
        if not self._closed and self._pending.chunks and self._kick_call is None:
            self._kick()

    def flush(self) -> None:
        """Blocking: write and fsync everything appended so far; raise StoreUnavailable on
        failure (the bytes are kept for the next try)."""
        if self._abandoned:
            raise StoreUnavailable(f"journal {self.directory} was abandoned (fenced)")
        if self._kick_call is not None:
            self._kick_call.cancel()
            self._kick_call = None
        done: list[_Batch] = []
        failure: OSError | None = None
        with self._disk_lock:
            batches = []
            if self._inflight is not None and not self._inflight.finished:
                batches.append(self._inflight)
            if self._pending.chunks or self._pending.waiters:
                batches.append(self._pending)
                self._pending = _Batch()
                self._pending_urgent = False
            for batch in batches:
                if not batch.written:
                    try:
                        self._write_chunks(batch.chunks)
                    except OSError as error:
                        failure = error
                        break
                    batch.written = True
                done.append(batch)
            failed = batches[len(done):]
            for batch in failed:
                batch.finished = True  # the disk thread must skip it: it goes back to pending
            if self._inflight is not None and (self._inflight in done or self._inflight in failed):
                self._inflight = None
        for batch in done:
            self._finish(batch)
        if failure is not None:
            # give back in reverse so the oldest bytes end up first
            for batch in reversed(failed):
                self._give_back(batch, failure)
            raise StoreUnavailable(f"journal write failed: {failure}") from failure

    # -- reading and reclaiming -----------------------------------------------------------------

    def read(self, segment: int, offset: int, length: int) -> tuple[int, bytes]:
        """Read back the record at a position: (type, payload); from memory if not yet written."""
        for batch in (self._inflight, self._pending):
            if batch is None:
                continue
            for number, start, data in batch.chunks:
                if number == segment and start <= offset < start + len(data):
                    at = offset - start
                    return decode_one(bytes(data[at:at + length]), f"segment {segment}@{offset}")
        return self._segments[segment].read_at(offset, length)

    def read_on_disk(self, wanted: list[tuple[int, int, int, int]]) -> list[tuple[int, bytes]]:
        """Reader thread: (key, payload) of each (key, segment, offset, length) whose record
        reads back whole (the caller checks on the reactor thread that each is still the one
        it wanted: a segment may be compacted and deleted meanwhile, and then is skipped).

        One ``pread`` per run of adjacent records (gaps up to ``READ_GAP`` bytes are read
        through): a drained deep queue's records lie back to back in the order published, so
        a read-ahead of a thousand bodies is a few reads, not a thousand system calls."""
        out = []
        segments = self._segments
        for number, offset, end, run in _runs(wanted):
            segment = segments.get(number)
            if segment is None:
                continue
            try:
                raw = segment.read_span(offset, end - offset)
            except OSError:
                continue
            view = memoryview(raw)
            size = len(raw)
            for key, at, length in run:
                start = at - offset
                if start + length > size or length < HEADER_SIZE:
                    continue   # short read: the segment was cut or deleted meanwhile
                n, crc, record_type = _unpack_header(view, start)
                payload = raw[start + HEADER_SIZE:start + length]
                if (HEADER_SIZE + n != length or record_type == 0
                        or _crc32(payload, _TYPE_CRC.get(record_type, 0)) != crc):
                    continue   # not the record wanted (the caller reads it again)
                out.append((key, payload))
        return out

    def records(self, number: int) -> list[tuple[int, int, memoryview]]:
        """Every record of a segment that is all on disk: (offset, type, payload), read in one
        go (compaction looks for the live ones)."""
        return self._segments[number].scan().records

    @property
    def reactor(self) -> Any:
        return self._reactor

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def head(self) -> int:
        """The segment appends go to (never reclaimed)."""
        return self._head

    @property
    def end(self) -> Position:
        return (self._head, self._sizes.get(self._head, 0))

    def segment_numbers(self) -> list[int]:
        return sorted(self._segments)

    def segment_bytes(self, number: int) -> int:
        return self._sizes.get(number, 0)

    def disk_bytes(self) -> int:
        return sum(self._sizes.values())

    def delete_segment(self, number: int) -> None:
        """Remove a segment file. Call :meth:`sync_directory` after a round of deletions."""
        if number == self._head:
            raise ValueError("the head segment is never deleted")
        segment = self._segments.pop(number)
        self._sizes.pop(number, None)
        segment.delete()

    def sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def abandon(self) -> None:
        """Fenced: drop what is pending (its waiters fail), write nothing more, never block.

        A batch already on the disk thread may still land; the thread is stopped and the
        segments closed in the background, since an fsync on a lost shared disk can hang."""
        if self._closed:
            return
        self._abandoned = self._closed = True
        for call in (self._kick_call, self._retry_call):
            if call is not None and call.active():
                call.cancel()
        self._kick_call = self._retry_call = None
        dropped, self._pending = self._pending, _Batch()
        error = StoreUnavailable(f"journal {self.directory} was abandoned (fenced)")
        for waiter in dropped.waiters:
            waiter.errback(Failure(error))
        disk, segments = self._disk, list(self._segments.values())

        def let_go() -> None:
            disk.stop()
            for segment in segments:
                segment.close()
        threading.Thread(target=let_go, name="warren-fenced-journal", daemon=True).start()

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._ready:
                self.flush()
        except StoreUnavailable as error:
            logger.error("journal %s: closing with unwritten data: %s", self.directory, error)
        finally:
            self._closed = True
            for call in (self._kick_call, self._retry_call):
                if call is not None and call.active():
                    call.cancel()
            self._kick_call = self._retry_call = None
            self._disk.stop()
            for segment in self._segments.values():
                segment.close()
