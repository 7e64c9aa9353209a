"""AMQP 1.0 addresses as RabbitMQ 4 reads them, into a queue or an exchange and key.

v2 (names percent-encoded): ``/queues/Q``; ``/exchanges/X/K``, or ``/exchanges/X`` with the
message's subject as the key. v1 (deprecated in RabbitMQ 4, still used by older clients; names
as written): ``/amq/queue/Q``; ``/exchange/X/K`` or ``/exchange/X``; ``/topic/K`` (``amq.topic``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote


class BadAddress(ValueError):
    """Not an address this broker knows (``amqp:invalid-field``)."""


@dataclass(frozen=True)
class Address:
    queue: str | None = None          # a queue by name, reached through the default exchange
    exchange: str = ""                # else an exchange ...
    key: str | None = None            # ... and its key; None: the message's subject


def parse_address(address: object) -> Address:
    if not isinstance(address, str) or not address.startswith("/"):
        raise BadAddress(f"bad address '{address}'")
    parts = address[1:].split("/")
    head, rest = parts[0], parts[1:]
    if head == "queues" and len(rest) == 1 and rest[0]:
        return Address(queue=unquote(rest[0]))
    if head == "exchanges" and 1 <= len(rest) <= 2 and rest[0]:
        name = unquote(rest[0])
        if name == "amq.default":
            raise BadAddress("the default exchange is reached through /queues/<name>")
        return Address(exchange=name, key=unquote(rest[1]) if len(rest) == 2 else None)
    if head == "amq" and len(rest) == 2 and rest[0] == "queue" and rest[1]:
        return Address(queue=rest[1])
    if head == "exchange" and 1 <= len(rest) <= 2 and rest[0]:
        return Address(exchange=rest[0], key=rest[1] if len(rest) == 2 else None)
    if head == "topic" and len(rest) == 1 and rest[0]:
        return Address(exchange="amq.topic", key=rest[0])
    raise BadAddress(f"bad address '{address}'")
