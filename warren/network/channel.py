"""The channel a :class:`~warren.network.link.Link` user gets: one per connection.

Channel 1 in confirm mode, with the calls a bridge makes (publish, consume, ack, declare,
bind). It lives exactly as long as its connection: afterwards its publishes fail with
:class:`LinkDown` and ``ack`` does nothing, because delivery tags only mean something on the
connection that delivered them (an old tag acked on a new channel is a PRECONDITION_FAILED
channel error, and might ack the wrong message).

The same class serves the link's *spare* channels (numbers from 2 up, not in confirm mode):
short-lived channels for a call the server may refuse, such as a passive declare of a queue
that may be missing. The server's refusal closes only that channel, so the link's channel 1
and its consumers and publishes carry on (RabbitMQ's shovels and federation links probe on
such throw-away channels).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from twisted.internet import defer

from . import client as amqp

if TYPE_CHECKING:
    from .protocol import AmqpClientProtocol

CHANNEL = 1


@dataclass(slots=True)
class LinkCounters:
    """What a link did, for status displays: counted by the link (connections, returns) and
    by the channel of each connection (publishes, confirms, deliveries, acks)."""

    connects: int = 0          # connections that reached on_ready
    reconnects: int = 0        # ... of which came back after a loss or failure
    failures: int = 0          # attempts that failed or connections lost
    published: int = 0
    confirmed: int = 0
    nacked: int = 0
    returned: int = 0
    delivered: int = 0
    acked: int = 0


class ChannelOwner(TypingProtocol):
    """What a channel asks of the link it belongs to (a :class:`~warren.network.link.Link`)."""

    reason: str                # why the link is not up, for LinkDown
    counters: LinkCounters

    @property
    def writable(self) -> bool: ...


class LinkDown(Exception):
    """The connection a publish or RPC was made on is gone (the text says why)."""


class PublishNacked(Exception):
    """The server answered a publish with Basic.Nack: it did not take the message."""


class RemoteClosed(Exception):
    """The server closed the channel or connection while an RPC waited."""

    def __init__(self, reply_code: int, reply_text: str) -> None:
        super().__init__(f"{reply_code} {reply_text}")
        self.reply_code = reply_code
        self.reply_text = reply_text


class UnexpectedReply(Exception):
    """The server's reply does not fit what we asked: a protocol fault on this link."""


