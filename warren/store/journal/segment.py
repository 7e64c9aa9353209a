"""One append-only journal segment file: framed, checksummed records, nothing about messages.

A segment is a file ``NNNNNNNN.log`` (the segment number, zero padded) holding records back to
back, each framed as in KahaDB's journal (``Journal.java``: length, checksum, type, payload)::

    length  u32 little endian   number of payload bytes
    crc     u32 little endian   CRC32 over the type byte and the payload
    type    u8                  record type, never 0 (so a run of zeros is never a record)
    payload ``length`` bytes

The checksum covers the type so that a flipped type byte is caught like a flipped payload byte.
There is no padding and no file header: the first record starts at offset 0, and a file is
valid up to the first frame that does not check out. Reading stops there and reports where and
how many bytes it dropped: for the last segment that is a torn tail left by a crash mid-write;
for an older segment it is corruption, and the caller decides what to log.

Writes go through :meth:`JournalSegment.write_at` (``pwrite`` at an explicit offset, so a failed
write is retried over the same bytes rather than appended after a partial one); reads through
:meth:`JournalSegment.read_at` (``pread``). Both are safe from two threads at once: the journal
writes from its disk thread while the reactor reads records back.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field

RECORD_HEADER = struct.Struct("<IIB")
HEADER_SIZE = RECORD_HEADER.size  # 9
MAX_PAYLOAD = 0xFFFFFFFF
SEGMENT_SUFFIX = ".log"


class CorruptRecord(Exception):
    """A record read back by position does not check out (bad frame, CRC mismatch)."""


def encode_record(record_type: int, payload: bytes | bytearray | memoryview) -> bytes:
    """Frame one record: header (length, CRC32 of type+payload, type) followed by the payload."""
    if not 0 < record_type < 256:
        raise ValueError(f"record type must be 1..255, not {record_type}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a u32 length")
    crc = zlib.crc32(payload, zlib.crc32(bytes((record_type,))))
    return RECORD_HEADER.pack(len(payload), crc, record_type) + bytes(payload)


def segment_file_name(number: int) -> str:
    return f"{number:08d}{SEGMENT_SUFFIX}"


def parse_segment_number(name: str) -> int | None:
    """The number of a segment file name, or None when ``name`` is not a segment file."""
    stem, dot, suffix = name.partition(".")
    if dot and "." + suffix == SEGMENT_SUFFIX and len(stem) == 8 and stem.isdigit():
        return int(stem)
    return None


@dataclass
class SegmentScan:
    """What reading a whole segment found.

    ``records`` holds (offset, type, payload) of every valid record, in file order; payloads are
    views into one buffer read from the file. ``valid_end`` is where the last valid record ends;
    ``dropped`` counts the bytes after it, and ``problem`` says why reading stopped there
    (empty when the file ended cleanly).
    """

    records: list[tuple[int, int, memoryview]] = field(default_factory=list)
    valid_end: int = 0
    dropped: int = 0
    problem: str = ""
    #: With ``JournalSegment.scan(start)``: CRC32 of the bytes before ``start`` (None when the
    #: file is shorter).
    prefix_crc: int | None = None


class JournalSegment:
    """One segment file, opened read-write for its whole life in the journal."""

    def __init__(self, directory: str, number: int) -> None:
        self.number = number
        self.path = os.path.join(directory, segment_file_name(number))
        existed = os.path.exists(self.path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        #: True when this object made the file: its directory entry needs an fsync of the dir.
        self.created = not existed

    def file_size(self) -> int:
        return os.fstat(self._fd).st_size

    def stamp(self) -> tuple[int, int]:
        """(size, modification time in ns) of the file, by its path (also once closed)."""
        st = os.stat(self.path)
        return st.st_size, st.st_mtime_ns

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at ``offset``; raises OSError (ENOSPC, EIO...) on failure."""
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written

    def sync(self) -> None:
        """Make written data durable (fdatasync: the size is metadata it covers)."""
        os.fdatasync(self._fd)

    def dup_fd(self) -> int:
        """A second descriptor of the file, for an fsync on another thread that must not race
        with this one being closed."""
        return os.dup(self._fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        os.fsync(self._fd)

    def read_at(self, offset: int, length: int) -> tuple[int, bytes]:
        """Read the record of ``length`` bytes (header included) at ``offset``: (type, payload)."""
        raw = os.pread(self._fd, length, offset)
        return decode_one(raw, f"{self.path}@{offset}")

    def read_span(self, offset: int, length: int) -> bytes:
        """The raw bytes of consecutive records (a stream reader's chunk, one pread for all),
        each then checked with :func:`decode_one`."""
        return os.pread(self._fd, length, offset)

    def scan(self, start: int = 0) -> SegmentScan:
        """Read every record from ``start`` (a record's offset; the bytes before it are only
        checksummed, into ``prefix_crc``); stop at the first frame that does not check out."""
        size = self.file_size()
        data = bytearray(size)
        view = memoryview(data)
        got = 0
        while got < size:
            chunk = os.preadv(self._fd, [view[got:]], got)
            if chunk == 0:
                break
            got += chunk
        if not start:
            return scan_buffer(view[:got])
        if start > got:
            return SegmentScan(valid_end=got, problem=f"shorter than offset {start}")
        scan = scan_buffer(view[start:got], start)
        scan.prefix_crc = zlib.crc32(view[:start])
        return scan

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def delete(self) -> None:
        self.close()
        os.unlink(self.path)

    def __repr__(self) -> str:
        return f"JournalSegment({self.path!r})"


def decode_one(raw: bytes, where: str) -> tuple[int, bytes]:
    """Check and unframe one whole record read by position."""
    if len(raw) < HEADER_SIZE:
        raise CorruptRecord(f"{where}: short read ({len(raw)} bytes)")
    length, crc, record_type = RECORD_HEADER.unpack_from(raw)
    if HEADER_SIZE + length != len(raw):
        raise CorruptRecord(
            f"{where}: frame says {length} payload bytes, expected {len(raw) - HEADER_SIZE}")
    payload = raw[HEADER_SIZE:]
    if zlib.crc32(payload, zlib.crc32(bytes((record_type,)))) != crc or record_type == 0:
        raise CorruptRecord(f"{where}: checksum mismatch")
    return record_type, payload


def scan_buffer(view: memoryview, base: int = 0) -> SegmentScan:
    """Split a segment's bytes into records; see :class:`SegmentScan`. ``view`` starts at
    offset ``base`` of the segment (the offsets reported are the segment's)."""
    scan = SegmentScan()
    size = len(view)
    offset = 0
    unpack = RECORD_HEADER.unpack_from
    crc32 = zlib.crc32
    type_crc = [crc32(bytes((t,))) for t in range(256)]
    while offset < size:
        if size - offset < HEADER_SIZE:
            scan.problem = "torn record header"
            break
        length, crc, record_type = unpack(view, offset)
        start = offset + HEADER_SIZE
        end = start + length
        if end > size:
            scan.problem = f"record of {length} bytes runs past the end of the file"
            break
        payload = view[start:end]
        if record_type == 0 or crc32(payload, type_crc[record_type]) != crc:
            scan.problem = "checksum mismatch"
            break
        scan.records.append((base + offset, record_type, payload))
        offset = end
    scan.valid_end = base + offset
    scan.dropped = size - offset
    return scan
