"""The STOMP listener: Twisted protocol and factory around the codec and the session.

Shaped like Twisted's ``H2Connection.dataReceived`` and warren's AMQP connection: bytes go to
the sans-I/O :class:`~warren.stomp.codec.StompParser`, each frame to
:meth:`StompSession.handle`, and whatever the read caused (MESSAGE, RECEIPT frames) is written
once at its end; MESSAGE frames it causes on other connections are written once its frames
are handled (``output.begin_reading``), and those caused outside any read once per reactor
turn. The protocol is the transport's IPushProducer, so a client that does not read
stops getting messages (its subscriptions report no credit) instead of filling memory.

Errors: codec and session faults and core errors become one ERROR frame (``stomp/errors.py``)
followed by closing this connection only; the one broad ``except`` is here, at the boundary.
Limits: frames are bounded by ``stomp_max_frame_size`` and ``stomp_max_headers``; before
CONNECT the frame limit is 64 KiB (RabbitMQ also keeps the pre-auth limit small).
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from ..broker.broker import Broker
from ..broker.scheduler import ScheduledDelivery
from ..cert_login import TlsFields
from ..config import Config
from ..endpoint import AcceptedConnection
from ..model.errors import BrokerError, ConnectionForced
from ..output import BatchedOutput, begin_reading, end_reading, flush_written
from .client_ids import ClientIds
from .codec import HEARTBEAT, Frame, StompError, StompParser, encode
from .errors import Refused, error_frame, receipt_after_error
from .heartbeats import GRACE
from .session import StompSession
from .states import State

log = logging.getLogger("warren.stomp")

__all__ = ["StompConnection", "StompFactory"]

PRE_AUTH_MAX_FRAME_SIZE = 64 * 1024


@implementer(IPushProducer)
class StompConnection(AcceptedConnection, BatchedOutput, protocol.Protocol):
    """One STOMP client connection (the session's :class:`~warren.stomp.link.Link`)."""

    def __init__(self, factory: "StompFactory") -> None:
        self.factory = factory
        self.broker = factory.broker
        self.config = factory.config
        self.clock = factory.clock
        self.parser = StompParser(
            max_frame_size=min(PRE_AUTH_MAX_FRAME_SIZE, self.config.stomp_max_frame_size),
            max_headers=self.config.stomp_max_headers)
        self.session: StompSession | None = None
        self.closing = False
        self.reading = True
        self.init_output(self.clock)
        self._connect_call = None
        self._send_hb: LoopingCall | None = None
        self._check_hb: LoopingCall | None = None
        self._last_recv = self.clock.seconds()
        self.connected_at = self.clock.seconds()
        self.recv_oct = 0
        self.tls_fields = TlsFields()

    # ------------------------------------------------------------------ transport events
    def connectionMade(self) -> None:
        self.accepted(self.transport)
        self.session = StompSession(self, self.broker, self.config, self.factory.scheduler,
                                    peer_host=self.peer[0], peer_port=self.peer[1],
                                    loopback=self.loopback,
                                    client_ids=self.factory.client_ids)
        self.broker.register_connection(self)
        self.transport.registerProducer(self, True)
        self._connect_call = self.clock.callLater(self.config.handshake_timeout,
                                                  self._connect_timeout)
        limit = self.config.max_connections
        if limit and len(self.broker.connections) > limit:
            log.warning("STOMP connection %s refused: connection limit %d reached", self.name,
                        limit)
            self._fail(StompError("Connection limit reached",
                                  f"the broker accepts at most {limit} connections"))

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self._last_recv = self.clock.seconds()
        self.recv_oct += len(data)
        # MESSAGE frames this read causes on other connections (a SEND's delivery to its
        # subscriber) go out once its frames are handled, not at the end of the reactor turn
        # (``output.begin_reading``, as the MQTT listener does)
        outer = begin_reading()
        try:
            self._read(data)
        finally:
            if outer:
                end_reading()

    def _read(self, data: bytes) -> None:
        session = self.session
        assert session is not None      # made by connectionMade
        frame: Frame | None = None
        self._in_read = True
        try:
            try:
                frames = self.parser.feed(data)
            except StompError as error:
                # act on the frames that were whole before the fault, then report it
                for frame in error.frames:
                    self._handle(session, frame)
                    if self.closing:
                        return
                frame = None
                raise
            for frame in frames:
                self._handle(session, frame)
                if self.closing:
                    return
        except (StompError, Exception) as error:
            if not isinstance(error, (StompError, BrokerError)):
                log.exception("internal error on STOMP connection %s", self.name)
            self._fail(error, receipt_after_error(error, frame))
        finally:
            self._in_read = False
            flush_written()     # before this read's store sync and its own frames
            if not self.closing:
                try:
                    session.after_read()
                except Exception:
                    log.exception("internal error on STOMP connection %s", self.name)
                    self._fail(Exception("after read"))
            self.flush()

    def connectionLost(self, reason: Any = None) -> None:
        self.closing = True
        self.broker.unregister_connection(self)
        for call in (self._connect_call, self._flush_call):
            if call is not None and call.active():
                call.cancel()
        for loop in (self._send_hb, self._check_hb):
            if loop is not None and loop.running:
                loop.stop()
        # each holds a bound method of this connection (a timed call that fired still does),
        # and the session holds the connection as its link: kept, they would be cycles that
        # only the cyclic collector frees (a late answer to the session, a store sync's
        # receipt, still finds its link, which writes nothing once closing)
        self._connect_call = self._flush_call = self._send_hb = self._check_hb = None
        self._out = []
        session, self.session = self.session, None
        if session is not None:
            session.closed()
        self.broker.emit("connection.closed", name=self.name)

    # BatchedOutput hooks (the write buffer drained / is this connection done)
    def output_resumed(self) -> None:
        if self.session is not None:
            self.session.kick()

    # ------------------------------------------------------------------ Link for the session
    def output_closed(self) -> bool:
        return self.closing

    def close(self) -> None:
        """Write what is pending, then close (the transport sends its buffer first)."""
        if self.closing:
            return
        self.flush()
        self.closing = True
        self.transport.loseConnection()

    def set_version(self, version: str) -> None:
        self.parser.set_version(version)
        self.parser.max_frame_size = self.config.stomp_max_frame_size
        if self._connect_call is not None and self._connect_call.active():
            self._connect_call.cancel()
        self._connect_call = None

    def start_heartbeats(self, send_ms: int, expect_ms: int) -> None:
        if send_ms:
            self._send_hb = LoopingCall(self._send_heartbeat)
            self._send_hb.clock = self.clock
            self._send_hb.start(send_ms / 1000.0, now=False)
        if expect_ms:
            self._check_hb = LoopingCall(self._check_heartbeat, expect_ms / 1000.0)
            self._check_hb.clock = self.clock
            self._check_hb.start(expect_ms / 1000.0, now=False)

    def set_reading(self, reading: bool) -> None:
        if self.closing:
            return
        self.reading = reading        # shown as state "blocked" while a resource alarm holds it
        if reading:
            self.transport.resumeProducing()
        else:
            self.transport.pauseProducing()

    # ------------------------------------------------------------------ heart-beats, timeouts
    def _send_heartbeat(self) -> None:
        if self.closing:
            return
        if not self._sent_since_tick and not self._out:
            self.send_oct += 1
            self.transport.write(HEARTBEAT)
        self._sent_since_tick = False

    def _check_heartbeat(self, interval: float) -> None:
        if self.closing:
            return
        if self.clock.seconds() - self._last_recv > interval * GRACE:
            log.warning("closing STOMP connection %s: no heart-beat from the client for %.1fs",
                        self.name, interval * GRACE)
            self.closing = True
            self.transport.abortConnection()

    def _connect_timeout(self) -> None:
        self._connect_call = None
        if self.session is not None and self.session.state is State.AWAIT_CONNECT \
                and not self.closing:
            log.warning("closing STOMP connection %s: no CONNECT in time", self.name)
            self._fail(StompError("Connect timeout", "no CONNECT frame in time"))

    # ------------------------------------------------------------------ errors
    def _fail(self, error: BaseException, receipt: str | None = None) -> None:
        """Send the ERROR frame for *error* (then *receipt*'s RECEIPT, see
        :func:`receipt_after_error`), then close this connection."""
        if self.closing:
            return
        text = getattr(error, "reply_text", None) or str(error)
        log.info("closing STOMP connection %s: %s", self.name, text)
        version = self.session.version if self.session is not None else "1.0"
        if self.session is not None:
            self.session.state = State.CLOSED
        self._out.append(encode(error_frame(error), version))
        if receipt is not None:
            self._out.append(encode(Frame("RECEIPT", (("receipt-id", receipt),)), version))
        self.close()

    def _handle(self, session: StompSession, frame: Frame) -> None:
        """One frame to the session; a refused one is answered and the connection stays open
        (any other error propagates: it closes the connection)."""
        try:
            session.handle(frame)
        except Refused as refused:
            log.info("STOMP connection %s: %s", self.name, refused.message)
            self._out.append(encode(error_frame(refused, frame.get("receipt")),
                                    session.version))

    def force_close(self, reason: str) -> None:
        """Management / HA: close with an ERROR frame saying why."""
        self._fail(ConnectionForced(reason))

    # ------------------------------------------------------------------ introspection
    def info(self) -> dict[str, Any]:
        session = self.session
        state = "running"
        if session is None or session.state is State.AWAIT_CONNECT:
            state = "starting"
        elif session.state is State.CLOSED or self.closing:
            state = "closed"
        elif not self.reading:
            state = "blocked"
        version = session.version if session is not None else "1.0"
        return {
            # "Web STOMP 1.2" when a WebSocket carries it, as RabbitMQ lists those
            "name": self.name,
            "protocol": f"{getattr(self.transport, 'protocol_name', 'STOMP')} {version}",
            "user": getattr(getattr(session, "user", None), "name", ""),
            "vhost": getattr(session, "vhost_name", None) or "",
            "peer_host": self.peer[0], "peer_port": self.peer[1],
            "host": self.local[0], "port": self.local[1],
            "channels": 1, "state": state,
            "timeout": (session.heartbeat[1] // 1000) if session is not None else 0,
            "connected_at": int(self.connected_at * 1000),
            "recv_oct": self.recv_oct, "send_oct": self.send_oct,
            "client_properties": {"client-id": getattr(session, "client_id", None) or ""},
            "type": "network", **self.tls_fields.of(self.transport),
        }


class StompFactory(protocol.Factory):
    """Makes :class:`StompConnection` objects; holds what all STOMP connections share."""

    def __init__(self, broker: Broker, config: Config, reactor: Any) -> None:
        self.broker = broker
        self.config = config
        self.clock = reactor
        self.scheduler = ScheduledDelivery(broker)
        self.client_ids = ClientIds(config.node_name)
        recovered = self.scheduler.recover()
        if recovered:
            log.info("re-armed %d scheduled messages", recovered)

    def buildProtocol(self, addr: Any) -> StompConnection:
        return StompConnection(self)

    def stopFactory(self) -> None:
        """The listener closed: scheduled messages stop firing (persisted ones stay stored)."""
        self.scheduler.stop()
