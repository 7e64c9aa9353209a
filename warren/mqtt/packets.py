"""MQTT control packets as dataclasses, and the error the codec raises.

One class per packet type, shared by MQTT 3.1 (level 3), 3.1.1 (level 4) and
5.0 (level 5). Fields that only exist in 5.0 (``properties``, most reason
codes) are simply empty/zero at the older levels: the parser fills them so,
and the encoder leaves them out. Import these from ``warren.mqtt.codec``.

They are frozen but for PUBLISH and PUBACK, the packets that come once per message: the
parser's hot path builds those without ``__init__`` and assigns their slots, which a frozen
class would only allow through its slots' descriptors (a C wrapper call per field, about a
thousand instructions per message). Nothing changes a packet after the parser made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

# MQTT 5 reason codes the codec itself produces [MQTT 5.0 2.4].
SUCCESS = 0x00
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_IDENTIFIER_NOT_VALID = 0x85
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95


class MqttError(Exception):
    """Bad MQTT input, carrying the MQTT 5 reason code to answer with.

    Decided where the fault is found (as wsproto's ``ParseFailed.code``): the
    session sends it in DISCONNECT (5.0) or maps it to a CONNACK return code
    (3.1.1) for CONNECT-time errors.

    ``packets`` holds the complete packets that the failing ``feed()`` call
    parsed before the fault, in order, so a session can still act on them
    (e.g. a QoS 0 PUBLISH that came before a malformed packet).
    """

    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message
        self.packets: list[Packet] = []

    def __repr__(self) -> str:
        return f"MqttError(0x{self.reason_code:02x}, {self.message!r})"


def _props() -> dict[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class Will:
    """The will message carried in CONNECT [MQTT 3.1.2.5]."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT. ``protocol_level`` is 3 ("MQIsdp"), 4 or 5 ("MQTT");
    ``clean_start`` is 3.1.1's Clean Session flag."""

    protocol_name: str = "MQTT"
    protocol_level: int = 4
    client_id: str = ""
    clean_start: bool = True
    keep_alive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(frozen=True, slots=True)
class ConnAck:
    """CONNACK. At levels 3/4 ``reason_code`` is the 0..5 return code."""

    session_present: bool = False
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(slots=True)
class Publish:
    """PUBLISH. ``packet_id`` is None exactly when ``qos`` is 0."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(slots=True)
class PubAck:
    packet_id: int
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(frozen=True, slots=True)
class PubRec:
    packet_id: int
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(frozen=True, slots=True)
class PubRel:
    packet_id: int
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(frozen=True, slots=True)
class PubComp:
    packet_id: int
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its options [MQTT 5.0 3.8.3.1].
    Options other than ``qos`` exist only at level 5."""

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE. ``subscriptions`` is a tuple, or for more than a few dozen filters a
    ``subscribe_payload.LazySubscriptions`` that decodes them as they are iterated."""

    packet_id: int
    subscriptions: Sequence[Subscription]
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    reason_codes: tuple[int, ...]
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE. ``topic_filters`` is a tuple, or for more than a few dozen filters a
    ``subscribe_payload.LazyTopicFilters`` that decodes them as they are iterated."""

    packet_id: int
    topic_filters: Sequence[str]
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(frozen=True, slots=True)
class UnsubAck:
    """UNSUBACK. ``reason_codes`` are empty at levels 3/4 (no payload there)."""

    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=_props)


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH, level 5 only."""

    reason_code: int = 0
    properties: dict[str, Any] = field(default_factory=_props)


Packet = Union[Connect, ConnAck, Publish, PubAck, PubRec, PubRel, PubComp, Subscribe, SubAck,
               Unsubscribe, UnsubAck, PingReq, PingResp, Disconnect, Auth]
