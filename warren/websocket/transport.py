"""One WebSocket connection as the transport of a STOMP or MQTT listener's protocol.

Browsers speak STOMP and MQTT inside WebSocket messages (RabbitMQ's Web-STOMP and Web-MQTT
plugins, ActiveMQ's ``ws://`` transport). Both protocols are byte streams that already frame
themselves, so a WebSocket message boundary means nothing to them: a message may hold several
frames or part of one. :class:`WebSocketStream` is therefore a Twisted ``ProtocolWrapper``
(as ``TLSMemoryBIOProtocol`` is for TLS): it sits between the TCP transport and the very
protocol object the TCP listener uses, hands it the payload bytes of each message as they
arrive (nothing is buffered here, so the protocol's own frame limits keep bounding memory),
and sends what the protocol writes as one message per write. The listener batches its writes
per read or reactor turn, so one write is one message carrying every frame of that batch.

The WebSocket codec is wsproto's (sans-I/O, as warren's own codecs are): the opening
handshake, masking, fragmentation, control frames and the close handshake are its business,
and this module only decides. Its decisions follow RFC 6455 and what RabbitMQ's plugins do:

- The endpoint is ``/ws``; another path is answered 404. Plain HTTP (no upgrade asked for)
  gets 426 Upgrade Required, as from RabbitMQ; a bad upgrade the status wsproto's handshake
  names for it (400; 426 with ``Sec-WebSocket-Version: 13`` for a version other than 13,
  where RabbitMQ's Cowboy also takes the drafts' 7 and 8); then the connection is closed.
- Subprotocols: each :class:`Profile` lists its own, preferred first. When the client offers
  none of them a profile either accepts without one (Web-STOMP) or answers 400 (Web-MQTT,
  whose spec requires ``mqtt``).
- Close codes: 1000 when the protocol closes the connection (after its ERROR frame or
  DISCONNECT), 1002 when it closes for a packet it refused and says so (``close_code``:
  Web-MQTT, as RabbitMQ; RabbitMQ's Web-STOMP closes with 1000 whatever the error); 1003
  for a text message where the profile takes binary only (MQTT); 1009 for
  a message over the size limit; 1002 / 1007 for malformed WebSocket frames or invalid UTF-8
  (wsproto's verdict). A client's close is answered with the same code.
- No handshake within ``handshake_timeout`` seconds: the socket is closed.

The wrapped protocol sees its connection open only once the handshake is accepted, so
connection limits, CONNECT timeouts and the management API's connection list count WebSocket
clients exactly as TCP ones. ``pauseProducing`` and ``registerProducer`` go straight to the
TCP transport: a WebSocket client that stops reading stops its deliveries just as a TCP one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping,
                            RejectConnection, RejectData, Request, TextMessage)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError
from zope.interface import directlyProvides, implementer, providedBy

log = logging.getLogger("warren.websocket")

__all__ = ["Profile", "WebSocketFactory", "WebSocketStream", "PATH"]

#: where RabbitMQ's Web-STOMP and Web-MQTT plugins serve WebSocket
PATH = "/ws"

#: wsproto's words for a request that asks for no WebSocket at all (another method, or no
#: ``Connection: Upgrade`` / ``Upgrade: websocket``): answered 426 Upgrade Required, as
#: RabbitMQ's plugins (Cowboy) answer plain HTTP on their ports
NOT_AN_UPGRADE = ("Request method must be GET", "Missing header, 'Connection: Upgrade'",
                  "Missing header, 'Upgrade:")

#: seconds a client has to answer the broker's close frame before the socket is closed anyway
#: (RFC 6455 7.1.1: the server closes TCP first, once the close handshake is done; closing at
#: once would reset a client still sending, and it might never read the close code)
CLOSE_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class Profile:
    """How one protocol rides on WebSocket: its subprotocols and message types."""

    label: str                        # in log lines: "Web-STOMP"
    protocol_name: str                # in the management API, as RabbitMQ: "Web STOMP"
    subprotocols: tuple[str, ...]     # those served, most preferred first
    subprotocol_required: bool        # a client offering none of them is refused (400)
    accepts_text: bool                # text messages carry protocol bytes too (else 1003)
    sends_text: bool                  # written bytes that are UTF-8 go as text messages

    def choose(self, offered: list[str]) -> str | None:
        """The subprotocol to confirm: ours that the client offered, by our preference."""
        return next((name for name in self.subprotocols if name in offered), None)


class WebSocketStream(ProtocolWrapper):
    """The server side of one WebSocket connection, and the transport of the protocol it
    carries (``wrappedProtocol``: a StompConnection or MqttConnection)."""

    factory: "WebSocketFactory"
    #: Twisted's zope interfaces carry no types mypy reads (as ``output.BatchedOutput``):
    #: the TCP or TLS transport underneath, and the listener's protocol carried (None once
    #: it is told the connection is lost)
    transport: Any
    wrappedProtocol: Any

    def __init__(self, factory: "WebSocketFactory", wrapped: Any) -> None:
        super().__init__(factory, wrapped)  # type: ignore[arg-type]  # a WrappingFactory
        self.ws = WSConnection(ConnectionType.SERVER)
        self.carrying = False         # the wrapped protocol is connected
        self.ending = False           # a close is under way: nothing more in or out
        self.subprotocol: str | None = None
        #: the code of the close when the carried protocol closes the connection; a protocol
        #: that closes for an error of the client's sets 1002 first (Web-MQTT, as RabbitMQ)
        self.close_code = int(CloseReason.NORMAL_CLOSURE)
        #: what the carried protocol calls itself in the management API's connection list
        self.protocol_name = factory.profile.protocol_name
        self._message_size = 0        # bytes of the message being received so far
        self._handshake_call: Any = None
        self._close_call: Any = None  # CLOSE_WAIT after our close frame

    # ------------------------------------------------------------------ TCP side
    def makeConnection(self, transport: Any) -> None:
        # as ProtocolWrapper, except that the wrapped protocol waits for the handshake
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self._handshake_call = self.factory.clock.callLater(self.factory.handshake_timeout,
                                                            self._handshake_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self.ending:
            if self.ws.state is ConnectionState.LOCAL_CLOSING:
                self._await_close_reply(data)
            return
        try:
            self.ws.receive_data(data)
        except RemoteProtocolError as error:
            # not a WebSocket upgrade, or a malformed one: wsproto names the HTTP answer,
            # except that a request that is no upgrade at all gets 426, as from RabbitMQ
            why = str(error)
            hint = error.event_hint
            if why.startswith(NOT_AN_UPGRADE):
                hint = RejectConnection(status_code=426, headers=[(b"upgrade", b"websocket")])
            self._refuse(hint, why)
            return
        for event in self.ws.events():
            if self.ending:
                return
            if isinstance(event, (TextMessage, BytesMessage)):
                self._message(event)
            elif isinstance(event, Request):
                self._request(event)
            elif isinstance(event, Ping):
                self.transport.write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._closed_by_peer(event)

    def connectionLost(self, reason: Any = None) -> None:
        self.ending = True
        for call in (self._handshake_call, self._close_call):
            if call is not None and call.active():
                call.cancel()
        self._handshake_call = self._close_call = None
        self.factory.unregisterProtocol(self)
        if self.carrying:
            self.carrying = False
            self.wrappedProtocol.connectionLost(reason)
        self.wrappedProtocol = None

    # ------------------------------------------------------------------ handshake
    def _request(self, request: Request) -> None:
        profile = self.factory.profile
        if request.target.split("?", 1)[0] != PATH:
            self._refuse(RejectConnection(status_code=404), f"no WebSocket at {request.target}")
            return
        chosen = profile.choose(request.subprotocols)
        if chosen is None and profile.subprotocol_required:
            offered = ", ".join(request.subprotocols) or "none"
            self._refuse(RejectConnection(status_code=400),
                         f"subprotocols offered: {offered}; required: "
                         + " or ".join(profile.subprotocols))
            return
        self.subprotocol = chosen
        self.transport.write(self.ws.send(AcceptConnection(subprotocol=chosen)))
        if self._handshake_call is not None and self._handshake_call.active():
            self._handshake_call.cancel()
        self._handshake_call = None
        self.carrying = True
        self.wrappedProtocol.makeConnection(self)

    def _refuse(self, reject: Any, why: str) -> None:
        """Answer the upgrade request with an HTTP error status and close."""
        log.info("%s: refused a WebSocket upgrade from %s: %s", self.factory.profile.label,
                 _peer(self.transport), why)
        self.ending = True
        if not isinstance(reject, RejectConnection):
            reject = RejectConnection(status_code=400)
        body = why.encode()
        connection = b"upgrade, close" if reject.status_code == 426 else b"close"
        headers = [*reject.headers, (b"connection", connection),
                   (b"content-type", b"text/plain; charset=utf-8"),
                   (b"content-length", str(len(body)).encode())]
        try:
            out = self.ws.send(RejectConnection(status_code=reject.status_code,
                                                headers=headers, has_body=True))
            out += self.ws.send(RejectData(data=body, body_finished=True))
        except Exception:     # the request was too broken for an HTTP answer: just close
            out = b""
        if out:
            self.transport.write(out)
        self.transport.loseConnection()

    def _handshake_timeout(self) -> None:
        self._handshake_call = None
        if not self.carrying and not self.ending:
            log.info("%s: no WebSocket handshake in time from %s", self.factory.profile.label,
                     _peer(self.transport))
            self.ending = True
            self.transport.abortConnection()

    # ------------------------------------------------------------------ messages in
    def _message(self, event: TextMessage | BytesMessage) -> None:
        profile = self.factory.profile
        if isinstance(event, TextMessage):
            if not profile.accepts_text:
                self._close(CloseReason.UNSUPPORTED_DATA,
                            f"{profile.label} takes binary messages only")
                return
            data = event.data.encode("utf-8")
        else:
            data = bytes(event.data)
        self._message_size += len(data)
        if self._message_size > self.factory.max_message_size:
            self._close(CloseReason.MESSAGE_TOO_BIG,
                        f"message larger than {self.factory.max_message_size} bytes")
            return
        if event.message_finished:
            self._message_size = 0
        if data:
            self.wrappedProtocol.dataReceived(data)

    def _closed_by_peer(self, event: CloseConnection) -> None:
        if self.ws.state is ConnectionState.REMOTE_CLOSING:
            # the client's close: answer it, then the socket goes (a STOMP frame it left
            # unfinished is dropped with the protocol's parser)
            self.ending = True
            self.transport.write(self.ws.send(event.response()))
            self.transport.loseConnection()
        elif self.ws.state is ConnectionState.OPEN:
            # wsproto found the client's frames malformed: it names the code
            self._close(event.code, event.reason or "malformed WebSocket frame")
        else:
            self.ending = True
            self.transport.loseConnection()

    def _close(self, code: int, reason: str) -> None:
        """Start the close handshake with *code*; the protocol sees the connection lost."""
        if self.ending:
            return
        if code != CloseReason.NORMAL_CLOSURE:
            log.info("%s: closing WebSocket connection from %s (%d): %s",
                     self.factory.profile.label, _peer(self.transport), code, reason)
        self.ending = True
        if self.ws.state is not ConnectionState.OPEN:
            self.transport.loseConnection()
            return
        self.transport.write(self.ws.send(CloseConnection(code=code, reason=reason)))
        self._close_call = self.factory.clock.callLater(CLOSE_WAIT, self.transport.loseConnection)

    def _await_close_reply(self, data: bytes) -> None:
        """After our close frame: skip what the client still sends until its close frame,
        then close the socket (the close handshake is done)."""
        try:
            self.ws.receive_data(data)
            closed = any(isinstance(event, CloseConnection) for event in self.ws.events())
        except Exception:       # whatever it sends now, the connection is going anyway
            closed = True
        if closed or self.ws.state is ConnectionState.CLOSED:
            if self._close_call is not None and self._close_call.active():
                self._close_call.cancel()
            self._close_call = None
            self.transport.loseConnection()

    # ------------------------------------------------------------------ transport for the protocol
    def write(self, data: bytes) -> None:
        if self.ending or not data or self.ws.state is not ConnectionState.OPEN:
            return
        if self.factory.profile.sends_text:
            try:
                event: Any = TextMessage(data=data.decode("utf-8"))
            except UnicodeDecodeError:
                event = BytesMessage(data=data)
        else:
            event = BytesMessage(data=data)
        self.transport.write(self.ws.send(event))

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """The protocol is done (its ERROR frame or DISCONNECT already written)."""
        self.disconnecting = 1
        self._close(self.close_code, "" if self.close_code == CloseReason.NORMAL_CLOSURE
                    else "protocol error")

    def abortConnection(self) -> None:
        self.disconnecting = 1
        self.ending = True
        self.transport.abortConnection()


@implementer(IProtocolNegotiationFactory)
class WebSocketFactory(WrappingFactory):
    """Serves one protocol's factory (the TCP listener's own) over WebSocket.

    On a TLS port it names ``http/1.1`` for ALPN: browsers offer ``h2`` and ``http/1.1``, and
    Twisted fails the TLS handshake (an internal-error alert) when the factory names no
    protocol the client offered. WebSocket here is the HTTP/1.1 upgrade of RFC 6455.
    """

    protocol = WebSocketStream

    def acceptableProtocols(self) -> list[bytes]:
        return [b"http/1.1"]

    def __init__(self, wrapped: Any, profile: Profile, clock: Any, *,
                 handshake_timeout: float, max_message_size: int) -> None:
        super().__init__(wrapped)
        self.profile = profile
        self.clock = clock
        self.handshake_timeout = handshake_timeout
        self.max_message_size = max_message_size


def _peer(transport: Any) -> str:
    peer = transport.getPeer()
    return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
