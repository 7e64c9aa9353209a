"""AMQP 1.0 type system and frames, sans I/O: bytes in, values and frames out.

Our own rather than python-qpid-proton's engine: the broker needs only the decoder and
encoder (the connection, session and link state are the broker's own, driven by the reactor
like the other front ends), this codec is small enough to fuzz with Hypothesis, and it keeps
a C extension out of the broker's dependencies. Values map to Python as: null -> None, boolean
-> bool, string -> str, symbol -> :class:`Symbol`, binary -> bytes, list -> list, map -> dict,
array -> :class:`Array`, described -> :class:`Described` (or a :class:`Composite` when the
descriptor names a type of the spec), and the integer types to ``int`` subclasses that keep
their width (:class:`UInt`, :class:`ULong`, ...). A plain ``int`` encodes as a long.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from typing import Any


class DecodeError(ValueError):
    """Malformed input: the connection is closed with ``amqp:decode-error``."""


class Symbol(str):
    """An AMQP symbol (ASCII), distinct from a string on the wire."""


class _Sized(int):
    code = 0x81


class UByte(_Sized):
    code = 0x50


class UShort(_Sized):
    code = 0x60


class UInt(_Sized):
    code = 0x70


class ULong(_Sized):
    code = 0x80


class Byte(_Sized):
    code = 0x51


class Short(_Sized):
    code = 0x61


class Int(_Sized):
    code = 0x71


class Long(_Sized):
    code = 0x81


class Timestamp(_Sized):
    """Milliseconds since the Unix epoch."""
    code = 0x83


class Char(str):
    """One Unicode code point (UTF-32 on the wire)."""


class Float(float):
    """A 32-bit float (a plain ``float`` is a double)."""


class Array(list):
    """An AMQP array: every element of one type, given by ``code`` (e.g. 0xa3 symbols)."""

    def __init__(self, code: int, items: Any = ()) -> None:
        super().__init__(items)
        self.code = code


class Described:
    """A described value whose descriptor is not one of the spec's composite types."""

    __slots__ = ("descriptor", "value")

    def __init__(self, descriptor: Any, value: Any) -> None:
        self.descriptor = descriptor
        self.value = value

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Described) and self.descriptor == other.descriptor
                and self.value == other.value)

    def __repr__(self) -> str:
        return f"Described({self.descriptor!r}, {self.value!r})"


