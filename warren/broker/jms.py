"""The JMS view of a message, for selectors: JMS header names over AMQP properties.

Selectors are evaluated in two places: by a STOMP consumer for each candidate message
(``stomp/jms.py`` adds ``JMSDestination``, whose spelling is STOMP's), and by a durable
subscription's queue for each message routed to it (``broker/subscriptions.py``), so only
matching messages accumulate there, as in ActiveMQ. Both read the same names with ActiveMQ's
values and types (checked against 5.17, ``tests/compat/stomp_activemq.py``):
``JMSDeliveryMode`` is ``'PERSISTENT'``/``'NON_PERSISTENT'``, ``JMSRedelivered`` a boolean,
``JMSPriority`` 4 when unset, ``JMSTimestamp``/``JMSExpiration`` ms since the epoch (0 when
unset): a ``timestamp``/``expires`` header as an ActiveMQ client sent it, else the AMQP
timestamp (seconds) in ms. ``JMSType`` is the type, or for a message an AMQP 1.0 sender
published its subject (ActiveMQ's mapping), which 0-9-1 has no property for: the 1.0 front end
hands the core a reader of it (``read_amqp1_subject_with``), since the core cannot read
AMQP 1.0 sections. Anything else is a message header.
"""

from __future__ import annotations

from typing import Any, Callable

from ..model.message import Message, Properties, QueueEntry

__all__ = ["DEFAULT_PRIORITY", "JMS_HEADERS", "entry_lookup", "jms_timestamp", "jms_type",
           "message_lookup", "read_amqp1_subject_with"]

#: JMS's default priority (javax.jms.Message.DEFAULT_PRIORITY)
DEFAULT_PRIORITY = 4


def _header_int(props: Properties, name: str) -> int | None:
    value = (props.headers or {}).get(name)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii", "replace")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def jms_timestamp(props: Properties) -> int:
    """JMSTimestamp in ms."""
    sent = _header_int(props, "timestamp")
    if sent is not None:
        return sent
    stamp = props.timestamp
    return stamp * 1000 if stamp else 0


#: the subject of a message's ``amqp1_sections`` (None: it has none), once the AMQP 1.0 front
#: end gave it
_amqp1_subject: Callable[[bytes], str | None] | None = None


def read_amqp1_subject_with(reader: Callable[[bytes], str | None]) -> None:
    """JMSType of a message with ``amqp1_sections`` is what ``reader`` finds in them."""
    global _amqp1_subject
    _amqp1_subject = reader


def jms_type(message: Message, props: Properties) -> str | None:
    """JMSType: an AMQP 1.0 sender's subject, else the type."""
    extra = message.amqp1_sections
    if extra is not None and _amqp1_subject is not None:
        return _amqp1_subject(extra)
    return props.type


#: name -> value of (message, its properties, redelivered)
JMS_HEADERS: dict[str, Callable[[Message, Properties, bool], Any]] = {
    "JMSDeliveryMode": lambda m, p, r: "PERSISTENT" if m.persistent else "NON_PERSISTENT",
    "JMSPriority": lambda m, p, r: p.priority if p.priority is not None else DEFAULT_PRIORITY,
    "JMSMessageID": lambda m, p, r: p.message_id,
    "JMSCorrelationID": lambda m, p, r: p.correlation_id,
    "JMSType": lambda m, p, r: jms_type(m, p),
    "JMSTimestamp": lambda m, p, r: jms_timestamp(p),
    "JMSReplyTo": lambda m, p, r: p.reply_to,
    "JMSExpiration": lambda m, p, r: _header_int(p, "expires") or 0,
    "JMSRedelivered": lambda m, p, r: r,
}


def message_lookup(message: Message, redelivered: bool = False,
                   extra: dict[str, Callable[[Message], Any]] | None = None
                   ) -> Callable[[str], Any]:
    """A selector's ``lookup`` for *message*: JMS names, then *extra* names, then headers."""
    props = message.properties
    headers = props.headers or {}

    def lookup(name: str) -> Any:
        jms = JMS_HEADERS.get(name)
        if jms is not None:
            return jms(message, props, redelivered)
        if extra is not None:
            more = extra.get(name)
            if more is not None:
                return more(message)
        value = headers.get(name)
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).decode("utf-8", "replace")
        return value
    return lookup


def entry_lookup(entry: QueueEntry, extra: dict[str, Callable[[Message], Any]] | None = None
                 ) -> Callable[[str], Any]:
    """A consumer's selector view of one queued message (STOMP's and AMQP 1.0's receivers).

    ``JMSXDeliveryCount`` is the delivery this would be (1 the first time, as ActiveMQ counts),
    so it comes from the queue entry, not the message.
    """
    lookup = message_lookup(entry.message, bool(entry.redelivered), extra)

    def with_count(name: str) -> Any:
        if name == "JMSXDeliveryCount":
            return entry.delivery_count + 1
        return lookup(name)
    return with_count
