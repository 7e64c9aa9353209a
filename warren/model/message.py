"""A message as the core sees it: a body, properties and broker annotations.

Shaped like RabbitMQ's ``mc.erl``: the message keeps the publisher's *native* encoding of its
properties (``raw_props``: for AMQP 0-9-1, the content-header property list exactly as it came
off the wire) and decodes it into neutral :class:`Properties` only when someone needs a field.
An AMQP-to-AMQP message therefore goes through byte-exact and is never re-encoded; a STOMP or
MQTT publisher builds ``Properties`` and the AMQP encoding is made once, on first need.

The codec that converts between the two is passed in by whoever builds the message (the AMQP
front end owns the wire format), so this module imports no protocol.

A message is stored once however many queues hold it; queues hold :class:`QueueEntry`
references that carry the per-queue state (position, redelivered flag, expiry).
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import astuple, dataclass, replace
from typing import Any, Final, Protocol

from .errors import PreconditionFailed

#: Extra bytes charged per message for memory accounting (object headers, entries, indexes).
OVERHEAD = 400

_RECORD_HEAD = struct.Struct(">BBHI")
_U32 = struct.Struct(">I")
#: a record's flag: ``amqp1_sections`` follow the properties (records without are unchanged)
_HAS_AMQP1 = 1
#: a record's flag: the dead-letter history and the CC keys follow (``_notes``), after any
#: ``amqp1_sections``
_HAS_NOTES = 4
#: a record's flag the core only carries: the body is a Stream protocol publish's message as
#: it came (an AMQP 1.0 message, or raw bytes), which stream queues convert for readers of
#: other protocols (``stream/amqp1_conversion.py``)
STREAM_BODY = 2

#: record headers by (exchange, routing key, encoded properties) for ``to_record``: at most
#: this many (then it starts afresh), and only for properties of at most this many bytes, so
#: the cache stays small whatever publishers send
_HEAD_CACHE_LIMIT = 1024
_HEAD_CACHE_PROPS = 256
_HEADS: dict[tuple[str, str, bytes], bytes] = {}

class _Unset(enum.Enum):
    """``Message(ttl=...)`` not given: read from the properties (an identity test, no call)."""

    UNSET = 0


_UNSET: Final = _Unset.UNSET

_new = object.__new__


@dataclass(slots=True)
class Properties:
    """The AMQP 0-9-1 basic properties, the lingua franca every front end maps to and from."""

    content_type: str | None = None
    content_encoding: str | None = None
    headers: dict[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: int | None = None  # seconds since the epoch
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    cluster_id: str | None = None

    def copy(self, **changes: Any) -> "Properties":
        new = replace(self, **changes)
        if "headers" not in changes and self.headers is not None:
            new.headers = dict(self.headers)
        return new


@dataclass(frozen=True, slots=True)
class Death:
    """One (queue, reason) of a dead-lettered message's history as the broker recorded it
    (RabbitMQ 4's death annotation; a 0-9-1 publisher's ``x-death`` header is read into
    it as RabbitMQ 3.x does, ``deadletter.header_deaths``). Times in
    milliseconds since the epoch; ``ttl`` the per-message TTL the message had, if any."""

    queue: str
    reason: str
    count: int
    first_time: int
    last_time: int
    exchange: str
    routing_keys: tuple[str, ...]
    ttl: int | None


class PropertiesCodec(Protocol):
    """Converts neutral properties to and from the canonical native encoding."""

    def decode(self, raw: bytes) -> Properties: ...

    def encode(self, props: Properties) -> bytes: ...


class Message:
    """One published message; immutable once routed (dead-lettering makes a new one).

    ``amqp1_sections`` (None unless set): an AMQP 1.0 publisher's footer and annotations the
    properties cannot hold, encoded by that front end and opaque here. RabbitMQ 4 keeps the
    whole AMQP 1.0 message, so an AMQP 1.0 receiver gets them; no other protocol has a place
    for them. They go where the message goes: its record, copies made of it."""

    __slots__ = (
        "id",           # broker-wide integer id; the store's key
        "exchange",     # exchange it was published to ("" = default)
        "routing_key",  # routing key as published
        "body",         # bytes, never copied after the front end assembled it
        "raw_props",    # canonical encoded properties, or None until first needed
        "_props",       # decoded Properties, or None until first needed
        "codec",        # PropertiesCodec converting between the two
        "persistent",   # delivery_mode == 2
        "priority",     # 0..255 from properties (0 when absent)
        "ttl",          # per-message TTL in ms from the expiration property, or None
        "stored",       # True once written to the store (so acks/deletes go there too)
        "refs",         # number of queues holding the message (for store and memory release)
        "paged",        # True when the body was dropped from memory and lives in the store only
        "amqp1_sections",  # AMQP 1.0 sections the properties have no place for, or None
        "cc",           # routing keys besides routing_key (RabbitMQ's CC), or None; routing only
        "deaths",       # the broker's dead-letter history (Death, most recent first), or None
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        codec: PropertiesCodec,
        raw_props: bytes | None = None,
        props: Properties | None = None,
        persistent: bool | None = None,
        priority: int | None = None,
        ttl: int | None | _Unset = _UNSET,
        msg_id: int = 0,
    ) -> None:
        if raw_props is None and props is None:
            props = Properties()
        self.id = msg_id
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = body
        self.raw_props = raw_props
        self._props = props
        self.codec = codec
        self.stored = False
        self.refs = 0
        self.paged = False
        self.amqp1_sections: bytes | None = None
        self.cc: list[str] | None = None
        self.deaths: tuple[Death, ...] | None = None
        if persistent is None or priority is None or ttl is _UNSET:
            p = self.properties
            persistent = p.delivery_mode == 2 if persistent is None else persistent
            priority = (p.priority or 0) if priority is None else priority
            ttl = parse_expiration(p.expiration) if ttl is _UNSET else ttl
        self.persistent = persistent
        self.priority = priority
        self.ttl = ttl

    @classmethod
    def make(cls, exchange: str, routing_key: str, body: bytes, codec: PropertiesCodec,
               raw_props: bytes | None, props: Properties | None, persistent: bool,
               priority: int, ttl: int | None) -> "Message":
        """A new message whose flags the caller already knows, built without ``__init__``.

        The publish path of every front end makes one message per publish; ``__init__``'s
        keyword arguments and its checks for flags left to the properties cost about a
        microsecond of that, so the hot paths pass everything, in order, here. One of
        *raw_props* and *props* must be given."""
        m = _new(cls)
        m.id = 0
        m.exchange = exchange
        m.routing_key = routing_key
        m.body = body
        m.raw_props = raw_props
        m._props = props
        m.codec = codec
        m.stored = False
        m.refs = 0
        m.paged = False
        m.amqp1_sections = None
        m.persistent = persistent
        m.priority = priority
        m.ttl = ttl
        m.cc = None
        m.deaths = None
        return m

    @property
    def properties(self) -> Properties:
        if self._props is None:
            assert self.raw_props is not None   # the constructor keeps one of the two
            self._props = self.codec.decode(self.raw_props)
        return self._props

    @property
    def headers(self) -> dict[str, Any]:
        return self.properties.headers or {}

    def encoded_props(self) -> bytes:
        if self.raw_props is None:
            assert self._props is not None      # the constructor keeps one of the two
            self.raw_props = self.codec.encode(self._props)
        return self.raw_props

    @property
    def size(self) -> int:
        return len(self.body)

    def with_changes(self, *, exchange: str | None = None, routing_key: str | None = None,
                     props: Properties | None = None) -> "Message":
        """A new message with the same body (dead-lettering, moves); never shares an id."""
        new = Message(
            self.exchange if exchange is None else exchange,
            self.routing_key if routing_key is None else routing_key,
            self.body,
            codec=self.codec,
            raw_props=self.raw_props if props is None else None,
            props=props if props is not None else self._props,
        )
        new.amqp1_sections = self.amqp1_sections
        new.deaths = self.deaths
        return new

    # -- the store's opaque record -------------------------------------------------------
    def to_record(self) -> bytes:
        """The bytes a store keeps: small header, exchange, routing key, properties, body.

        A publisher sends the same address and properties again and again, so the header
        is made once per (exchange, routing key, short properties) and reused."""
        props = self.raw_props
        if props is None:
            props = self.encoded_props()
        if self.cc is not None or self.deaths is not None:
            return self._noted_record(props)
        if self.amqp1_sections is not None:
            return (record_head(self.exchange, self.routing_key, props, _HAS_AMQP1)
                    + _U32.pack(len(self.amqp1_sections)) + self.amqp1_sections + self.body)
        if len(props) > _HEAD_CACHE_PROPS:
            return record_head(self.exchange, self.routing_key, props) + self.body
        key = (self.exchange, self.routing_key, props)
        head = _HEADS.get(key)
        if head is None:
            if len(_HEADS) >= _HEAD_CACHE_LIMIT:
                _HEADS.clear()
            head = _HEADS[key] = record_head(self.exchange, self.routing_key, props)
        return head + self.body

    def _noted_record(self, props: bytes) -> bytes:
        """A record with ``_HAS_NOTES``: the CC keys and the dead-letter history, which
        dead-lettering reads after a restart too (RabbitMQ keeps them with the message), as
        JSON after any ``amqp1_sections``. Only a message with either pays for it."""
        deaths = None if self.deaths is None else [astuple(d) for d in self.deaths]
        notes = json.dumps({"cc": self.cc, "deaths": deaths},
                           separators=(",", ":")).encode()
        parts = [record_head(self.exchange, self.routing_key, props, _HAS_NOTES | (
            _HAS_AMQP1 if self.amqp1_sections is not None else 0))]
        if self.amqp1_sections is not None:
            parts += (_U32.pack(len(self.amqp1_sections)), self.amqp1_sections)
        parts += (_U32.pack(len(notes)), notes, self.body)
        return b"".join(parts)

    @staticmethod
    def record_body_size(record: bytes | memoryview) -> int:
        """The body's length in a record (``to_record``), from its header alone: lazy recovery
        accounts for a message without decoding it."""
        _version, flags, lex, lrk = _RECORD_HEAD.unpack_from(record, 0)
        off = 8 + lex + lrk
        (lp,) = _U32.unpack_from(record, off)
        off += 4 + lp
        if flags & _HAS_AMQP1:
            off += 4 + _U32.unpack_from(record, off)[0]
        if flags & _HAS_NOTES:
            off += 4 + _U32.unpack_from(record, off)[0]
        return int(len(record) - off)

    @classmethod
    def from_record(cls, record: bytes, codec: PropertiesCodec, msg_id: int) -> "Message":
        message = _new(cls)
        message.id = msg_id
        message.codec = codec
        message.stored = False
        message.refs = 0
        message.paged = False
        message.load_record(record)
        return message

    def load_record(self, record: bytes) -> None:
        """Take address, properties and body from a record (``to_record``'s), in place: a
        paged-out message read back (``broker/paging.py``) stays the object its queue and
        whoever waits for it hold, and making a second message to copy from cost a
        microsecond of each delivery of a drained deep queue. All or nothing: a record that
        does not decode leaves the message as it was."""
        version, flags, lex, lrk = struct.unpack_from(">BBHI", record, 0)
        if version != 1:
            raise ValueError(f"unknown message record version {version}")
        off = 8
        ex = bytes(record[off:off + lex]).decode()
        off += lex
        rk = bytes(record[off:off + lrk]).decode()
        off += lrk
        (lp,) = struct.unpack_from(">I", record, off)
        off += 4
        raw_props = bytes(record[off:off + lp])
        off += lp
        amqp1 = None
        if flags & _HAS_AMQP1:
            (la,) = _U32.unpack_from(record, off)
            amqp1 = bytes(record[off + 4:off + 4 + la])
            off += 4 + la
        notes = None
        if flags & _HAS_NOTES:
            (ln,) = _U32.unpack_from(record, off)
            notes = json.loads(bytes(record[off + 4:off + 4 + ln]))
            off += 4 + ln
        cc = deaths = None
        if notes is not None:
            cc = notes["cc"]
            if notes["deaths"] is not None:
                deaths = tuple(Death(q, r, c, f, la, x, tuple(k), t)
                               for q, r, c, f, la, x, k, t in notes["deaths"])
        props = self.codec.decode(raw_props)
        ttl = parse_expiration(props.expiration)
        self.exchange = ex
        self.routing_key = rk
        self.body = bytes(record[off:])
        self.raw_props = raw_props
        self._props = props
        self.amqp1_sections = amqp1
        self.persistent = props.delivery_mode == 2
        self.priority = props.priority or 0
        self.ttl = ttl
        self.cc = cc
        self.deaths = deaths


def record_head(exchange: str, routing_key: str, raw_props: bytes, flags: int = 0) -> bytes:
    """What ``Message.to_record`` puts before the body: a publisher of many bodies with the
    same address and properties (the Stream protocol) makes it once and adds each body.
    With ``_HAS_AMQP1`` in the flags, a length-prefixed ``amqp1_sections`` follows."""
    ex = exchange.encode()
    rk = routing_key.encode()
    return b"".join((_RECORD_HEAD.pack(1, flags, len(ex), len(rk)), ex, rk,
                     _U32.pack(len(raw_props)), raw_props))


def parse_expiration(value: str | None) -> int | None:
    """Per-message TTL from the ``expiration`` property (milliseconds as a string)."""
    if value is None or value == "":
        return None
    try:
        ttl = int(value)
    except (TypeError, ValueError):
        raise PreconditionFailed(f"invalid expiration '{value}'") from None
    if ttl < 0:
        raise PreconditionFailed(f"invalid expiration '{value}'")
    return ttl


@dataclass(slots=True)
class QueueEntry:
    """A queue's reference to a message, with the state that is per queue."""

    message: Message
    seq: int                      # position in the queue; requeued entries keep it
    expires_at: float | None = None  # reactor time after which it is dead, or None
    redelivered: bool = False
    delivery_count: int = 0
