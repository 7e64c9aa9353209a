"""An AMQP 0-9-1 *client* connection, sans-I/O (h11 style), on pamqp.

Bridges (shovels, federation links) speak to another broker as a client. This machine holds
everything about that conversation that is not I/O, so it can be fed bytes in any chunking by
a Twisted protocol, a blocking socket in a test, or a fuzzer:

- :meth:`ClientConnection.receive_data` takes bytes and returns :class:`Event` objects;
- the command methods (:meth:`~ClientConnection.open_channel`,
  :meth:`~ClientConnection.basic_publish`, …) return the bytes to send;
- replies the protocol makes on its own (protocol header answers, Start-Ok, Tune-Ok,
  Connection.Open, Close-Ok) queue up in :meth:`~ClientConnection.data_to_send`.

No timers live here: the caller owns the clock, sends
:meth:`~ClientConnection.heartbeat_frame` every ``heartbeat / 2`` seconds and gives up after
``2 * heartbeat`` seconds of silence, as RabbitMQ's reader does.

Malformed input (a bad frame, an unknown method, content out of order, a method the state
table does not allow) yields exactly one :class:`ProtocolError` event, after which the machine
is in ``ERROR`` and ignores further input: no exception escapes :meth:`receive_data`.

Frames are read with pamqp's own functions behind a small buffer rather than with
``warren.amqp.framing``, which imports the broker's error types (``warren.broker``): this
package must stay free of the listener side.

Events are in :mod:`.events` (and importable from here); message properties are plain dicts
with the AMQP names (:mod:`.properties`).
"""

from __future__ import annotations

import enum
import inspect
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pamqp import base as pamqp_base
from pamqp import commands
from pamqp import encode as pamqp_encode
from pamqp import exceptions as pamqp_exceptions
from pamqp import frame as pamqp_frame

from .events import (
    ChannelClosed,
    ChannelOpened,
    ConnectionBlocked,
    ConnectionClosed,
    ConnectionOpened,
    ConnectionUnblocked,
    ConsumeOk,
    ConsumerCancelled,
    Delivery,
    Event,
    MethodOk,
    ProtocolError,
    PublishConfirmed,
    QueueDeclared,
    Returned,
)
from .properties import MalformedProperties, decode_properties, encode_properties

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
FRAME_MIN_SIZE = 4096          # AMQP 0-9-1 §4.2.1 frame-min-size
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"
PRE_TUNE_FRAME_MAX = 131072    # what we accept before Tune fixes a limit
_HDR = struct.Struct(">BHI")
_PUBLISH_HEAD = struct.Struct(">HHH")   # class 60, method 40, reserved ticket
_CONTENT_HEAD = struct.Struct(">HHQ")


class Long(int):
    """An integer sent in a field table as AMQP's 64-bit ``l`` whatever its size.

    pamqp picks the smallest integer type that fits; RabbitMQ checks the type of some
    arguments (``x-max-hops`` of an ``x-federation-upstream`` exchange must be ``long``).
    """


_encode_table_value = pamqp_encode.encode_table_value


def _encode_value(value: Any) -> bytes:
    if isinstance(value, Long):
        return b"l" + pamqp_encode.long_long_int(value)
    return _encode_table_value(value)


# field_table/field_array look the encoder up at call time; other values encode as before
pamqp_encode.encode_table_value = _encode_value


class _Fault(Exception):
    """Raised inside the machine on bad input, turned into one :class:`ProtocolError`."""


# ------------------------------------------------------------------------------ states
class State(enum.Enum):
    AWAIT_START = "await_start"
    AWAIT_TUNE = "await_tune"
    AWAIT_OPEN_OK = "await_open_ok"
    OPEN = "open"
    CLOSING = "closing"      # we sent Connection.Close, waiting for Close-Ok
    CLOSED = "closed"
    ERROR = "error"


# Which connection-level (channel 0) methods each state accepts. Anything else is a fault.
_CONNECTION_METHODS: dict[State, frozenset[type]] = {
    State.AWAIT_START: frozenset({commands.Connection.Start}),
    State.AWAIT_TUNE: frozenset({commands.Connection.Tune, commands.Connection.Close,
                                 commands.Connection.Secure}),
    State.AWAIT_OPEN_OK: frozenset({commands.Connection.OpenOk, commands.Connection.Close}),
    State.OPEN: frozenset({commands.Connection.Close, commands.Connection.Blocked,
                           commands.Connection.Unblocked}),
    State.CLOSING: frozenset({commands.Connection.Close, commands.Connection.CloseOk,
                              commands.Connection.Blocked, commands.Connection.Unblocked}),
}

