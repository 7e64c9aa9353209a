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
- Selectors read the JMS header names with ActiveMQ's types (``broker/jms.py``, shared with
  durable subscriptions' queues); STOMP adds ``JMSDestination`` in its own spelling.
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

from ..broker.jms import DEFAULT_PRIORITY, entry_lookup
from ..model.message import Properties, QueueEntry
from .destinations import destination_header

__all__ = ["DEFAULT_PRIORITY", "MAX_TIMESTAMP_MS", "amqp_timestamp", "expires_ttl",
           "jms_defaults", "now_ms", "selector_lookup"]

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


#: what only STOMP can name: the destination as a STOMP client writes it
_STOMP_NAMES = {
    "JMSDestination": lambda m: destination_header(m.exchange, m.routing_key),
}


def selector_lookup(entry: QueueEntry) -> Callable[[str], Any]:
    """A STOMP consumer's selector view of one queued message (``broker/jms.py``)."""
    return entry_lookup(entry, _STOMP_NAMES)
