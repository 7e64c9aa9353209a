"""The one publish pipeline: what every publisher goes through on its way into a vhost.

AMQP channels, STOMP and MQTT sessions, the web console and in-process bridges (shovels,
federation links) all publish through a :class:`Publisher`, so the rules RabbitMQ applies in
``rabbit_channel`` hold whichever door a message comes in by:

1. the exchange must exist (404), the user needs ``write`` on it (403) and it must not be
   internal (403 "cannot publish to internal exchange ..."): :meth:`Publisher.exchange`;
   on a topic exchange the routing key must pass the user's topic permission (403 "write
   access to topic ..."; ``topic_permissions.py``), checked per message by :meth:`route`
   (one dict lookup when the user has none), or before by :meth:`authorise` where a
   publisher acts on the message first (an MQTT retained message, a scheduled or
   transactional publish);
2. a ``reply_to`` of ``amq.rabbitmq.reply-to`` is pointed at the publisher's reply
   subscription (direct reply-to, ``replyto.py``): :meth:`Publisher.publish`;
3. a default-exchange publish to a reply address goes straight to its requester, anything else
   is routed by the vhost; the :class:`~warren.broker.vhost.Routed` answer says which queues
   took it (``queues``), which refused it (``rejected``: nack), whether a mandatory publisher
   gets it back (``unroutable``) and whether the answer must wait for ``broker.sync()``
   (``stored``).

What stays with the caller is what differs per protocol: building the :class:`Message` from
its frames, the ``user_id`` check, confirms (``confirms.py``) and returns.

Publishes are counted here, so every door counts the same (``stats.py``): RabbitMQ's
``publish`` in the broker's totals and the publishing channel's counters, ``drop_unroutable`` or
(mandatory) ``return_unroutable``, and the exchange published to counts ``publish_in`` once and
``publish_out`` once per queue that took the message, as ``rabbit_channel`` counts them (an
exchange reached through an exchange-to-exchange binding counts neither).

A publisher is made per client channel/session (``Broker.publisher``) because checks passed are
remembered per exchange object, as RabbitMQ's channel caches permission checks: the AMQP publish
path is the benchmark path, and a stream of publishes to one exchange then costs one set lookup.
``user=None`` is the broker publishing on its own behalf (an internal bridge, the aliveness
check): no permission check, but internal exchanges are still refused, since they take messages
only through exchange-to-exchange bindings.

An in-process bridge (a shovel) publishing as the broker, acking its source only once each
message is safe, in order (``confirms.py``)::

    publisher = broker.publisher("/", None)      # or a User: checked as that user
    confirms = ConfirmTracker()
    # per message taken from the source, numbered seq:
    routed = publisher.publish(publisher.exchange("target"), message)
    confirms.insert(seq, source_tag, wait=routed.stored, ok=not routed.rejected)
    # once per batch (reactor turn): one store sync for everything that waits
    d = confirms.sync(broker.sync)                # None when nothing waits
    # now, and again when d fires: settle the source in order
    for seq, source_tag, ok in confirms.release():
        ...                                       # ack (ok) or nack the source
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model.errors import AccessRefused, NotFound
from .replyto import (REPLY_PREFIX, REPLY_TO, REPLY_TO_BYTES, ReplySubscription,
                      direct_reply_to)
from .topic_permissions import require_topic
from .vhost import Routed

if TYPE_CHECKING:
    from ..exchange.exchange import Exchange
    from .broker import Broker
    from ..model.message import Message
    from .users import User
    from .vhost import VirtualHost


class Publisher:
    """Publishing into one vhost as one user (None: the broker itself)."""

    __slots__ = ("broker", "vhost", "user", "client_id", "counts", "_totals", "_allowed",
                 "_replies", "_topics", "_topic_key", "__weakref__")

    def __init__(self, broker: "Broker", vhost: "VirtualHost", user: "User | None",
                 client_id: str | None = None, counts: dict[str, int] | None = None) -> None:
        self.broker = broker
        self.vhost = vhost
        self.user = user
        self.client_id = client_id              # MQTT: {client_id} in topic permissions
        self.counts = counts                    # the publishing channel's counters, if any
        self._totals = vhost.message_totals
        self._allowed: set[Exchange] = set()   # exchanges whose checks passed
        self._replies = direct_reply_to(broker)
        # the broker's topic permissions by (user, vhost): looked up per message, since they
        # may change while the channel is open; the broker itself (user None) has none
        self._topics = broker.topic_permissions.table if user is not None else {}
        # (no user: an empty table, so the key is never looked up)
        self._topic_key = (user.name if user is not None else "", vhost.name)

    def exchange(self, name: str) -> "Exchange":
        """The exchange called *name*, once this publisher may publish to it.

        Raises NotFound (404) or AccessRefused (403), in RabbitMQ's order: existence, write
        permission, internal."""
        vhost = self.vhost
        ex = vhost.exchanges.get(name)
        if ex is None:
            raise NotFound(f"no exchange '{name}' in vhost '{vhost.name}'")
        if ex not in self._allowed:
            if self.user is not None:
                self.broker.check(self.user, vhost.name, "write", "exchange", name)
            if ex.internal:
                raise AccessRefused(
                    f"cannot publish to internal exchange '{name}' in vhost '{vhost.name}'")
            self._allowed.add(ex)
        return ex

    def authorise(self, exchange: "Exchange", routing_key: str) -> None:
        """Raise 403 unless this publisher's topic permissions let it publish with
        *routing_key* to *exchange* (``route`` checks every message itself)."""
        granted = self._topics.get(self._topic_key)
        if granted:
            user, vhost = self._topic_key
            require_topic(granted, exchange, "write", routing_key, user, vhost, self.client_id)

    def reply_to(self, message: "Message", subscription: ReplySubscription | None) -> "Message":
        """*message* with a ``reply_to`` of ``amq.rabbitmq.reply-to`` pointed at *subscription*.

        Encoded properties are searched for the name before anything is decoded, so the
        usual publish never decodes its properties here. Raises 406 "fast reply consumer does
        not exist" when the pseudo-queue is named without a subscription (RabbitMQ)."""
        raw = message.raw_props
        if raw is None:
            # built from neutral properties (STOMP, MQTT): a field to compare, no call
            if message.properties.reply_to != REPLY_TO:
                return message
        elif REPLY_TO_BYTES not in raw:
            return message
        return self._replies.rewrite(message, subscription)

    def route(self, exchange: "Exchange", message: "Message",
              mandatory: bool = False) -> Routed:
        """Route a checked, final message: reply addresses to their requester, the rest by
        the vhost. A delivered reply counts as routed; an unknown reply address routes
        nowhere (a mandatory publisher gets it back: *mandatory* only decides how that is
        counted). Raises 403 when the user's topic permission refuses the routing key
        (:meth:`authorise`)."""
        topics = self._topics
        if topics and topics.get(self._topic_key):   # none set anywhere: one truth test
            self.authorise(exchange, message.routing_key)
        if not exchange.name and message.routing_key.startswith(REPLY_PREFIX):
            sub = self._replies.deliver(message)
            routed = Routed(queues=[sub] if sub is not None else [])
        else:
            # the queues it reaches may ask who publishes (``vhost.publishing``): a stream
            # gives each publisher its own writer id, as RabbitMQ gives each channel one
            vhost = self.vhost
            vhost.publishing = self
            try:
                routed = vhost.publish(exchange, message)
            finally:
                vhost.publishing = None
        # counted here, in line: this runs for every message of every protocol
        totals, counts = self._totals, self.counts
        totals["publish"] += 1
        if counts is not None:
            counts["publish"] += 1
        queues = routed.queues
        if not queues and not routed.rejected:     # unroutable
            key = "return_unroutable" if mandatory else "drop_unroutable"
            totals[key] += 1
            if counts is not None:
                counts[key] += 1
        exchange.published_in += 1
        exchange.published_out += len(queues)
        return routed

    def confirmed(self, n: int) -> None:
        """*n* publishes were confirmed to the publisher (RabbitMQ's ``confirm``: acks, not
        nacks), counted by the front end as it writes them."""
        self._totals["confirm"] += n
        if self.counts is not None:
            self.counts["confirm"] += n

    def publish(self, exchange: "Exchange", message: "Message",
                reply_to: ReplySubscription | None = None) -> Routed:
        """:meth:`reply_to` then :meth:`route` (not mandatory): one message from a checked
        exchange (:meth:`exchange`) into the vhost."""
        return self.route(exchange, self.reply_to(message, reply_to))
