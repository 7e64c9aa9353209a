"""Output batching shared by every listener: what a read or a reactor turn causes is written
to the socket once.

A read of 300 publishes causes 300 confirms or deliveries; written one by one they would cost
300 ``send`` calls, written together one (Mosquitto batches the same way; the loadgen notes
show it matters more than anything else). Frames are collected in ``_out`` and flushed at the
end of the read by the listener, or at the end of the reactor turn (``callLater(0)``) when
another connection caused them. A listener that flushes at the end of each read anyway sets
``_in_read`` while it reads so that no extra timer is armed.

A listener may also mark its read with :func:`begin_reading` (the MQTT, STOMP and AMQP 0-9-1
listeners do): what the read's frames write to *other* connections (a publish's deliveries to
its subscribers) is then flushed when the read's frames are handled, before the read's own
answers and its store work, instead of at the end of the turn: a delivery no longer waits
behind the publisher's PUBACK, RECEIPT or confirm ``send``, the reactor's other events and a
timer made and run per subscriber connection. Each connection's frames keep their order: only
the moment its ``_out`` is written changes, and a connection whose flush timer was already
armed before the read keeps it.

A flush with the transport's buffer empty is written to a plain TCP socket at once
(``_send_now``); TLS and WebSocket transports, and a transport with bytes still queued, get
``transport.write`` as before, so the order of bytes is kept.

The same object is the transport's IPushProducer: when the peer's socket backs up, Twisted
pauses it, ``write_paused`` makes its consumers report no credit, and on resume the listener's
``output_resumed`` wakes them again, so nothing buffers without bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.tcp import Server

#: while a listener's read is under way (``begin_reading``): the outputs written meanwhile that
#: are not that listener's, to be flushed when its packets are handled
_written: list["BatchedOutput"] | None = None


class _Queued:
    """``_flush_call`` of an output queued in ``_written``: no timer to cancel."""

    @staticmethod
    def active() -> bool:
        return False

    @staticmethod
    def cancel() -> None:
        pass


_QUEUED = _Queued()


def begin_reading() -> bool:
    """A listener starts handling one read: other connections' output it causes is flushed
    by ``flush_written`` (the listener calls it once the packets are handled) or by
    ``end_reading``, not by a timer. False when a read is already under way (one read
    causing another): that read's ``end_reading`` flushes, and the inner one must not call
    it."""
    global _written
    if _written is not None:
        return False
    _written = []
    return True


def end_reading() -> None:
    """The read ``begin_reading`` began is handled: flush what it wrote elsewhere."""
    global _written
    try:
        flush_written()
    finally:
        _written = None


def flush_written() -> None:
    """Flush what the read under way wrote to other connections so far."""
    written = _written
    while written:
        written.pop().flush()


class BatchedOutput:
    """Mixin for a Twisted protocol; call ``init_output(clock)`` in ``__init__``."""

    transport: Any

    def init_output(self, clock: Any) -> None:
        self._out_clock = clock
        self._out: list[bytes | memoryview] = []   # frames waiting for the next flush
        self._flush_call: Any = None         # the pending end-of-turn flush
        self._in_read = False                # the listener flushes when its read ends
        self._sent_since_tick = False        # for heartbeats: something went out lately
        self.send_oct = 0                    # bytes written, for the management API
        self.write_paused = False            # the transport's write buffer is full

    def output_closed(self) -> bool:
        """True once nothing may be written any more (the listener says when)."""
        return False

    def output_resumed(self) -> None:
        """The socket drained: let the consumers of this connection deliver again."""

    # IPushProducer
    def pauseProducing(self) -> None:
        self.write_paused = True

    def stopProducing(self) -> None:
        self.write_paused = True

    def resumeProducing(self) -> None:
        if self.write_paused:
            self.write_paused = False
            if not self.output_closed():
                self.output_resumed()
                self.flush()

    def write(self, data: bytes) -> None:
        self._out.append(data)
        if self._flush_call is None and not self._in_read and not self.output_closed():
            self._flush_later()

    def write_parts(self, parts: Iterable[bytes | memoryview]) -> None:
        self._out.extend(parts)
        if self._flush_call is None and not self._in_read and not self.output_closed():
            self._flush_later()

    def _flush_later(self) -> None:
        """At the end of the read under way (``begin_reading``), else of this reactor turn."""
        written = _written
        if written is not None:
            written.append(self)
            self._flush_call = _QUEUED
        else:
            self._flush_call = self._out_clock.callLater(0, self.flush)

    def flush(self) -> None:
        call = self._flush_call
        if call is not None:
            if call.active():
                call.cancel()
            self._flush_call = None
        if self._out and not self.output_closed():
            out = self._out
            data = out[0] if len(out) == 1 and type(out[0]) is bytes else b"".join(out)
            self._out = []
            self.send_oct += len(data)
            self._sent_since_tick = True
            transport = self.transport
            if type(transport) is Server and transport.connected and not (
                    transport.disconnecting or transport._tempDataLen
                    or transport.offset < len(transport.dataBuffer)):
                data = _send_now(transport.socket, data)
                if not data:
                    return
            transport.write(data)


def _send_now(sock: Any, data: bytes) -> bytes:
    """Write-through: with nothing queued in the transport, the socket takes what it can now;
    what it does not take (or, on an error, everything) goes to the transport, whose own
    writing reports a lost connection. Twisted's ``write`` would only queue the bytes, ask
    epoll for writability and send on the next loop turn: two epoll_ctl calls and a turn of
    latency per flush, where Mosquitto sends at once."""
    try:
        sent = sock.send(data)
    except OSError:
        return data
    return data[sent:] if sent < len(data) else b""
