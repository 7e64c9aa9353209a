"""Direct reply-to (RabbitMQ direct-reply-to.html): RPC replies without a reply queue.

A requester consumes, in no-ack mode, from the pseudo-queue ``amq.rabbitmq.reply-to`` and
publishes requests with ``reply_to = amq.rabbitmq.reply-to`` on the same channel. The broker
rewrites that property to ``amq.rabbitmq.reply-to.<token>``, an address naming this very
subscription; a server replies by publishing to the default exchange with that routing key and
the reply goes straight to the requester's consumer, through no queue. When the requester is
gone the reply routes nowhere (a ``mandatory`` publisher gets it back).

This module is protocol-neutral: a front end hands :meth:`DirectReplyTo.subscribe` its ordinary
consumer object (``tag``, ``no_ack``, ``deliver(queue, entry)``; the queue passed is None) and
passes that subscription to its :class:`~warren.broker.publish.Publisher`, which rewrites
``reply_to`` and routes replies to reply addresses for every front end. The table of
subscriptions is broker-wide (tokens are unguessable), kept on the broker by
:func:`direct_reply_to`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from ..model.errors import PreconditionFailed
from ..model.message import Message, QueueEntry

#: the pseudo-queue a requester consumes from, and the reply_to value it publishes with
REPLY_TO = "amq.rabbitmq.reply-to"
#: prefix of the reply addresses the broker hands out
REPLY_PREFIX = REPLY_TO + "."
#: the bytes a front end may look for in encoded properties before decoding them
REPLY_TO_BYTES = REPLY_TO.encode()


@dataclass(eq=False, slots=True)
class ReplySubscription:
    """One requester's consumer on the pseudo-queue and the address replies go to."""

    address: str    # amq.rabbitmq.reply-to.<token>
    consumer: Any   # the front end's consumer (no_ack)

    @property
    def tag(self) -> str:
        return self.consumer.tag

    @property
    def kind(self) -> str:
        return "reply-to"


class DirectReplyTo:
    """Reply addresses -> subscriptions, for the whole broker."""

    def __init__(self) -> None:
        self._by_address: dict[str, ReplySubscription] = {}

    def subscribe(self, consumer: Any) -> ReplySubscription:
        """basic.consume on the pseudo-queue; RabbitMQ insists on no-ack."""
        if not consumer.no_ack:
            raise PreconditionFailed("reply consumer cannot acknowledge")
        address = REPLY_PREFIX + secrets.token_urlsafe(24)
        sub = ReplySubscription(address, consumer)
        self._by_address[address] = sub
        return sub

    def unsubscribe(self, sub: ReplySubscription | None) -> None:
        if sub is not None:
            self._by_address.pop(sub.address, None)

    def exists(self, address: str) -> bool:
        return address in self._by_address

    def rewrite(self, message: Message, sub: ReplySubscription | None) -> Message:
        """The message to route: ``reply_to`` pointed at ``sub`` when it names the pseudo-queue.

        Raises 406 as RabbitMQ does when the publishing channel has no reply consumer.
        """
        if message.properties.reply_to != REPLY_TO:
            return message
        if sub is None:
            raise PreconditionFailed("fast reply consumer does not exist")
        props = message.properties.copy(reply_to=sub.address)
        reply = Message(message.exchange, message.routing_key, message.body,
                        codec=message.codec, props=props, persistent=message.persistent,
                        priority=message.priority, ttl=message.ttl)
        reply.amqp1_sections = message.amqp1_sections
        return reply

    def deliver(self, message: Message) -> ReplySubscription | None:
        """Hand a reply to its requester; None when the address is unknown (gone)."""
        sub = self._by_address.get(message.routing_key)
        if sub is None:
            return None
        sub.consumer.deliver(None, QueueEntry(message, 0))
        return sub


def direct_reply_to(broker: Any) -> DirectReplyTo:
    """The broker's reply table (created on first use, so the broker needs no knowledge)."""
    table = getattr(broker, "direct_reply_to", None)
    if table is None:
        table = DirectReplyTo()
        broker.direct_reply_to = table
    return table

