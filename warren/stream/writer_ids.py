"""Writer ids of the publishers that publish into a stream over AMQP, STOMP, MQTT or AMQP 1.0.

RabbitMQ's stream queue client (``rabbit_stream_queue``, one per channel and stream) writes
each message with a writer id of its own and a sequence number from 1, so osiris puts an
entry for that writer in the trailer of each chunk it writes in (``type 0, id size, id,
sequence``): a Stream protocol reader of a stream an AMQP 0-9-1 channel published into sees a
trailer on each chunk (43 bytes on RabbitMQ 3.10.8), where warren used to write none. The id
has the shape of RabbitMQ's, the channel's pid, "_" and ``rabbit_guid``'s "-" and 22 base64url
characters (a client sees only its length in a chunk header); warren's channels have no pid,
so the part before "_" is a number in the same format.

A publisher is the core's ``Publisher`` of one channel or session (``vhost.publishing`` while
it routes a message); it is held weakly, so a closed channel's writer goes with it.
"""

from __future__ import annotations

import base64
import itertools
import os
import weakref
from typing import Any

_NUMBERS = itertools.count(400)


def new_writer_id() -> str:
    """A fresh writer id: "<0.N.0>_-" then 16 random bytes in base64url, unpadded."""
    guid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    return f"<0.{next(_NUMBERS)}.0>_-{guid}"


class WriterIds:
    """One stream's writers: publisher -> [writer id, last sequence number].

    A channel's messages come one by one: the last publisher's writer is kept beside the
    map, behind a weak reference, so a run of one channel's publishes skips the
    ``WeakKeyDictionary`` lookup (a Python call and a new weak reference per message)."""

    __slots__ = ("_writers", "_last", "_last_writer")

    def __init__(self) -> None:
        self._writers: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
        self._last: weakref.ref[Any] | None = None
        self._last_writer: list[Any] = []

    def next(self, publisher: Any) -> tuple[str, int]:
        """The writer id of ``publisher`` and the sequence number of its next message."""
        last = self._last
        if last is not None and last() is publisher:
            writer = self._last_writer
        else:
            found = self._writers.get(publisher)
            if found is None:
                found = self._writers[publisher] = [new_writer_id(), 0]
            writer = found
            self._last, self._last_writer = weakref.ref(publisher), writer
        writer[1] += 1
        return writer[0], writer[1]
