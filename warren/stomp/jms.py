"""What ActiveMQ's STOMP clients mean by the JMS message headers, mapped onto AMQP properties.

ActiveMQ (checked against 5.17, ``tests/compat/stomp_activemq.py``) is the reference here,
because RabbitMQ has no JMS layer; the AMQP properties underneath stay RabbitMQ's mapping
(``session.py``), so AMQP consumers see what RabbitMQ's STOMP plugin would give them.

- ``expires`` is JMSExpiration: an absolute time in ms since the epoch. It becomes the AMQP
  ``expiration`` (the ms left when it arrives), so the queue's TTL machinery drops or
  dead-letters it; the header itself is kept, so MESSAGE frames carry the value sent. A
  message already expired when it arrives is never delivered: it is not routed at all.
- ``priority`` is JMSPriority, 0-9, 4 when absent. Queues a STOMP client creates are priority
  queues of ten levels (argument ``x-prioritized-messages: true``, ActiveMQ's
  ``prioritizedMessages``: highest first, FIFO within a level; see ``broker/queue.py``), and a
  SEND to ``/queue/`` or ``/topic/`` without ``priority`` is queued at level 4. A creating
  frame's ``x-prioritized-messages:false`` (or ``x-max-priority``) says otherwise.
  Queues declared over AMQP keep RabbitMQ's rules (no priorities without ``x-max-priority``).
- Selectors read the JMS header names with ActiveMQ's types: ``JMSDeliveryMode`` is the string
  ``'PERSISTENT'`` or ``'NON_PERSISTENT'``, ``JMSRedelivered`` a boolean, ``JMSPriority``,
  ``JMSTimestamp`` and ``JMSExpiration`` numbers in ms (0 when there is none).
  ``JMSTimestamp`` is the ``timestamp`` the publisher set or the arrival time stamped below;
  an AMQP message's is its timestamp property in ms, 0 without one.
- A SEND to ``/queue/`` or ``/topic/`` without ``priority`` or ``timestamp`` gets JMS's
  defaults (:func:`jms_defaults`), so MESSAGE frames carry ``priority:4`` and the arrival
  ``timestamp`` in ms as ActiveMQ's do, ``JMSTimestamp > 0`` holds, and a restart queues it at
  level 4. ``/amq/queue/`` and ``/exchange/`` SENDs carry only what was sent, as RabbitMQ's
  (its own STOMP test suite checks MESSAGE frames exactly).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..broker.message import Message, Properties, QueueEntry
from .destinations import destination_header

__all__ = ["DEFAULT_PRIORITY", "MAX_TIMESTAMP_MS", "amqp_timestamp", "expires_ttl",
           "jms_defaults", "jms_timestamp", "now_ms", "selector_lookup"]

#: JMS's default priority (javax.jms.Message.DEFAULT_PRIORITY)
DEFAULT_PRIORITY = 4
#: an AMQP timestamp above this is taken as ms already (ActiveMQ clients send ms in
#: ``timestamp``; AMQP's unit is seconds): 10^11 s is the year 5138
_MS_TIMESTAMP = 10 ** 11


def now_ms() -> int:
    return int(time.time() * 1000)


def expires_ttl(expires: int, now: int) -> int | None:
    """The TTL in ms of a message whose JMSExpiration is *expires*; None if it never expires,
    -1 if it expired already."""
    if not expires:
        return None        # JMS: 0 = never expires
    left = expires - now
    return left if left > 0 else -1


#: the last second an AMQP timestamp can name (9999-12-31T23:59:59Z), in ms
MAX_TIMESTAMP_MS = 253402300799999


def amqp_timestamp(stamp: int) -> int:
    """The AMQP ``timestamp`` (seconds) of a STOMP ``timestamp`` header: ActiveMQ clients send
    ms (JMSTimestamp), RabbitMQ's send seconds; only ms reach past :data:`_MS_TIMESTAMP`."""
    return stamp // 1000 if stamp >= _MS_TIMESTAMP else stamp


def jms_defaults(props: Properties, now: int) -> None:
    """What ActiveMQ gives every message a client sends to a queue or topic and the SEND left
    out: JMS's priority 4, and JMSTimestamp, the time it arrived (ms). The timestamp is kept
    as the AMQP timestamp (seconds) and, in ms as ActiveMQ writes it, as the ``timestamp``
    header MESSAGE frames carry; both stay with a stored message."""
    if props.priority is None:
        props.priority = DEFAULT_PRIORITY
    if props.timestamp is None:
        props.timestamp = now // 1000
        headers = props.headers
        if headers is None:
            headers = props.headers = {}
        headers["timestamp"] = str(now)


def jms_timestamp(props: Properties) -> int:
    """JMSTimestamp in ms: the ``timestamp`` header as an ActiveMQ client sent it, else the
    AMQP timestamp (seconds) in ms, else 0."""
    sent = (props.headers or {}).get("timestamp")
    if sent is not None:
        try:
            return int(sent)
        except (TypeError, ValueError):
            pass
    stamp = props.timestamp
    return stamp * 1000 if stamp else 0


def _jms_expiration(props: Properties) -> int:
    value = (props.headers or {}).get("expires")
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii", "replace")
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


_JMS_HEADERS: dict[str, Callable[[Message, Properties, QueueEntry], Any]] = {
    "JMSDeliveryMode": lambda m, p, e: "PERSISTENT" if m.persistent else "NON_PERSISTENT",
    "JMSPriority": lambda m, p, e: p.priority if p.priority is not None else DEFAULT_PRIORITY,
    "JMSMessageID": lambda m, p, e: p.message_id,
    "JMSCorrelationID": lambda m, p, e: p.correlation_id,
    "JMSType": lambda m, p, e: p.type,
    "JMSTimestamp": lambda m, p, e: jms_timestamp(p),
    "JMSReplyTo": lambda m, p, e: p.reply_to,
    "JMSExpiration": lambda m, p, e: _jms_expiration(p),
    "JMSRedelivered": lambda m, p, e: bool(e.redelivered),
    "JMSDestination": lambda m, p, e: destination_header(m.exchange, m.routing_key),
}


def selector_lookup(entry: QueueEntry) -> Callable[[str], Any]:
    """The selector's view of one queued message: JMS names first, then its headers."""
    message = entry.message
    props = message.properties
    headers = props.headers or {}

    def lookup(name: str) -> Any:
        jms = _JMS_HEADERS.get(name)
        if jms is not None:
            return jms(message, props, entry)
        value = headers.get(name)
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).decode("utf-8", "replace")
        return value
    return lookup
