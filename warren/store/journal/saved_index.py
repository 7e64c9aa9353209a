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
``JournalStore``): an index as of a journal position, which stays on disk across restarts.

The payload is :mod:`marshal` data (plain dicts, lists, ints and strings: fast to load in C)
in frames: a head (everything but the two big maps), then the message locations, then each
queue's ids. A forked child or a clean close writes each map as one frame (one
``marshal.loads`` is the fastest load). A copy written by a thread beside the reactor (when
the process cannot fork) is in frames of at most ``CHUNK`` entries: marshalling holds the
GIL throughout, so one frame is the longest the reactor waits. The header carries the Python
version's marshal format, and a mismatch is a fallback, not an error.
"""

from __future__ import annotations

import marshal
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from itertools import islice
from typing import Any

#: The file's name in the journal directory (not a segment name, so the log ignores it).
SAVED_INDEX = "index.saved"
#: The newest checkpoint taken while running (same format).
CHECKPOINT = "index.checkpoint"
#: 2: frames, and locations that carry body sizes (``index.pack_location``).
_MAGIC = b"WRNJIDX2"
_FRAME = struct.Struct("<Q")
#: Entries of a big map per frame (a frame is marshalled in one go, holding the GIL).
CHUNK = 100_000
#: magic, marshal version, Python major/minor, payload length, CRC32 of the payload
_HEADER = struct.Struct("<8sHBBQI")
_FORMAT = (marshal.version, sys.version_info[0], sys.version_info[1])


class SavedIndexInvalid(Exception):
    """The file cannot be used (damaged, another format, or not this journal): replay."""


def path_in(directory: str, name: str = SAVED_INDEX) -> str:
    return os.path.join(directory, name)


def _frames(content: dict[str, Any]) -> Iterator[bytes]:
    """The payload's frames: the head, then ``messages``, then each queue's ids. A map given
    as a dict is one frame (a forked child writes it, or a clean close: no reactor shares
    the GIL, and one ``marshal.loads`` is the fastest load); one given as (keys, values), as
    ``JournalIndex.snapshot`` copies it for a thread beside the reactor, is in frames of
    ``CHUNK`` entries (values as bytes: delivered flags, written as bools)."""
    messages = content["messages"]
    queues = content["queues"]
    head = {key: value for key, value in content.items() if key not in ("messages", "queues")}
    head["messages"] = _chunks(messages)
    head["queues"] = [(key, _chunks(ids)) for key, ids in queues.items()]
    yield marshal.dumps(head)
    for mapping in (messages, *queues.values()):
        if isinstance(mapping, dict):
            if mapping:
                yield marshal.dumps(mapping)
            continue
        keys, values = mapping
        items = zip(keys, map(bool, values) if isinstance(values, bytes) else values)
        while True:
            chunk = dict(islice(items, CHUNK))
            if not chunk:
                break
            yield marshal.dumps(chunk)


def _chunks(mapping: Any) -> int:
    if isinstance(mapping, dict):
        return 1 if mapping else 0
    return -(-len(mapping[0]) // CHUNK)


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


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def read(directory: str, name: str = SAVED_INDEX) -> dict[str, Any] | None:
    """The saved content, or None when there is no file; raises :class:`SavedIndexInvalid`."""
    try:
        with open(path_in(directory, name), "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SavedIndexInvalid(f"unreadable: {error}") from error
    if len(data) < _HEADER.size:
        raise SavedIndexInvalid(f"truncated: {len(data)} bytes")
    magic, version, major, minor, length, crc = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise SavedIndexInvalid("not a saved index of this format")
    if (version, major, minor) != _FORMAT:
        raise SavedIndexInvalid(
            f"written by Python {major}.{minor} (marshal {version}); this is "
            f"{_FORMAT[1]}.{_FORMAT[2]} (marshal {_FORMAT[0]})")
    payload = memoryview(data)[_HEADER.size:]
    if len(payload) != length:
        raise SavedIndexInvalid(f"truncated: {len(payload)} of {length} payload bytes")
    if zlib.crc32(payload) != crc:
        raise SavedIndexInvalid("checksum mismatch")
    try:
        return _unframed(payload)
    except (EOFError, ValueError, TypeError, KeyError, struct.error) as error:
        raise SavedIndexInvalid(f"undecodable: {error}") from error


def _unframed(payload: memoryview) -> dict[str, Any]:
    at = 0

    def frame() -> Any:
        nonlocal at
        (length,) = _FRAME.unpack_from(payload, at)
        at += _FRAME.size
        if at + length > len(payload):
            raise ValueError("a frame runs past the end")
        value = marshal.loads(payload[at:at + length])
        at += length
        return value

    def mapping(chunks: int) -> dict[Any, Any]:
        merged: dict[Any, Any] = frame() if chunks else {}
        if not isinstance(merged, dict):
            raise TypeError("a chunk is not a mapping")
        for _ in range(chunks - 1):
            merged.update(frame())
        return merged

    content = frame()
    if not isinstance(content, dict):
        raise TypeError("not a mapping")
    content["messages"] = mapping(content["messages"])
    content["queues"] = {key: mapping(chunks) for key, chunks in content["queues"]}
    if at != len(payload):
        raise ValueError(f"{len(payload) - at} bytes after the last frame")
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


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