# -------------------------------------------------------------------- composite types
#: descriptor code -> (name, fields); a field is "name" or "name:type" where the type tells
#: the encoder the width of a plain int or the kind of a plain str
COMPOSITES: dict[int, tuple[str, tuple[str, ...]]] = {
    0x10: ("open", ("container_id", "hostname", "max_frame_size:uint", "channel_max:ushort",
                    "idle_time_out:uint", "outgoing_locales:sym", "incoming_locales:sym",
                    "offered_capabilities:sym", "desired_capabilities:sym", "properties")),
    0x11: ("begin", ("remote_channel:ushort", "next_outgoing_id:uint", "incoming_window:uint",
                     "outgoing_window:uint", "handle_max:uint", "offered_capabilities:sym",
                     "desired_capabilities:sym", "properties")),
    0x12: ("attach", ("name", "handle:uint", "role", "snd_settle_mode:ubyte",
                      "rcv_settle_mode:ubyte", "source", "target", "unsettled",
                      "incomplete_unsettled", "initial_delivery_count:uint",
                      "max_message_size:ulong", "offered_capabilities:sym",
                      "desired_capabilities:sym", "properties")),
    0x13: ("flow", ("next_incoming_id:uint", "incoming_window:uint", "next_outgoing_id:uint",
                    "outgoing_window:uint", "handle:uint", "delivery_count:uint",
                    "link_credit:uint", "available:uint", "drain", "echo", "properties")),
    0x14: ("transfer", ("handle:uint", "delivery_id:uint", "delivery_tag", "message_format:uint",
                        "settled", "more", "rcv_settle_mode:ubyte", "state", "resume",
                        "aborted", "batchable")),
    0x15: ("disposition", ("role", "first:uint", "last:uint", "settled", "state", "batchable")),
    0x16: ("detach", ("handle:uint", "closed", "error")),
    0x17: ("end", ("error",)),
    0x18: ("close", ("error",)),
    0x1d: ("error", ("condition:sym", "description", "info")),
    0x23: ("received", ("section_number:uint", "section_offset:ulong")),
    0x24: ("accepted", ()),
    0x25: ("rejected", ("error",)),
    0x26: ("released", ()),
    0x27: ("modified", ("delivery_failed", "undeliverable_here", "message_annotations")),
    0x28: ("source", ("address", "durable:uint", "expiry_policy:sym", "timeout:uint", "dynamic",
                      "dynamic_node_properties", "distribution_mode:sym", "filter",
                      "default_outcome", "outcomes:sym", "capabilities:sym")),
    0x29: ("target", ("address", "durable:uint", "expiry_policy:sym", "timeout:uint", "dynamic",
                      "dynamic_node_properties", "capabilities:sym")),
    0x30: ("coordinator", ("capabilities:sym",)),
    0x31: ("declare", ("global_id",)),
    0x32: ("discharge", ("txn_id", "fail")),
    0x33: ("declared", ("txn_id",)),
    0x34: ("transactional_state", ("txn_id", "outcome")),
    0x40: ("sasl_mechanisms", ("sasl_server_mechanisms:sym",)),
    0x41: ("sasl_init", ("mechanism:sym", "initial_response", "hostname")),
    0x42: ("sasl_challenge", ("challenge",)),
    0x43: ("sasl_response", ("response",)),
    0x44: ("sasl_outcome", ("code:ubyte", "additional_data")),
    0x70: ("header", ("durable", "priority:ubyte", "ttl:uint", "first_acquirer",
                      "delivery_count:uint")),
    0x73: ("properties", ("message_id", "user_id", "to", "subject", "reply_to",
                          "correlation_id", "content_type:sym", "content_encoding:sym",
                          "absolute_expiry_time:ts", "creation_time:ts", "group_id",
                          "group_sequence:uint", "reply_to_group_id")),
}
#: the fields the spec marks mandatory: absent (null) is malformed (amqp:decode-error)
MANDATORY = {
    "open": ("container_id",), "begin": ("next_outgoing_id", "incoming_window",
                                         "outgoing_window"),
    "attach": ("name", "handle", "role"), "flow": ("incoming_window", "next_outgoing_id",
                                                   "outgoing_window"),
    "transfer": ("handle",), "disposition": ("role", "first"), "detach": ("handle",),
    "error": ("condition",), "sasl_mechanisms": ("sasl_server_mechanisms",),
    "sasl_init": ("mechanism",), "sasl_outcome": ("code",),
    "discharge": ("txn_id",), "declared": ("txn_id",), "transactional_state": ("txn_id",),
}
_BY_NAME = {name: (code, fields) for code, (name, fields) in COMPOSITES.items()}
#: the same types by their symbolic descriptors (``amqp:declare:list``; proton's transaction
#: controller sends these), which the spec allows in place of the codes
_BY_SYMBOL = {f"amqp:{name.replace('_', '-')}:list": code
              for code, (name, _f) in COMPOSITES.items()}
_WIDTH = {"uint": UInt, "ushort": UShort, "ubyte": UByte, "ulong": ULong, "ts": Timestamp}

#: the message sections that are not lists: descriptor code -> name
SECTIONS = {0x71: "delivery_annotations", 0x72: "message_annotations",
            0x74: "application_properties", 0x75: "data", 0x76: "amqp_sequence",
            0x77: "amqp_value", 0x78: "footer"}
SECTION_CODES = {name: code for code, name in SECTIONS.items()}
_MAP_SECTIONS = ("delivery_annotations", "message_annotations", "application_properties",
                 "footer")
_BODY_SECTIONS = ("data", "amqp_sequence", "amqp_value")


#: each composite's fields as (name, type) pairs, split once: a transfer is made per message
_FIELDS = {name: tuple(tuple(f.partition(":")[::2]) for f in fields)
           for name, (_code, fields) in _BY_NAME.items()}
_FIELD_NAMES = {name: frozenset(n for n, _k in fields) for name, fields in _FIELDS.items()}
_NAMES = {name: tuple(n for n, _k in fields) for name, fields in _FIELDS.items()}


