"""MQTT data representation [MQTT 5.0 1.5] and MQTT 5.0 properties [2.2.2].

``WireReader`` and the ``encode_*`` functions are the spec's data types
(integers, variable byte integers, UTF-8 strings, binary data); the property
table below is the spec's table 2-4 as data.

A property set travels as a variable byte integer length followed by
(identifier, value) pairs [MQTT 5.0 2.2.2]. We expose it as a plain ``dict``
keyed by readable snake_case names so sessions never handle identifiers.
Two properties may repeat and are therefore always lists, whatever their
count: ``user_property`` (a list of ``(name, value)`` pairs, order kept
[MQTT-3.1.3-10]) and ``subscription_identifier`` (a list of ints; it repeats
in a PUBLISH that matched several subscriptions, but may appear only once in a
SUBSCRIBE).

Errors follow the spec's split [MQTT 5.0 2.2.2.2]: an identifier that is
unknown, or not valid for the packet type, or a value not of the specified
type is a Malformed Packet (0x81); a non-repeatable property given twice or a
value outside its allowed range is a Protocol Error (0x82).

Everything here is pure data -> bytes and bytes -> data; the reader is
bounds-checked so that any input either parses or raises ``MqttError``.
"""

from __future__ import annotations

import struct
from enum import Enum
from typing import Any

