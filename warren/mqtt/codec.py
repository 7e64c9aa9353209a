"""Sans-I/O MQTT 3.1 / 3.1.1 / 5.0 codec: bytes in -> packets out, packets -> bytes.

Shaped like RabbitMQ's ``rabbit_mqtt_packet.erl``: a parser state, ``feed``
and ``encode``; no sockets, no Twisted, no broker imports, so it can be fed
arbitrary chunks and fuzzed. Which fault gives which MQTT 5 reason code
follows the spec and mosquitto's ``read_handle.c``:

* 0x81 Malformed Packet: bad fixed-header flags, variable byte integer over 4
  bytes, truncated or overlong bodies, invalid UTF-8 or U+0000, QoS 3, unknown
  or misplaced property identifiers, reserved bits set.
* 0x82 Protocol Error: packet id 0, SUBSCRIBE/UNSUBSCRIBE without topics,
  repeated properties or out-of-range property values, AUTH before level 5,
  password without user name in 3.1.1.
* 0x84 Unsupported Protocol Version: CONNECT protocol name/level not one of
  ("MQIsdp", 3), ("MQTT", 4), ("MQTT", 5).
* 0x90 Topic Name invalid: PUBLISH or will topic empty or with wildcards.
* 0x95 Packet Too Large: remaining length over ``max_packet_size``, raised as
  soon as the fixed header is read so the body is never buffered.

Topic *filters* in SUBSCRIBE/UNSUBSCRIBE are not validated while parsing:
the session calls ``validate_topic_filter`` on each as its sliced SUBSCRIBE or
UNSUBSCRIBE reaches it (a packet of 50,000 filters is decoded a slice at a
time, ``subscribe_payload.py``), so the filters before a bad one are already
done, as in Mosquitto. A filter that is not well formed is 0x81 Malformed
Packet and ends the connection (Mosquitto 2.0.11 likewise, "Invalid
subscription string"): the SUBACK codes 0x80 (3.1.1) and 0x8F "correctly
formed but not allowed" (5.0) are for a filter the session refuses, not for
a malformed one.

Until a CONNECT has been parsed ``MqttParser.protocol_level`` is None and
other packets are parsed with 3.1.1 rules; enforcing "CONNECT first"
[MQTT-3.1.0-1] and "only one CONNECT" [MQTT-3.1.0-2] is the session's job.
A parser used on the client side (bridges, tests) is built with
``MqttParser(protocol_level=...)``. The level is set as soon as a CONNECT's
protocol name and level are accepted, even if the rest of that CONNECT is bad,
so the session knows which CONNACK form to answer with; after a 0x84 error it
stays None.

``max_packet_size`` is a plain attribute: a session may start small and
raise it once the client has authenticated.

Not checked here because they depend on direction or session state: a client
sending Subscription Identifiers in PUBLISH [MQTT-3.3.4-6], topic aliases
above the negotiated maximum, Receive Maximum quotas, payload format 1 with a
non-UTF-8 payload (0x99), client identifier rules (0x85 / 3.1.1 return code 2).
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from warren.mqtt.packets import (
    CLIENT_IDENTIFIER_NOT_VALID,
    MALFORMED_PACKET,
    PACKET_TOO_LARGE,
    PROTOCOL_ERROR,
    SUCCESS,
    TOPIC_ALIAS_INVALID,
    TOPIC_FILTER_INVALID,
    TOPIC_NAME_INVALID,
    UNSUPPORTED_PROTOCOL_VERSION,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MqttError,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from warren.mqtt.properties import (
    WireReader,
    encode_binary,
    encode_properties,
    encode_string,
    encode_varint,
    read_properties,
)
from warren.mqtt.subscribe_payload import (EAGER_FILTERS, LazySubscriptions, LazyTopicFilters,
                                           read_subscription)

__all__ = [
    "MqttParser", "encode", "validate_topic_name", "validate_topic_filter",
    "MqttError", "Packet", "Connect", "Will", "ConnAck", "Publish", "PubAck", "PubRec", "PubRel",
    "PubComp", "Subscribe", "Subscription", "SubAck", "Unsubscribe", "UnsubAck", "PingReq",
    "PingResp", "Disconnect", "Auth",
    "SUCCESS", "MALFORMED_PACKET", "PROTOCOL_ERROR", "UNSUPPORTED_PROTOCOL_VERSION",
    "CLIENT_IDENTIFIER_NOT_VALID", "TOPIC_FILTER_INVALID", "TOPIC_NAME_INVALID",
    "TOPIC_ALIAS_INVALID", "PACKET_TOO_LARGE",
]

# Control packet types [MQTT 5.0 2.1.2].
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15)

# Required fixed-header flag bits per packet type; PUBLISH's are dup/qos/retain
# and checked on their own [MQTT-2.2.2-1], [MQTT-2.2.2-2].
_REQUIRED_FLAGS = {
    CONNECT: 0, CONNACK: 0, PUBACK: 0, PUBREC: 0, PUBREL: 0b0010, PUBCOMP: 0,
    SUBSCRIBE: 0b0010, SUBACK: 0, UNSUBSCRIBE: 0b0010, UNSUBACK: 0, PINGREQ: 0, PINGRESP: 0,
    DISCONNECT: 0, AUTH: 0,
}

# MQTT 3.1 gave PUBREL, SUBSCRIBE and UNSUBSCRIBE QoS 1 and let a resent one carry the DUP
# flag; 3.1.1 fixed their flags at 0010. A 3.1 client's resent PUBREL is accepted (Mosquitto).
_DUP_31 = 0b1000

# Accepted (protocol name, level) pairs [MQTT-3.1.2-1], [MQTT-3.1.2-2].
_PROTOCOLS = {("MQIsdp", 3), ("MQTT", 4), ("MQTT", 5)}

_U16 = struct.Struct(">H")
_unpack_u16 = _U16.unpack_from
_pack_u16 = _U16.pack

DEFAULT_MAX_PACKET_SIZE = 256 * 1024 * 1024

#: a PUBLISH's fixed-header flags as the hot path reads them, (qos, retain, dup), one tuple
#: per value instead of four integer operations per packet; None for QoS 3 and for DUP on
#: QoS 0, which the general parser reports [MQTT-3.3.1-2], [MQTT-3.3.1-4]
_PLAIN_FLAGS = tuple(
    None if (flags >> 1) & 3 == 3 or (flags & 8 and not (flags >> 1) & 3)
    else ((flags >> 1) & 3, flags & 1 == 1, flags & 8 == 8) for flags in range(16))

#: topic names the hot path has decoded and found valid, by their bytes: a client publishes
#: to few topics, and a memo read is cheaper than the decode and three wildcard searches.
#: Only short names are kept and the memo is emptied when full, so its size stays bounded
_checked_topics: dict[bytes, str] = {}
_CHECKED_TOPICS_LIMIT = 4096
_CHECKED_TOPIC_MAX = 256

# A dataclass __init__ is a Python call with keyword defaults, most of the cost of parsing a
# small PUBLISH; the hot paths make the object bare and assign its slots (see packets.py).
_new_object = object.__new__


def _plain_puback(packet_id: int) -> PubAck:
    """A PUBACK with success and no properties (what every subscriber sends per QoS 1
    message), built as the PUBLISH hot path builds its packet."""
    puback = _new_object(PubAck)
    puback.packet_id = packet_id
    puback.reason_code = 0
    puback.properties = {}
    return puback


def _parse_plain_publish(buf: bytes, body: int, end: int, flags: int,
                         level: int | None) -> Publish | None:
    """Hot path for the common PUBLISH: valid QoS, non-zero packet id, a
    non-empty wildcard-free topic, no properties. Returns None for anything
    else, which the general parser then handles (and reports precisely)."""
    plain = _PLAIN_FLAGS[flags]
    if plain is None or end - body < 2:
        return None
    qos, retain, dup = plain
    topic_end = body + 2 + _unpack_u16(buf, body)[0]
    if qos:
        start = topic_end + 2
        if start > end:
            return None
        packet_id = _unpack_u16(buf, topic_end)[0]
        if not packet_id:
            return None
    else:
        start = topic_end
        packet_id = None
    if level == 5:
        # Only an empty property block (a single 0 byte) stays on the hot path.
        if start >= end or buf[start]:
            return None
        start += 1
    if start > end:
        return None
    raw = buf[body + 2:topic_end]
    topic = _checked_topics.get(raw)
    if topic is None:
        try:
            topic = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not topic or "+" in topic or "#" in topic or "\x00" in topic:
            return None
        if len(raw) <= _CHECKED_TOPIC_MAX:
            if len(_checked_topics) >= _CHECKED_TOPICS_LIMIT:
                _checked_topics.clear()
            _checked_topics[raw] = topic
    publish = _new_object(Publish)
    publish.topic = topic
    publish.payload = buf[start:end]
    publish.qos = qos
    publish.retain = retain
    publish.dup = dup
    publish.packet_id = packet_id
    publish.properties = {}
    return publish


# ---------------------------------------------------------------------------
# Topic names and filters
# ---------------------------------------------------------------------------

def validate_topic_name(name: str, *, alias: bool = False) -> None:
    """Check a PUBLISH (or will) topic name; raise ``MqttError(0x90)`` if invalid.

    No wildcards [MQTT-3.3.2-2]; at least one character [MQTT-4.7.3-1] unless
    the PUBLISH carries a Topic Alias (``alias=True``) [MQTT 5.0 3.3.2.3.4].
    """
    if not name and not alias:
        raise MqttError(TOPIC_NAME_INVALID, "topic name is empty")
    if "+" in name or "#" in name:
        raise MqttError(TOPIC_NAME_INVALID, f"topic name {name!r} contains a wildcard")
    if "\x00" in name:
        raise MqttError(TOPIC_NAME_INVALID, "topic name contains U+0000")


def validate_topic_filter(filt: str) -> None:
    """Check a SUBSCRIBE/UNSUBSCRIBE topic filter; raise ``MqttError(0x81)`` Malformed
    Packet if it is not well formed (the connection ends: see the module's docstring).

    ``#`` must be alone in the last level [MQTT-4.7.1-1]; ``+`` alone in its
    level [MQTT-4.7.1-2]; the filter is non-empty [MQTT-4.7.3-1]. A shared
    subscription ``$share/{group}/{filter}`` needs a non-empty group without
    ``+``/``#`` and a valid non-empty filter [MQTT-4.8.2-1], [MQTT-4.8.2-2]
    (Mosquitto 2.0.11 grants ``$share//x`` and ``$share/g``).
    """
    if not filt:
        raise MqttError(MALFORMED_PACKET, "topic filter is empty")
    if "\x00" in filt:
        raise MqttError(MALFORMED_PACKET, "topic filter contains U+0000")
    if filt.startswith("$share/"):
        parts = filt.split("/", 2)
        if len(parts) < 3 or not parts[1]:
            raise MqttError(MALFORMED_PACKET, f"shared subscription {filt!r} lacks a group")
        group, filt = parts[1], parts[2]
        if "+" in group or "#" in group:
            raise MqttError(MALFORMED_PACKET, f"share group {group!r} contains a wildcard")
        if not filt:
            raise MqttError(MALFORMED_PACKET, "shared subscription has an empty filter")
    if "+" not in filt and "#" not in filt:
        return
    levels = filt.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != last):
            raise MqttError(MALFORMED_PACKET,
                            f"'#' must be alone in the last level of {filt!r}")
        if "+" in level and level != "+":
            raise MqttError(MALFORMED_PACKET, f"'+' must be alone in its level in {filt!r}")


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

def _packet_id(reader: WireReader) -> int:
    packet_id = reader.u16()
    if packet_id == 0:
        raise MqttError(PROTOCOL_ERROR, "packet identifier 0 is not allowed")  # [MQTT-2.2.1-3]
    return packet_id


def _finish(reader: WireReader, what: str) -> None:
    if not reader.at_end():
        raise MqttError(MALFORMED_PACKET, f"{what} has trailing bytes")


def _parse_connect(reader: WireReader, parser: MqttParser) -> Connect:
    protocol_name = reader.utf8()
    protocol_level = reader.u8()
    if (protocol_name, protocol_level) not in _PROTOCOLS:
        raise MqttError(UNSUPPORTED_PROTOCOL_VERSION,
                        f"unsupported protocol {protocol_name!r} level {protocol_level}")
    if parser.protocol_level is None:
        # Set before the rest is checked, so that a session answering a bad
        # CONNECT knows whether to send a 3.1.1 or a 5.0 CONNACK.
        parser.protocol_level = protocol_level
    v5 = protocol_level == 5
    cflags = reader.u8()
    if cflags & 0x01:
        raise MqttError(MALFORMED_PACKET, "CONNECT reserved flag is set")  # [MQTT-3.1.2-3]
    clean_start = bool(cflags & 0x02)
    will_flag = cflags & 0x04
    will_qos = (cflags >> 3) & 0x03
    will_retain = bool(cflags & 0x20)
    has_password = cflags & 0x40
    has_username = cflags & 0x80
    if will_flag:
        if will_qos == 3:
            raise MqttError(MALFORMED_PACKET, "will QoS 3")  # [MQTT-3.1.2-14]
    elif will_qos or will_retain:
        # [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]
        raise MqttError(MALFORMED_PACKET, "will QoS/retain set without the will flag")
    if has_password and not has_username and not v5:
        raise MqttError(PROTOCOL_ERROR, "password flag without user name flag")  # [MQTT-3.1.2-22]
    keep_alive = reader.u16()
    properties = read_properties(reader, "connect") if v5 else {}
    client_id = reader.utf8()  # [MQTT-3.1.3-4]
    will = None
    if will_flag:
        will_properties = read_properties(reader, "will") if v5 else {}
        will_topic = reader.utf8()
        validate_topic_name(will_topic)  # [MQTT-3.1.3-11]
        will = Will(will_topic, reader.binary(), will_qos, will_retain, will_properties)
    username = reader.utf8() if has_username else None
    password = reader.binary() if has_password else None
    _finish(reader, "CONNECT")
    return Connect(protocol_name, protocol_level, client_id, clean_start, keep_alive,
                   username, password, will, properties)


def _parse_connack(reader: WireReader, flags: int, level: int) -> ConnAck:
    ack_flags = reader.u8()
    if ack_flags & 0xFE:
        raise MqttError(MALFORMED_PACKET, "CONNACK reserved flags set")  # [MQTT-3.2.2-1]
    reason_code = reader.u8()
    properties = read_properties(reader, "connack") if level == 5 else {}
    _finish(reader, "CONNACK")
    return ConnAck(bool(ack_flags), reason_code, properties)


def _parse_publish(reader: WireReader, flags: int, level: int) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MqttError(MALFORMED_PACKET, "PUBLISH with QoS 3")  # [MQTT-3.3.1-4]
    dup = bool(flags & 0x08)
    if dup and not qos:
        raise MqttError(MALFORMED_PACKET, "DUP set on a QoS 0 PUBLISH")  # [MQTT-3.3.1-2]
    topic = reader.utf8()
    packet_id = _packet_id(reader) if qos else None
    properties = read_properties(reader, "publish") if level == 5 else {}
    validate_topic_name(topic, alias="topic_alias" in properties)
    return Publish(topic, reader.rest(), qos, bool(flags & 0x01), dup, packet_id, properties)


def _ack_parser(cls: type, kind: str) -> Callable[[WireReader, int, int], Any]:
    """PUBACK/PUBREC/PUBREL/PUBCOMP: packet id, then at level 5 an optional reason
    code and optional properties (absent means 0 / none) [MQTT 5.0 3.4.2.1]."""

    def parse(reader: WireReader, flags: int, level: int) -> Any:
        packet_id = _packet_id(reader)
        reason_code = 0
        properties: dict[str, Any] = {}
        if level == 5 and not reader.at_end():
            reason_code = reader.u8()
            if not reader.at_end():
                properties = read_properties(reader, kind)
        _finish(reader, kind.upper())
        return cls(packet_id, reason_code, properties)

    return parse


def _parse_subscribe(reader: WireReader, flags: int, level: int) -> Subscribe:
    """The first ``EAGER_FILTERS`` filters now, the rest when the session reads them
    (``subscribe_payload.py``: a 50,000-filter SUBSCRIBE is not one long turn)."""
    packet_id = _packet_id(reader)
    properties = read_properties(reader, "subscribe") if level == 5 else {}
    if reader.at_end():
        raise MqttError(PROTOCOL_ERROR, "SUBSCRIBE without subscriptions")  # [MQTT-3.8.3-3]
    decoded = []
    while not reader.at_end():
        if len(decoded) == EAGER_FILTERS:
            return Subscribe(packet_id, LazySubscriptions(decoded, reader, level), properties)
        decoded.append(read_subscription(reader, level))
    return Subscribe(packet_id, tuple(decoded), properties)


def _parse_suback(reader: WireReader, flags: int, level: int) -> SubAck:
    packet_id = _packet_id(reader)
    properties = read_properties(reader, "suback") if level == 5 else {}
    return SubAck(packet_id, tuple(reader.rest()), properties)


def _parse_unsubscribe(reader: WireReader, flags: int, level: int) -> Unsubscribe:
    """As SUBSCRIBE: the first ``EAGER_FILTERS`` filters now, the rest when the session's
    sliced UNSUBSCRIBE reads them."""
    packet_id = _packet_id(reader)
    properties = read_properties(reader, "unsubscribe") if level == 5 else {}
    if reader.at_end():
        raise MqttError(PROTOCOL_ERROR, "UNSUBSCRIBE without topic filters")  # [MQTT-3.10.3-2]
    topic_filters = []
    while not reader.at_end():
        if len(topic_filters) == EAGER_FILTERS:
            return Unsubscribe(packet_id, LazyTopicFilters(topic_filters, reader, level),
                               properties)
        topic_filters.append(reader.utf8())
    return Unsubscribe(packet_id, tuple(topic_filters), properties)


def _parse_unsuback(reader: WireReader, flags: int, level: int) -> UnsubAck:
    packet_id = _packet_id(reader)
    if level != 5:
        _finish(reader, "UNSUBACK")
        return UnsubAck(packet_id)
    properties = read_properties(reader, "unsuback")
    return UnsubAck(packet_id, tuple(reader.rest()), properties)


def _parse_ping(cls: type) -> Callable[[WireReader, int, int], Any]:
    def parse(reader: WireReader, flags: int, level: int) -> Any:
        _finish(reader, cls.__name__.upper())
        return cls()
    return parse


def _reason_and_properties(cls: type, kind: str) -> Callable[[WireReader, int, int], Any]:
    """DISCONNECT/AUTH: at level 5 an optional reason code then optional properties
    [MQTT 5.0 3.14.2.1], [MQTT 5.0 3.15.2.1]; at levels 3/4 DISCONNECT is empty."""

    def parse(reader: WireReader, flags: int, level: int) -> Any:
        reason_code = 0
        properties: dict[str, Any] = {}
        if level == 5 and not reader.at_end():
            reason_code = reader.u8()
            if not reader.at_end():
                properties = read_properties(reader, kind)
        _finish(reader, kind.upper())
        return cls(reason_code, properties)

    return parse


def _id_0_malformed(parse: Callable[[WireReader, int, int], Any]
                    ) -> Callable[[WireReader, int, int], Any]:
    """SUBSCRIBE/UNSUBSCRIBE: packet identifier 0 [MQTT-2.2.1-3] is a Malformed Packet there,
    where ``_packet_id`` makes it a Protocol Error (PUBLISH, the acks). The spec names no code;
    these are Mosquitto's (its 13-malformed-subscribe-v5 and -unsubscribe-v5)."""

    def parse_checked(reader: WireReader, flags: int, level: int) -> Any:
        pos = reader.pos
        if reader.end - pos >= 2 and not reader.buf[pos] and not reader.buf[pos + 1]:
            raise MqttError(MALFORMED_PACKET, "packet identifier 0 is not allowed")
        return parse(reader, flags, level)

    return parse_checked


_PARSERS: dict[int, Callable[[WireReader, int, int], Any]] = {
    CONNACK: _parse_connack,
    PUBLISH: _parse_publish,
    PUBACK: _ack_parser(PubAck, "puback"),
    PUBREC: _ack_parser(PubRec, "pubrec"),
    PUBREL: _ack_parser(PubRel, "pubrel"),
    PUBCOMP: _ack_parser(PubComp, "pubcomp"),
    SUBSCRIBE: _id_0_malformed(_parse_subscribe),
    SUBACK: _parse_suback,
    UNSUBSCRIBE: _id_0_malformed(_parse_unsubscribe),
    UNSUBACK: _parse_unsuback,
    PINGREQ: _parse_ping(PingReq),
    PINGRESP: _parse_ping(PingResp),
    DISCONNECT: _reason_and_properties(Disconnect, "disconnect"),
    AUTH: _reason_and_properties(Auth, "auth"),
}


class MqttParser:
    """Incremental parser: ``feed(bytes)`` returns the complete packets so far.

    Partial packets are kept between calls. A packet whose body is still
    arriving is accumulated in a bytearray without being re-parsed, so a large
    PUBLISH arriving in many chunks costs linear time. After an ``MqttError``
    the parser is dead: every later ``feed`` raises the same error.

    ``feed(data, limit)`` returns at most ``limit`` packets and keeps the rest of
    the bytes as they are (no copy): ``held`` says so, and ``feed(b"", limit)``
    goes on with them. A 64 KiB read of small packets is some 3,000 of them; the
    listener takes them a batch at a time and stops at the turn's deadline, the
    rest parsed at the next turn, instead of parsing them all before it looks.
    """

    def __init__(self, *, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
                 protocol_level: int | None = None) -> None:
        self.max_packet_size = max_packet_size
        #: None until a CONNECT is parsed, then 3, 4 or 5; governs later parsing.
        self.protocol_level: int | None = protocol_level
        self._pending = bytearray()  # bytes of packets not yet complete
        self._needed = 0             # total length of the packet at the head of _pending
        self._error: MqttError | None = None
        self._held: bytes | None = None   # bytes a limited feed left, from _held_at on
        self._held_at = 0

    @property
    def held(self) -> bool:
        """Bytes a ``limit`` left unparsed (whole packets, perhaps) wait for a ``feed``."""
        return self._held is not None

    def feed(self, data: bytes, limit: int | None = None) -> list[Packet]:
        if self._error is not None:
            raise self._error
        pending = self._pending
        start = 0
        if self._held is not None:
            buf, start = self._held, self._held_at
            self._held = None
            if data:
                buf = buf[start:] + bytes(data)
                start = 0
        elif pending:
            pending += data
            if len(pending) < self._needed:
                return []
            buf = bytes(pending)
            pending.clear()
        else:
            buf = bytes(data)
        packets: list[Packet] = []
        try:
            consumed = self._parse(buf, packets, start, limit)
        except MqttError as error:
            error.packets = packets
            self._error = error
            raise
        if limit is not None and len(packets) >= limit and consumed < len(buf):
            self._held, self._held_at = buf, consumed
        elif consumed < len(buf):
            pending += buf[consumed:] if consumed else buf
        return packets

    def _parse(self, buf: bytes, packets: list[Packet], pos: int = 0,
               limit: int | None = None) -> int:
        """Parse whole packets from ``buf`` at ``pos`` (``limit`` of them at most); return
        where they end."""
        size = len(buf)
        max_size = self.max_packet_size
        append = packets.append
        self._needed = 0
        count = -1 if limit is None else limit
        while pos + 2 <= size:
            if not count:
                return pos
            count -= 1
            first = buf[pos]
            length = buf[pos + 1]
            body = pos + 2
            if length & 0x80:
                # Remaining Length, a variable byte integer of at most 4 bytes [MQTT-2.2.3].
                length &= 0x7F
                shift = 7
                while True:
                    if body - pos > 4:
                        raise MqttError(MALFORMED_PACKET, "remaining length over 4 bytes")
                    if body >= size:
                        self._needed = body - pos + 1
                        return pos
                    byte = buf[body]
                    body += 1
                    length |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        break
                    shift += 7
            if length > max_size:
                raise MqttError(PACKET_TOO_LARGE,
                                f"packet of {length} bytes exceeds the limit of {max_size}")
            end = body + length
            if end > size:
                self._needed = end - pos
                return pos
            ptype = first >> 4
            flags = first & 0x0F
            level = self.protocol_level
            if ptype == PUBLISH:
                publish = _parse_plain_publish(buf, body, end, flags, level)
                if publish is None:
                    publish = _parse_publish(WireReader(buf, body, end), flags, level or 4)
                append(publish)
            elif first == 0x40 and length == 2 and (buf[body] or buf[body + 1]):
                # PUBACK of a non-zero id, nothing else: the same at every level
                append(_plain_puback((buf[body] << 8) | buf[body + 1]))
            elif ptype == CONNECT:
                if flags:
                    raise MqttError(MALFORMED_PACKET, "CONNECT flags must be 0")  # [MQTT-2.2.2-2]
                append(_parse_connect(WireReader(buf, body, end), self))
            else:
                parser = _PARSERS.get(ptype)
                if parser is None:
                    raise MqttError(MALFORMED_PACKET, "reserved packet type 0")  # [MQTT 2.1.2]
                if ptype == AUTH and level != 5:
                    raise MqttError(PROTOCOL_ERROR, "AUTH before MQTT 5")
                if flags != _REQUIRED_FLAGS[ptype] and not (
                        level == 3 and flags == _REQUIRED_FLAGS[ptype] | _DUP_31):
                    raise MqttError(MALFORMED_PACKET,
                                    f"bad fixed header flags 0x{flags:x} for packet type {ptype}")
                append(parser(WireReader(buf, body, end), flags, level or 4))
            pos = end
        if pos < size:
            self._needed = 2
        return pos


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------

def _frame(first: int, body: bytes) -> bytes:
    length = len(body)
    if length < 0x80:
        return bytes((first, length)) + body
    return bytes((first,)) + encode_varint(length) + body


def _encode_connect(p: Connect, level: int) -> bytes:
    level = p.protocol_level
    v5 = level == 5
    flags = 0x02 if p.clean_start else 0
    parts = [encode_string(p.protocol_name), bytes((level,))]
    tail = [encode_string(p.client_id)]
    if p.will is not None:
        flags |= 0x04 | (p.will.qos << 3) | (0x20 if p.will.retain else 0)
        if v5:
            tail.append(encode_properties(p.will.properties, "will"))
        tail.append(encode_string(p.will.topic))
        tail.append(encode_binary(p.will.payload))
    if p.username is not None:
        flags |= 0x80
        tail.append(encode_string(p.username))
    if p.password is not None:
        flags |= 0x40
        tail.append(encode_binary(p.password))
    parts.append(bytes((flags,)))
    parts.append(_pack_u16(p.keep_alive))
    if v5:
        parts.append(encode_properties(p.properties, "connect"))
    return _frame(CONNECT << 4, b"".join(parts + tail))


def _encode_connack(p: ConnAck, level: int) -> bytes:
    # MQTT 3.1 has no Session Present flag: its acknowledge flags byte is reserved, 0
    # (the 3.1 CONNACK is always 20 02 00 rc); 3.1.1 added the flag [MQTT-3.2.2-1].
    body = bytes((1 if p.session_present and level >= 4 else 0, p.reason_code))
    if level == 5:
        body += encode_properties(p.properties, "connack")
    return _frame(CONNACK << 4, body)


def _encode_publish(p: Publish, level: int) -> bytes:
    first = (PUBLISH << 4) | (p.qos << 1) | (0x08 if p.dup else 0) | (0x01 if p.retain else 0)
    head = encode_string(p.topic)
    if p.qos:
        if not p.packet_id:
            raise ValueError("a QoS 1/2 PUBLISH needs a non-zero packet_id")
        head += _pack_u16(p.packet_id)
    if level == 5:
        head += encode_properties(p.properties, "publish")
    return _frame(first, head + p.payload)


def _encode_ack(ptype: int, kind: str) -> Callable[[Any, int], bytes]:
    first = (ptype << 4) | _REQUIRED_FLAGS[ptype]

    def encode_ack(p: Any, level: int) -> bytes:
        body = _pack_u16(p.packet_id)
        if level == 5 and (p.reason_code or p.properties):
            # Shortest form: reason code and properties may be left out when
            # they are 0 / empty [MQTT 5.0 3.4.2.1].
            body += bytes((p.reason_code,))
            if p.properties:
                body += encode_properties(p.properties, kind)
        return _frame(first, body)

    return encode_ack


def _encode_subscribe(p: Subscribe, level: int) -> bytes:
    parts = [_pack_u16(p.packet_id)]
    if level == 5:
        parts.append(encode_properties(p.properties, "subscribe"))
    for sub in p.subscriptions:
        options = sub.qos
        if level == 5:
            options |= ((0x04 if sub.no_local else 0) | (0x08 if sub.retain_as_published else 0)
                        | (sub.retain_handling << 4))
        parts.append(encode_string(sub.topic_filter) + bytes((options,)))
    return _frame((SUBSCRIBE << 4) | 0b0010, b"".join(parts))


def _encode_suback(p: SubAck, level: int) -> bytes:
    body = _pack_u16(p.packet_id)
    if level == 5:
        body += encode_properties(p.properties, "suback")
    return _frame(SUBACK << 4, body + bytes(p.reason_codes))


def _encode_unsubscribe(p: Unsubscribe, level: int) -> bytes:
    parts = [_pack_u16(p.packet_id)]
    if level == 5:
        parts.append(encode_properties(p.properties, "unsubscribe"))
    parts.extend(encode_string(f) for f in p.topic_filters)
    return _frame((UNSUBSCRIBE << 4) | 0b0010, b"".join(parts))


def _encode_unsuback(p: UnsubAck, level: int) -> bytes:
    body = _pack_u16(p.packet_id)
    if level == 5:
        body += encode_properties(p.properties, "unsuback") + bytes(p.reason_codes)
    return _frame(UNSUBACK << 4, body)


def _encode_reason_and_properties(ptype: int, kind: str) -> Callable[[Any, int], bytes]:
    def encode_packet(p: Any, level: int) -> bytes:
        if level != 5:
            if ptype == AUTH:
                raise ValueError("AUTH exists only in MQTT 5")
            return bytes((ptype << 4, 0))
        if not p.reason_code and not p.properties:
            return bytes((ptype << 4, 0))
        body = bytes((p.reason_code,))
        if p.properties:
            body += encode_properties(p.properties, kind)
        return _frame(ptype << 4, body)

    return encode_packet


_ENCODERS: dict[type, Callable[[Any, int], bytes]] = {
    Connect: _encode_connect,
    ConnAck: _encode_connack,
    Publish: _encode_publish,
    PubAck: _encode_ack(PUBACK, "puback"),
    PubRec: _encode_ack(PUBREC, "pubrec"),
    PubRel: _encode_ack(PUBREL, "pubrel"),
    PubComp: _encode_ack(PUBCOMP, "pubcomp"),
    Subscribe: _encode_subscribe,
    SubAck: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    UnsubAck: _encode_unsuback,
    PingReq: lambda p, level: b"\xc0\x00",
    PingResp: lambda p, level: b"\xd0\x00",
    Disconnect: _encode_reason_and_properties(DISCONNECT, "disconnect"),
    Auth: _encode_reason_and_properties(AUTH, "auth"),
}


def encode(packet: Packet, protocol_level: int) -> bytes:
    """Serialise ``packet`` for a connection at ``protocol_level`` (3, 4 or 5).

    At levels 3/4 the 5.0-only parts (properties, non-zero reason codes of
    acks/DISCONNECT, UNSUBACK reason codes, subscription options other than
    QoS) are left out. CONNECT is encoded at its own ``protocol_level``.
    Raises ``ValueError`` for a packet that cannot be encoded (AUTH below 5,
    QoS>0 PUBLISH without packet id, unknown property names).
    """
    return _ENCODERS[type(packet)](packet, protocol_level)