class Composite:
    """One of the spec's described lists (a performative, a source, an outcome, ...)."""

    def __init__(self, kind: str, /, **fields: Any) -> None:
        specs = _FIELDS.get(kind)
        if specs is None:
            raise KeyError(kind)
        if not _FIELD_NAMES[kind].issuperset(fields):
            unknown = set(fields) - _FIELD_NAMES[kind]
            raise TypeError(f"{kind} has no field {sorted(unknown)}")
        values = self.__dict__
        values["kind"] = kind             # not "name": attach has a field of that name
        for n, _k in specs:
            values[n] = fields.get(n)

    def __getattr__(self, name: str) -> Any:
        """Only reached for a name that is not one of the kind's fields (those are set in
        ``__init__``): the fields come from the spec table, so their types are the decoded
        values' (Any) and a wrong name fails here, naming the kind."""
        raise AttributeError(f"{self.__dict__.get('kind', 'composite')} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        """Set one of the kind's fields; another name is a mistake that would otherwise be
        dropped silently by the encoder."""
        if name not in _FIELD_NAMES[self.kind]:
            raise AttributeError(f"{self.kind} has no field {name!r}")
        self.__dict__[name] = value

    def fields(self) -> list[tuple[str, str, Any]]:
        values = self.__dict__
        return [(n, k, values[n]) for n, k in _FIELDS[self.kind]]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Composite) and self.kind == other.kind and \
            self.fields() == other.fields()

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, _k, v in self.fields() if v is not None)
        return f"{self.kind}({shown})"


# -------------------------------------------------------------------- encoding
def _typed(value: Any, kind: str) -> Any:
    if value is None or not kind:
        return value
    if kind == "sym":
        if isinstance(value, str):
            return Symbol(value)
        if isinstance(value, (list, tuple)) and not isinstance(value, Array):
            return Array(0xa3, [Symbol(v) for v in value])
        return value
    if isinstance(value, int) and not isinstance(value, (bool, _Sized)):
        return _WIDTH[kind](value)
    return value


def encode(value: Any) -> bytes:
    """One AMQP value, with its constructor."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(0x40)
    elif value is True:
        out.append(0x41)
    elif value is False:
        out.append(0x42)
    elif isinstance(value, Composite):
        code, _ = _BY_NAME[value.kind]
        items = [_typed(v, k) for _n, k, v in value.fields()]
        while items and items[-1] is None:
            items.pop()                  # trailing nulls may be left off (spec 1.4)
        out += b"\x00\x53" + bytes([code])
        _encode_list(items, out)
    elif isinstance(value, Described):
        out.append(0x00)
        _encode(value.descriptor, out)
        _encode(value.value, out)
    elif isinstance(value, _Sized):
        _encode_int(value, type(value).code, out)
    elif isinstance(value, int):
        _encode_int(value, 0x81, out)
    elif isinstance(value, Float):
        out.append(0x72)
        out += struct.pack(">f", value)
    elif isinstance(value, float):
        out.append(0x82)
        out += struct.pack(">d", value)
    elif isinstance(value, Symbol):
        _encode_var(value.encode("ascii"), 0xa3, out)
    elif isinstance(value, Char):
        out.append(0x73)
        out += struct.pack(">I", ord(value))
    elif isinstance(value, str):
        _encode_var(value.encode("utf-8"), 0xa1, out)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _encode_var(bytes(value), 0xa0, out)
    elif isinstance(value, uuid.UUID):
        out.append(0x98)
        out += value.bytes
    elif isinstance(value, Array):
        _encode_array(value, out)
    elif isinstance(value, (list, tuple)):
        _encode_list(list(value), out)
    elif isinstance(value, dict):
        body = bytearray()
        for k, v in value.items():
            _encode(k, body)
            _encode(v, body)
        _encode_compound(body, len(value) * 2, 0xc1, 0xd1, out)
    else:
        raise TypeError(f"no AMQP 1.0 encoding for {type(value).__name__}")


_INT_FORMATS = {0x50: ">B", 0x60: ">H", 0x70: ">I", 0x80: ">Q", 0x51: ">b", 0x61: ">h",
                0x71: ">i", 0x81: ">q", 0x83: ">q"}


def _encode_int(value: int, code: int, out: bytearray) -> None:
    if code == 0x70 and value == 0:
        out.append(0x43)
    elif code == 0x70 and value < 256:
        out += bytes((0x52, value))
    elif code == 0x80 and value == 0:
        out.append(0x44)
    elif code == 0x80 and value < 256:
        out += bytes((0x53, value))
    elif code == 0x71 and -128 <= value < 128:
        out += struct.pack(">Bb", 0x54, value)
    elif code == 0x81 and -128 <= value < 128:
        out += struct.pack(">Bb", 0x55, value)
    else:
        out.append(code)
        try:
            out += struct.pack(_INT_FORMATS[code], value)
        except struct.error:
            raise TypeError(f"{value} does not fit type 0x{code:02x}") from None


def _encode_var(data: bytes, code8: int, out: bytearray) -> None:
    if len(data) < 256:
        out += bytes((code8, len(data)))
    else:
        out.append(code8 + 0x10)
        out += struct.pack(">I", len(data))
    out += data


def _encode_compound(body: bytes | bytearray, count: int, code8: int, code32: int,
                     out: bytearray) -> None:
    if len(body) + 1 < 256 and count < 256:
        out += bytes((code8, len(body) + 1, count))
    else:
        out.append(code32)
        out += struct.pack(">II", len(body) + 4, count)
    out += body


def _encode_list(items: list[Any], out: bytearray) -> None:
    if not items:
        out.append(0x45)
        return
    body = bytearray()
    for item in items:
        _encode(item, body)
    _encode_compound(body, len(items), 0xc0, 0xd0, out)


def _encode_array(value: Array, out: bytearray) -> None:
    code = value.code
    body = bytearray((code,))
    for item in value:
        one = bytearray()
        _encode(item if code not in (0xa3, 0xb3) else Symbol(item), one)
        if one[0] != code:            # an element in a compact form: widen to the array's
            one = _widen(item, code)
        body += one[1:]
    _encode_compound(body, len(value), 0xe0, 0xf0, out)


def _widen(item: Any, code: int) -> bytearray:
    out = bytearray((code,))
    if code in _INT_FORMATS:
        out += struct.pack(_INT_FORMATS[code], item)
    elif code in (0xb0, 0xb1, 0xb3):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        out += struct.pack(">I", len(data)) + data
    elif code in (0xa0, 0xa1, 0xa3):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        out += bytes((len(data),)) + data
    elif code in (0xd0, 0xd1):
        # a list or map in the compact form: an array's elements share the 32-bit one
        one = bytearray()
        _encode(item, one)
        if one[0] in (0xc0, 0xc1):
            out += struct.pack(">II", one[1] + 3, one[2]) + one[3:]
        else:                           # the empty list (0x45)
            out += struct.pack(">II", 4, 0)
    else:
        raise TypeError(f"cannot put {item!r} in an array of 0x{code:02x}")
    return out


# -------------------------------------------------------------------- decoding
_FIXED = {0x50: (">B", UByte), 0x60: (">H", UShort), 0x70: (">I", UInt), 0x80: (">Q", ULong),
          0x51: (">b", Byte), 0x61: (">h", Short), 0x71: (">i", Int), 0x81: (">q", Long),
          0x83: (">q", Timestamp), 0x52: (">B", UInt), 0x53: (">B", ULong),
          0x54: (">b", Int), 0x55: (">b", Long), 0x56: (">B", bool),
          0x72: (">f", Float), 0x82: (">d", float)}
_EMPTY = {0x40: None, 0x41: True, 0x42: False, 0x43: UInt(0), 0x44: ULong(0)}
#: the same, each with its compiled unpacker and size: a transfer's fields and a message's
#: descriptors are mostly these, several per message
_FIXED_UNPACK = {code: (struct.Struct(fmt).unpack_from, struct.calcsize(fmt), kind)
                 for code, (fmt, kind) in _FIXED.items()}


def decode(data: bytes) -> Any:
    """Exactly one value; trailing bytes are an error."""
    value, end = decode_at(memoryview(data), 0)
    if end != len(data):
        raise DecodeError("trailing bytes after the value")
    return value


def decode_at(buf: memoryview, pos: int) -> tuple[Any, int]:
    """The value at ``pos`` and the position after it."""
    try:
        code = buf[pos]
    except IndexError:
        raise DecodeError("value cut short") from None
    return _decode_body(buf, pos + 1, code)


def _need(buf: memoryview, pos: int, n: int) -> None:
    if n < 0 or pos + n > len(buf):
        raise DecodeError("value cut short")


def _decode_body(buf: memoryview, pos: int, code: int) -> tuple[Any, int]:
    if code == 0x00:
        descriptor, pos = decode_at(buf, pos)
        value, pos = decode_at(buf, pos)
        return _described(descriptor, value), pos
    if code in _EMPTY:
        return _EMPTY[code], pos
    fixed = _FIXED_UNPACK.get(code)
    if fixed is not None:
        unpack, size, kind = fixed
        _need(buf, pos, size)
        (raw,) = unpack(buf, pos)
        if kind is bool and raw > 1:
            raise DecodeError("boolean neither 0 nor 1")
        return kind(raw), pos + size
    if code == 0x73:
        _need(buf, pos, 4)
        (point,) = struct.unpack_from(">I", buf, pos)
        try:
            return Char(chr(point)), pos + 4
        except (ValueError, OverflowError):
            raise DecodeError("char out of range") from None
    if code == 0x98:
        _need(buf, pos, 16)
        return uuid.UUID(bytes=bytes(buf[pos:pos + 16])), pos + 16
    if code in (0xa0, 0xa1, 0xa3, 0xb0, 0xb1, 0xb3):
        if code < 0xb0:
            _need(buf, pos, 1)
            size, pos = buf[pos], pos + 1
        else:
            _need(buf, pos, 4)
            (size,), pos = struct.unpack_from(">I", buf, pos), pos + 4
        _need(buf, pos, size)
        raw = bytes(buf[pos:pos + size])
        pos += size
        try:
            if code & 0x0f == 0x01:
                return raw.decode("utf-8"), pos
            if code & 0x0f == 0x03:
                return Symbol(raw.decode("ascii")), pos
        except UnicodeDecodeError:
            raise DecodeError("bad string or symbol encoding") from None
        return raw, pos
    if code == 0x45:
        return [], pos
    if code in (0xc0, 0xc1, 0xd0, 0xd1, 0xe0, 0xf0):
        wide = code >= 0xd0 and code != 0xe0
        if wide:
            _need(buf, pos, 8)
            size, count = struct.unpack_from(">II", buf, pos)
            start, end = pos + 4, pos + 4 + size
            pos += 8
        else:
            _need(buf, pos, 2)
            size, count = buf[pos], buf[pos + 1]
            start, end = pos + 1, pos + 1 + size
            pos += 2
        _need(buf, start, size)
        if end < pos:
            raise DecodeError("compound size smaller than its count")
        if code in (0xe0, 0xf0):
            value, pos = _decode_array(buf[:end], pos, count)
        else:
            items = []
            sub = buf[:end]
            for _ in range(count):
                item, pos = decode_at(sub, pos)
                items.append(item)
            if code in (0xc1, 0xd1):
                if count % 2:
                    raise DecodeError("map with an odd number of items")
                try:
                    value = dict(zip(items[::2], items[1::2]))
                except TypeError:
                    raise DecodeError("map key that cannot be a key") from None
            else:
                value = items
        if pos != end:
            raise DecodeError("compound size does not match its items")
        return value, pos
    raise DecodeError(f"unknown type constructor 0x{code:02x}")


def _decode_array(buf: memoryview, pos: int, count: int) -> tuple[Array, int]:
    _need(buf, pos, 1)
    code = buf[pos]
    pos += 1
    if code == 0x00:
        raise DecodeError("arrays of described types are not supported")
    items = Array(code)
    for _ in range(count):
        item, pos = _decode_body(buf, pos, code)
        items.append(item)
    return items, pos


def _described(descriptor: Any, value: Any) -> Any:
    if isinstance(descriptor, str) and descriptor in _BY_SYMBOL:
        descriptor = _BY_SYMBOL[descriptor]
    if isinstance(descriptor, int) and not isinstance(descriptor, bool) and \
            descriptor >> 32 == 0 and descriptor in COMPOSITES:
        name, fields = COMPOSITES[descriptor]
        if not isinstance(value, list):
            raise DecodeError(f"{name} is not a list")
        if len(value) > len(fields):
            raise DecodeError(f"{name} with more fields than it has")
        specs = _FIELDS[name]
        for (field, kind), v in zip(specs, value):
            if v is not None and kind:
                _check_field(name, field, kind, v)
        # built as Composite(name, **fields) would, without checking the names again (they
        # are the spec's own): one per frame and per section of every message
        composite = object.__new__(Composite)
        values = composite.__dict__
        values["kind"] = name
        values.update(zip(_NAMES[name], value))
        for n in _NAMES[name][len(value):]:
            values[n] = None
        for field in MANDATORY.get(name, ()):
            if values[field] is None:
                raise DecodeError(f"{name} without its mandatory {field.replace('_', '-')}")
        return composite
    return Described(descriptor, value)


def _check_field(composite: str, field: str, kind: str, value: Any) -> None:
    """A field of the wrong type is malformed input (amqp:decode-error), caught here so the
    connection never meets a string where it counts on a number."""
    if kind == "sym":
        ok = isinstance(value, str) or (isinstance(value, list) and
                                        all(isinstance(v, str) for v in value))
    else:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
            or (kind == "ts" and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise DecodeError(f"{composite}'s {field.replace('_', '-')} is a "
                          f"{type(value).__name__}")


# -------------------------------------------------------------------- frames
#: the protocol headers: plain AMQP and the SASL layer before it
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_FRAME, SASL_FRAME = 0, 1
MIN_MAX_FRAME_SIZE = 512


class Frame:
    """One frame: its type, channel, performative (None for an empty frame) and payload."""

    __slots__ = ("type", "channel", "performative", "payload")

    def __init__(self, ftype: int, channel: int, performative: Composite | None,
                 payload: bytes = b"") -> None:
        self.type = ftype
        self.channel = channel
        self.performative = performative
        self.payload = payload

    def __repr__(self) -> str:
        return f"Frame({self.type}, {self.channel}, {self.performative!r}, {len(self.payload)}B)"


def encode_frame(performative: Composite | None, channel: int = 0, payload: bytes = b"",
                 ftype: int = AMQP_FRAME) -> bytes:
    body = encode(performative) + payload if performative is not None else b""
    return struct.pack(">IBBH", 8 + len(body), 2, ftype, channel) + body


class FrameReader:
    """Whole frames from a byte stream; ``max_size`` is the frame size this end accepts."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame]:
        self._buf += data
        while len(self._buf) >= 8:
            size, doff, ftype, channel = struct.unpack_from(">IBBH", self._buf)
            if size > self.max_size:
                raise FrameTooLarge(f"frame of {size} bytes over max-frame-size "
                                    f"{self.max_size}")
            if doff < 2 or doff * 4 > size:
                raise DecodeError("bad frame data offset")
            if len(self._buf) < size:
                return
            body = memoryview(bytes(self._buf[doff * 4:size]))
            del self._buf[:size]
            if not body:
                yield Frame(ftype, channel, None)
                continue
            got = _plain_transfer(body) if body[:3] == _TRANSFER else None
            if got is None:
                got = decode_at(body, 0)
                if not isinstance(got[0], Composite):
                    raise DecodeError("frame body is not a performative")
            yield Frame(ftype, channel, got[0], bytes(body[got[1]:]))


#: a transfer performative's descriptor in its small form, as clients write it
_TRANSFER = b"\x00\x53\x14"
_TRANSFER_NAMES = _NAMES["transfer"]
#: which of a transfer's fields are unsigned ints (handle, delivery-id, message-format) and
#: which booleans (settled, more, resume, aborted, batchable)
_TRANSFER_UINTS = (0, 1, 3)
_UNPACK_UINT = struct.Struct(">I").unpack_from


def _plain_transfer(body: memoryview) -> tuple[Composite, int] | None:
    """The transfer at the start of ``body`` and where its payload begins, when it is written
    as clients write a message's transfer: a small list of nulls, uints, booleans and a short
    binary tag, each field of its own type (what ``decode_at`` would make of it, at a
    third of the cost: one of these comes with every message a client sends). None for
    anything else (a state, a rcv-settle-mode, a wide list, a field of the wrong type),
    which the general decoder then decodes or refuses."""
    if len(body) < 6 or body[3] != 0xc0:
        return None
    end, count, pos = 5 + body[4], body[5], 6
    if end > len(body) or not 0 < count <= len(_TRANSFER_NAMES):
        return None
    values: list[Any] = []
    for i in range(count):
        if pos >= end:
            return None
        code = body[pos]
        pos += 1
        if code == 0x40:
            values.append(None)
            continue
        if i in _TRANSFER_UINTS:
            if code == 0x52 and pos < end:
                values.append(UInt(body[pos]))
                pos += 1
            elif code == 0x43:
                values.append(UInt(0))
            elif code == 0x70 and pos + 4 <= end:
                values.append(UInt(_UNPACK_UINT(body, pos)[0]))
                pos += 4
            else:
                return None
        elif i == 2:
            if code != 0xa0 or pos >= end or pos + 1 + body[pos] > end:
                return None
            size = body[pos]
            values.append(bytes(body[pos + 1:pos + 1 + size]))
            pos += 1 + size
        elif code in (0x41, 0x42) and i != 6 and i != 7:
            values.append(code == 0x41)
        else:
            return None
    if pos != end or values[0] is None:
        return None
    transfer = object.__new__(Composite)
    fields = transfer.__dict__
    fields["kind"] = "transfer"
    fields.update(zip(_TRANSFER_NAMES, values))
    for name in _TRANSFER_NAMES[count:]:
        fields[name] = None
    return transfer, end


class FrameTooLarge(DecodeError):
    """A frame over the negotiated max-frame-size (``amqp:connection:framing-error``)."""


# -------------------------------------------------------------------- messages
def decode_message(data: bytes) -> dict[str, Any]:
    """A bare message's sections by name (``data`` is a list of the data sections). A body of
    amqp-value or amqp-sequence sections is also kept as sent, its sections' bytes as one
    ``encoded_body``, so it can travel on without being encoded again (``encode_message``
    writes it back as it is), and the footer after such a body as ``encoded_footer`` too
    (RabbitMQ 4 hands both on as they came, ``mapping.body_from``). A body of two kinds, or
    of two amqp-values, is no message (spec 3.2: one amqp-value, or data sections, or
    amqp-sequence sections)."""
    buf = memoryview(data)
    pos = 0
    sections: dict[str, Any] = {}
    body_kind = None
    body_start = body_end = footer_start = 0
    while pos < len(buf):
        start = pos
        value, pos = decode_at(buf, pos)
        if isinstance(value, Composite) and value.kind in ("header", "properties"):
            sections[value.kind] = value
        elif isinstance(value, Described) and value.descriptor in SECTIONS:
            name = SECTIONS[value.descriptor]
            if name in _BODY_SECTIONS:
                if body_kind is None:
                    body_kind, body_start = name, start
                elif body_kind != name or name == "amqp_value":
                    raise DecodeError("a body of more than one amqp-value or of two kinds")
                body_end = pos
            if name == "footer":
                footer_start = start
            if name == "data":
                if not isinstance(value.value, bytes):
                    raise DecodeError("data section that is not binary")
                sections.setdefault("data", []).append(value.value)
            elif name in _MAP_SECTIONS and not isinstance(value.value, dict):
                raise DecodeError(f"{name.replace('_', '-')} section that is not a map")
            else:
                sections[name] = value.value
        else:
            raise DecodeError("message section of an unknown kind")
    if body_kind is not None and body_kind != "data":
        sections["encoded_body"] = bytes(buf[body_start:body_end])
        if footer_start:
            sections["encoded_footer"] = bytes(buf[footer_start:])
    return sections


#: the sections before a body, decoded, by their bytes (``decode_received``): a client's
#: messages repeat a few (a header saying durable, empty properties), and decoding them
#: cost more than the rest of the message; cleared when full, as a client that sets a
#: message-id on each message repeats none; a longer one (big application properties) is
#: not kept, so that the cache stays small whatever clients send
_PREFIXES: dict[bytes, dict[str, Any]] = {}
_PREFIXES_MAX = 256
_PREFIX_MAX_SIZE = 1024
#: header, delivery-annotations, message-annotations, properties, application-properties
_PREFIX_CODES = range(0x70, 0x75)
_UNPACK_SIZE = struct.Struct(">I").unpack_from


def _prefix_end(buf: memoryview) -> int:
    """Where the sections before the body end, found by their sizes alone (each is a
    described list or map, or null); 0 when the message does not start so."""
    pos, length = 0, len(buf)
    while pos + 4 <= length and buf[pos] == 0 and buf[pos + 1] == 0x53 \
            and buf[pos + 2] in _PREFIX_CODES:
        code = buf[pos + 3]
        if code in (0x40, 0x45):
            end = pos + 4
        elif code in (0xc0, 0xc1) and pos + 5 <= length:
            end = pos + 5 + buf[pos + 4]
        elif code in (0xd0, 0xd1) and pos + 8 <= length:
            end = pos + 8 + _UNPACK_SIZE(buf, pos + 4)[0]
        else:
            break
        if end > length:
            break
        pos = end
    return pos


#: the sections ``_PREFIX_CODES`` names, as ``decode_message`` keys them
_PREFIX_NAMES = frozenset(("header", "delivery_annotations", "message_annotations",
                           "properties", "application_properties"))


def decode_received(data: bytes) -> tuple[dict[str, Any], bytes | None]:
    """``decode_message`` of a message a client sent, its sections before the body decoded
    once per distinct bytes (``_PREFIXES``). Those sections' values are shared between the
    messages that repeat them, so a caller reads them and never changes them (the publish
    of a received message only reads them). With them, the bytes of those sections when
    they alone gave the message its header, annotations and properties (none repeated
    after the body starts), else None: what a caller may key its own work on them by (the
    publish path's ``received_properties``)."""
    buf = memoryview(data)
    end = _prefix_end(buf)
    if not end or end == len(buf) or end > _PREFIX_MAX_SIZE:
        return decode_message(data), None
    key = bytes(buf[:end])
    prefix = _PREFIXES.get(key)
    if prefix is None:
        prefix = decode_message(key)
        if len(_PREFIXES) >= _PREFIXES_MAX:
            _PREFIXES.clear()
        _PREFIXES[key] = prefix
    sections = dict(prefix)
    rest = _lone_body(buf[end:])
    if rest is not None:
        sections.update(rest)
        return sections, key
    rest = decode_message(bytes(buf[end:]))
    sections.update(rest)    # a later section wins, as there
    return sections, (None if _PREFIX_NAMES.intersection(rest) else key)


def _lone_body(buf: memoryview) -> dict[str, Any] | None:
    """``decode_message`` of what follows the sections before the body when it is the usual
    one section, a data section or an amqp-value holding a binary or a string, and nothing
    after it; None for anything else (the general walk decides). Its value read straight
    from the bytes: the walk cost a 100-byte message's publish about 4 us more."""
    length = len(buf)
    if length < 5 or buf[0] != 0 or buf[1] != 0x53:
        return None
    descriptor, code = buf[2], buf[3]
    if code == 0xa0 or code == 0xa1:
        start = 5
        size = buf[4]
    elif (code == 0xb0 or code == 0xb1) and length >= 8:
        start = 8
        size = _UNPACK_SIZE(buf, 4)[0]
    else:
        return None
    if start + size != length:
        return None
    raw = bytes(buf[start:])
    if descriptor == 0x75 and code & 0x0f == 0:
        return {"data": [raw]}
    if descriptor != 0x77:
        return None
    if code & 0x0f == 1:
        try:
            return {"amqp_value": raw.decode("utf-8"), "encoded_body": bytes(buf)}
        except UnicodeDecodeError:
            return None         # the walk's DecodeError
    return {"amqp_value": raw, "encoded_body": bytes(buf)}


#: a data section's descriptor (described by ulong 0x75, its small form) and binary codes
_DATA_DESCRIPTOR = b"\x00\x53\x75"


def encode_data_section(body: bytes) -> bytes:
    """One data section holding ``body``, as ``encode_message`` writes it, without its
    general walk: what a message whose other sections are already encoded appends (a
    stream's converted messages, ``stream/amqp1_conversion.py``)."""
    if len(body) < 256:
        return b"".join((_DATA_DESCRIPTOR, bytes((0xa0, len(body))), body))
    return b"".join((_DATA_DESCRIPTOR, b"\xb0", struct.pack(">I", len(body)), body))


#: scalars whose encoding their type and value decide alone (no float: 0.0 == -0.0)
_CACHEABLE = frozenset({str, Symbol, Char, bytes, bool, int, type(None), UByte, UShort, UInt,
                        ULong, Byte, Short, Int, Long, Timestamp})
#: encoded header and message-annotations sections by their typed values: a queue's
#: deliveries repeat a few of each (durable, priority; x-exchange, x-routing-key), and the
#: general walk cost more than the body (about 14 µs each against 1 µs for the look-up, timeit
#: on the loaded 2-core machine); cleared when full
_SECTIONS: dict[tuple[Any, ...], bytes] = {}
_SECTIONS_MAX = 4096


def _section_key(name: str, value: Any) -> tuple[Any, ...] | None:
    """The typed values that decide a header's or annotations map's encoding, or None when
    one of them is no plain scalar (built with C-level map and tuple: this runs per
    delivery)."""
    if name == "header" and isinstance(value, Composite):
        values: tuple[Any, ...] = tuple(value.__dict__.values())
    elif name == "message_annotations" and type(value) is dict:
        values = (*value, *value.values())
    else:
        return None
    types = tuple(map(type, values))
    return (name, types, values) if _CACHEABLE.issuperset(types) else None


def _encode_section(name: str, value: Any, out: bytearray) -> None:
    if name in ("header", "properties"):
        _encode(value, out)
    elif name == "data":
        for chunk in value:
            out += encode_data_section(bytes(chunk))
    else:
        _encode(Described(ULong(SECTION_CODES[name]), value), out)


def encode_message(sections: dict[str, Any]) -> bytes:
    """The sections (as :func:`decode_message` returns them) in the spec's order; an
    ``encoded_body`` stands for the amqp-value or amqp-sequence sections, written as it is."""
    out = bytearray()
    encoded_body = sections.get("encoded_body")
    for name in ("header", "delivery_annotations", "message_annotations", "properties",
                 "application_properties", "data", "amqp_sequence", "amqp_value", "footer"):
        if name == "amqp_sequence" and encoded_body is not None:
            out += encoded_body             # the body sections as they came
            continue
        value = sections.get(name)
        if value is None or (encoded_body is not None and name == "amqp_value"):
            continue
        key = _section_key(name, value) if name in ("header", "message_annotations") else None
        if key is None:
            _encode_section(name, value, out)
            continue
        encoded = _SECTIONS.get(key)
        if encoded is None:
            one = bytearray()
            _encode_section(name, value, one)
            if len(_SECTIONS) >= _SECTIONS_MAX:
                _SECTIONS.clear()
            encoded = _SECTIONS[key] = bytes(one)
        out += encoded
    return bytes(out)
