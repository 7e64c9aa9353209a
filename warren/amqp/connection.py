"""The AMQP 0-9-1 connection: handshake, channel table, heartbeats, output batching.

Shaped like Twisted's ``H2Connection.dataReceived``: bytes go to the sans-I/O
:class:`FrameReader`, each frame to one small method, and what the frames caused is written
once at the end of the read. The deliveries a read causes on other connections are written
once its frames are handled, before its confirms and store sync (``output.begin_reading``);
those caused outside any read, once per reactor turn. Either way a burst of messages costs one
``write`` per consumer.

Connection states are data (:class:`State`); a frame that its state does not allow is one
protocol error. Any error is mapped once (``amqp/errors.py``); the one broad ``except`` is here,
at the connection boundary: it logs, sends 541 and closes this connection only.
"""

from __future__ import annotations

import enum
import logging
import struct
import time
from typing import Any, Callable

from pamqp import base, commands
from pamqp import decode as pamqp_decode
from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from .. import __version__
from ..model.errors import (AccessRefused, CommandInvalid, ConnectionForced, InternalError,
                            NotAllowed)
from ..broker.broker import Broker
from ..broker.users import User
from ..broker.vhost import VirtualHost
from ..broker.jsonvalue import jsonable
from ..broker.stats import with_deliver_get
from ..cert_login import TlsFields, certificate_login, is_tls
from ..config import CHOICES, Config
from ..endpoint import AcceptedConnection
from ..output import BatchedOutput, begin_reading, end_reading, flush_written
from ..reply_error import ReplyError
from ..turn_slices import TURN_BUDGET, turn_deadline
from .channel import Channel
from .errors import close_for
from .framing import (CHANNEL_OPEN_OK_0_8_PAYLOAD, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT,
                      FRAME_METHOD, FRAME_MIN_SIZE, HEARTBEAT_FRAME, PROTOCOL_HEADER,
                      FrameReader, decode_method, encode_method, method_frame)
from .wire_errors import ChannelError, FrameError, UnexpectedFrame

log = logging.getLogger("warren.amqp")

#: seconds of methods of classes other than Basic (queue.bind, queue.declare, exchange.*...)
#: handled per reactor turn before the rest of a read waits for the next turn: a client
#: that pipelines thousands of them (a read holds some 500 binds, 25-50 ms of work) must not
#: hold the reactor while other clients wait. Basic's publishes and acks are not timed, as
#: MQTT's listener does not count PUBLISH: they are cheap, and the hot path stays as it is.
#: The budget is the turn's (``turn_slices.turn_deadline``): shared with what else the turn
#: did, the held methods' continuation included.
CONTROL_METHODS_BUDGET = TURN_BUDGET
_BASIC_CLASS = 60


class State(enum.Enum):
    AWAIT_HEADER = "awaiting protocol header"
    AWAIT_START_OK = "awaiting connection.start-ok"
    AWAIT_TUNE_OK = "awaiting connection.tune-ok"
    AWAIT_OPEN = "awaiting connection.open"
    OPEN = "running"
    CLOSING = "closing"          # we sent connection.close; only close-ok matters now
    CLOSED = "closed"


#: connection-class methods allowed in each handshake state
HANDSHAKE: dict[State, tuple[type[base.Frame], ...]] = {
    State.AWAIT_START_OK: (commands.Connection.StartOk,),
    State.AWAIT_TUNE_OK: (commands.Connection.TuneOk,),
    State.AWAIT_OPEN: (commands.Connection.Open,),
}

SERVER_CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}


