"""Sender-selected distribution: RabbitMQ's ``CC`` and ``BCC`` headers on a 0-9-1 publish.

A publisher may name more routing keys than the one in ``basic.publish``: the strings of the
``CC`` and ``BCC`` header arrays route the message too (each queue still gets it once), and
``BCC`` is removed before anyone sees the message. The core routes by ``Message.cc``
(``VirtualHost.route``); this module reads the headers into it, because only the 0-9-1 front
end has these headers (AMQP 1.0 senders use the ``x-cc`` annotation, MQTT and STOMP have no
such thing).

Why the checks are shaped as they are:
- almost no publish has these headers, so the properties are decoded only when the raw
  bytes say headers are present and contain ``CC`` (``BCC`` contains it too): one flag test
  and one C-level byte search on the usual path;
- as RabbitMQ (``rabbit_basic:header_routes``), only ``longstr`` items of the array count,
  and a ``CC`` or ``BCC`` that is not an array refuses the publish with 406 PRECONDITION_FAILED
  ``invalid message: {unacceptable_type_in_header,"CC",longstr}`` (its words, the header's
  name and the value's AMQP type).
"""

from __future__ import annotations

from typing import Any

from ..broker.arguments import field_type_name
from ..model.errors import PreconditionFailed
from ..model.message import Message

#: the headers bit of the property flags, in their first byte (content-type 0x80,
#: content-encoding 0x40, headers 0x20)
_HEADERS_BIT = 0x20


def may_carry_routes(props: bytes) -> bool:
    """Cheap test on the raw properties: headers present and the bytes ``CC`` among them."""
    return len(props) > 2 and bool(props[0] & _HEADERS_BIT) and b"CC" in props


def with_header_routes(msg: Message) -> Message:
    """``msg`` with ``cc`` set from its ``CC`` and ``BCC`` headers and ``BCC`` removed; the
    same message when it has neither."""
    headers = msg.properties.headers
    if not headers or ("CC" not in headers and "BCC" not in headers):
        return msg
    keys = _routes(headers, "CC") + _routes(headers, "BCC")
    if "BCC" in headers:
        kept = dict(headers)
        del kept["BCC"]
        msg = msg.with_changes(props=msg.properties.copy(headers=kept))
    msg.cc = keys
    return msg


def _routes(headers: dict[str, Any], name: str) -> list[str]:
    value = headers.get(name)
    if value is None and name not in headers:
        return []
    if not isinstance(value, list):
        raise PreconditionFailed(
            f'invalid message: {{unacceptable_type_in_header,"{name}",{_amqp_type(value)}}}')
    return [item.decode("utf-8", "replace") if isinstance(item, bytes) else item
            for item in value if isinstance(item, (str, bytes))]


def _amqp_type(value: Any) -> str:
    """The field-table type name RabbitMQ prints. A header's integer is named as clients send
    a 32-bit one, ``signedint`` (RabbitMQ 3.10 answered so to pika); the rest as for queue
    arguments."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "signedint" if -2**31 <= value < 2**31 else "long"
    return field_type_name(value)