class LinkChannel:
    """Channel 1 of one connection, in confirm mode: what ``on_ready`` hands the user.

    Synchronous methods (declare, bind, consume) return Deferreds fired with the reply; the
    server answers them in order, so one FIFO matches replies to callers.
    """

    def __init__(self, link: ChannelOwner, protocol: AmqpClientProtocol,
                 number: int = CHANNEL) -> None:
        self.number = number
        self._link = link
        self._protocol = protocol
        self._client = protocol.client
        self._dead = False
        self._rpcs: collections.deque[tuple[str, defer.Deferred]] = collections.deque()
        self._unconfirmed: collections.OrderedDict[int, defer.Deferred] = \
            collections.OrderedDict()
        self._held: collections.deque[tuple[tuple, defer.Deferred]] = collections.deque()
        self._consumers: dict[str, Callable[[amqp.Delivery], Any]] = {}
        self._tags = itertools.count(1)

    @property
    def alive(self) -> bool:
        """False from the moment the connection starts to go, not only once it is gone:
        events already read in the same batch may still call back into the user."""
        return (not self._dead and self._protocol.lost_reason is None
                and self._client.state is amqp.State.OPEN)

    @property
    def server_properties(self) -> dict:
        """What the server said of itself in Connection.Start (``cluster_name`` ...)."""
        return self._client.server_properties

    # -- user API
    def publish(self, exchange: str, routing_key: str, properties: dict | None,
                body: bytes) -> defer.Deferred:
        """Publish in confirm mode; the Deferred fires on Basic.Ack, errbacks with
        :class:`PublishNacked` on Basic.Nack or :class:`LinkDown` if the connection goes.

        While the server has blocked the connection or the transport's buffer is full the
        message is held here, unsent; the user's prefetch bounds how many can wait.
        """
        d: defer.Deferred[None] = defer.Deferred()
        if not self.alive:
            d.errback(LinkDown(self._link.reason or "link is down"))
            return d
        args = (exchange, routing_key, properties, body)
        if self._held or not self._link.writable:
            self._held.append((args, d))
        else:
            self._send_publish(args, d)
        return d

    def consume(self, queue: str, prefetch: int,
                on_delivery: Callable[[amqp.Delivery], Any],
                no_ack: bool = False, *, consumer_tag: str = "",
                arguments: dict | None = None) -> defer.Deferred:
        """Basic.Qos(prefetch) then Basic.Consume; fires with the consumer tag."""
        tag = consumer_tag or f"warren-link-{next(self._tags)}"
        self._consumers[tag] = on_delivery
        # a refused Qos closes the channel; the Consume Deferred below reports it
        self.request(self._client.basic_qos(self.number, prefetch), "Basic.QosOk") \
            .addErrback(lambda _failure: None)
        d = self.request(self._client.basic_consume(self.number, queue, consumer_tag=tag,
                                                  no_ack=no_ack, arguments=arguments),
                         "Basic.ConsumeOk")
        return d.addCallback(lambda event: event.consumer_tag)

    def cancel(self, consumer_tag: str) -> defer.Deferred:
        """Basic.Cancel; deliveries already on the wire still reach the handler."""
        d = self.request(self._client.basic_cancel(self.number, consumer_tag), "Basic.CancelOk")
        return d.addCallback(lambda _event: self._consumers.pop(consumer_tag, None))

    def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        """Ack a delivery of this channel; a no-op once the connection is gone."""
        if self.alive:
            self._protocol.write(self._client.basic_ack(self.number, delivery_tag, multiple))
            self._link.counters.acked += 1

    def declare_queue(self, queue: str = "", *, passive: bool = False, durable: bool = False,
                      exclusive: bool = False, auto_delete: bool = False,
                      arguments: dict | None = None) -> defer.Deferred:
        """Queue.Declare; fires with a :class:`~warren.network.client.QueueDeclared`."""
        return self.request(self._client.queue_declare(
            self.number, queue, passive=passive, durable=durable, exclusive=exclusive,
            auto_delete=auto_delete, arguments=arguments), "Queue.DeclareOk")

    def declare_exchange(self, exchange: str, exchange_type: str = "direct", *,
                         passive: bool = False, durable: bool = False,
                         auto_delete: bool = False, internal: bool = False,
                         arguments: dict | None = None) -> defer.Deferred:
        return self.request(self._client.exchange_declare(
            self.number, exchange, exchange_type, passive=passive, durable=durable,
            auto_delete=auto_delete, internal=internal, arguments=arguments),
            "Exchange.DeclareOk")

    def bind(self, queue: str, exchange: str, routing_key: str = "",
             arguments: dict | None = None) -> defer.Deferred:
        return self.request(self._client.queue_bind(self.number, queue, exchange, routing_key,
                                                  arguments), "Queue.BindOk")

    def unbind(self, queue: str, exchange: str, routing_key: str = "",
               arguments: dict | None = None) -> defer.Deferred:
        return self.request(self._client.queue_unbind(self.number, queue, exchange, routing_key,
                                                    arguments), "Queue.UnbindOk")

    def delete_queue(self, queue: str) -> defer.Deferred:
        return self.request(self._client.queue_delete(self.number, queue), "Queue.DeleteOk")

    def bind_exchange(self, destination: str, source: str, routing_key: str = "",
                      arguments: dict | None = None) -> defer.Deferred:
        """Exchange.Bind: messages ``source`` routes with the key go on to ``destination``."""
        return self.request(self._client.exchange_bind(self.number, destination, source,
                                                     routing_key, arguments),
                            "Exchange.BindOk")

    def unbind_exchange(self, destination: str, source: str, routing_key: str = "",
                        arguments: dict | None = None) -> defer.Deferred:
        return self.request(self._client.exchange_unbind(self.number, destination, source,
                                                       routing_key, arguments),
                            "Exchange.UnbindOk")

    def delete_exchange(self, exchange: str) -> defer.Deferred:
        return self.request(self._client.exchange_delete(self.number, exchange),
                            "Exchange.DeleteOk")

    # -- internals
    def request(self, data: bytes, expect: str) -> defer.Deferred:
        """Send a synchronous method; the Deferred fires with the reply named ``expect``."""
        d: defer.Deferred[amqp.Event] = defer.Deferred()
        if not self.alive:
            d.errback(LinkDown(self._link.reason or "link is down"))
            return d
        self._rpcs.append((expect, d))
        self._protocol.write(data)
        return d

    def _send_publish(self, args: tuple, d: defer.Deferred) -> None:
        try:
            seq, data = self._client.basic_publish(self.number, *args)
        except (ValueError, TypeError) as e:   # properties pamqp cannot encode, long names
            d.errback(e)
            return
        self._unconfirmed[seq] = d
        self._link.counters.published += 1
        self._protocol.write(data)

    def flush_held(self) -> None:
        """Send held publishes while the link stays writable."""
        while self._held and self.alive and self._link.writable:
            args, d = self._held.popleft()
            self._send_publish(args, d)

    def fail_first_request(self, exc: Exception) -> None:
        """The server closed the channel: the oldest request is the one it refused."""
        if self._rpcs:
            self._rpcs.popleft()[1].errback(exc)

    def on_reply(self, name: str, event: amqp.Event) -> None:
        if not self._rpcs or self._rpcs[0][0] != name:
            expected = self._rpcs[0][0] if self._rpcs else "nothing"
            raise UnexpectedReply(f"server sent {name} while we waited for {expected}")
        _expect, d = self._rpcs.popleft()
        d.callback(event)

    def on_confirm(self, event: amqp.PublishConfirmed) -> None:
        counters = self._link.counters
        pending = self._unconfirmed
        if event.multiple:
            # multiple with tag 0 means "everything outstanding" (AMQP 0-9-1 basic.ack)
            limit = event.delivery_tag or float("inf")
            done = []
            while pending and next(iter(pending)) <= limit:
                done.append(pending.popitem(last=False)[1])
        else:
            d = pending.pop(event.delivery_tag, None)
            done = [d] if d is not None else []
        for d in done:
            if event.ack:
                counters.confirmed += 1
                d.callback(None)
            else:
                counters.nacked += 1
                d.errback(PublishNacked(f"server nacked publish {event.delivery_tag}"))

    def on_delivery(self, event: amqp.Delivery) -> None:
        handler = self._consumers.get(event.consumer_tag)
        if handler is None:
            raise UnexpectedReply(f"delivery for unknown consumer {event.consumer_tag!r}")
        self._link.counters.delivered += 1
        handler(event)

    def close(self) -> None:
        """Channel.Close from our side (a spare channel done with): what is still waiting
        fails with :class:`LinkDown`; the server's Close-Ok frees the number."""
        if self.alive:
            self._protocol.write(self._client.close_channel(self.number))
        self.die("channel closed")

    def die(self, reason: str, refused: RemoteClosed | None = None) -> None:
        """The connection is gone, or the server closed this channel (``refused``: the
        oldest request gets it): fail everything still waiting on it."""
        if self._dead:
            return
        self._dead = True       # first: a failed caller may close() us from its errback
        waiting = [d for _e, d in self._rpcs] + list(self._unconfirmed.values()) + \
            [d for _a, d in self._held]
        first = self._rpcs[0][1] if self._rpcs and refused is not None else None
        self._rpcs.clear()
        self._unconfirmed.clear()
        self._held.clear()
        for d in waiting:
            d.errback(refused if d is first else LinkDown(reason))