@implementer(IPushProducer)
class AmqpConnection(AcceptedConnection, BatchedOutput, protocol.Protocol):
    def __init__(self, broker: Broker, config: Config, clock: Any) -> None:
        self.broker = broker
        self.config = config
        self.clock = clock
        self.mechanisms: list[str] = []   # offered in connection.start
        self.auth_mechanism = ""          # the one the client logged in with
        self.tls_fields = TlsFields()
        self.state = State.AWAIT_HEADER
        self._header = b""
        self.reader = FrameReader(FRAME_MIN_SIZE)  # small until tuned, as RabbitMQ
        self.frame_max = FRAME_MIN_SIZE
        self.channel_max = config.channel_max
        self.heartbeat = 0
        self.channels: dict[int, Channel] = {}
        # set by the login and connection.open, before any channel can exist (channels read
        # them as always there)
        self.user: User = None            # type: ignore[assignment]
        self.vhost: VirtualHost = None    # type: ignore[assignment]
        self.vhost_name: str | None = None
        self.client_properties: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}
        self.exclusive_queues: set = set()
        self.amqp_0_8 = False               # spoken to as 0-8 (its protocol header)
        self.published = False
        self.blocked = False
        self.connected_at = clock.seconds()
        self.init_output(clock)
        self._after_read: list[Channel] = []
        self._last_recv = self.connected_at
        self._hb_call: LoopingCall | None = None
        self._handshake_call = None
        self._close_call = None
        self.recv_oct = 0
        self._backlog: list | None = None    # frames of a read held for the next turn
        self._backlog_call = None

    # ------------------------------------------------------------------ transport events
    def connectionMade(self) -> None:
        self.broker.register_connection(self)
        self.transport.registerProducer(self, True)
        self.accepted(self.transport)
        self._handshake_call = self.clock.callLater(self.config.handshake_timeout,
                                                    self._handshake_timeout)
        limit = self.config.max_connections
        if limit and len(self.broker.connections) > limit:
            log.warning("connection %s refused: connection limit %d reached", self.name, limit)
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return
        self._last_recv = self.clock.seconds()
        self.recv_oct += len(data)
        # deliveries this read causes on other connections (a publish's to its consumers) go
        # out once its frames are handled, not at the end of the reactor turn; this
        # connection's own answers wait for the read's end (``output.begin_reading``)
        outer = begin_reading()
        self._in_read = True
        try:
            self._guarded(self._read, data)
        finally:
            self._read_done()
            if outer:
                end_reading()

    def _read(self, data: bytes) -> None:
        if self.state is State.AWAIT_HEADER:
            data = self._protocol_header(data)
            if not data:
                return
        frames = self.reader.feed(data)
        if self._backlog is not None:     # still working through an earlier read
            self._backlog.extend(frames)
            return
        self._handle_frames(frames)

    def _guarded(self, handle: Callable[[Any], None], arg: Any) -> None:
        """Handle what a read brought: a client's error closes as AMQP says (channel or
        connection), anything else is logged once and closes the connection as internal."""
        try:
            handle(arg)
        except ReplyError as e:
            self._error(e, None)
        except Exception:
            log.exception("internal error on connection %s", getattr(self, "name", "?"))
            self._error(InternalError("internal error"), None, force_connection=True)

    def _handle_frames(self, frames: list) -> None:
        """Handle a read's frames; once non-Basic methods have taken
        ``CONTROL_METHODS_BUDGET`` the rest is held (reading paused) and handled at the next
        reactor turn."""
        channels = self.channels
        deadline = 0.0
        for i, (ftype, channel, payload) in enumerate(frames):
            if channel and 0 < ftype < 4 and self.state is State.OPEN:
                ch = channels.get(channel)
                if ch is not None:
                    # the hot path (method, header or body for an open channel): what
                    # _frame ends with, without its checks for the other cases
                    try:
                        ch.handle_frame(ftype, payload)
                    except ReplyError as e:
                        self._error(e, ch)
                    if self.state is State.CLOSED:   # type: ignore[comparison-overlap]
                        return                       # (the frame's handler may close it)
                    if ftype == 1 and (payload[1] != _BASIC_CLASS or payload[0]):
                        now = time.monotonic()
                        if not deadline:
                            deadline = turn_deadline()
                        if now >= deadline and i + 1 < len(frames):
                            self._hold(frames[i + 1:])
                            return
                    continue
            self._frame(ftype, channel, payload)
            if self.state is State.CLOSED:
                return

    def _hold(self, frames: list) -> None:
        if self._backlog is not None:   # frames held before these (``handle_held``) go first
            self._backlog.extend(frames)
            return
        self._backlog = frames
        self.transport.pauseProducing()
        self._backlog_call = self.clock.callLater(0, self._resume_backlog)

    def pause_reading(self) -> None:
        """A channel holds many frames while its basic.get waits: read nothing more until
        they are handled (``handle_held``, whose backlog resumes reading when done)."""
        if self.state is not State.CLOSED and self.transport is not None:
            self.transport.pauseProducing()

    def handle_held(self, frames: list) -> None:
        """A channel's frames held while its basic.get waited (``Channel._hold``): handled
        at the next reactor turn, ahead of anything read since; what the channel wrote
        meanwhile (the get's answer) goes out now."""
        if self.state is State.CLOSED:
            return
        if frames:
            if self._backlog is not None:
                self._backlog[:0] = frames
            else:
                self._hold(list(frames))
        self.flush()

    def _resume_backlog(self) -> None:
        self._backlog_call = None
        frames, self._backlog = self._backlog, None
        if self.state is State.CLOSED or frames is None:
            return
        # the answers of the slice before go out first, inside this turn's budget
        # (``_read_done`` left them): a send is a syscall whose CPU the slice's deadline
        # would not count if it came after it (on loopback the receiver's side runs in the
        # sender's syscall, 20 µs a send at the median and up to 4 ms at 1M bindings)
        self.flush()
        outer = begin_reading()
        self._in_read = True
        try:
            self._guarded(self._handle_frames, frames)
        finally:
            self._read_done()
            if outer:
                end_reading()
            # (the frames' handlers may have closed it: mypy kept the state seen before)
            if (self._backlog is None and not self.blocked
                    and self.state is not State.CLOSED   # type: ignore[comparison-overlap]
                    and self.transport is not None):
                self.transport.resumeProducing()

    def _read_done(self) -> None:
        """After a read's frames (or a slice of them): other connections' output, the
        channels' batched work (confirms, the store sync), this connection's output."""
        self._in_read = False
        flush_written()
        if self._after_read:
            pending, self._after_read = self._after_read, []
            for ch in pending:
                if not ch.closing:
                    ch.after_read()
        if self._backlog is None or self._backlog_call is None:
            self.flush()
        # else the read was cut at the turn's deadline: its slice's answers go out at the
        # start of the next slice (``_resume_backlog``), one turn later, so the send is
        # inside a turn's budget instead of after it

    def connectionLost(self, reason: Any = None) -> None:
        self.state = State.CLOSED
        self._backlog = None
        for call in (self._handshake_call, self._close_call, self._flush_call,
                     self._backlog_call):
            if call is not None and call.active():
                call.cancel()
        if self._hb_call is not None and self._hb_call.running:
            self._hb_call.stop()
        # each holds a bound method of this connection (a timed call that fired still does):
        # kept, the connection would be a cycle that only the cyclic collector frees
        self._handshake_call = self._close_call = self._flush_call = None
        self._backlog_call = self._hb_call = None
        self._release()
        self.broker.emit("connection.closed", name=getattr(self, "name", "?"))

    def _release(self) -> None:
        """Unlisted, channels released (unacked requeued, consumers cancelled), exclusive
        queues deleted: at connection.close before its close-ok, and when the connection is
        dropped after one, so a client that saw the close finds them gone (the socket's
        teardown may come turns later, ``poll_slices.py``); again, for nothing, when the
        connection is lost."""
        self.broker.unregister_connection(self)
        self.broker.unregister_blockable(self)
        for ch in list(self.channels.values()):
            ch.release_all()
        self.channels.clear()
        for q in list(self.exclusive_queues):
            if not q.deleted and q.name in q.vhost.queues and q.vhost.queues[q.name] is q:
                q.vhost.delete_queue(q.name, reason="owner closed")
        self.exclusive_queues.clear()

    def output_resumed(self) -> None:
        for ch in list(self.channels.values()):
            ch._kick()

    # ------------------------------------------------------------------ output
    def output_closed(self) -> bool:
        return self.state is State.CLOSED

    def want_after_read(self, channel: Channel) -> None:
        if not self._after_read or self._after_read[-1] is not channel:
            if channel not in self._after_read:
                self._after_read.append(channel)

    # ------------------------------------------------------------------ handshake
    def _protocol_header(self, data: bytes) -> bytes:
        need = 8 - len(self._header)
        self._header += data[:need]
        rest = data[need:]
        if len(self._header) < 8:
            if not any(h.startswith(self._header) for h in ACCEPTED_HEADERS):
                self._bad_header()
            return b""
        if self._header not in ACCEPTED_HEADERS:
            self._bad_header()
            return b""
        self.state = State.AWAIT_START_OK
        # 0-8 as RabbitMQ 3.x speaks it: connection.start says 8-0 and lists no capabilities
        self.amqp_0_8 = self._header == AMQP_0_8_HEADER
        props: dict[str, Any] = {
            "capabilities": {} if self.amqp_0_8 else SERVER_CAPABILITIES,
            "cluster_name": self.broker.node_name,
            "copyright": "Copyright (c) the warren authors",
            "information": "Licensed under the Apache License 2.0",
            "platform": "Python / Twisted",
            "product": "warren",
            "version": __version__,
        }
        major, minor = (8, 0) if self.amqp_0_8 else (0, 9)
        # as RabbitMQ: the configured auth_mechanisms; EXTERNAL only on a TLS connection,
        # but there even without a client certificate, so such a client is refused with a
        # reason ("no certificate") rather than failing to agree on a mechanism
        tls = is_tls(self.transport)
        self.mechanisms = [m for m in self.config.auth_mechanisms if m != "EXTERNAL" or tls]
        self.write(encode_method(commands.Connection.Start(
            version_major=major, version_minor=minor, server_properties=props,
            mechanisms=" ".join(self.mechanisms), locales="en_US"), 0))
        return rest

    def _bad_header(self) -> None:
        # spec 4.2.2: answer with the protocol header we support, then close (as RabbitMQ's
        # refuse_connection), and say in the log why
        log.warning("AMQP connection %s refused: %s", getattr(self, "name", "?"),
                    _header_refusal(self._header))
        self.transport.write(PROTOCOL_HEADER)
        self.state = State.CLOSED
        self.transport.loseConnection()

    def _handshake_timeout(self) -> None:
        self._handshake_call = None
        if self.state is not State.OPEN and self.state is not State.CLOSED:
            log.warning("closing %s: handshake not completed in time", self.name)
            self.state = State.CLOSED
            self.transport.loseConnection()

    def _on_start_ok(self, m: commands.Connection.StartOk) -> None:
        self.client_properties = m.client_properties or {}
        caps = self.client_properties.get("capabilities")
        self.capabilities = caps if isinstance(caps, dict) else {}
        mechanism = self._offered(m.mechanism)
        refusal = ""
        if mechanism == "EXTERNAL":   # the response is ignored: the certificate names the user
            login = certificate_login(self.transport, self.config)
            username, password, refusal = login.name, None, login.refusal
        else:
            username, password = self._credentials(mechanism, m.response)
        try:
            if username is None:
                raise self.broker.refuse_login(None, refusal, peer=self.peer[0],
                                               protocol="AMQP", mechanism=mechanism)
            self.user = self.broker.authenticate(username, password, loopback=self.loopback,
                                                 peer=self.peer[0], protocol="AMQP",
                                                 mechanism=mechanism)
            self.auth_mechanism = mechanism
        except AccessRefused as e:
            if self.capabilities.get("authentication_failure_close"):
                self._error(e, None, force_connection=True)
            else:
                self.flush()
                self.state = State.CLOSED
                self.transport.loseConnection()
            return
        self.state = State.AWAIT_TUNE_OK
        self.write(encode_method(commands.Connection.Tune(
            channel_max=self.config.channel_max, frame_max=self.config.frame_max,
            heartbeat=self.config.heartbeat), 0))

    def _offered(self, mechanism: str) -> str:
        """The client's choice, if it is one we offered (RabbitMQ's errors otherwise: a
        mechanism it does not have is unknown, as EXTERNAL is until its plugin is enabled,
        which listing it in ``auth_mechanisms`` stands for here; one it has but did not offer
        on this connection is invalid)."""
        if mechanism not in CHOICES["auth_mechanisms"] or (
                mechanism == "EXTERNAL" and mechanism not in self.config.auth_mechanisms):
            raise CommandInvalid(f"unknown authentication mechanism '{mechanism}'")
        if mechanism not in self.mechanisms:
            raise CommandInvalid(f"invalid authentication mechanism '{mechanism}'")
        return mechanism

    @staticmethod
    def _credentials(mechanism: str, response: Any) -> tuple[str, str]:
        """User name and password of a PLAIN or AMQPLAIN response."""
        raw = response.encode("utf-8", "surrogateescape") if isinstance(response, str) \
            else bytes(response or b"")
        if mechanism == "PLAIN":
            parts = raw.split(b"\x00")
            if len(parts) != 3:
                raise AccessRefused("malformed PLAIN response")
            return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")
        try:
            table = _amqplain(raw)
        except Exception:
            raise AccessRefused("malformed AMQPLAIN response") from None
        return str(table.get("LOGIN", "")), str(table.get("PASSWORD", ""))

    def _on_tune_ok(self, m: commands.Connection.TuneOk) -> None:
        frame_max = m.frame_max or self.config.frame_max
        if frame_max < FRAME_MIN_SIZE:
            raise NotAllowed(f"frame_max={frame_max} < {FRAME_MIN_SIZE} min size")
        if frame_max > self.config.frame_max:
            raise NotAllowed(f"frame_max={frame_max} > {self.config.frame_max} max size")
        channel_max = m.channel_max or self.config.channel_max
        if channel_max > self.config.channel_max:
            raise NotAllowed(f"channel_max={channel_max} > {self.config.channel_max} max size")
        self.frame_max = frame_max
        self.reader.frame_max = frame_max
        self.channel_max = channel_max
        self.heartbeat = m.heartbeat
        self.state = State.AWAIT_OPEN
        if self.heartbeat:
            self._hb_call = LoopingCall(self._heartbeat_tick)
            self._hb_call.clock = self.clock
            self._hb_call.start(self.heartbeat / 2.0, now=False)

    def _on_open(self, m: commands.Connection.Open) -> None:
        self.vhost = self.broker.open_vhost(self.user, m.virtual_host, peer=self.peer[0],
                                            protocol="AMQP", connection=self)
        self.vhost_name = m.virtual_host
        self.state = State.OPEN
        if self._handshake_call is not None and self._handshake_call.active():
            self._handshake_call.cancel()
        self._handshake_call = None
        self.write(encode_method(commands.Connection.OpenOk(), 0))
        self.broker.emit("connection.created", name=self.name)

    def _heartbeat_tick(self) -> None:
        if self.state is State.CLOSED:
            return
        now = self.clock.seconds()
        if now - self._last_recv > 2 * self.heartbeat:
            log.warning("closing %s: missed heartbeats from client, timeout: %ds",
                        self.name, self.heartbeat)
            self.state = State.CLOSED
            self.transport.abortConnection()
            return
        if not self._sent_since_tick:
            self.transport.write(HEARTBEAT_FRAME)
        self._sent_since_tick = False

    # ------------------------------------------------------------------ frames
    def _frame(self, ftype: int, channel: int, payload: bytes) -> None:
        state = self.state
        if ftype not in _FRAME_TYPES:
            # rabbit_reader:handle_frame: a type analyze_frame does not know is a frame error
            raise FrameError(f"type {ftype}, {_snippet(payload)}: unknown_frame")
        if ftype == FRAME_HEARTBEAT:
            if channel != 0:
                raise FrameError(f"heartbeat frame on channel {channel}")
            return
        if state is State.CLOSING:
            if ftype == FRAME_METHOD and channel == 0:
                m = decode_method(payload)
                if isinstance(m, (commands.Connection.CloseOk, commands.Connection.Close)):
                    if isinstance(m, commands.Connection.Close):
                        self.transport.write(encode_method(commands.Connection.CloseOk(), 0))
                    self._drop()
            return
        if channel == 0:
            if ftype != FRAME_METHOD:
                raise UnexpectedFrame("non-method frame on channel 0")
            m = decode_method(payload)
            self._connection_method(m)
            return
        if state is not State.OPEN:
            raise ChannelError(f"channel {channel} used before the connection was opened")
        ch = self.channels.get(channel)
        if ch is None:
            if ftype != FRAME_METHOD:
                raise ChannelError(f"expected 'channel.open' on channel {channel}")
            m = decode_method(payload)
            if not isinstance(m, commands.Channel.Open):
                raise ChannelError(f"expected 'channel.open' on channel {channel}, "
                                   f"got '{m.name}'")
            if self.channel_max and len(self.channels) >= self.channel_max:
                # rabbit_reader:create_channel counts open channels against channel_max
                raise NotAllowed(f"number of channels opened ({len(self.channels)}) has "
                                 f"reached the negotiated channel_max ({self.channel_max})")
            self.broker.limits.check_channel(self.user)   # the user's max-channels
            # the channel's number is not checked against channel_max: RabbitMQ limits how
            # many are open, and clients (aiormq) number from 65535 down
            self.channels[channel] = Channel(self, channel)
            self.write(method_frame(channel, CHANNEL_OPEN_OK_0_8_PAYLOAD) if self.amqp_0_8
                       else encode_method(commands.Channel.OpenOk(), channel))
            return
        try:
            ch.handle_frame(ftype, payload)
        except ReplyError as e:
            self._error(e, ch)

    def _connection_method(self, m: Any) -> None:
        state = self.state
        if isinstance(m, commands.Connection.Close):
            self._release()
            self.transport.write(b"".join(self._out) +
                                 encode_method(commands.Connection.CloseOk(), 0))
            self._out = []
            self._drop()
            return
        if isinstance(m, commands.Connection.CloseOk):
            self._drop()
            return
        allowed = HANDSHAKE.get(state)
        if allowed is not None:
            if not isinstance(m, allowed):
                raise CommandInvalid(f"expected {allowed[0].name} while {state.value}, "
                                     f"got {m.name}")
            handlers: dict[type, Callable[[Any], None]] = {
                commands.Connection.StartOk: self._on_start_ok,
                commands.Connection.TuneOk: self._on_tune_ok,
                commands.Connection.Open: self._on_open}
            handlers[type(m)](m)
            return
        if isinstance(m, commands.Connection.UpdateSecret):
            self.write(encode_method(commands.Connection.UpdateSecretOk(), 0))
            return
        if isinstance(m, (commands.Connection.Blocked, commands.Connection.Unblocked)):
            return
        # rabbit_reader:handle_method0 for any other method: channel_error (504)
        raise ChannelError("unexpected method in connection state running")

    # ------------------------------------------------------------------ errors and closing
    def _error(self, error: ReplyError, ch: Channel | None, force_connection: bool = False
               ) -> None:
        class_id, method_id = ch.current_method() if ch is not None else (0, 0)
        method, whole = close_for(error, class_id, method_id, force_connection or ch is None)
        if whole:
            log.info("closing AMQP connection %s: %s", getattr(self, "name", "?"),
                     error.reply_text)
            self.close_connection(method)
            if isinstance(error, FrameError):
                # framing is lost (rabbit_reader:fatal_frame_error): nothing more can be
                # parsed, not even a close-ok, so hang up once the close is written
                self._drop()
        else:
            assert ch is not None   # a connection-level error is always "whole"
            log.debug("closing channel %d of %s: %s", ch.number, self.name, error.reply_text)
            ch.release_all()
            self.write(encode_method(method, ch.number))

    def channel_error(self, ch: Channel, error: ReplyError) -> None:
        """An error found outside a read (e.g. a failed store sync): close as usual, flush."""
        if ch.number in self.channels and not ch.closing:
            self._error(error, ch)
            self.flush()

    def channel_closed(self, ch: Channel) -> None:
        ch.release_all()
        self.channels.pop(ch.number, None)

    def close_connection(self, method: Any) -> None:
        if self.state in (State.CLOSING, State.CLOSED):
            return
        for ch in list(self.channels.values()):
            ch.release_all()
        self.channels.clear()
        self._out = []
        if self.state in (State.AWAIT_HEADER, State.AWAIT_START_OK) and \
                not self.capabilities.get("authentication_failure_close") and \
                method.reply_code == 403:
            self._drop()
            return
        self.transport.write(encode_method(method, 0))
        self.state = State.CLOSING
        # the peer has a second to answer close-ok, then we drop it anyway
        self._close_call = self.clock.callLater(1.0, self._drop)

    def force_close(self, reason: str) -> None:
        """Management/HA: close with 320 CONNECTION_FORCED as RabbitMQ does."""
        method, _ = close_for(ConnectionForced(reason), force_connection=True)
        self.close_connection(method)

    def _drop(self) -> None:
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._release()
            self.transport.loseConnection()

    # ------------------------------------------------------------------ flow control
    def started_publishing(self) -> None:
        self.published = True
        self.broker.register_blockable(self)

    def set_blocked(self, blocked: bool, reason: str) -> None:
        if blocked == self.blocked or self.state is State.CLOSED:
            return
        self.blocked = blocked
        if self.capabilities.get("connection.blocked"):
            m = commands.Connection.Blocked(reason=reason) if blocked else \
                commands.Connection.Unblocked()
            self.write(encode_method(m, 0))
            self.flush()
        if blocked:
            self.transport.pauseProducing()
        elif self._backlog is None:          # else reading resumes once the backlog is done
            self.transport.resumeProducing()

    # ------------------------------------------------------------------ introspection
    def info(self) -> dict[str, Any]:
        props = {k: (v.decode() if isinstance(v, bytes) else v)
                 for k, v in self.client_properties.items() if k != "capabilities"}
        return {
            "name": self.name, "protocol": "AMQP 0-8" if self.amqp_0_8 else "AMQP 0-9-1",
            "user": getattr(self.user, "name", ""), "auth_mechanism": self.auth_mechanism,
            **self.tls_fields.of(self.transport),
            "vhost": self.vhost_name or "", "peer_host": self.peer[0], "peer_port": self.peer[1],
            "host": self.local[0], "port": self.local[1], "channels": len(self.channels),
            "state": "blocked" if self.blocked else ("running" if self.state is State.OPEN
                                                     else self.state.name.lower()),
            "frame_max": self.frame_max, "channel_max": self.channel_max,
            "timeout": self.heartbeat, "connected_at": int(self.connected_at * 1000),
            "recv_oct": self.recv_oct, "send_oct": self.send_oct,
            "client_properties": jsonable(props), "type": "network",
        }

    def channel_infos(self) -> list[dict[str, Any]]:
        out = []
        for ch in self.channels.values():
            out.append({
                "name": f"{self.name} ({ch.number})", "number": ch.number,
                "connection_details": {"name": self.name, "peer_host": self.peer[0],
                                       "peer_port": self.peer[1]},
                "user": getattr(self.user, "name", ""), "vhost": self.vhost_name or "",
                "consumer_count": len(ch.consumers),
                "messages_unacknowledged": len(ch.unacked),
                "prefetch_count": ch.prefetch, "global_prefetch_count": ch.global_prefetch,
                "confirm": ch.confirm, "transactional": ch.tx,
                "state": "running" if not ch.closing else "closing",
                "message_stats": with_deliver_get(ch.stats),
            })
        return out

    def channel_counts(self) -> list[tuple[str, dict[str, int]]]:
        """Each channel's name and counters, for the sampler's per-channel rates."""
        return [(f"{self.name} ({ch.number})", ch.stats) for ch in self.channels.values()]

    def consumer_infos(self) -> list[dict[str, Any]]:
        out = []
        for ch in self.channels.values():
            for c in ch.consumers.values():
                out.append({
                    "consumer_tag": c.tag, "ack_required": not c.no_ack,
                    "exclusive": c.exclusive, "prefetch_count": c.prefetch,
                    "arguments": jsonable(c.arguments), "active": True,
                    "queue": {"name": c.queue.name, "vhost": c.queue.vhost.name},
                    "channel_details": {"name": f"{self.name} ({ch.number})",
                                        "number": ch.number, "connection_name": self.name,
                                        "peer_host": self.peer[0], "peer_port": self.peer[1],
                                        "user": getattr(self.user, "name", "")},
                })
        return out


