"""Message properties as a plain ``dict`` for bridges, to and from AMQP content headers.

Keys are the AMQP 0-9-1 names (``content_type``, ``content_encoding``, ``headers``,
``delivery_mode``, ``priority``, ``correlation_id``, ``reply_to``, ``expiration``,
``message_id``, ``timestamp`` as integer seconds, ``type``, ``user_id``, ``app_id``,
``cluster_id``); an absent property is an absent key. A shovel passes a delivery's dict on
untouched or adds a header to it (``x-shovelled``). pamqp's ``Basic.Properties`` is not the
public form because its constructor refuses values RabbitMQ carries (delivery_mode 3, a
cluster_id) and it cannot re-encode the byte arrays it decodes.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pamqp import commands
from pamqp import exceptions as pamqp_exceptions
from pamqp.header import ContentHeader

PROPERTY_NAMES = ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
                  "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                  "type", "user_id", "app_id", "cluster_id")


class MalformedProperties(ValueError):
    """A content header's property list that does not decode."""


def decode_properties(raw: bytes) -> dict:
    """Content-header property list -> dict with AMQP names."""
    try:
        offset, flags = ContentHeader._get_flags(raw)
        p = commands.Basic.Properties()
        p.unmarshal(flags, raw[offset:])
    except (struct.error, ValueError, UnicodeDecodeError, TypeError, IndexError, KeyError,
            pamqp_exceptions.PAMQPException) as e:
        raise MalformedProperties(f"malformed content header properties: {e}") from None
    out = {}
    for name in PROPERTY_NAMES:
        value = getattr(p, "message_type" if name == "type" else name)
        if value is None or (value == "" and name == "cluster_id"):
            continue
        if name == "timestamp" and isinstance(value, datetime):
            value = int(value.replace(tzinfo=value.tzinfo or UTC).timestamp())
        out[name] = value
    return out


def encode_properties(props: dict | None) -> bytes:
    """dict with AMQP names -> content-header property list (unknown keys are an error)."""
    if not props:
        return b"\x00\x00"
    unknown = set(props) - set(PROPERTY_NAMES)
    if unknown:
        raise ValueError(f"unknown message properties: {sorted(unknown)}")
    # attributes are set one by one: the constructor runs pamqp's client-side validate(),
    # which refuses values RabbitMQ carries (delivery_mode 0 or 3, a cluster_id)
    p = commands.Basic.Properties()
    for name, value in props.items():
        if value is None:
            continue
        if name == "timestamp" and isinstance(value, (int, float)):
            value = datetime.fromtimestamp(value, tz=UTC)
        elif name == "headers":
            value = _encodable(value)
        setattr(p, "message_type" if name == "type" else name, value)
    return p.marshal()


def _encodable(value: Any) -> Any:
    """pamqp encodes byte arrays only from bytearray; decoded ones come back as bytes."""
    if isinstance(value, dict):
        return {str(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encodable(v) for v in value]
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, (str, int, float, bool, Decimal, datetime, bytearray)) or value is None:
        return value
    return str(value)
