"""Port 5672 shared by AMQP 0-9-1 and AMQP 1.0, as RabbitMQ shares it: the protocol header
decides.

A 1.0 client opens with ``AMQP 3 1 0 0`` (SASL) or ``AMQP 0 1 0 0``; everything else
(0-9-1, 0-9, 0-8, or garbage) goes to the 0-9-1 listener, which answers a bad header itself.
The choice is made as soon as the bytes so far can no longer be a 1.0 header, so a 0-9-1
client is handed over after its sixth byte. This module is handed both factories by the
wiring and imports neither front end, so they stay apart.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol

AMQP_1_0_HEADERS = (b"AMQP\x03\x01\x00\x00", b"AMQP\x00\x01\x00\x00")


class HeaderDispatch(protocol.Protocol):
    """Holds the first bytes until the header says which front end, then forwards to it."""

    def __init__(self, factory: "SharedAmqpFactory") -> None:
        self.shared = factory
        # the chosen front end's protocol (Twisted types it as a private typing.Protocol)
        self.inner: Any = None
        self._held = b""
        self._timeout: Any = None

    def connectionMade(self) -> None:
        assert self.transport is not None   # (makeConnection sets it before this call)
        # a client that never says anything is dropped, as each front end would drop it
        self._timeout = self.shared.reactor.callLater(self.shared.handshake_timeout,
                                                      self.transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        self._held += data
        held = self._held
        if any(h.startswith(held[:8]) for h in AMQP_1_0_HEADERS):
            if len(held) < 8:
                return
            factory = self.shared.amqp1
        else:
            factory = self.shared.amqp091
        self._held = b""
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        # Any: ITransport is a zope Interface, whose methods mypy cannot call (no self)
        transport: Any = self.transport
        inner = factory.buildProtocol(transport.getPeer())
        if inner is None:   # the front end refused the connection (Factory's contract)
            transport.loseConnection()
            return
        self.inner = inner
        inner.makeConnection(transport)
        inner.dataReceived(held)

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        if self.inner is not None:
            self.inner.connectionLost(reason)


class SharedAmqpFactory(protocol.Factory):
    """The one factory listening on the AMQP port, over the two front ends' factories."""

    def __init__(self, amqp091: protocol.Factory, amqp1: protocol.Factory, reactor: Any,
                 handshake_timeout: float) -> None:
        self.amqp091 = amqp091
        self.amqp1 = amqp1
        self.reactor = reactor
        self.handshake_timeout = handshake_timeout

    def buildProtocol(self, addr: Any) -> HeaderDispatch:
        return HeaderDispatch(self)
