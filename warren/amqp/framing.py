"""AMQP 0-9-1 framing, sans-I/O: bytes in, frames out; hot frames encoded by offset.

pamqp is the codec of record (every method frame is unmarshalled by it and checked with its
``validate()``), but decoding each publish through pamqp costs ~20 µs, so the three hot frames
of the message path are handled by offset here and checked against pamqp in the tests:
Basic.Publish (in), content header and body (both ways), Basic.Deliver / Basic.Ack (out).

:class:`FrameReader` follows pamqp's known edge: "incomplete" and "garbage" are the same
``UnmarshalingException`` there, so the header is peeked first, ``frame_max`` enforced, the
whole frame awaited, and only then is it decoded.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import base, commands, exceptions as pamqp_exceptions
from pamqp import frame as pamqp_frame

from .field_lengths import check_method, check_properties
from .wire_errors import FrameError, SyntaxError_, UnknownMethod

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
FRAME_MIN_SIZE = 4096

_HDR = struct.Struct(">BHI")
_CM = struct.Struct(">HH")
_U16 = struct.Struct(">H")
_CONTENT_HDR = struct.Struct(">HHQ")
_DELIVER_TAIL = struct.Struct(">QB")

BASIC_PUBLISH = (60 << 16) | 40
BASIC_ACK = (60 << 16) | 80
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"


class FrameReader:
    """Splits a byte stream into ``(type, channel, payload)`` frames, enforcing frame_max."""

    __slots__ = ("_buf", "frame_max")

    def __init__(self, frame_max: int) -> None:
        self._buf = bytearray()
        self.frame_max = frame_max

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        # Most reads start on a frame boundary with nothing buffered: parse ``data`` itself
        # then, so each payload is one slice of it, and buffer only the unfinished tail.
        buf = self._buf
        src: bytes | bytearray
        if buf:
            buf += data
            src = buf
        else:
            src = data
        n = len(src)
        off = 0
        out: list[tuple[int, int, Any]] = []   # payloads: slices of bytes, or copies
        append = out.append
        unpack = _HDR.unpack_from
        # rabbit_reader allows the frame overhead on top of frame_max ("quite a few clients
        # get it wrong": amqpstorm and rabbitpy cut bodies into frame_max-byte chunks), so a
        # payload is refused only when it is larger than frame_max itself
        limit = self.frame_max
        sliced_bytes = src is data and type(data) is bytes
        while n - off >= 7:
            ftype, channel, size = unpack(src, off)
            if size > limit:
                # rabbit_reader:fatal_frame_error's words, with the payload not yet read
                raise FrameError(f"type {ftype}, all octets = <<>>: "
                                 f"{{frame_too_large,{size},{limit - 8}}}")
            end = off + 7 + size
            if end >= n:
                break
            if src[end] != FRAME_END:
                raise FrameError(f"frame end byte 0x{src[end]:02x} is not 0xce")
            payload = src[off + 7:end]
            append((ftype, channel, payload if sliced_bytes else bytes(payload)))
            off = end + 1
        if src is data:
            if off < n:
                buf += data[off:]
        elif off:
            del buf[:off]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


# ------------------------------------------------------------------------- method frames
def decode_method(payload: bytes) -> Any:
    """Unmarshal and validate one method frame payload with pamqp."""
    if len(payload) < 4:
        raise FrameError("method frame too short")
    index = struct.unpack_from(">I", payload, 0)[0]
    cls: type[base.Frame] | None = commands.INDEX_MAPPING.get(index)
    if cls is None:
        raise UnknownMethod(f"unknown method {index >> 16}.{index & 0xffff}")
    check_method(cls, payload[4:])   # pamqp slices: a length past its table would pass
    method = cls()
    try:
        method.unmarshal(payload[4:])
    except RecursionError:
        # a field table nested hundreds deep (pamqp decodes it recursively): client input,
        # answered 502 like any malformed frame, never a traceback
        raise SyntaxError_(f"malformed {cls.name}: field table nested too deeply") from None
    except (struct.error, ValueError, UnicodeDecodeError, pamqp_exceptions.PAMQPException,
            TypeError, IndexError) as e:
        raise SyntaxError_(f"malformed {cls.name}: {e}") from None
    # pamqp's validate() is a client's view (insist must be false, names must match
    # ^[a-zA-Z0-9-_.:]*$, ticket must be 0); RabbitMQ accepts all of those, so we do not call
    # it and check what RabbitMQ checks where the method is handled.
    return method


# ------------------------------------------------------------------------- AMQP 0-8
# RabbitMQ 3.x speaks 0-8 (rabbit_framing_amqp_0_8) to 0-8 clients. On the wire the two differ,
# for what a client of a broker uses, in three places only, so a 0-8 connection is 0-9-1 with
# these adaptations (everything else, frames, content, properties, codes, is the same):
# - channel.open-ok has no field (0-9-1 added a reserved longstr);
# - access.request (30.10) exists and is answered access.request-ok with a ticket;
# - basic.consume has no arguments table (0-9-1 added it at the end).
ACCESS_REQUEST = (30 << 16) | 10
BASIC_CONSUME = (60 << 16) | 20
#: access.request-ok, ticket 1 (RabbitMQ's answer)
ACCESS_REQUEST_OK_PAYLOAD = b"\x00\x1e\x00\x0b\x00\x01"
CHANNEL_OPEN_OK_0_8_PAYLOAD = b"\x00\x14\x00\x0b"


def method_frame(channel: int, payload: bytes) -> bytes:
    """A method frame around an already-encoded payload."""
    return _HDR.pack(FRAME_METHOD, channel, len(payload)) + payload + b"\xce"


def from_0_8(payload: bytes) -> bytes | None:
    """A 0-8 method payload as 0-9-1 decodes it; None for access.request (answered apart)."""
    if len(payload) >= 4:
        index = struct.unpack_from(">I", payload, 0)[0]
        if index == ACCESS_REQUEST:
            return None
        if index == BASIC_CONSUME:
            return payload + b"\x00\x00\x00\x00"     # an empty arguments table
    return payload


def encode_method(method: Any, channel: int) -> bytes:
    return pamqp_frame.marshal(method, channel)


_UNVALIDATED: dict[type, type] = {}


def unvalidated(cls: type) -> type:
    """``cls`` without pamqp's client-side ``validate()``, for methods the server sends.

    pamqp checks names against ``^[a-zA-Z0-9-_.:]*$`` and exchange names against 127 bytes
    when a method is built or marshalled; RabbitMQ accepts any UTF-8 shortstr as a queue or
    exchange name, so queue.declare-ok, basic.get-ok and basic.return must echo such names.
    The subclass declares no ``__slots__`` so marshal still walks the parent's field list.
    """
    sub = _UNVALIDATED.get(cls)
    if sub is None:
        sub = _UNVALIDATED[cls] = type(cls.__name__, (cls,), {"validate": lambda self: None})
    return sub


def parse_publish(payload: bytes) -> tuple[str, str, bool, bool]:
    """Basic.Publish by offset: (exchange, routing_key, mandatory, immediate)."""
    try:
        off = 6  # class, method, reserved-1 (ticket)
        ln = payload[off]
        exchange = payload[off + 1:off + 1 + ln].decode()
        off += 1 + ln
        ln = payload[off]
        rk = payload[off + 1:off + 1 + ln].decode()
        off += 1 + ln
        bits = payload[off]
    except (IndexError, UnicodeDecodeError):
        raise SyntaxError_("malformed Basic.Publish") from None
    if off + 1 != len(payload):
        raise SyntaxError_("malformed Basic.Publish")
    return exchange, rk, bool(bits & 1), bool(bits & 2)


def parse_ack(payload: bytes) -> tuple[int, bool]:
    """Basic.Ack by offset: (delivery_tag, multiple)."""
    if len(payload) != 13:
        raise SyntaxError_("malformed Basic.Ack")
    tag, bits = _DELIVER_TAIL.unpack_from(payload, 4)
    return tag, bool(bits & 1)


def parse_content_header(payload: bytes) -> tuple[int, int, bytes]:
    """(class_id, body_size, raw property flags+list), the list's lengths checked.

    Properties are decoded only when someone needs them, so a list that promises more than it
    holds is refused here, on arrival, rather than wherever it would first be decoded.
    """
    if len(payload) < 14:
        raise FrameError("content header frame too short")
    class_id, _weight, size = _CONTENT_HDR.unpack_from(payload, 0)
    raw = payload[12:]
    if raw != b"\x00\x00" and not (len(raw) == 3 and raw[0] == 0x10 and raw[1] == 0):
        check_properties(raw)
    return class_id, size, raw


# ------------------------------------------------------------------------- content out
def shortstr(s: str) -> bytes:
    b = s.encode()
    return bytes((len(b),)) + b


def content_frames(channel: int, method_payload: bytes, raw_props: bytes, body: bytes,
                   frame_max: int) -> list[bytes | memoryview]:
    """A method frame carrying content, its header frame and body frames split by frame_max."""
    pack = _HDR.pack
    parts: list[bytes | memoryview] = [
        pack(FRAME_METHOD, channel, len(method_payload)), method_payload, b"\xce",
        pack(FRAME_HEADER, channel, 12 + len(raw_props)),
        _CONTENT_HDR.pack(60, 0, len(body)), raw_props, b"\xce"]
    size = len(body)
    if size:
        chunk = frame_max - 8
        if size <= chunk:
            parts += (pack(FRAME_BODY, channel, size), body, b"\xce")
        else:
            view = memoryview(body)
            for i in range(0, size, chunk):
                piece = view[i:i + chunk]
                parts += (pack(FRAME_BODY, channel, len(piece)), piece, b"\xce")
    return parts


def deliver_payload(consumer_tag_ss: bytes, delivery_tag: int, redelivered: bool,
                    exchange: str, routing_key: str) -> bytes:
    """Basic.Deliver method payload; the consumer tag comes pre-encoded as a shortstr."""
    return b"".join((b"\x00\x3c\x00\x3c", consumer_tag_ss,
                     _DELIVER_TAIL.pack(delivery_tag, 1 if redelivered else 0),
                     shortstr(exchange), shortstr(routing_key)))


def basic_ack_frame(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    return struct.pack(">BHIHHQBB", 1, channel, 13, 60, 80, delivery_tag, 1 if multiple else 0,
                       FRAME_END)


def basic_nack_frame(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    return struct.pack(">BHIHHQBB", 1, channel, 13, 60, 120, delivery_tag,
                       1 if multiple else 0, FRAME_END)
