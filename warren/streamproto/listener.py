"""The RabbitMQ Stream protocol listener (port 5552): Twisted protocol and factory.

Bytes go to the sans-I/O :class:`~warren.streamproto.codec.FrameReader`, each frame to the
:class:`~warren.streamproto.session.StreamSession`; after a read the session confirms what it
published. Heartbeats: the server sends one each negotiated interval when it has sent nothing
else, and drops a client it has not heard from for two intervals. The one broad ``except`` is
here: an internal error closes this connection only, with INTERNAL_ERROR, and is logged once.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from twisted.internet import protocol
from twisted.internet.task import LoopingCall

from ..endpoint import AcceptedConnection
from . import codec
from .codec import FrameReader, FrameTooLarge, MalformedFrame
from .session import StreamSession

log = logging.getLogger("warren.streamproto")

#: what the server offers in tune (RabbitMQ's defaults: 1 MiB frames, 60 s heartbeat)
FRAME_MAX = 1048576
HEARTBEAT = 60
#: before authentication frames are small: a client cannot make the broker buffer much
PRE_AUTH_FRAME_MAX = 64 * 1024
#: the largest frame taken after tune. Clients send publish frames over the negotiated
#: frame_max (rstream batches by message count) and RabbitMQ takes them, so warren does too,
#: up to this bound; a frame over it closes the connection with FRAME_TOO_LARGE (14)
INBOUND_FRAME_MAX = 64 * 1024 * 1024


def node_host(node_name: str) -> str | None:
    """The host to advertise: the host part of the node name, as RabbitMQ's
    ``stream.advertised_host`` defaults to its node's host (``rabbit@localhost`` ->
    "localhost"), not the address a client happened to reach; None when the name has no
    host part or it does not resolve here (a node name is only a label to warren, "warren@a"
    in a test, where RabbitMQ's must resolve): the address reached is advertised then, which
    works. Clients connect to the leader by this name. Looked up once, when the listener
    is made."""
    host = node_name.partition("@")[2]
    if not host:
        return None
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return None
    return host


class StreamConnection(AcceptedConnection, protocol.Protocol):
    def __init__(self, factory: "StreamFactory") -> None:
        self.factory = factory
        self.broker = factory.broker
        self.clock = factory.clock
        self.reader = FrameReader(PRE_AUTH_FRAME_MAX)
        self.session: StreamSession | None = None
        self.closing = False
        self._heartbeat: LoopingCall | None = None
        self._last_recv = self.clock.seconds()
        self._sent = False

    def connectionMade(self) -> None:
        ep = self.accepted(self.transport)
        self.connected_at = self.clock.seconds()
        self.broker.connections[id(self)] = self
        self.session = StreamSession(
            self.broker, write=self._write, close=self._lose, tuned=self._tuned, peer=ep.name,
            loopback=ep.loopback,
            advertised=(self.factory.advertised_host or ep.host, ep.port),
            frame_max=FRAME_MAX,
            heartbeat=HEARTBEAT)

    def _write(self, data: bytes) -> None:
        if not self.closing:
            self._sent = True
            self.transport.write(data)

    def _lose(self) -> None:
        if not self.closing:
            self.closing = True
            self.transport.loseConnection()

    def _tuned(self, frame_max: int, heartbeat: int) -> None:
        self.reader.frame_max = max(frame_max, INBOUND_FRAME_MAX)
        if heartbeat and self._heartbeat is None:
            self._heartbeat = LoopingCall(self._beat, heartbeat)
            self._heartbeat.clock = self.clock
            self._heartbeat.start(heartbeat, now=False)

    def _beat(self, interval: float) -> None:
        if self.closing:
            return
        if self.clock.seconds() - self._last_recv > 2 * interval:
            log.warning("closing stream connection %s: no heartbeat for %.0fs", self.name,
                        2 * interval)
            self.closing = True
            self.transport.abortConnection()
            return
        if not self._sent:
            self.transport.write(codec.heartbeat_frame())
        self._sent = False

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if self.closing or session is None:   # (the session is made on connectionMade)
            return
        self._last_recv = self.clock.seconds()
        try:
            for key, version, payload in self.reader.feed(data):
                session.handle(key, version, payload)
                if self.closing:
                    return
        except FrameTooLarge as e:
            session.fail(codec.FRAME_TOO_LARGE, str(e))
        except MalformedFrame as e:
            session.fail(codec.UNKNOWN_FRAME, str(e))
        except Exception:
            log.exception("internal error on stream connection %s", self.name)
            session.fail(codec.INTERNAL_ERROR, "internal error")
        finally:
            if not self.closing:
                session.after_read()

    def connectionLost(self, reason: Any = None) -> None:
        self.closing = True
        self.broker.connections.pop(id(self), None)
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        if self.session is not None:
            self.session.connection_lost()


    # ------------------------------------------------------------------ the broker's view
    @property
    def vhost_name(self) -> str | None:
        vhost = self.session.vhost if self.session is not None else None
        return vhost.name if vhost is not None else None

    def force_close(self, reason: str) -> None:
        """Management, a deleted vhost, HA: a close frame saying why, then the socket."""
        if self.session is not None:
            self.session.fail(codec.INTERNAL_ERROR, reason)

    def info(self) -> dict[str, Any]:
        session = self.session
        user = getattr(session, "user", None)
        return {
            "name": self.name, "protocol": "RabbitMQ Stream",
            "user": user.name if user is not None else "", "vhost": self.vhost_name or "",
            "peer_host": self.peer[0], "peer_port": self.peer[1],
            "host": self.local[0], "port": self.local[1], "channels": 0,
            "state": "closed" if self.closing else ("running" if self.vhost_name else
                                                    "starting"),
            "connected_at": int(self.connected_at * 1000), "type": "network",
            "client_properties": dict(session.client_properties) if session is not None else {},
        }


class StreamFactory(protocol.Factory):
    def __init__(self, broker: Any, config: Any, reactor: Any) -> None:
        self.broker = broker
        self.config = config
        self.clock = reactor
        self.advertised_host = node_host(broker.node_name)

    def buildProtocol(self, addr: Any) -> StreamConnection:
        return StreamConnection(self)
