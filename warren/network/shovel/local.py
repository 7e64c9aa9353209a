"""Shovel ends in this broker (``amqp://`` with no host), through the core, no socket.

RabbitMQ's shovel reaches its own node through a *direct* connection: no TCP, no login (the
acting user was checked when the shovel was defined). Here the source is a core consumer of the
queue and the destination publishes into the vhost, so an in-process shovel costs no framing
at all. As over the wire: a missing source or destination queue is declared durable (with the
``*-queue-args`` given); a source exchange gets a private queue bound with
``src-exchange-key``, deleted when the shovel stops; a publish is confirmed once the store
synced it; unacked messages go back to the source queue when the shovel stops.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, succeed

from ...broker.broker import Broker
from ...broker.queue import Queue
from ...model.errors import BrokerError
from ...model.message import Message, Properties, QueueEntry
from ..properties import RawProperties
from ..uri import LocalBroker
from .definition import ShovelDefinition
from .endpoint import Carried

_PROPERTY_NAMES = tuple(f.name for f in fields(Properties))


def properties_of(message: Message) -> dict[str, Any]:
    """A message's basic properties as a dict of the ones set (AMQP names), remembering the
    message's encoded form so that a message passed on unchanged keeps its exact bytes."""
    props = message.properties
    return RawProperties({name: value for name in _PROPERTY_NAMES
                          if (value := getattr(props, name)) is not None},
                         raw=message.raw_props)


class PublishRefused(Exception):
    """The destination refused a message (a full ``reject-publish`` queue, a store failure)."""


class LocalEndFailed(Exception):
    """An in-process end could not open; the text is the broker's (``NOT_FOUND - ...``)."""


def _refusal(error: BrokerError, kind: type[Exception] = LocalEndFailed) -> Deferred:
    """A failed Deferred whose message names the AMQP error, as a remote end's would."""
    return fail(kind(error.reply_text))


class LocalSource:
    """Consumes the source queue of this broker as a core consumer with ``prefetch`` credit."""

    exclusive = False
    priority = 0

    def __init__(self, broker: Broker, uri: LocalBroker, definition: ShovelDefinition) -> None:
        self.broker = broker
        self.uri = uri.redacted
        self.vhost_name = uri.vhost
        self.definition = definition
        self.tag = f"shovel {definition.name}"
        self.no_ack = definition.ack_mode == "no-ack"
        self.arguments: dict[str, Any] = {}
        self.queue: Queue | None = None
        self._own_queue = False      # a private queue for src-exchange, deleted on close
        self._unacked: dict[int, QueueEntry] = {}  # id(entry) -> entry (entries are unhashable)
        self._deliver: Callable[[Carried], None] | None = None
        self._lost: Callable[[str], None] | None = None
        #: more deliveries allowed (delete-after counts down; None = no limit)
        self.budget: int | None = None
        #: the shovel's flow control (destination writable, publishes in flight), or None
        self.may_take: Callable[[], bool] | None = None

    # ---------------------------------------------------------------- Source
    def open(self, deliver: Callable[[Carried], None], lost: Callable[[str], None]
             ) -> Deferred:
        d = self.definition
        try:
            vh = self.broker.vhost(self.vhost_name)
            if d.src_queue is not None:
                queue = vh.queues.get(d.src_queue)
                if queue is None:
                    queue = vh.declare_queue(d.src_queue, durable=True,
                                             arguments=d.src_queue_args)
            else:
                queue = vh.declare_queue(vh.new_queue_name(), exclusive_owner=self,
                                         auto_delete=False, arguments=d.src_queue_args,
                                         check_reserved=False)
                self._own_queue = True
                self.queue = queue
                vh.bind(d.src_exchange or "", queue, d.src_exchange_key)
        except BrokerError as error:
            self._drop_own_queue()
            return _refusal(error)
        self.queue = queue
        self._deliver, self._lost = deliver, lost
        return succeed(queue.message_count)

    def consume(self) -> Deferred:
        if self.queue is None:
            return fail(RuntimeError("source closed"))
        try:
            self.queue.add_consumer(self)
        except BrokerError as error:  # exclusive use by another consumer
            return fail(error)
        return succeed(None)

    def ack(self, tag: QueueEntry) -> None:
        if self._unacked.pop(id(tag), None) is not None and self.queue is not None:
            self.queue.ack([tag])

    def requeue(self, tag: QueueEntry) -> None:
        if self._unacked.pop(id(tag), None) is not None and self.queue is not None:
            self.queue.requeue([tag])

    def close(self) -> Deferred:
        queue, self.queue = self.queue, None
        self._deliver = self._lost = None
        if queue is not None:
            queue.remove_consumer(self)
            if self._unacked and not queue.deleted:
                entries = sorted(self._unacked.values(), key=lambda e: e.seq)
                self._unacked.clear()
                queue.requeue(entries)
            self.queue = queue
            self._drop_own_queue()
            self.queue = None
        return succeed(None)

    # ---------------------------------------------------------------- core Consumer
    def has_credit(self) -> bool:
        if self.budget is not None and self.budget <= 0:
            return False
        if self.may_take is not None and not self.may_take():
            return False
        return len(self._unacked) < self.definition.prefetch and self._deliver is not None

    def deliver(self, queue: Queue, entry: QueueEntry) -> None:
        if self.budget is not None:
            self.budget -= 1
        if not self.no_ack:
            self._unacked[id(entry)] = entry
        m = entry.message
        if self._deliver is not None:
            self._deliver(Carried(m.exchange, m.routing_key, properties_of(m), m.body, entry,
                                  m.amqp1_sections))

    def cancelled(self, queue: Queue) -> None:
        self._unacked.clear()  # the queue is gone with them
        lost, self._lost = self._lost, None
        self.queue = None
        if lost is not None:
            lost(f"source queue '{queue.name}' was deleted")

    def resume(self) -> None:
        """Credit came back (an ack, a larger budget, a writable destination): dispatch."""
        if self.queue is not None:
            self.queue.dispatch()

    def _drop_own_queue(self) -> None:
        if self._own_queue and self.queue is not None and not self.queue.deleted:
            try:
                self.queue.vhost.delete_queue(self.queue.name)
            except BrokerError:
                pass
        self._own_queue = False


