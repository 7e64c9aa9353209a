"""The journal index saved at a clean shutdown, so a restart need not replay the journal.

Replaying costs about 5 µs of CPU a record, so a deep queue (millions of messages) keeps a
restarted broker from serving for many seconds. At a clean close the store writes its index
(``JournalIndex``: locations, queue membership in order, delivered flags, delivery counts,
definitions, segment liveness) and each queue's ids and body sizes in queue order (bytes of
u64s: what lazy recovery hands the broker, copied into its arrays in one go) to
``SAVED_INDEX`` next to the segments, with the segments it covers (numbers, sizes and
modification times) and a CRC of the whole. At start the store uses it only if it is whole and
every segment on disk is exactly the one it covers, unwritten since; anything else (a segment
grown, cut or written in place) falls back to the full replay, which checks every record.

Never stale: the store renames the file to the checkpoint's name (``promote``; a checkpoint
stays valid as the journal grows) or deletes it, and fsyncs the directory, during recovery,
before it appends anything, so a saved index on disk always describes the journal exactly as
it was closed. A crash after a restart starts from that checkpoint, or a newer one.

The same file format serves the checkpoints a running store takes (``CHECKPOINT``, see
``JournalStore``): an index as of a journal position, which stays on disk across restarts;
and the deltas on it (``delta_name``: ``JournalIndex.export_delta``'s content, what changed
since the link before), each written the same way (temporary file, fsync, rename), so a
crash leaves every link either whole or a temporary file nobody reads.

The payload is in frames: a head of :mod:`marshal` data (plain dicts, lists, ints and
strings: everything but the big arrays), then the arrays' bytes raw: the message locations
(``array_maps.location_arrays``), then per queue its delivered flags, ids and body sizes, in
the order the head lists the queues, with each one's array type. A start reads each
straight into an array of that type (``readinto``): no object per message and no copy of
the whole file in memory, so loading costs reading and checking about 41 bytes a message.
The CRC is checked as the frames are read; damage that makes a frame unreadable first is
named by the CRC, computed then. The header carries the Python version's marshal format, and
a mismatch is a fallback, not an error.
"""

from __future__ import annotations

import io
import marshal
import os
import struct
import sys
import zlib
from array import array
from collections.abc import Iterator
from typing import Any, BinaryIO

#: The file's name in the journal directory (not a segment name, so the log ignores it).
SAVED_INDEX = "index.saved"
#: The newest checkpoint taken while running (same format).
CHECKPOINT = "index.checkpoint"
#: Deltas on it (``delta_name``): what changed since the link before, same format.
DELTA_PREFIX = "index.delta."


def delta_name(seq: int) -> str:
    """The file of the ``seq``-th delta on the full checkpoint (from 1). Each names the full
    one's generation and the position of the link it follows, so a delta left from an older
    chain (a crash between a full checkpoint's rename and the deletion of the old deltas)
    is never applied to a newer full one."""
    return f"{DELTA_PREFIX}{seq}"
#: 2: frames, and locations that carry body sizes (``index.pack_location``); 3: the big
#: maps as raw arrays (``array_maps``).
_MAGIC = b"WRNJIDX3"
_FRAME = struct.Struct("<Q")
#: magic, marshal version, Python major/minor, payload length, CRC32 of the payload
_HEADER = struct.Struct("<8sHBBQI")
_FORMAT = (marshal.version, sys.version_info[0], sys.version_info[1])


class SavedIndexInvalid(Exception):
    """The file cannot be used (damaged, another format, or not this journal): replay."""


def path_in(directory: str, name: str = SAVED_INDEX) -> str:
    return os.path.join(directory, name)


#: Per-queue parts of the content written as raw frames (bytes-like values, by queue key).
_QUEUE_PARTS = ("queues", "order", "sizes")


def _typecode(blob: Any) -> str:
    return blob.typecode if isinstance(blob, array) else "B"


def _frames(content: dict[str, Any]) -> Iterator[Any]:
    """The payload's frames: the head (everything but the big arrays, marshalled, with the
    array type of each big part), then the message locations' arrays, then per queue part
    (``_QUEUE_PARTS``) each queue's, raw: a start reads each straight into an array."""
    head = {key: value for key, value in content.items()
            if key != "messages" and key not in _QUEUE_PARTS}
    head["messages"] = [_typecode(blob) for blob in content["messages"]]
    for part in _QUEUE_PARTS:
        head[part] = [(key, _typecode(blob)) for key, blob in content.get(part, {}).items()]
    yield marshal.dumps(head)
    yield from content["messages"]
    for part in _QUEUE_PARTS:
        yield from content.get(part, {}).values()