_WHILE_CLOSING = frozenset({commands.Channel.Close, commands.Channel.CloseOk,
                            commands.Basic.Deliver, commands.Basic.Return})

CLIENT_CAPABILITIES = {
    "publisher_confirms": True, "consumer_cancel_notify": True,
    "exchange_exchange_bindings": True, "basic.nack": True, "connection.blocked": True,
    "authentication_failure_close": True,
}


@dataclass(slots=True)
class _Channel:
    """One channel's state: open or closing, confirm numbering, content being assembled."""

    open: bool = False                  # Channel.Open-Ok seen, and not closed by the server
    closing: bool = False               # we sent Channel.Close; only Close(-Ok) counts now
    confirm_mode: bool = False          # Confirm.Select sent: publishes are numbered
    next_publish_seq: int = 1           # the delivery tag the server gives our next publish
    content_method: Any = None          # Basic.Deliver / Basic.Return awaiting its content
    content_size: int = 0               # body size from the header; -1 until it arrives
    properties: dict = field(default_factory=dict)   # decoded from the content header
    body: list = field(default_factory=list)         # body frames received so far
    received: int = 0                   # their total length


def negotiate(client: int, server: int) -> int:
    """AMQP tune negotiation as RabbitMQ's clients do it: 0 means "no limit" on either side,
    so the non-zero value wins; otherwise the lower one."""
    if client == 0 or server == 0:
        return max(client, server)
    return min(client, server)