from warren.mqtt.packets import (
    MALFORMED_PACKET,
    PROTOCOL_ERROR,
    TOPIC_ALIAS_INVALID,
    MqttError,
)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class WireReader:
    """Bounds-checked cursor over ``buf[pos:end]``, one packet body.

    Every read checks the end first, so truncated input raises
    ``MqttError(0x81)`` and never ``IndexError``/``struct.error``.
    """

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def _need(self, n: int) -> int:
        pos = self.pos
        if pos + n > self.end:
            raise MqttError(MALFORMED_PACKET, "packet shorter than its contents")
        self.pos = pos + n
        return pos

    def at_end(self) -> bool:
        return self.pos >= self.end

    def u8(self) -> int:
        return self.buf[self._need(1)]

    def u16(self) -> int:
        return _U16.unpack_from(self.buf, self._need(2))[0]

    def u32(self) -> int:
        return _U32.unpack_from(self.buf, self._need(4))[0]

    def varint(self) -> int:
        """Variable Byte Integer, at most 4 bytes [MQTT-1.5.5-1]."""
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        raise MqttError(MALFORMED_PACKET, "variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        """Two-byte length then that many bytes [MQTT 5.0 1.5.6]."""
        n = self.u16()
        start = self._need(n)
        return self.buf[start:start + n]

    def utf8(self) -> str:
        """UTF-8 Encoded String [MQTT 5.0 1.5.4]: well-formed UTF-8 (Python's codec
        refuses surrogates and overlong forms [MQTT-1.5.4-1]) without U+0000
        [MQTT-1.5.4-2]; either fault is a Malformed Packet."""
        return decode_utf8(self.binary())

    def rest(self) -> bytes:
        start, self.pos = self.pos, self.end
        return self.buf[start:self.end]


def decode_utf8(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MqttError(MALFORMED_PACKET, "string is not valid UTF-8") from None
    if "\x00" in text:
        raise MqttError(MALFORMED_PACKET, "string contains U+0000")
    return text


def encode_varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    if value > 268_435_455:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("string or binary data longer than 65535 bytes")
    return _U16.pack(len(data)) + data


def encode_string(text: str) -> bytes:
    return encode_binary(text.encode("utf-8"))


class PropertyType(Enum):
    """The data types a property value can have [MQTT 5.0 2.2.2.2]."""

    BYTE = "byte"
    TWO_BYTE_INT = "two_byte_int"
    FOUR_BYTE_INT = "four_byte_int"
    VARINT = "varint"
    UTF8 = "utf8"
    BINARY = "binary"
    UTF8_PAIR = "utf8_pair"


# Packet kinds a property may appear in. "will" is the Will Properties block of
# CONNECT's payload, which has its own allowed set [MQTT 5.0 3.1.3.2].
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = (
    "connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp")
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH, WILL = (
    "subscribe", "suback", "unsubscribe", "unsuback", "disconnect", "auth", "will")
_ACKS = (PUBACK, PUBREC, PUBREL, PUBCOMP)
_ALL = (CONNECT, CONNACK, PUBLISH, *_ACKS, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK,
        DISCONNECT, AUTH, WILL)

T = PropertyType
# identifier: (name, type, packet kinds where allowed)  -- MQTT 5.0 table 2-4.
PROPERTY_TABLE: dict[int, tuple[str, PropertyType, tuple[str, ...]]] = {
    0x01: ("payload_format_indicator", T.BYTE, (PUBLISH, WILL)),
    0x02: ("message_expiry_interval", T.FOUR_BYTE_INT, (PUBLISH, WILL)),
    0x03: ("content_type", T.UTF8, (PUBLISH, WILL)),
    0x08: ("response_topic", T.UTF8, (PUBLISH, WILL)),
    0x09: ("correlation_data", T.BINARY, (PUBLISH, WILL)),
    0x0B: ("subscription_identifier", T.VARINT, (PUBLISH, SUBSCRIBE)),
    0x11: ("session_expiry_interval", T.FOUR_BYTE_INT, (CONNECT, CONNACK, DISCONNECT)),
    0x12: ("assigned_client_identifier", T.UTF8, (CONNACK,)),
    0x13: ("server_keep_alive", T.TWO_BYTE_INT, (CONNACK,)),
    0x15: ("authentication_method", T.UTF8, (CONNECT, CONNACK, AUTH)),
    0x16: ("authentication_data", T.BINARY, (CONNECT, CONNACK, AUTH)),
    0x17: ("request_problem_information", T.BYTE, (CONNECT,)),
    0x18: ("will_delay_interval", T.FOUR_BYTE_INT, (WILL,)),
    0x19: ("request_response_information", T.BYTE, (CONNECT,)),
    0x1A: ("response_information", T.UTF8, (CONNACK,)),
    0x1C: ("server_reference", T.UTF8, (CONNACK, DISCONNECT)),
    0x1F: ("reason_string", T.UTF8, (CONNACK, *_ACKS, SUBACK, UNSUBACK, DISCONNECT, AUTH)),
    0x21: ("receive_maximum", T.TWO_BYTE_INT, (CONNECT, CONNACK)),
    0x22: ("topic_alias_maximum", T.TWO_BYTE_INT, (CONNECT, CONNACK)),
    0x23: ("topic_alias", T.TWO_BYTE_INT, (PUBLISH,)),
    0x24: ("maximum_qos", T.BYTE, (CONNACK,)),
    0x25: ("retain_available", T.BYTE, (CONNACK,)),
    0x26: ("user_property", T.UTF8_PAIR, _ALL),
    0x27: ("maximum_packet_size", T.FOUR_BYTE_INT, (CONNECT, CONNACK)),
    0x28: ("wildcard_subscription_available", T.BYTE, (CONNACK,)),
    0x29: ("subscription_identifier_available", T.BYTE, (CONNACK,)),
    0x2A: ("shared_subscription_available", T.BYTE, (CONNACK,)),
}
del T

PROPERTY_IDS: dict[str, int] = {name: ident for ident, (name, _, _) in PROPERTY_TABLE.items()}

# Properties that are lists in our dicts. subscription_identifier may repeat
# only in PUBLISH [MQTT 5.0 3.3.2.3.8]; in SUBSCRIBE a second one is a
# Protocol Error [MQTT 5.0 3.8.2.1.2].
LIST_PROPERTIES = frozenset({"user_property", "subscription_identifier"})
_REPEATABLE_IN: dict[str, tuple[str, ...]] = {
    "user_property": _ALL,
    "subscription_identifier": (PUBLISH,),
}

# Values whose only legal settings are 0 and 1 (anything else: Protocol Error),
# e.g. [MQTT 5.0 3.1.2.11.6] request_problem_information, 3.2.2.3.5 retain_available.
_BOOLEAN_BYTES = frozenset({
    "payload_format_indicator", "request_problem_information", "request_response_information",
    "maximum_qos", "retain_available", "wildcard_subscription_available",
    "subscription_identifier_available", "shared_subscription_available",
})
# Values for which zero is a Protocol Error: Receive Maximum [MQTT 5.0 3.1.2.11.3],
# Maximum Packet Size [3.1.2.11.4], Subscription Identifier [3.8.2.1.2].
_NONZERO = frozenset({"receive_maximum", "maximum_packet_size", "subscription_identifier"})


def _check_value(name: str, value: int) -> None:
    if name in _BOOLEAN_BYTES and value > 1:
        raise MqttError(PROTOCOL_ERROR, f"property {name} must be 0 or 1, got {value}")
    if name in _NONZERO and value == 0:
        raise MqttError(PROTOCOL_ERROR, f"property {name} must not be 0")
    if name == "topic_alias" and value == 0:
        # [MQTT-3.3.2-8] a Topic Alias of 0 is not permitted; DISCONNECT 0x94.
        raise MqttError(TOPIC_ALIAS_INVALID, "topic alias 0 is not permitted")


def read_properties(reader: WireReader, kind: str) -> dict[str, Any]:
    """Read one property block (length + properties) valid for packet ``kind``."""
    length = reader.varint()
    end = reader.pos + length
    if end > reader.end:
        raise MqttError(MALFORMED_PACKET, "property length exceeds the packet")
    if length == 0:
        return {}
    saved_end = reader.end
    reader.end = end
    props: dict[str, Any] = {}
    while reader.pos < end:
        ident = reader.varint()
        entry = PROPERTY_TABLE.get(ident)
        if entry is None:
            raise MqttError(MALFORMED_PACKET, f"unknown property identifier 0x{ident:02x}")
        name, ptype, allowed = entry
        if kind not in allowed:
            raise MqttError(MALFORMED_PACKET, f"property {name} is not allowed in {kind}")
        if ptype is PropertyType.BYTE:
            value: Any = reader.u8()
        elif ptype is PropertyType.TWO_BYTE_INT:
            value = reader.u16()
        elif ptype is PropertyType.FOUR_BYTE_INT:
            value = reader.u32()
        elif ptype is PropertyType.VARINT:
            value = reader.varint()
        elif ptype is PropertyType.UTF8:
            value = reader.utf8()
        elif ptype is PropertyType.BINARY:
            value = reader.binary()
        else:
            value = (reader.utf8(), reader.utf8())
        if isinstance(value, int):
            _check_value(name, value)
        if name in LIST_PROPERTIES:
            existing = props.get(name)
            if existing is None:
                props[name] = [value]
            elif kind in _REPEATABLE_IN[name]:
                existing.append(value)
            else:
                raise MqttError(PROTOCOL_ERROR, f"property {name} given more than once")
        elif name in props:
            raise MqttError(PROTOCOL_ERROR, f"property {name} given more than once")
        else:
            props[name] = value
    reader.end = saved_end
    return props


_PACK_U16 = _U16.pack
_PACK_U32 = _U32.pack


def _encode_value(ptype: PropertyType, value: Any) -> bytes:
    if ptype is PropertyType.BYTE:
        return bytes((value,))
    if ptype is PropertyType.TWO_BYTE_INT:
        return _PACK_U16(value)
    if ptype is PropertyType.FOUR_BYTE_INT:
        return _PACK_U32(value)
    if ptype is PropertyType.VARINT:
        return encode_varint(value)
    if ptype is PropertyType.UTF8:
        return encode_string(value)
    if ptype is PropertyType.BINARY:
        return encode_binary(value)
    name, val = value
    return encode_string(name) + encode_string(val)


def encode_properties(props: dict[str, Any] | None, kind: str) -> bytes:
    """Encode a property dict for packet ``kind`` as length + properties.

    Raises ``ValueError`` for a name that is unknown or not allowed in ``kind``:
    building such a packet is a bug in the caller, not a peer's fault.
    """
    if not props:
        return b"\x00"
    parts: list[bytes] = []
    for name, value in props.items():
        ident = PROPERTY_IDS.get(name)
        if ident is None:
            raise ValueError(f"unknown MQTT 5 property {name!r}")
        _, ptype, allowed = PROPERTY_TABLE[ident]
        if kind not in allowed:
            raise ValueError(f"property {name!r} is not allowed in {kind}")
        head = bytes((ident,))
        if name in LIST_PROPERTIES:
            for item in value:
                parts.append(head + _encode_value(ptype, item))
        else:
            parts.append(head + _encode_value(ptype, value))
    body = b"".join(parts)
    return encode_varint(len(body)) + body
