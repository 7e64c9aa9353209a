"""Client-side tools of the durability tests: a confirming publisher and a queue reader (pika).

:class:`ConfirmedPublisher` keeps a window of persistent publishes in flight with publisher
confirms and records, body by body, what the broker acked, nacked or never answered; hooks let
a test act at a chosen point of the stream (kill the broker after N confirms, fill the disk).
It runs pika's SelectConnection in the calling thread and returns when the broker closes the
connection (killed), when every body is settled, or when :meth:`ConfirmedPublisher.stop` is
called from any thread. Everything it learns is event driven: confirms, ``connection.blocked``
and ``connection.unblocked`` arrive as callbacks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pika
from pika.spec import Basic

PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)


class ConfirmedPublisher:
    """Publish ``bodies`` to ``exchange``/``routing_key`` with at most ``window`` unconfirmed
    (``routing_key`` may be a function of the body: messages for several queues, interleaved)."""

    def __init__(self, url: str, routing_key: str | Callable[[bytes], str],
                 bodies: Iterator[bytes], *,
                 exchange: str = "", window: int = 300,
                 properties: pika.BasicProperties = PERSISTENT) -> None:
        self.url = url
        self.exchange = exchange
        self.routing_key = routing_key
        self.bodies = bodies
        self.window = window
        self.properties = properties
        self.acked: list[bytes] = []
        self.nacked: list[bytes] = []
        self.in_flight: dict[int, bytes] = {}   # delivery tag -> body, not yet confirmed
        self.blocked = threading.Event()        # connection.blocked seen (ever)
        self.unblocked = threading.Event()      # connection.unblocked seen after a block
        self.block_reasons: list[str] = []
        self.error: str | None = None           # why the connection ended, if not by us
        #: Called (in the publisher's thread) after every confirm frame.
        self.on_confirm: Callable[["ConfirmedPublisher"], None] | None = None
        #: While this returns True, no new publish is made (the window drains).
        self.paused: Callable[[], bool] = lambda: False
        self._seq = 0
        self._exhausted = False
        self._stopping = False
        self._conn: pika.SelectConnection | None = None
        self._channel = None

    # ---------------------------------------------------------------- running
    def run(self, timeout: float = 60.0) -> "ConfirmedPublisher":
        conn = pika.SelectConnection(
            pika.URLParameters(self.url), on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error, on_close_callback=self._on_closed)
        self._conn = conn
        conn.add_on_connection_blocked_callback(self._on_blocked)
        conn.add_on_connection_unblocked_callback(self._on_unblocked)
        conn.ioloop.call_later(timeout, self._timed_out)
        conn.ioloop.start()
        return self

    def stop(self) -> None:
        """Close the connection (thread safe); unconfirmed publishes stay in ``in_flight``."""
        conn = self._conn
        if conn is not None:
            conn.ioloop.add_callback_threadsafe(self._close)

    def resume(self) -> None:
        """Re-check ``paused`` and publish again (thread safe)."""
        conn = self._conn
        if conn is not None:
            conn.ioloop.add_callback_threadsafe(self._fill)

    @property
    def published(self) -> set[bytes]:
        return set(self.acked) | set(self.nacked) | set(self.in_flight.values())

    # ---------------------------------------------------------------- pika callbacks
    def _on_open(self, conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, conn: pika.SelectConnection, error: Exception) -> None:
        self.error = f"connection failed: {error!r}"
        conn.ioloop.stop()

    def _on_closed(self, conn: pika.SelectConnection, reason: Exception) -> None:
        if not self._stopping:
            self.error = f"connection closed: {reason!r}"
        conn.ioloop.stop()

    def _on_channel(self, channel) -> None:
        self._channel = channel
        channel.confirm_delivery(ack_nack_callback=self._on_confirm,
                                 callback=lambda _frame: self._fill())

    def _on_blocked(self, _conn, frame) -> None:
        self.block_reasons.append(frame.method.reason)
        self.blocked.set()

    def _on_unblocked(self, _conn, _frame) -> None:
        self.unblocked.set()

    def _on_confirm(self, frame) -> None:
        method = frame.method
        done = self.acked if isinstance(method, Basic.Ack) else self.nacked
        if method.multiple:
            while self.in_flight and next(iter(self.in_flight)) <= method.delivery_tag:
                done.append(self.in_flight.pop(next(iter(self.in_flight))))
        else:
            body = self.in_flight.pop(method.delivery_tag, None)
            if body is not None:
                done.append(body)
        if self.on_confirm is not None:
            self.on_confirm(self)
        self._fill()

    def _fill(self) -> None:
        channel = self._channel
        if channel is None or self._stopping or not channel.is_open:
            return
        while not self._exhausted and len(self.in_flight) < self.window and not self.paused():
            body = next(self.bodies, None)
            if body is None:
                self._exhausted = True
                break
            self._seq += 1
            self.in_flight[self._seq] = body
            key = self.routing_key(body) if callable(self.routing_key) else self.routing_key
            channel.basic_publish(self.exchange, key, body, self.properties)
        if self._exhausted and not self.in_flight:
            self._close()

    def _close(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        conn = self._conn
        if conn is not None and conn.is_open:
            conn.close()
        elif conn is not None:
            conn.ioloop.stop()

    def _timed_out(self) -> None:
        self.error = "publisher timed out"
        self._close()


def read_queue(url: str, queue: str, *, ack: bool = False,
               timeout: float = 30.0) -> list[tuple[bytes, bool]]:
    """Every ready message of ``queue`` as (body, redelivered), in delivery order.

    Without ``ack`` the messages are requeued when the connection closes (a look, not a take).
    """
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        expected = channel.queue_declare(queue, passive=True).method.message_count
        out: list[tuple[bytes, bool]] = []
        if not expected:
            return out
        if ack:  # a look without acks needs every message unacked at once: no prefetch limit
            channel.basic_qos(prefetch_count=2000)
        deadline = time.monotonic() + timeout
        for method, _props, body in channel.consume(queue, inactivity_timeout=1.0):
            if method is not None:
                out.append((body, method.redelivered))
                if ack:
                    channel.basic_ack(method.delivery_tag)
            if len(out) >= expected or time.monotonic() > deadline:
                break
        channel.cancel()
        return out
    finally:
        conn.close()


def queue_depth(url: str, queue: str) -> int | None:
    """Ready messages of ``queue``, or None when it does not exist."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        try:
            return channel.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == 404:
                return None
            raise
    finally:
        if conn.is_open:
            conn.close()
