"""Twisted glue for the client machine: bytes between a transport and
:class:`~warren.network.client.ClientConnection`, plus the heartbeat and close timers.

No parsing here (STYLE P2): each read goes to the machine, its queued replies are written,
and each event goes to the connection's owner (:class:`ConnectionOwner`, which the
:class:`~warren.network.link.Link` is), which decides what it means.
"""

from __future__ import annotations

from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from . import client as amqp
from .uri import AmqpURI

DEFAULT_HEARTBEAT = 10               # seconds, RabbitMQ's Erlang client default


class ConnectionOwner(TypingProtocol):
    """What a connection tells the one that opened it (a Link), and what it asks of it:
    written here so that this glue depends on no more than it uses."""

    name: str          # the connection_name the server shows
    reactor: Any       # for heartbeats and close timers (a Clock in tests)

    def on_event(self, proto: AmqpClientProtocol, event: amqp.Event) -> None: ...

    def on_connection_lost(self, proto: AmqpClientProtocol, failure: Failure | None
                           ) -> None: ...

    def on_writable(self, proto: AmqpClientProtocol) -> None: ...

    def timeout_for(self, uri: AmqpURI) -> float: ...


class AmqpClientProtocol(Protocol):
    """Bytes <-> :class:`~warren.network.client.ClientConnection`, plus the timers.

    Like ``twisted.web._http2.H2Connection.dataReceived``: feed the machine, hand each event
    to the link, write what the machine queued. It is also the transport's producer, so a
    full socket buffer pauses publishing (``Link.writable``) instead of growing memory.
    """

    #: a TCP or TLS transport once connected: Twisted's zope interfaces carry no types mypy
    #: reads (as ``output.BatchedOutput.transport``)
    transport: Any

    def __init__(self, link: ConnectionOwner, uri: AmqpURI) -> None:
        self.link = link
        self.uri = uri
        self.client = amqp.ClientConnection(
            username=uri.username, password=uri.password, vhost=uri.vhost,
            frame_max=uri.frame_max if uri.frame_max is not None else 0,
            channel_max=uri.channel_max if uri.channel_max is not None else 2047,
            heartbeat=uri.heartbeat if uri.heartbeat is not None else DEFAULT_HEARTBEAT,
            client_properties={"connection_name": link.name} if link.name else None)
        self.paused = False
        self.lost_reason: str | None = None   # set when we drop the connection on purpose
        self._last_recv = 0.0
        self._timers: list[Any] = []
        self._heartbeat_call: LoopingCall | None = None

    # -- transport events
    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        self._last_recv = self.link.reactor.seconds()
        self.transport.write(self.client.initiate())

    def dataReceived(self, data: bytes) -> None:
        self._last_recv = self.link.reactor.seconds()
        events = self.client.receive_data(data)
        out = self.client.data_to_send()
        if out:
            self.transport.write(out)
        for event in events:
            if self.lost_reason is None or isinstance(event, amqp.ConnectionClosed):
                self.link.on_event(self, event)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._stop_heartbeats()
        for call in self._timers:
            if call.active():
                call.cancel()
        self.link.on_connection_lost(self, reason)

    # -- IPushProducer (the transport tells us when its buffer is full)
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.link.on_writable(self)

    def stopProducing(self) -> None:
        self.paused = True

    # -- output and teardown
    def write(self, data: bytes) -> None:
        if data and self.lost_reason is None:
            self.transport.write(data)

    def abort(self, reason: str) -> None:
        """Drop the connection now; ``reason`` is what the link reports."""
        if self.lost_reason is None:
            self.lost_reason = reason
        self.transport.abortConnection()

    def close(self, reason: str, reply_code: int = 200) -> None:
        """Connection.Close, then drop TCP on Close-Ok or after the connection timeout.

        After this only Close-Ok (or the server's own Close) is acted on; ``reason`` is what
        the link reports once the socket is gone.
        """
        if self.lost_reason is None:
            self.lost_reason = reason
        data = self.client.close(reply_code, reason[:255])
        if not data:
            self.transport.loseConnection()
            return
        self.transport.write(data)
        self._timers.append(self.link.reactor.callLater(
            self.link.timeout_for(self.uri), self.abort, reason))

    def start_heartbeats(self, interval: int) -> None:
        if interval <= 0:
            return
        call = self._heartbeat_call = LoopingCall(self._heartbeat_tick, interval)
        call.clock = self.link.reactor
        call.start(interval / 2.0, now=False)

    def _heartbeat_tick(self, interval: int) -> None:
        # RabbitMQ's rule: two intervals without any frame from the peer is a dead peer
        if self.link.reactor.seconds() - self._last_recv > 2 * interval:
            self.abort(f"missed heartbeats from {self.uri.address}, timeout: {interval}s")
            return
        self.write(self.client.heartbeat_frame())

    def _stop_heartbeats(self) -> None:
        if self._heartbeat_call is not None and self._heartbeat_call.running:
            self._heartbeat_call.stop()


class ClientProtocolFactory(Factory):
    def __init__(self, link: ConnectionOwner, uri: AmqpURI) -> None:
        self.link, self.uri = link, uri

    def buildProtocol(self, addr: Any) -> AmqpClientProtocol:
        return AmqpClientProtocol(self.link, self.uri)