class LocalDestination:
    """Publishes into a vhost of this broker; a publish is confirmed once it is durable."""

    def __init__(self, broker: Broker, uri: LocalBroker, definition: ShovelDefinition) -> None:
        self.broker = broker
        self.uri = uri.redacted
        self.vhost_name = uri.vhost
        self.definition = definition
        self._open = False
        self._publisher: Any = None    # the core's publish pipeline for this vhost

    def open(self, lost: Callable[[str], None]) -> Deferred:
        d = self.definition
        try:
            vh = self.broker.vhost(self.vhost_name)
            if d.dest_queue is not None and d.dest_queue not in vh.queues:
                vh.declare_queue(d.dest_queue, durable=True, arguments=d.dest_queue_args)
        except BrokerError as error:
            return _refusal(error)
        self._open = True
        return succeed(None)

    @property
    def writable(self) -> bool:
        broker = self.broker
        return self._open and not broker.blocked and not broker.store_alarm

    def publish(self, exchange: str, routing_key: str, properties: dict[str, Any],
                body: bytes, amqp1_sections: bytes | None = None) -> Deferred:
        broker = self.broker
        try:
            if self._publisher is None:
                # no user: the shovel's definer was checked when the shovel was defined
                self._publisher = broker.publisher(self.vhost_name, None)
            raw = properties.raw if isinstance(properties, RawProperties) else None
            if raw is not None:   # passed on unchanged: the bytes the source had
                msg = Message(exchange, routing_key, body, codec=broker.codec, raw_props=raw)
            else:
                msg = Message(exchange, routing_key, body, codec=broker.codec,
                              props=Properties(**properties))
            msg.amqp1_sections = amqp1_sections   # an AMQP 1.0 publish stays whole
            routed = self._publisher.publish(self._publisher.exchange(exchange), msg)
        except BrokerError as error:
            self._publisher = None  # the vhost may be gone: look it up again next time
            return _refusal(error, PublishRefused)
        if routed.rejected:
            return fail(PublishRefused(f"a destination queue refused the message "
                                       f"({routed.rejected[0].name} is full)"))
        return broker.sync() if routed.stored else succeed(None)

    def close(self) -> Deferred:
        self._open = False
        return succeed(None)
