"""Shovel ends on another broker (warren or RabbitMQ), each over its own :class:`Link`.

What each end declares on connecting is RabbitMQ's (``rabbit_amqp091_shovel``): a source or
destination queue is looked up with a passive declare and declared durable (with
``*-queue-args``) only when it does not exist, so an existing queue of another type or with
other arguments is used as it is; a source exchange gets an exclusive server-named queue bound
with ``src-exchange-key``. The passive declare goes on a spare channel of the link
(:meth:`Link.declare_unless_found`), so its NOT_FOUND closes only that one and the declare
follows at once on the link's channel: the shovel runs on the first connection, not one
``reconnect-delay`` later. Any other refusal (ACCESS_REFUSED, RESOURCE_LOCKED...) takes the
link down with the server's words as its reason, and it retries after the delay.

Connection failures are the link's business (it tries each URI in turn, then waits
``reconnect-delay``); the shovel hears of them through ``on_state`` for its status, and
through ``lost`` once a connection that was serving goes away.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred

from ..link import Link, LinkChannel, LinkState
from ..uri import AmqpURI
from .definition import ShovelDefinition
from .endpoint import Carried


class _RemoteEnd:
    """What both remote ends share: one link, its first readiness, loss reporting."""

    def __init__(self, uris: list[AmqpURI], definition: ShovelDefinition, reactor: Any,
                 role: str, on_state: Callable[[str, str], None]) -> None:
        self.definition = definition
        self.uri = uris[0].redacted
        self.channel: LinkChannel | None = None
        self._opened: Deferred | None = None
        self._lost: Callable[[str], None] | None = None
        self._on_state = on_state
        # RabbitMQ's shovel tries again every reconnect-delay seconds, without backoff: a
        # remote down for ten minutes is picked up again within that delay once it is back
        delay = definition.reconnect_delay or 1.0
        self.link = Link(uris, self, reconnect_delay=delay, max_reconnect_delay=delay,
                         name=f"shovel {definition.vhost}/{definition.name} {role}",
                         reactor=reactor, on_state=self._state)

    def _state(self, state: LinkState, reason: str) -> None:
        if self.link.uri is not None:
            self.uri = self.link.uri.redacted
        self._on_state(state.value, reason)

    def _start(self, lost: Callable[[str], None]) -> Deferred:
        self._lost = lost
        self._opened = Deferred()
        self.link.start()
        return self._opened

    def _ready(self, result: Any) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.callback(result)

    def _declare(self, channel: LinkChannel, queue: str, arguments: dict) -> Deferred:
        """Passive declare on a spare channel; when the queue is missing, a durable declare
        with ``arguments`` on ``channel``."""
        return self.link.declare_unless_found(
            lambda spare: spare.declare_queue(queue, passive=True),
            lambda: channel.declare_queue(queue, durable=True, arguments=arguments or None))

    def on_ready(self, channel: LinkChannel) -> None:
        """The link is up: each end declares and starts what it needs."""
        raise NotImplementedError

    def on_down(self, reason: str) -> None:
        self.channel = None
        if self._opened is None and self._lost is not None:
            self._lost(reason)  # a serving connection went away

    def close(self) -> Deferred:
        self._lost = None
        self._opened = None
        return self.link.close()


class RemoteSource(_RemoteEnd):
    def __init__(self, uris: list[AmqpURI], definition: ShovelDefinition, reactor: Any,
                 on_state: Callable[[str, str], None]) -> None:
        super().__init__(uris, definition, reactor, "source", on_state)
        self._deliver: Callable[[Carried], None] | None = None
        self._queue = ""             # the queue declared on the current connection

    def open(self, deliver: Callable[[Carried], None], lost: Callable[[str], None]
             ) -> Deferred:
        self._deliver = deliver
        return self._start(lost)

    def on_ready(self, channel: LinkChannel) -> None:
        self.channel = channel
        d = self.definition
        queue = d.src_queue
        if queue is not None:
            declared = self._declare(channel, queue, d.src_queue_args)
            declared.addCallback(lambda ok: self._declared(queue, ok.message_count))
        else:
            declared = channel.declare_queue("", exclusive=True,
                                             arguments=d.src_queue_args or None)

            def bind(ok: Any) -> Deferred:
                bound = channel.bind(ok.queue, d.src_exchange or "", d.src_exchange_key)
                return bound.addCallback(lambda _: self._declared(ok.queue, 0))
            declared.addCallback(bind)
        declared.addErrback(lambda _failure: None)  # the link reconnects

    def _declared(self, queue: str, count: int) -> None:
        self._queue = queue
        self._ready(count)

    def consume(self) -> Deferred:
        channel = self.channel
        if channel is None:
            return Deferred()  # the link is down: the shovel hears it through lost()
        no_ack = self.definition.ack_mode == "no-ack"
        return channel.consume(self._queue, self.definition.prefetch,
                               lambda event: self._delivered(channel, event), no_ack=no_ack)

    def _delivered(self, channel: LinkChannel, event: Any) -> None:
        if self._deliver is not None:
            self._deliver(Carried(event.exchange, event.routing_key, event.properties,
                                  event.body, (channel, event.delivery_tag)))

    def ack(self, tag: tuple[LinkChannel, int]) -> None:
        channel, delivery_tag = tag
        if channel is self.channel:
            channel.ack(delivery_tag)  # a tag of a lost connection is simply forgotten

    def requeue(self, tag: tuple[LinkChannel, int]) -> None:
        """Left unacked: the source broker requeues it when the shovel's link closes."""

    def close(self) -> Deferred:
        self._deliver = None
        return super().close()


class RemoteDestination(_RemoteEnd):
    def __init__(self, uris: list[AmqpURI], definition: ShovelDefinition, reactor: Any,
                 on_state: Callable[[str, str], None]) -> None:
        super().__init__(uris, definition, reactor, "destination", on_state)

    def open(self, lost: Callable[[str], None]) -> Deferred:
        return self._start(lost)

    def on_ready(self, channel: LinkChannel) -> None:
        self.channel = channel
        d = self.definition
        if d.dest_queue is None:
            self._ready(None)
            return
        declared = self._declare(channel, d.dest_queue, d.dest_queue_args)
        declared.addCallbacks(lambda _ok: self._ready(None), lambda _failure: None)

    @property
    def writable(self) -> bool:
        return self.link.writable

    def publish(self, exchange: str, routing_key: str, properties: dict[str, Any],
                body: bytes, amqp1_sections: bytes | None = None) -> Deferred:
        # only the 0-9-1 form crosses to another broker (Carried)
        return self.link.publish(exchange, routing_key, properties, body)
