"""A queue's paging file: where transient messages go when they are paged out.

Why: RabbitMQ pages transient messages to disk under memory pressure as it does persistent
ones; a queue of transient messages must not be the one thing that can exhaust memory. The
store cannot take them (it is the durable state; a transient message must not come back after
a restart), so each queue that pages one out gets a file of its own: records (``u32`` length
and ``Message.to_record()``) appended, read back by offset in the read-ahead batches. Nothing
is fsync'd: a crash loses transient messages anyway, and the directory is emptied when the
broker starts.

The file only grows while the queue holds records in it; ``live`` counts them (paged out, or
brought back as stubs not yet read), and when it drops to zero the file is truncated, so
disk use follows what the queue holds. The queue deleted, the file goes.
"""

from __future__ import annotations

import os
import struct

_LENGTH = struct.Struct("<I")


class PageFile:
    """Append-only records of one queue's paged-out transient messages."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "w+b")   # noqa: SIM115 (lives as long as the queue's paging)
        self.size = 0
        self.live = 0        # records still referenced by the queue

    def append(self, record: bytes) -> int:
        """Write a record; returns its offset (the row's ``where``)."""
        offset = self.size
        self._file.seek(offset)
        try:
            self._file.write(_LENGTH.pack(len(record)) + record)
            self._file.flush()   # a full disk fails here, while the message is still held
        except OSError:
            self._file.seek(offset)
            self._file.truncate()
            raise
        self.size += _LENGTH.size + len(record)
        self.live += 1
        return offset

    def read(self, offset: int) -> bytes:
        """The record at ``offset``; it stays referenced until ``release``."""
        head = os.pread(self._file.fileno(), _LENGTH.size, offset)
        (length,) = _LENGTH.unpack(head)
        return os.pread(self._file.fileno(), length, offset + _LENGTH.size)

    def release(self, count: int = 1) -> None:
        """``count`` records are no longer referenced; none left: the file is emptied."""
        self.live -= count
        if self._file.closed:   # the queue was deleted: its slices of releases run after
            return
        if self.live <= 0:
            self.live = 0
            self._file.seek(0)
            self._file.truncate()
            self.size = 0

    def close(self) -> None:
        self._file.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
