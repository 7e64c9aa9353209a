"""The canonical properties codec: AMQP 0-9-1 content-header property lists <-> Properties.

Messages keep this encoding as their native form (see ``model/message.py``), so the core gets
it injected rather than importing it. The two encodings every benchmark and most clients send
(no properties; delivery_mode only) are recognised by their bytes; the rest goes through pamqp.
"""

from __future__ import annotations

import struct
from datetime import datetime, timezone

from pamqp import commands
from pamqp.header import ContentHeader

from ..amqp_table import encodable
from ..model.message import Properties
from .wire_errors import SyntaxError_

_EMPTY = b"\x00\x00"
_FIELDS = ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
           "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
           "user_id", "app_id", "cluster_id")


class AmqpPropertiesCodec:
    """Stateless; one instance serves the whole broker."""

    def decode(self, raw: bytes) -> Properties:
        if raw == _EMPTY:
            return Properties()
        if len(raw) == 3 and raw[0] == 0x10 and raw[1] == 0:
            return Properties(delivery_mode=raw[2])
        try:
            offset, flags = ContentHeader._get_flags(raw)
            p = commands.Basic.Properties()
            p.unmarshal(flags, raw[offset:])
        except Exception as e:  # pamqp raises a mix of struct/Value/Unicode errors
            raise SyntaxError_(f"malformed content header properties: {e}") from None
        stamp = p.timestamp
        ts = (int(stamp.replace(tzinfo=stamp.tzinfo or timezone.utc).timestamp())
              if isinstance(stamp, datetime) else stamp)
        return Properties(
            content_type=p.content_type, content_encoding=p.content_encoding,
            headers=p.headers, delivery_mode=p.delivery_mode, priority=p.priority,
            correlation_id=p.correlation_id, reply_to=p.reply_to, expiration=p.expiration,
            message_id=p.message_id, timestamp=ts, type=p.message_type, user_id=p.user_id,
            app_id=p.app_id, cluster_id=p.cluster_id or None)

    def encode(self, props: Properties) -> bytes:
        if props.delivery_mode is None or props.delivery_mode in (1, 2):
            if all(getattr(props, f) is None for f in _FIELDS if f != "delivery_mode"):
                if props.delivery_mode is None:
                    return _EMPTY
                return bytes((0x10, 0, props.delivery_mode))
        ts = props.timestamp
        # attributes are set one by one: the constructor runs pamqp's client-side validate(),
        # which refuses values RabbitMQ carries (delivery_mode 0 or 3, a cluster_id)
        p = commands.Basic.Properties()
        p.content_type = props.content_type
        p.content_encoding = props.content_encoding
        p.headers = encodable(props.headers) if props.headers is not None else None
        p.delivery_mode = props.delivery_mode
        p.priority = props.priority
        p.correlation_id = props.correlation_id
        p.reply_to = props.reply_to
        p.expiration = props.expiration
        p.message_id = props.message_id
        p.timestamp = datetime.fromtimestamp(ts, tz=timezone.utc) if ts is not None else None
        p.message_type = props.type
        p.user_id = props.user_id
        p.app_id = props.app_id
        p.cluster_id = props.cluster_id   # type: ignore[assignment]  # None: not sent
        return p.marshal()



_HEADERS_FLAG = 0x2000
_U32 = struct.Struct(">I")
_LONG_LONG = struct.Struct(">q")


def with_int_header(raw: bytes, name: str, value: int) -> bytes | None:
    """``raw`` with one more integer header, spliced into the encoded bytes.

    A delivery that carries ``x-delivery-count`` would otherwise decode and re-encode the
    whole property list per delivery; this copies the bytes around one table entry (type
    ``l``, a signed 64-bit integer, as RabbitMQ encodes it). An entry of the same name that the
    publisher put first stays, and the added one, being last, is the one clients read. None
    when the bytes are not a property list this can splice (the caller re-encodes instead).
    """
    if len(raw) < 2:
        return None
    flags = raw[0] << 8 | raw[1]
    if flags & 1:            # a continuation flag word: not in AMQP 0-9-1's basic class
        return None
    key = name.encode()
    entry = bytes((len(key),)) + key + b"l" + _LONG_LONG.pack(value)
    at = 2
    try:
        for bit in (0x8000, 0x4000):          # content_type, content_encoding: shortstrs
            if flags & bit:
                at += 1 + raw[at]
        if flags & _HEADERS_FLAG:
            (length,) = _U32.unpack_from(raw, at)
            end = at + 4 + length
            if end > len(raw):
                return None
            return b"".join((raw[:at], _U32.pack(length + len(entry)), raw[at + 4:end], entry,
                             raw[end:]))
    except (IndexError, struct.error):
        return None
    if at > len(raw):
        return None
    flags |= _HEADERS_FLAG
    return b"".join((bytes((flags >> 8, flags & 0xFF)), raw[2:at], _U32.pack(len(entry)), entry,
                     raw[at:]))


CODEC = AmqpPropertiesCodec()
