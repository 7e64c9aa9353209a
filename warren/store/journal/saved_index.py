"""The journal index saved at a clean shutdown, so a restart need not replay the journal.

Replaying costs about 5 µs of CPU a record, so a deep queue (millions of messages) keeps a
restarted broker from serving for many seconds. At a clean close the store writes its index
(``JournalIndex``: locations, queue membership in order, delivered flags, delivery counts,
definitions, segment liveness) and each queue's body sizes (lazy recovery's accounting) to
``SAVED_INDEX`` next to the segments, with the segments it covers (numbers, sizes and
modification times) and a CRC of the whole. At start the store uses it only if it is whole and
every segment on disk is exactly the one it covers, unwritten since; anything else (a segment
grown, cut or written in place) falls back to the full replay, which checks every record.

Never stale: the store deletes the file (and fsyncs the directory) during recovery, before it
appends anything, so a file on disk always describes the journal exactly as it was closed. A
crash after a restart finds no file and replays.

The payload is :mod:`marshal` data (plain dicts, lists, ints and strings: fast to load in C);
the header carries the Python version's marshal format, and a mismatch is a fallback, not an
error.
"""

from __future__ import annotations

import marshal
import os
import struct
import sys
import zlib
from typing import Any

#: The file's name in the journal directory (not a segment name, so the log ignores it).
SAVED_INDEX = "index.saved"
_MAGIC = b"WRNJIDX1"
#: magic, marshal version, Python major/minor, payload length, CRC32 of the payload
_HEADER = struct.Struct("<8sHBBQI")
_FORMAT = (marshal.version, sys.version_info[0], sys.version_info[1])


class SavedIndexInvalid(Exception):
    """The file cannot be used (damaged, another format, or not this journal): replay."""


def path_in(directory: str) -> str:
    return os.path.join(directory, SAVED_INDEX)


def write(directory: str, content: dict[str, Any]) -> int:
    """Write ``content`` durably (temporary file, fsync, rename, directory fsync); returns the
    bytes written."""
    payload = marshal.dumps(content)
    header = _HEADER.pack(_MAGIC, *_FORMAT, len(payload), zlib.crc32(payload))
    final = path_in(directory)
    temporary = final + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for part in (header, payload):
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, final)
    _sync_directory(directory)
    return len(header) + len(payload)


def read(directory: str) -> dict[str, Any] | None:
    """The saved content, or None when there is no file; raises :class:`SavedIndexInvalid`."""
    try:
        with open(path_in(directory), "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SavedIndexInvalid(f"unreadable: {error}") from error
    if len(data) < _HEADER.size:
        raise SavedIndexInvalid(f"truncated: {len(data)} bytes")
    magic, version, major, minor, length, crc = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise SavedIndexInvalid("not a saved index")
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
        content = marshal.loads(payload)
    except (EOFError, ValueError, TypeError) as error:
        raise SavedIndexInvalid(f"undecodable: {error}") from error
    if not isinstance(content, dict):
        raise SavedIndexInvalid("undecodable: not a mapping")
    return content


def discard(directory: str) -> bool:
    """Delete the file (durably) before the journal changes; whether there was one."""
    removed = False
    for name in (SAVED_INDEX, SAVED_INDEX + ".tmp"):
        try:
            os.unlink(os.path.join(directory, name))
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