_FRAME_TYPES = frozenset((FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT))

#: 0-9-1, and 0-9's header (``AMQP 1 1 0 9``), which RabbitMQ speaks 0-9-1 to: 0-9 and 0-9-1
#: differ in nothing a client of either sees, and connection.start says 0-9 for both; and
#: 0-8's, spoken as RabbitMQ 3.x speaks it (framing.py's from_0_8)
AMQP_0_9_HEADER = b"AMQP\x01\x01\x00\x09"
AMQP_0_8_HEADER = b"AMQP\x01\x01\x08\x00"
ACCEPTED_HEADERS = (PROTOCOL_HEADER, AMQP_0_9_HEADER, AMQP_0_8_HEADER)


def _header_refusal(header: bytes) -> str:
    """One line for the log: what the peer sent instead of a protocol header we speak."""
    if header.startswith(b"AMQP") and len(header) == 8:
        a, b, c, d = header[4:]
        if (a, b) == (1, 1):       # AMQP 0-8/0-9 style: class, instance, major, minor
            name = f"AMQP {c}-{d}"
        elif a in (0, 2, 3) and (b, c, d) == (1, 0, 0):
            name = "AMQP 1.0" + (" (SASL)" if a == 3 else " (TLS)" if a == 2 else "")
        else:
            name = "AMQP version"
        return (f"unsupported protocol header {name} ({a},{b},{c},{d}); "
                "AMQP 0-9-1, 0-9 and 0-8 are spoken here, and 1.0 after SASL")
    if header.startswith(b"GET ") or header.startswith(b"HTTP") or header[:4] in (
            b"POST", b"PUT ", b"HEAD"):
        return f"not AMQP: looks like an HTTP request ({header!r})"
    if header[:2] == b"\x16\x03":
        return "not AMQP: looks like a TLS client hello on a plain AMQP port"
    return f"not an AMQP protocol header: {header!r}"


def _snippet(payload: bytes) -> str:
    """As rabbit_reader:payload_snippet: all octets up to 16, else the first 16."""
    part = "all" if len(payload) <= 16 else "first 16"
    return f"{part} octets = {list(payload[:16])}"


def _amqplain(raw: bytes) -> dict[str, Any]:
    """AMQPLAIN: a field table without its 4-byte length prefix."""
    _, table = pamqp_decode.field_table(struct.pack(">I", len(raw)) + raw)
    return table


class AmqpFactory(protocol.Factory):
    def __init__(self, broker: Broker, config: Config, clock: Any) -> None:
        self.broker = broker
        self.config = config
        self.clock = clock

    def buildProtocol(self, addr: Any) -> AmqpConnection:
        conn = AmqpConnection(self.broker, self.config, self.clock)
        conn.factory = self
        return conn