def write(directory: str, content: dict[str, Any], name: str = SAVED_INDEX) -> int:
    """Write ``content`` (an index's ``export``, with its ``messages`` and ``queues`` maps)
    durably (temporary file, fsync, rename, directory fsync); returns the bytes written. A
    crash meanwhile leaves the previous file whole (and a temporary one nobody reads)."""
    final = path_in(directory, name)
    temporary = final + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        at = _HEADER.size
        crc = 0
        for frame in _frames(content):
            frame = memoryview(frame).cast("B")   # arrays too: their bytes
            for part in (_FRAME.pack(len(frame)), frame):
                crc = zlib.crc32(part, crc)
                _write_at(fd, part, at)
                at += len(part)
        length = at - _HEADER.size
        _write_at(fd, _HEADER.pack(_MAGIC, *_FORMAT, length, crc), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, final)
    _sync_directory(directory)
    return at


def _write_at(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def read(directory: str, name: str = SAVED_INDEX) -> dict[str, Any] | None:
    """The saved content, or None when there is no file; raises :class:`SavedIndexInvalid`.
    The big parts come back as arrays of the type they were written as (``_frames``), each
    read into its array directly: no copy of the whole file in memory (at 10M messages it
    is 400 MB) and one copy of each part."""
    try:
        file = open(path_in(directory, name), "rb")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SavedIndexInvalid(f"unreadable: {error}") from error
    with file:
        try:
            return _read_frames(file)
        except OSError as error:
            raise SavedIndexInvalid(f"unreadable: {error}") from error
        except (EOFError, ValueError, TypeError, KeyError, struct.error) as error:
            # parsed before the CRC is known: damage shows as a frame that makes no sense,
            # which the CRC (checked now, off the normal path) names for what it is
            if not _checksum_matches(file):
                raise SavedIndexInvalid("checksum mismatch") from error
            raise SavedIndexInvalid(f"undecodable: {error}") from error


def _checksum_matches(file: BinaryIO) -> bool:
    file.seek(0)
    header = file.read(_HEADER.size)
    *_, crc = _HEADER.unpack(header)
    check = 0
    while chunk := file.read(1 << 20):
        check = zlib.crc32(chunk, check)
    return check == crc


def _read_frames(file: io.BufferedReader) -> dict[str, Any]:
    header = file.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise SavedIndexInvalid(f"truncated: {len(header)} bytes")
    magic, version, major, minor, length, crc = _HEADER.unpack(header)
    if magic != _MAGIC:
        raise SavedIndexInvalid("not a saved index of this format")
    if (version, major, minor) != _FORMAT:
        raise SavedIndexInvalid(
            f"written by Python {major}.{minor} (marshal {version}); this is "
            f"{_FORMAT[1]}.{_FORMAT[2]} (marshal {_FORMAT[0]})")
    size = os.fstat(file.fileno()).st_size - _HEADER.size
    if size != length:
        raise SavedIndexInvalid(f"truncated: {size} of {length} payload bytes")
    left = length
    check = 0

    def frame(typecode: str | None) -> Any:
        """The next frame: bytes (``typecode`` None) or an array read into in place."""
        nonlocal left, check
        head = file.read(_FRAME.size)
        (size,) = _FRAME.unpack(head)
        left -= _FRAME.size + size
        if left < 0:
            raise ValueError("a frame runs past the end")
        check = zlib.crc32(head, check)
        if typecode is None:
            data: Any = file.read(size)
            got = len(data)
        else:
            itemsize = array(typecode).itemsize
            if size % itemsize:
                raise ValueError(f"a frame of {size} bytes is not of {typecode!r} items")
            data = array(typecode, bytes(itemsize)) * (size // itemsize)
            got = file.readinto(memoryview(data).cast("B"))
        if got != size:
            raise ValueError("a frame runs past the end")
        check = zlib.crc32(memoryview(data).cast("B"), check)
        return data

    content = marshal.loads(frame(None))
    if not isinstance(content, dict):
        raise TypeError("not a mapping")
    content["messages"] = tuple(frame(code) for code in content["messages"])
    for part in _QUEUE_PARTS:
        content[part] = {key: frame(code) for key, code in content[part]}
    if left:
        raise ValueError(f"{left} bytes after the last frame")
    if check != crc:
        raise SavedIndexInvalid("checksum mismatch")
    return content


def promote(directory: str) -> bool:
    """The saved index becomes the checkpoint (durably): it is one, at the end of the journal
    as it was closed. Whether it was renamed (if not, the caller discards it)."""
    try:
        os.replace(path_in(directory), path_in(directory, CHECKPOINT))
        _sync_directory(directory)
    except OSError:
        return False
    return True


def discard(directory: str, name: str = SAVED_INDEX) -> bool:
    """Delete the file (durably) before the journal changes; whether there was one."""
    removed = False
    for file_name in (name, name + ".tmp"):
        try:
            os.unlink(os.path.join(directory, file_name))
            removed = True
        except FileNotFoundError:
            pass
    if removed:
        _sync_directory(directory)
    return removed


def discard_deltas(directory: str) -> int:
    """Delete every delta (after a full checkpoint was renamed into place: none applies to it
    any more), durably; how many went."""
    removed = 0
    for file_name in os.listdir(directory):
        if file_name.startswith(DELTA_PREFIX):
            try:
                os.unlink(os.path.join(directory, file_name))
                removed += 1
            except FileNotFoundError:
                pass
    if removed:
        _sync_directory(directory)
    return removed


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
