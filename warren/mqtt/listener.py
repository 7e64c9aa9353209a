"""The MQTT listener: Twisted transport <-> sans-I/O parser <-> :class:`MqttSession`.

Shaped like the AMQP connection (and Twisted's ``H2Connection.dataReceived``): the bytes of a
read go to :class:`MqttParser`, each packet to the session, and everything the read caused is
written once at its end; deliveries it causes on other connections are gathered and written
once its packets are handled (``output.begin_reading`` / ``flush_written``, as the AMQP and
STOMP readers do), and those caused by anything else once per reactor turn
(``callLater(0)``), so a burst costs one ``write`` per subscriber. Write
back-pressure comes from ``IPushProducer``: while the transport's buffer is full the session's
consumers report no credit and messages wait in their queues. Memory alarms pause reading.

The one broad ``except`` is here, at the connection boundary: log, answer "unspecified error"
(DISCONNECT 0x80 at 5.0, a close at 3.1.1) and close this connection only.

Closing is a half-close that lingers (``close``): the DISCONNECT (or CONNACK) goes out, then a
FIN, and what the client still sends is read and dropped until it closes too or
``CLOSE_LINGER`` seconds pass. A plain ``close()`` of a socket whose client is still writing
(a publisher past its Receive Maximum, paho's ``test_flow_control2``) makes the kernel answer
with a reset: the client's next write fails, and a reset can drop the DISCONNECT it had not yet
read, so it never learns why. Mosquitto 2.0.11 closes at once (``close`` without
``shutdown``); it does not meet this case, as it answers that publish with PUBREC 0x97 and
stays connected.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from twisted.internet import protocol
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from warren.model.errors import BrokerError
from warren.cert_login import TlsFields
from warren.endpoint import AcceptedConnection
from warren.output import BatchedOutput, begin_reading, end_reading, flush_written
from warren.mqtt.codec import MqttError, MqttParser, PubAck, Publish
from warren.mqtt.registry import SessionRegistry
from warren.mqtt.session import MqttSession
from warren.mqtt.states import State
from warren.turn_slices import turn_deadline

log = logging.getLogger("warren.mqtt")

#: seconds a closed connection goes on reading (and dropping) what the client still sends
#: after our FIN, waiting for its own close
CLOSE_LINGER = 2.0
#: packets parsed (then handled) between two looks at the turn's deadline: a 64 KiB read
#: holds some 3,000 small ones, 10 ms of parsing and handling before this limit
READ_BATCH = 64


@implementer(IPushProducer)
class MqttConnection(AcceptedConnection, BatchedOutput, protocol.Protocol):
    def __init__(self, registry: SessionRegistry, config: Any, clock: Any) -> None:
        self.registry = registry
        self.broker = registry.broker
        self.config = config
        self.clock = clock
        # Before CONNECT only a CONNECT of bounded size is acceptable: an unauthenticated
        # socket claiming a 256 MiB packet must not make the broker buffer it (RabbitMQ's
        # mqtt.max_packet_size_unauthenticated, 64 KiB); the session raises the limit after
        # a successful CONNECT.
        self.parser = MqttParser(max_packet_size=min(config.mqtt_max_packet_size,
                                                     config.mqtt_max_packet_size_unauthenticated))
        self.session = MqttSession(self, registry)
        self.blocked = False
        self.closed = False
        self.recv_oct = 0
        self.init_output(clock)
        self._connect_call = None
        self._linger_call: Any = None
        self._backlog: list | None = None   # packets held while long work is under way
        self.tls_fields = TlsFields()
        self.connected_at = clock.seconds()

    # ------------------------------------------------------------------ transport events
    def connectionMade(self) -> None:
        self.accepted(self.transport)
        self.broker.register_connection(self)
        self.transport.registerProducer(self, True)
        self._connect_call = self.clock.callLater(self.config.handshake_timeout,
                                                  self._connect_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        session = self.session
        self.recv_oct += len(data)
        session.last_recv = self.clock.seconds()
        fault = None
        try:
            packets = self.parser.feed(data, READ_BATCH)
        except MqttError as error:
            # act on the whole packets that came before the fault, then report it
            packets, fault = list(error.packets), error
        if self._backlog is not None:
            # long work of an earlier packet is under way: these wait their turn
            self._backlog.extend(packets)
            if fault is not None:
                self._backlog.append(fault)
            return
        self._process(packets, fault)

    def _process(self, packets: Any, fault: MqttError | None = None) -> None:
        """Hand packets to the session in order; when one leaves long work (a big SUBSCRIBE),
        keep the rest, stop reading, and go on a slice per reactor turn (``_continue``).

        Deliveries to other clients go out as soon as the packets are handled, before this
        client's own answers and the read's store work (``output.begin_reading``)."""
        outer = begin_reading()
        try:
            self._handle(packets, fault)
        finally:
            if outer:
                end_reading()

    def _handle(self, packets: Any, fault: MqttError | None) -> None:
        session = self.session
        # what this read writes is flushed once at its end (below): no end-of-turn timer
        self._in_read = True
        try:
            on_publish = session.on_publish
            on_puback = session.on_puback
            # read once: an Enum member read goes through EnumType.__getattr__ in 3.11
            connected = State.CONNECTED
            it = iter(packets)
            # packets other than PUBLISH and PUBACK are handled until the turn's deadline,
            # the rest of the read at the next turn: a client sending thousands of SUBSCRIBEs
            # at once must not hold the reactor (a count of 500 was 40 ms of CPU per turn)
            deadline = turn_deadline()
            parser = self.parser
            while True:
                for packet in it:
                    kind = type(packet)
                    if kind is Publish and session.state_name is connected:
                        on_publish(packet)
                    elif kind is PubAck and session.state_name is connected:
                        # as cheap as a PUBLISH: a subscriber's acks are not the control
                        # packets the budget bounds per packet (they are per batch, below)
                        on_puback(packet)
                    elif isinstance(packet, MqttError):
                        raise packet
                    else:
                        session.handle(packet)
                        if self.closed:
                            return
                        if session.pending_work is not None or time.monotonic() >= deadline:
                            # long work, or a burst of (UN)SUBSCRIBEs: the rest next turn
                            self._hold(list(it), fault)
                            return
                if fault is not None:
                    raise fault
                if not parser.held:
                    break
                if time.monotonic() >= deadline:
                    # the read's packets are parsed and handled READ_BATCH at a time until
                    # the turn's deadline; the rest of its bytes wait in the parser
                    self._hold([], None)
                    return
                try:
                    it = iter(parser.feed(b"", READ_BATCH))
                except MqttError as error:
                    it, fault = iter(list(error.packets)), error
        except (MqttError, BrokerError) as error:
            log.info("MQTT connection %s: %r", self.name, error)
            self._protocol_error()
            session.fail(error)
        except Exception:
            log.exception("internal error on MQTT connection %s", self.name)
            session.fail(MqttError(0x80, "internal error"))
        finally:
            self._in_read = False
            flush_written()
            if not self.closed:
                session.after_read()
            if self._connect_call is not None and session.state_name is not \
                    State.AWAIT_CONNECT and self._connect_call.active():
                self._connect_call.cancel()
                self._connect_call = None
            self.flush()

    def _hold(self, packets: list, fault: MqttError | None) -> None:
        """Stop reading; the packets not handled yet (and the bytes the parser holds) go on
        at the next reactor turn (``_continue``), after the session's long work if any."""
        self._backlog = packets
        if fault is not None:
            self._backlog.append(fault)
        self.transport.pauseProducing()
        self.clock.callLater(0, self._continue)

    def _continue(self) -> None:
        """One more slice of the session's long work; then the packets held meanwhile."""
        session = self.session
        if self.closed:
            self._backlog = None
            return
        try:
            done = session.pending_work() if session.pending_work is not None else True
        except (MqttError, BrokerError) as error:
            session.pending_work = None
            self._backlog = None
            log.info("MQTT connection %s: %r", self.name, error)
            self._protocol_error()
            session.fail(error)
            self.flush()
            return
        except Exception:
            session.pending_work = None
            self._backlog = None
            log.exception("internal error on MQTT connection %s", self.name)
            session.fail(MqttError(0x80, "internal error"))
            self.flush()
            return
        if not done:
            self.flush()
            self.clock.callLater(0, self._continue)
            return
        session.pending_work = None
        backlog, self._backlog = self._backlog or [], None
        if not self.blocked and not self.closed:
            self.transport.resumeProducing()
        self._process(backlog)

    def _protocol_error(self) -> None:
        """Over WebSocket, the close that follows says "protocol error" (1002), as RabbitMQ's
        Web-MQTT closes on a packet it refuses; a TCP transport has no such code."""
        if hasattr(self.transport, "close_code"):
            self.transport.close_code = 1002

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True
        self.broker.unregister_connection(self)
        for call in (self._flush_call, self._connect_call, self._linger_call):
            if call is not None and call.active():
                call.cancel()
        self._flush_call = self._connect_call = self._linger_call = None
        self._out = []
        session = self.session
        try:
            session.detach()
        except Exception:
            log.exception("error detaching MQTT session of %s", self.name)
        # the session and this connection refer to each other: a stand-in breaks the cycle,
        # so both go when the last reference does, not at the cyclic collector's next full
        # pass (10,000 dropped connections were some 260,000 objects left for it)
        session.release(ClosedConnection(self))
        self.broker.emit("connection.closed", name=self.name)

    def _connect_timeout(self) -> None:
        self._connect_call = None
        if self.session.state_name is State.AWAIT_CONNECT and not self.closed:
            log.info("MQTT connection %s: no CONNECT in time", self.name)
            self.close()

    # ------------------------------------------------------------------ output (BatchedOutput)
    def output_resumed(self) -> None:
        self.session.kick()

    def output_closed(self) -> bool:
        return self.closed

    def close(self) -> None:
        """Write what is pending, then close the socket (the session already detached).

        On TCP the write side closes first (FIN after the last packet) and reading goes on,
        each read dropped (``dataReceived`` once ``closed``), until the client closes or
        ``CLOSE_LINGER`` passes: no reset for a client still writing, which would lose it
        the DISCONNECT. TLS and WebSocket transports close as before (a TCP half-close under
        them would cut their own closing handshake)."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        transport = self.transport
        if not isinstance(transport, FileDescriptor):
            transport.loseConnection()
            return
        transport.loseWriteConnection()
        transport.resumeProducing()     # reading may be paused (a held backlog)
        self._linger_call = self.clock.callLater(CLOSE_LINGER, self._linger_over)

    def _linger_over(self) -> None:
        """The client neither closed nor stopped writing in time: close regardless."""
        self._linger_call = None
        self.transport.loseConnection()

    def parser_level(self) -> int | None:
        return self.parser.protocol_level

    # ------------------------------------------------------------------ broker hooks
    def set_blocked(self, blocked: bool, reason: str) -> None:
        """Memory alarm: stop reading from this publisher (MQTT has no blocked notice)."""
        if blocked == self.blocked or self.closed:
            return
        self.blocked = blocked
        if blocked:
            self.transport.pauseProducing()
        elif self._backlog is None:
            self.transport.resumeProducing()

    def force_close(self, reason: str) -> None:
        self.session.force_close(reason)

    @property
    def vhost_name(self) -> str | None:
        return self.session.vhost.name if self.session.vhost is not None else None

    def info(self) -> dict[str, Any]:
        s = self.session.info()
        return {
            # "Web MQTT 3.1.1" when a WebSocket carries it, as RabbitMQ lists those
            "name": self.name,
            "protocol": s["protocol"] and s["protocol"].replace(
                "MQTT", getattr(self.transport, "protocol_name", "MQTT"), 1),
            "user": s["user"],
            "vhost": s["vhost"], "peer_host": self.peer[0], "peer_port": self.peer[1],
            "host": self.local[0], "port": self.local[1], "channels": 1,
            "state": "blocked" if self.blocked else s["state"],
            "connected_at": int(self.connected_at * 1000),
            "recv_oct": self.recv_oct, "send_oct": self.send_oct,
            "client_properties": {"client_id": s["client_id"]}, "type": "network",
            "timeout": self.session.keep_alive, **self.tls_fields.of(self.transport),
        }


class ClosedConnection:
    """A session's connection once it is closed (``MqttConnection.connectionLost``): what is
    written goes nowhere, and it holds no reference to the connection or the session (a
    store sync that fires afterwards still finds a ``conn`` to write its acks to)."""

    closed = True
    write_paused = True

    def __init__(self, conn: MqttConnection) -> None:
        self.name, self.peer, self.local = conn.name, conn.peer, conn.local
        self.loopback = conn.loopback
        self.parser = conn.parser

    def write(self, data: bytes) -> None:
        pass

    def write_parts(self, parts: list[bytes]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def parser_level(self) -> int | None:
        return self.parser.protocol_level

    def certificate_name(self) -> str | None:
        return None


class MqttFactory(protocol.Factory):
    """What every MQTT connection shares: the broker, config and the session registry."""

    def __init__(self, broker: Any, config: Any, reactor: Any) -> None:
        self.broker = broker
        self.config = config
        self.clock = reactor
        self.registry = SessionRegistry(broker, config, reactor)

    def stopFactory(self) -> None:
        """The last listener stopped (the broker is stopping): finish the sessions' records
        being written in slices now, before the store closes."""
        self.registry.records.flush()

    def buildProtocol(self, addr: Any) -> MqttConnection:
        conn = MqttConnection(self.registry, self.config, self.clock)
        conn.factory = self
        return conn