class ClientConnection:
    """One client connection's protocol state. See the module docstring for the contract.

    ``frame_max``, ``channel_max`` and ``heartbeat`` are what we propose in Tune-Ok; the
    defaults are RabbitMQ's Erlang client's (0 = let the server decide, 2047, 10 s).
    """

    def __init__(self, *, username: str = "guest", password: str = "guest",
                 vhost: str = "/", frame_max: int = 0, channel_max: int = 2047,
                 heartbeat: int = 10,
                 client_properties: dict | None = None) -> None:
        self._username = username
        self._password = password
        self.vhost = vhost
        self._wanted = (channel_max, frame_max, heartbeat)
        self.client_properties = {
            "product": "warren", "platform": "Python/Twisted",
            "capabilities": dict(CLIENT_CAPABILITIES),
            "information": "warren network link", **(client_properties or {})}
        self.state = State.AWAIT_START
        self.frame_max = PRE_TUNE_FRAME_MAX
        self.channel_max = 0
        self.heartbeat = 0
        self.server_properties: dict = {}
        self.channels: dict[int, _Channel] = {}
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._header_checked = False

    # ----------------------------------------------------------------------- input
    def initiate(self) -> bytes:
        """The protocol header, the first bytes a client sends."""
        return PROTOCOL_HEADER

    def data_to_send(self) -> bytes:
        """Replies queued by :meth:`receive_data` (Start-Ok, Tune-Ok, Open, Close-Ok)."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the server; return the events they complete."""
        if self.state in (State.ERROR, State.CLOSED):
            return []
        self._buf += data
        events: list[Event] = []
        try:
            self._drain(events)
        except _Fault as fault:
            self.state = State.ERROR
            self._buf.clear()
            events.append(ProtocolError(str(fault)))
        return events

    def _drain(self, events: list[Event]) -> None:
        buf = self._buf
        if not self._header_checked:
            # A server that cannot speak 0-9-1 answers our header with its own and closes
            # (§4.2.2); no frame starts with "A", so the first byte tells.
            if buf[:1] == b"A":
                if len(buf) < 8:
                    return
                raise _Fault(f"server does not speak AMQP 0-9-1, it answered with "
                             f"{bytes(buf[:8])!r}")
            self._header_checked = bool(buf)
        off = 0
        n = len(buf)
        limit = (self.frame_max or 2**32) - 8
        while n - off >= 7:
            ftype, channel, size = _HDR.unpack_from(buf, off)
            if size > limit:
                raise _Fault(f"frame of {size + 8} bytes exceeds frame_max {self.frame_max}")
            end = off + 7 + size
            if end >= n:
                break
            if buf[end] != FRAME_END:
                raise _Fault(f"frame end byte 0x{buf[end]:02x} is not 0xce")
            payload = bytes(buf[off + 7:end])
            off = end + 1
            self._on_frame(ftype, channel, payload, events)
            if self.state in (State.CLOSED, State.ERROR):
                break
        del buf[:off]

    def _on_frame(self, ftype: int, channel: int, payload: bytes,
                  events: list[Event]) -> None:
        if ftype == FRAME_HEARTBEAT:
            if channel != 0:
                raise _Fault(f"heartbeat frame on channel {channel}")
            return
        if ftype == FRAME_METHOD:
            self._on_method(channel, payload, events)
        elif ftype == FRAME_HEADER:
            self._on_content_header(channel, payload)
            self._complete_content(channel, events)
        elif ftype == FRAME_BODY:
            self._on_content_body(channel, payload)
            self._complete_content(channel, events)
        else:
            raise _Fault(f"unknown frame type {ftype}")

    @staticmethod
    def _method_class(payload: bytes) -> type[pamqp_base.Frame]:
        if len(payload) < 4:
            raise _Fault("method frame too short")
        index = struct.unpack_from(">I", payload)[0]
        cls = commands.INDEX_MAPPING.get(index)
        if cls is None:
            raise _Fault(f"unknown method {index >> 16}.{index & 0xffff}")
        return cls

    @staticmethod
    def _decode_method(method_class: type[pamqp_base.Frame], payload: bytes) -> Any:
        method = method_class.__new__(method_class)   # __init__ runs a client-side validate()
        for name in method_class.__slots__:
            setattr(method, name, None)
        try:
            method.unmarshal(payload[4:])
        except (struct.error, ValueError, UnicodeDecodeError, TypeError, IndexError,
                KeyError, pamqp_exceptions.PAMQPException) as e:
            raise _Fault(f"malformed {method_class.name}: {e}") from None
        return method

    # ----------------------------------------------------------------------- methods
    def _on_method(self, channel: int, payload: bytes, events: list[Event]) -> None:
        # Which methods are allowed is decided from the class id alone, before decoding, so
        # the error names the real fault ("unexpected X") rather than X's body.
        cls = self._method_class(payload)
        if channel == 0:
            if cls not in _CONNECTION_METHODS.get(self.state, frozenset()):
                raise _Fault(f"unexpected {cls.name} in state {self.state.value}")
            self._CONNECTION_HANDLERS[cls](self, self._decode_method(cls, payload), events)
            return
        if self.state not in (State.OPEN, State.CLOSING):
            raise _Fault(f"{cls.name} on channel {channel} before the connection is open")
        ch = self.channels.get(channel)
        if ch is None:
            raise _Fault(f"{cls.name} on channel {channel}, which is not open")
        if ch.content_method is not None:
            raise _Fault(f"{cls.name} on channel {channel} while content was expected")
        handler = self._CHANNEL_HANDLERS.get(cls)
        if handler is None:
            raise _Fault(f"unexpected {cls.name} from server on channel {channel}")
        m = self._decode_method(cls, payload)
        if ch.closing and cls not in _WHILE_CLOSING:
            return  # after our Channel.Close the rest is dropped (§2.2.4); content is read
                    # to its end so the frames that follow still parse, then dropped too
        handler(self, channel, ch, m, events)

    def _on_start(self, m: Any, events: list[Event]) -> None:
        if (m.version_major, m.version_minor) != (0, 9):
            raise _Fault(f"server offered AMQP {m.version_major}-{m.version_minor}")
        mechanisms = (m.mechanisms or "").split()
        if "PLAIN" not in mechanisms:
            raise _Fault(f"server offers no PLAIN login (mechanisms: {m.mechanisms!r})")
        self.server_properties = m.server_properties or {}
        response = f"\0{self._username}\0{self._password}"
        self._queue(commands.Connection.StartOk(
            client_properties=self.client_properties, mechanism="PLAIN",
            response=response, locale="en_US"), 0)
        self.state = State.AWAIT_TUNE

    def _on_secure(self, m: Any, events: list[Event]) -> None:
        raise _Fault("server sent Connection.Secure, which PLAIN login does not use")

    def _on_tune(self, m: Any, events: list[Event]) -> None:
        channel_max, frame_max, heartbeat = self._wanted
        self.channel_max = negotiate(channel_max, m.channel_max or 0) or 65535
        self.frame_max = negotiate(frame_max, m.frame_max or 0)
        if self.frame_max and self.frame_max < FRAME_MIN_SIZE:
            raise _Fault(f"server frame_max {m.frame_max} is below {FRAME_MIN_SIZE}")
        self.heartbeat = negotiate(heartbeat, m.heartbeat or 0)
        self._queue(commands.Connection.TuneOk(channel_max=self.channel_max,
                                               frame_max=self.frame_max,
                                               heartbeat=self.heartbeat), 0)
        self._queue(commands.Connection.Open(virtual_host=self.vhost), 0)
        self.state = State.AWAIT_OPEN_OK

    def _on_open_ok(self, m: Any, events: list[Event]) -> None:
        self.state = State.OPEN
        events.append(ConnectionOpened(self.server_properties, self.frame_max,
                                       self.channel_max, self.heartbeat))

    def _on_connection_close(self, m: Any, events: list[Event]) -> None:
        self._queue(commands.Connection.CloseOk(), 0)
        self.state = State.CLOSED
        events.append(ConnectionClosed(m.reply_code or 0, m.reply_text or "",
                                       m.class_id or 0, m.method_id or 0, by_server=True))

    def _on_connection_close_ok(self, m: Any, events: list[Event]) -> None:
        self.state = State.CLOSED
        events.append(ConnectionClosed(200, "closed by client", by_server=False))

    def _on_blocked(self, m: Any, events: list[Event]) -> None:
        events.append(ConnectionBlocked(m.reason or ""))

    def _on_unblocked(self, m: Any, events: list[Event]) -> None:
        events.append(ConnectionUnblocked())

    _CONNECTION_HANDLERS: ClassVar[dict] = {
        commands.Connection.Start: _on_start,
        commands.Connection.Secure: _on_secure,
        commands.Connection.Tune: _on_tune,
        commands.Connection.OpenOk: _on_open_ok,
        commands.Connection.Close: _on_connection_close,
        commands.Connection.CloseOk: _on_connection_close_ok,
        commands.Connection.Blocked: _on_blocked,
        commands.Connection.Unblocked: _on_unblocked,
    }

    # -- channel methods
    def _on_channel_open_ok(self, n: int, ch: _Channel, m: Any, events: list[Event]) -> None:
        ch.open = True
        events.append(ChannelOpened(n))

    def _on_channel_close(self, n: int, ch: _Channel, m: Any, events: list[Event]) -> None:
        if ch.closing:      # both sides closed at once: each answers Close-Ok (§1.5.2.5)
            ch.open = False
        else:
            del self.channels[n]
        self._queue(commands.Channel.CloseOk(), n)
        events.append(ChannelClosed(n, m.reply_code or 0, m.reply_text or "",
                                    m.class_id or 0, m.method_id or 0, by_server=True))

    def _on_channel_close_ok(self, n: int, ch: _Channel, m: Any, events: list[Event]) -> None:
        del self.channels[n]
        if ch.open:
            events.append(ChannelClosed(n, 200, "closed by client", by_server=False))


    def _on_method_ok(self, n: int, ch: _Channel, m: Any, events: list[Event]) -> None:
        events.append(MethodOk(n, m.name))

    def _on_consume_ok(self, n: int, ch: _Channel, m: Any, events: list[Event]) -> None:
        events.append(ConsumeOk(n, m.consumer_tag or ""))

    def _on_cancel(self, n: int, ch: _Channel, m: Any, events: list[Event]) -> None:
        if not m.nowait:
            self._queue(commands.Basic.CancelOk(consumer_tag=m.consumer_tag), n)
        events.append(ConsumerCancelled(n, m.consumer_tag or ""))

    def _on_declare_ok(self, n: int, ch: _Channel, m: Any, events: list[Event]) -> None:
        events.append(QueueDeclared(n, m.queue or "", m.message_count or 0,
                                    m.consumer_count or 0))

    def _on_confirm(self, n: int, ch: _Channel, m: Any, events: list[Event]) -> None:
        if not ch.confirm_mode:
            raise _Fault(f"{m.name} on channel {n}, which is not in confirm mode")
        events.append(PublishConfirmed(n, m.delivery_tag or 0, bool(m.multiple),
                                       ack=isinstance(m, commands.Basic.Ack)))

    def _on_content_method(self, n: int, ch: _Channel, m: Any, events: list[Event]) -> None:
        ch.content_method = m
        ch.content_size = -1        # header not seen yet

    def _on_flow(self, n: int, ch: _Channel, m: Any, events: list[Event]) -> None:
        self._queue(commands.Channel.FlowOk(active=m.active), n)

    _CHANNEL_HANDLERS: ClassVar[dict] = {
        commands.Channel.OpenOk: _on_channel_open_ok,
        commands.Channel.Close: _on_channel_close,
        commands.Channel.CloseOk: _on_channel_close_ok,
        commands.Channel.Flow: _on_flow,
        commands.Confirm.SelectOk: _on_method_ok,
        commands.Basic.QosOk: _on_method_ok,
        commands.Basic.CancelOk: _on_method_ok,
        commands.Basic.RecoverOk: _on_method_ok,
        commands.Exchange.DeclareOk: _on_method_ok,
        commands.Exchange.BindOk: _on_method_ok,
        commands.Exchange.UnbindOk: _on_method_ok,
        commands.Exchange.DeleteOk: _on_method_ok,
        commands.Queue.BindOk: _on_method_ok,
        commands.Queue.UnbindOk: _on_method_ok,
        commands.Queue.PurgeOk: _on_method_ok,
        commands.Queue.DeleteOk: _on_method_ok,
        commands.Queue.DeclareOk: _on_declare_ok,
        commands.Basic.ConsumeOk: _on_consume_ok,
        commands.Basic.Cancel: _on_cancel,
        commands.Basic.Ack: _on_confirm,
        commands.Basic.Nack: _on_confirm,
        commands.Basic.Deliver: _on_content_method,
        commands.Basic.Return: _on_content_method,
    }

    # -- content
    def _on_content_header(self, n: int, payload: bytes) -> None:
        ch = self.channels.get(n)
        if ch is None or ch.content_method is None or ch.content_size != -1:
            raise _Fault(f"unexpected content header on channel {n}")
        if len(payload) < 14:
            raise _Fault("content header frame too short")
        class_id, _weight, size = _CONTENT_HEAD.unpack_from(payload)
        if class_id != 60:
            raise _Fault(f"content header for class {class_id}, expected 60")
        try:
            ch.properties = decode_properties(payload[12:])
        except MalformedProperties as e:
            raise _Fault(str(e)) from None
        ch.content_size = size
        ch.body = []
        ch.received = 0

    def _on_content_body(self, n: int, payload: bytes) -> None:
        ch = self.channels.get(n)
        if ch is None or ch.content_method is None or ch.content_size < 0:
            raise _Fault(f"unexpected content body on channel {n}")
        ch.body.append(payload)
        ch.received += len(payload)
        if ch.received > ch.content_size:
            raise _Fault(f"content body on channel {n} longer than its header said")

    def _complete_content(self, n: int, events: list[Event]) -> None:
        """Emit the message once its header and every body byte have arrived."""
        ch = self.channels[n]
        if ch.received < ch.content_size or ch.content_size < 0:
            return
        m = ch.content_method
        body = b"".join(ch.body)
        ch.content_method, ch.body, ch.received = None, [], 0
        if ch.closing:
            return
        if isinstance(m, commands.Basic.Deliver):
            events.append(Delivery(n, m.consumer_tag or "", m.delivery_tag or 0,
                                   bool(m.redelivered), m.exchange or "", m.routing_key or "",
                                   ch.properties, body))
        else:
            events.append(Returned(n, m.reply_code or 0, m.reply_text or "", m.exchange or "",
                                   m.routing_key or "", ch.properties, body))

    # ----------------------------------------------------------------------- output
    def _queue(self, method: Any, channel: int) -> None:
        self._out.append(pamqp_frame.marshal(method, channel))

    def _method(self, method: Any, channel: int) -> bytes:
        if self.state is not State.OPEN:
            raise RuntimeError(f"connection is {self.state.value}, not open")
        if channel not in self.channels:
            raise RuntimeError(f"channel {channel} is not open")
        return pamqp_frame.marshal(method, channel)

    def heartbeat_frame(self) -> bytes:
        """A heartbeat frame; the caller sends one every ``heartbeat / 2`` seconds."""
        return HEARTBEAT_FRAME

    def open_channel(self, channel: int) -> bytes:
        if self.state is not State.OPEN:
            raise RuntimeError(f"connection is {self.state.value}, not open")
        if not 0 < channel <= self.channel_max or channel in self.channels:
            raise ValueError(f"channel {channel} is in use or beyond channel_max")
        self.channels[channel] = _Channel()
        return pamqp_frame.marshal(commands.Channel.Open(), channel)

    def close_channel(self, channel: int, reply_code: int = 200, reply_text: str = "") -> bytes:
        data = self._method(commands.Channel.Close(reply_code=reply_code,
                                                   reply_text=reply_text,
                                                   class_id=0, method_id=0), channel)
        self.channels[channel].closing = True
        return data

    def close(self, reply_code: int = 200, reply_text: str = "") -> bytes:
        """Connection.Close; ``b""`` if the handshake has not finished (just drop TCP then)."""
        if self.state is not State.OPEN:
            if self.state not in (State.CLOSING, State.ERROR):
                self.state = State.CLOSED
            return b""
        self.state = State.CLOSING
        return pamqp_frame.marshal(commands.Connection.Close(
            reply_code=reply_code, reply_text=reply_text, class_id=0, method_id=0), 0)

    def confirm_select(self, channel: int) -> bytes:
        """Confirm.Select. Numbering starts now, not at Select-Ok: the server counts every
        publish it reads after the Select, including ones we send before its reply."""
        data = self._method(commands.Confirm.Select(), channel)
        self.channels[channel].confirm_mode = True
        return data

    def basic_qos(self, channel: int, prefetch_count: int) -> bytes:
        return self._method(commands.Basic.Qos(prefetch_count=prefetch_count), channel)

    def basic_consume(self, channel: int, queue: str, consumer_tag: str = "",
                      no_ack: bool = False, exclusive: bool = False,
                      arguments: dict | None = None) -> bytes:
        return self._method(_unchecked(commands.Basic.Consume,
            queue=queue, consumer_tag=consumer_tag, no_ack=no_ack, exclusive=exclusive,
            arguments=arguments or {}), channel)

    def basic_ack(self, channel: int, delivery_tag: int, multiple: bool = False) -> bytes:
        return self._method(commands.Basic.Ack(delivery_tag=delivery_tag, multiple=multiple),
                            channel)

    def basic_reject(self, channel: int, delivery_tag: int, requeue: bool = True) -> bytes:
        return self._method(commands.Basic.Reject(delivery_tag=delivery_tag, requeue=requeue),
                            channel)

    def queue_declare(self, channel: int, queue: str = "", *, passive: bool = False,
                      durable: bool = False, exclusive: bool = False,
                      auto_delete: bool = False, arguments: dict | None = None) -> bytes:
        return self._method(_unchecked(commands.Queue.Declare,
            queue=queue, passive=passive, durable=durable, exclusive=exclusive,
            auto_delete=auto_delete, arguments=arguments or {}), channel)

    def exchange_declare(self, channel: int, exchange: str, exchange_type: str = "direct", *,
                         passive: bool = False, durable: bool = False,
                         auto_delete: bool = False, internal: bool = False,
                         arguments: dict | None = None) -> bytes:
        return self._method(_unchecked(commands.Exchange.Declare,
            exchange=exchange, exchange_type=exchange_type, passive=passive, durable=durable,
            auto_delete=auto_delete, internal=internal, arguments=arguments or {}), channel)

    def queue_bind(self, channel: int, queue: str, exchange: str, routing_key: str = "",
                   arguments: dict | None = None) -> bytes:
        return self._method(_unchecked(commands.Queue.Bind, queue=queue, exchange=exchange,
                                                routing_key=routing_key,
                                                arguments=arguments or {}), channel)

    def queue_unbind(self, channel: int, queue: str, exchange: str, routing_key: str = "",
                     arguments: dict | None = None) -> bytes:
        return self._method(_unchecked(commands.Queue.Unbind, queue=queue, exchange=exchange,
                                                  routing_key=routing_key,
                                                  arguments=arguments or {}), channel)

    def queue_delete(self, channel: int, queue: str) -> bytes:
        return self._method(_unchecked(commands.Queue.Delete, queue=queue), channel)

    def exchange_bind(self, channel: int, destination: str, source: str,
                      routing_key: str = "", arguments: dict | None = None) -> bytes:
        """Exchange.Bind (RabbitMQ's extension): ``source`` routes into ``destination``."""
        return self._method(_unchecked(commands.Exchange.Bind, destination=destination,
                                       source=source, routing_key=routing_key,
                                       arguments=arguments or {}), channel)

    def exchange_unbind(self, channel: int, destination: str, source: str,
                        routing_key: str = "", arguments: dict | None = None) -> bytes:
        return self._method(_unchecked(commands.Exchange.Unbind, destination=destination,
                                       source=source, routing_key=routing_key,
                                       arguments=arguments or {}), channel)

    def exchange_delete(self, channel: int, exchange: str) -> bytes:
        return self._method(_unchecked(commands.Exchange.Delete, exchange=exchange), channel)

    def basic_cancel(self, channel: int, consumer_tag: str) -> bytes:
        return self._method(commands.Basic.Cancel(consumer_tag=consumer_tag), channel)

    def basic_publish(self, channel: int, exchange: str, routing_key: str,
                      properties: dict | None, body: bytes,
                      mandatory: bool = False) -> tuple[int, bytes]:
        """Frames for one publish: ``(confirm sequence number or 0, bytes)``.

        The body is split into frames of at most ``frame_max - 8`` bytes (§4.2.3: the frame
        header and end octet are 8 bytes). The method frame is packed here rather than by
        pamqp, whose ``validate()`` refuses exchange names RabbitMQ accepts.
        """
        if self.state is not State.OPEN:
            raise RuntimeError(f"connection is {self.state.value}, not open")
        ch = self.channels.get(channel)
        if ch is None or not ch.open:
            raise RuntimeError(f"channel {channel} is not open")
        payload = b"".join((_PUBLISH_HEAD.pack(60, 40, 0), _shortstr(exchange),
                            _shortstr(routing_key), b"\x01" if mandatory else b"\x00"))
        header = _CONTENT_HEAD.pack(60, 0, len(body)) + encode_properties(properties)
        parts: list[bytes | memoryview] = [
            _HDR.pack(FRAME_METHOD, channel, len(payload)), payload, b"\xce",
            _HDR.pack(FRAME_HEADER, channel, len(header)), header, b"\xce"]
        chunk = (self.frame_max or 2**32) - 8
        view = memoryview(body)
        for i in range(0, len(body), chunk):
            piece = view[i:i + chunk]
            parts += (_HDR.pack(FRAME_BODY, channel, len(piece)), piece, b"\xce")
        seq = 0
        if ch.confirm_mode:
            seq = ch.next_publish_seq
            ch.next_publish_seq += 1
        return seq, b"".join(parts)


def _unchecked(cls: type[pamqp_base.Frame], **fields: Any) -> Any:
    """A pamqp command built without its ``validate()``: pamqp allows names of AMQP's
    grammar only (letters, digits, ``-_.:``), RabbitMQ any UTF-8 up to 255 bytes, and
    federation's own names (``federation: X -> rabbit@a B``) have spaces and ``>``."""
    obj = cls.__new__(cls)
    for name, param in inspect.signature(cls).parameters.items():
        setattr(obj, name, fields.get(name, param.default))
    if getattr(obj, "arguments", {}) is None:
        setattr(obj, "arguments", {})
    setattr(obj, "validate", _no_check)   # marshal() validates again
    return obj


def _no_check() -> None:
    """Names are checked by the server that receives them."""


def _shortstr(s: str) -> bytes:
    b = s.encode()
    if len(b) > 255:
        raise ValueError(f"shortstr longer than 255 bytes: {s[:40]!r}…")
    return bytes((len(b),)) + b
