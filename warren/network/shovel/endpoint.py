"""The two ends of a shovel, behind one small interface, remote (a Link) or in-process.

A shovel only moves messages: it takes each :class:`Carried` message from a :class:`Source`,
hands it to a :class:`Destination`, and tells the source to forget it when the ack mode says
so. Where the ends are does not matter to it: a URI with a host is another broker reached
through a :class:`~warren.network.link.Link` (:mod:`.remote`); ``amqp://`` with no host is
this broker, reached through the core directly (:mod:`.local`), as RabbitMQ's direct
connection. Both sides report loss through ``lost(reason)``; the shovel then restarts both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred


@dataclass(slots=True)
class Carried:
    """One message on its way through a shovel.

    ``properties`` are the AMQP basic properties by their AMQP names (``headers``,
    ``delivery_mode``, ``type`` ...), absent ones left out; ``tag`` is the source's handle for
    ``ack``/``requeue``, meaningless to anyone else. ``amqp1_sections``: what of an AMQP 1.0
    publish 0-9-1 has no form for (its subject, footer, other annotations:
    ``Message.amqp1_sections``), which only a source in this broker has and only a
    destination in it can keep: a 1.0 receiver there gets the message whole, as RabbitMQ 4's
    shovel over AMQP 1.0 hands it on. Over 0-9-1 to another broker only the 0-9-1 form
    crosses, as with RabbitMQ 4's 0-9-1 shovel: properties, headers (application properties
    and ``x-`` annotations), the type ``amqp-1.0`` and the body with its footer.
    """

    exchange: str
    routing_key: str
    properties: dict[str, Any]
    body: bytes
    tag: Any
    amqp1_sections: bytes | None = None


class Source(Protocol):
    """Where a shovel takes messages from (a queue, or an exchange through its own queue)."""

    #: the URI to show (no credentials)
    uri: str

    def open(self, deliver: Callable[[Carried], None], lost: Callable[[str], None]
             ) -> Deferred:
        """Connect and declare what the definition needs, without consuming yet.

        Fires with the number of messages in the source queue (what ``delete-after:
        queue-length`` moves), or errbacks with the reason it could not.
        """

    def consume(self) -> Deferred:
        """Start delivering (the shovel has set its ``delete-after`` budget by now)."""

    def ack(self, tag: Any) -> None:
        """The message is safe at the destination: the source may forget it."""

    def requeue(self, tag: Any) -> None:
        """Give the message back to the source queue, unmoved (past ``delete-after``)."""

    def close(self) -> Deferred:
        """Stop consuming and let go; unacked messages go back to the source queue."""


class Destination(Protocol):
    """Where a shovel publishes to."""

    uri: str

    def open(self, lost: Callable[[str], None]) -> Deferred:
        """Connect and declare the destination queue when the definition names one."""

    def publish(self, exchange: str, routing_key: str, properties: dict[str, Any],
                body: bytes, amqp1_sections: bytes | None = None) -> Deferred:
        """Fires once the destination took responsibility (confirm); errbacks on refusal.
        ``amqp1_sections`` (see :class:`Carried`) is kept by a destination in this broker."""

    @property
    def writable(self) -> bool:
        """False while the destination pushes back (blocked, socket full)."""

    def close(self) -> Deferred: ...
