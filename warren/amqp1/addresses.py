"""AMQP 1.0 addresses as RabbitMQ and ActiveMQ read them, into a queue or an exchange and key.

Three families, so that clients written for either broker find the same queues here:

- RabbitMQ 4's v2 (names percent-encoded): ``/queues/Q`` (Q must exist); ``/exchanges/X/K``,
  or ``/exchanges/X`` with the empty key (RabbitMQ 4's ``parse_target_v2_string``: only the
  v1 forms below route by the subject). A receiver reads queues only.
- RabbitMQ 3's v1 (deprecated in RabbitMQ 4, still what its 3.x-era clients send; names as
  written): ``/amq/queue/Q`` (Q must exist); ``/queue/Q`` and a bare ``Q`` (Q declared when
  missing, durable only if the terminus asks for a durable node, as RabbitMQ 3 declares it);
  ``/queue`` to send by subject through the default exchange; ``/exchange/X/K`` or
  ``/exchange/X``; ``/topic/K`` (``amq.topic``). A receiver from an exchange or a topic reads
  a queue of its own bound with the key (``/exchange/X`` binds with the empty key).
- ActiveMQ's: ``queue://Q``, ``topic://K``, and a bare name whose terminus carries the
  ``queue`` or ``topic`` capability (what Qpid JMS sends). Its queues keep persistent messages
  across restarts, so a queue made for them is durable; a topic is ``amq.topic`` with the name
  as the key, as STOMP's ``/topic/``.

A sender whose target has no address (the anonymous terminus, offered as ``ANONYMOUS-RELAY``)
names a node per message in ``properties.to``; that takes RabbitMQ 4's v2 forms only, as
RabbitMQ 4 reads it (``to_route``), because a ``to`` is never declared into being.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

#: a percent sign not followed by two hex digits: RabbitMQ's URL decoding refuses the address
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadAddress(ValueError):
    """Not an address this broker knows (``amqp:invalid-field``)."""


@dataclass(frozen=True)
class Address:
    queue: str | None = None          # a queue by name, reached through the default exchange
    exchange: str = ""                # else an exchange ...
    key: str | None = None            # ... and its key; None: the message's subject
    declare: bool = False             # the queue is declared when missing (v1, ActiveMQ)
    durable: bool | None = None       # how it is declared; None: as the terminus asks
    own_queue: bool = False           # a receiver from the exchange gets a queue of its own


def parse_address(address: object, capabilities: Iterable[str] = ()) -> Address:
    if not isinstance(address, str) or not address:
        raise BadAddress(f"bad address '{address}'")
    if address.startswith("queue://") and len(address) > 8:
        return Address(queue=address[8:], declare=True, durable=True)
    if address.startswith("topic://") and len(address) > 8:
        return Address(exchange="amq.topic", key=address[8:], own_queue=True)
    if not address.startswith("/"):
        caps = set(capabilities or ())
        if "topic" in caps:
            return Address(exchange="amq.topic", key=address, own_queue=True)
        return Address(queue=address, declare=True, durable=True if "queue" in caps else None)
    parts = address[1:].split("/")
    head, rest = parts[0], parts[1:]
    if head == "queues" and len(rest) == 1 and rest[0]:
        return Address(queue=unquote(rest[0]))
    if head == "exchanges" and 1 <= len(rest) <= 2 and rest[0]:
        name = unquote(rest[0])
        if name == "amq.default":
            raise BadAddress("the default exchange is reached through /queues/<name>")
        return Address(exchange=name, key=unquote(rest[1]) if len(rest) == 2 else "")
    if head == "amq" and len(rest) == 2 and rest[0] == "queue" and rest[1]:
        return Address(queue=rest[1])
    if head == "queue" and len(rest) == 1 and rest[0]:
        return Address(queue=rest[0], declare=True)
    if head == "queue" and not rest:
        return Address(exchange="", key=None)
    if head == "exchange" and 1 <= len(rest) <= 2 and rest[0]:
        return Address(exchange=rest[0], key=rest[1] if len(rest) == 2 else None,
                       own_queue=True)
    if head == "topic" and len(rest) == 1 and rest[0]:
        return Address(exchange="amq.topic", key=rest[0], own_queue=True)
    raise BadAddress(f"bad address '{address}'")


def to_route(to: object) -> tuple[str, str]:
    """The exchange and routing key of a ``to`` address, as RabbitMQ 4 reads one sent on its
    anonymous terminus: ``/exchanges/X/K``, ``/exchanges/X`` (the empty key, as for a link's
    target) and ``/queues/Q`` (the default exchange with key Q; the queue need
    not exist, a message for a missing one is unroutable). Anything else raises BadAddress in
    RabbitMQ 4's words (it rejects the message with ``amqp:precondition-failed``)."""
    if not isinstance(to, str):
        raise BadAddress("anonymous terminus requires 'to' address to be set")
    bad = BadAddress(f"bad 'to' address string: {to}")
    if _BAD_ESCAPE.search(to):
        raise bad
    if to.startswith("/exchanges/"):
        parts = to[len("/exchanges/"):].split("/")
        if len(parts) > 2 or parts[0] in ("", "amq.default"):
            raise bad
        return unquote(parts[0]), unquote(parts[1]) if len(parts) == 2 else ""
    if to.startswith("/queues/") and len(to) > len("/queues/"):
        return "", unquote(to[len("/queues/"):])
    raise bad
