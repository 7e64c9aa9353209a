"""One AMQP channel: its methods turned into core calls, and deliveries turned into frames.

Methods are dispatched through a table (pamqp class -> handler). Content (publish, then a header
frame, then body frames) is assembled here; every other frame type out of place is a 505. The
channel keeps what RabbitMQ's ``rabbit_channel`` keeps: unacked deliveries by tag, consumers by
tag, prefetch limits (per consumer and global), confirm and transaction state.
"""

from __future__ import annotations

import logging
import secrets
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pamqp import commands
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

from ..broker.arguments import validate_consumer_arguments
from ..broker.confirms import ConfirmTracker
from ..exchange.registry import EXCHANGE_TYPES
from ..model.errors import (AccessRefused, BrokerError, CommandInvalid, NotAllowed, NotFound,
                            NotImplemented_, PreconditionFailed)
from ..model.message import Message, QueueEntry
from ..broker.queue import Queue
from ..broker.replyto import REPLY_TO, ReplySubscription, direct_reply_to
from ..broker.stats import new_counts
from .framing import (ACCESS_REQUEST_OK_PAYLOAD, FRAME_BODY, FRAME_HEADER, FRAME_METHOD,
                      basic_ack_frame, basic_nack_frame, content_frames, decode_method,
                      deliver_payload, encode_method, from_0_8, method_frame, parse_ack,
                      parse_content_header, parse_publish, shortstr, unvalidated)
from .properties import CODEC, with_int_header
from .sender_selected import may_carry_routes, with_header_routes
from .wire_errors import ChannelError, UnexpectedFrame

if TYPE_CHECKING:
    from ..broker.broker import Broker
    from ..broker.users import User
    from ..config import Config
    from ..broker.vhost import VirtualHost
    from ..reply_error import ReplyError

log = logging.getLogger("warren.amqp.channel")

_USER_ID_FLAG = 0x0010
#: channel.close's class and method ids, as a method frame's payload starts
_CHANNEL_CLOSE = b"\x00\x14\x00\x28"
#: Frames a channel holds while its basic.get waits before its connection stops reading.
HELD_FRAMES = 1000

# Basic.Deliver with a one-frame body, built here in four packs (bytes as content_frames and
# deliver_payload make them): method frame head; its delivery tag and redelivered octet;
# frame end + content header frame head + class, weight, body size; frame end + body frame head.
_DELIVER_FRAME_HEAD = struct.Struct(">BHIHH")
_DELIVER_TAG = struct.Struct(">QB")
_DELIVER_HEADER = struct.Struct(">BBHIHHQ")
_DELIVER_BODY = struct.Struct(">BBHI")
#: (exchange, routing key) -> both as shortstrs: a stream of deliveries repeats a few pairs
_ADDRESSES: dict[tuple[str, str], bytes] = {}


def _address(exchange: str, routing_key: str) -> bytes:
    key = (exchange, routing_key)
    found = _ADDRESSES.get(key)
    if found is None:
        found = shortstr(exchange) + shortstr(routing_key)
        if len(_ADDRESSES) >= 4096:
            _ADDRESSES.clear()
        _ADDRESSES[key] = found
    return found


def delivered_props(queue: Queue | None, entry: QueueEntry) -> bytes:
    """The properties a delivery carries: the publisher's bytes, or those with
    ``x-delivery-count`` (how often the message came back to its queue) added, as RabbitMQ's
    quorum queues do (see ``Queue.counts_every_delivery``), or with ``x-stream-offset`` from a
    stream. No queue: a direct reply."""
    msg = entry.message
    raw = msg.encoded_props()
    if queue is not None and queue.own_log:
        # a stream: the message's offset as x-stream-offset (type l, as RabbitMQ sends it)
        spliced = with_int_header(raw, "x-stream-offset", entry.seq)
        if spliced is not None:
            return spliced
        props = msg.properties.copy()
        props.headers = {**(props.headers or {}), "x-stream-offset": entry.seq}
        return msg.codec.encode(props)
    if not entry.delivery_count and (queue is None or not queue.counts_every_delivery):
        return raw
    spliced = with_int_header(raw, "x-delivery-count", entry.delivery_count)
    if spliced is not None:
        return spliced
    props = msg.properties.copy()
    props.headers = {**(props.headers or {}), "x-delivery-count": entry.delivery_count}
    return msg.codec.encode(props)


class AmqpConsumer:
    """A basic.consume subscription; the queue calls has_credit/deliver/cancelled."""

    __slots__ = ("channel", "tag", "tag_ss", "queue", "no_ack", "exclusive", "priority",
                 "arguments", "prefetch", "unacked")

    def __init__(self, channel: "Channel", tag: str, queue: Queue, no_ack: bool,
                 exclusive: bool, arguments: dict[str, Any], prefetch: int) -> None:
        self.channel = channel
        self.tag = tag
        self.tag_ss = shortstr(tag)
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.arguments = arguments
        prio = arguments.get("x-priority", 0)
        self.priority = prio if isinstance(prio, int) and not isinstance(prio, bool) else 0
        self.prefetch = prefetch     # per-consumer limit, 0 = none
        self.unacked = 0

    def has_credit(self) -> bool:
        ch = self.channel
        if not ch.flow_active or ch.conn.write_paused or ch.closing:
            return False
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        if ch.global_prefetch and len(ch.unacked) >= ch.global_prefetch:
            return False
        return True

    def deliver(self, queue: Queue, entry: QueueEntry) -> None:
        ch = self.channel
        ch.next_tag += 1
        tag = ch.next_tag
        stats = ch.stats
        if entry.redelivered:
            stats["redeliver"] += 1
        if self.no_ack:
            stats["deliver_no_ack"] += 1
        else:
            stats["deliver"] += 1
            ch.unacked[tag] = (queue, entry, self)
            self.unacked += 1
        msg = entry.message
        conn = ch.conn
        body = msg.body
        size = len(body)
        if 0 < size <= conn.frame_max - 8:
            # one body frame (the usual case): same bytes as content_frames, fewer parts
            number = ch.number
            props = msg.raw_props
            if props is None or entry.delivery_count or (
                    queue is not None and (queue.counts_every_delivery or queue.own_log)):
                props = delivered_props(queue, entry)
            tag_ss = self.tag_ss
            address = _address(msg.exchange, msg.routing_key)
            conn.write_parts((
                _DELIVER_FRAME_HEAD.pack(1, number, 13 + len(tag_ss) + len(address), 60, 60),
                tag_ss, _DELIVER_TAG.pack(tag, 1 if entry.redelivered else 0), address,
                _DELIVER_HEADER.pack(0xCE, 2, number, 12 + len(props), 60, 0, size), props,
                _DELIVER_BODY.pack(0xCE, 3, number, size), body, b"\xce"))
            return
        conn.write_parts(content_frames(
            ch.number, deliver_payload(self.tag_ss, tag, entry.redelivered, msg.exchange,
                                       msg.routing_key),
            delivered_props(queue, entry), msg.body, conn.frame_max))

    def cancelled(self, queue: Queue) -> None:
        ch = self.channel
        ch.consumers.pop(self.tag, None)
        if ch.conn.capabilities.get("consumer_cancel_notify") and not ch.closing:
            notice = commands.Basic.Cancel(consumer_tag=self.tag, nowait=True)
            if ch.deferred_cancels is not None:
                ch.deferred_cancels.append(notice)
            else:
                ch.send(notice)


class Connection(Protocol):
    """What a channel asks of its connection (``connection.py``): whom it acts for, where
    its frames go, and the connection-level events it causes. Named here so that the channel
    depends on no more of the connection than it uses."""

    broker: Broker
    config: Config
    user: User                       # set at login, before any channel opens
    vhost: VirtualHost               # likewise, at connection.open
    capabilities: dict[str, Any]     # the client's (consumer_cancel_notify...)
    frame_max: int
    amqp_0_8: bool                   # the client spoke 0-8 (access.request is answered)
    published: bool                  # a channel of this connection has published
    write_paused: bool               # the socket's buffer is full: deliveries wait
    channels: dict[int, Channel]
    exclusive_queues: set[Queue]

    def write(self, data: bytes) -> None: ...

    def write_parts(self, parts: Iterable[bytes | memoryview]) -> None: ...

    def flush(self) -> None: ...

    def want_after_read(self, channel: Channel) -> None: ...   # call after_read at its end

    def started_publishing(self) -> None: ...

    def channel_closed(self, channel: Channel) -> None: ...

    def channel_error(self, channel: Channel, error: ReplyError) -> None: ...

    def handle_held(self, frames: list[tuple[int, int, bytes]]) -> None: ...   # then flush

    def pause_reading(self) -> None: ...   # until the held frames are handled


class Channel:
    """The state RabbitMQ keeps per AMQP channel (unacked deliveries, consumers, prefetch,
    confirm and transaction mode), and the translation of its methods into core calls.

    A handler only raises: the connection turns a ``BrokerError`` (or a wire error) into
    channel.close or connection.close in one place (``amqp/errors.py``)."""

    def __init__(self, conn: Connection, number: int) -> None:
        self.conn = conn
        self.number = number
        self.closing = False                 # we sent channel.close; waiting for close-ok
        self.flow_active = True              # channel.flow from the client
        self.consumers: dict[str, AmqpConsumer] = {}
        self.unacked: dict[int, tuple[Queue, QueueEntry, AmqpConsumer | None]] = {}
        self.next_tag = 0                    # last delivery tag used
        self.prefetch = 0                    # basic.qos global=false: for new consumers
        self.global_prefetch = 0             # basic.qos global=true: shared by the channel
        self.current_queue: str | None = None  # last declared queue, for '' in later methods
        # the direct reply-to subscription (broker/replyto.py)
        self.reply_to: ReplySubscription | None = None
        # basic.cancel notices held while this channel deletes the queue itself: RabbitMQ's
        # channel sends queue.delete-ok before the cancel (the queue's 'DOWN' is handled
        # after the method), and clients waiting for delete-ok (py-amqp/kombu) fail on a
        # cancel for a consumer they have no callback for
        self.deferred_cancels: list | None = None
        # a basic.get waiting for its message's body to be read (``Queue.get_later``), and
        # the frames that came for this channel meanwhile: RabbitMQ's channel handles nothing
        # more until its queue answers the get, so later methods keep their order
        self._get_waiting: Any = None
        self._held: list[tuple[int, int, bytes]] = []
        # content assembly: (exchange, routing_key, mandatory), then header, then body parts
        self._publish: tuple[str, str, bool] | None = None
        self._props: bytes | None = None
        self._body_size = 0
        self._body: list[bytes] = []
        self._received = 0
        # publisher confirms: answers in publish order, after the store's sync
        self.confirm = False
        self.publish_seq = 0
        self.confirms = ConfirmTracker()
        # transactions: publishes and acks held until tx.commit
        self.tx = False
        self._tx_publishes: list[tuple[Any, Message, bool]] = []
        self._tx_settles: list[tuple[str, int, bool, bool]] = []
        # RabbitMQ's per-channel message_stats (broker/stats.py); the vhost's totals are
        # counted by the core (publishes, confirms, queues)
        self.stats = new_counts()
        # the core's publish pipeline: exchange checks (cached), reply-to, routing, counting
        self.publisher = conn.broker.publisher(conn.vhost, conn.user, counts=self.stats)

    # ------------------------------------------------------------------ plumbing
    @property
    def broker(self):
        return self.conn.broker

    @property
    def vhost(self):
        return self.conn.vhost

    def send(self, method: Any) -> None:
        self.conn.write(encode_method(method, self.number))

    def handle_frame(self, ftype: int, payload: bytes) -> None:
        """One frame for this channel; raises a ReplyError (the connection maps it)."""
        if self.closing:
            if ftype == FRAME_METHOD:
                method = decode_method(payload)
                if isinstance(method, commands.Channel.CloseOk):
                    self.conn.channel_closed(self)
                elif isinstance(method, commands.Channel.Close):
                    self.send(commands.Channel.CloseOk())
            return
        if self._publish is not None:
            self._content_frame(ftype, payload)
            return
        if self._get_waiting is not None:
            self._hold(ftype, payload)
            return
        if ftype != FRAME_METHOD:
            raise UnexpectedFrame(
                "expected method frame, got non method frame instead")
        if payload[:4] == b"\x00\x3c\x00\x28":
            self._current_method = (60, 40)
            exchange, rk, mandatory, immediate = parse_publish(payload)
            if immediate:
                raise NotImplemented_("immediate=true")
            self._publish = (exchange, rk, mandatory)
            return
        if payload[:4] == b"\x00\x3c\x00\x50":
            tag, multiple = parse_ack(payload)
            self._current_method = (60, 80)
            self._settle("ack", tag, multiple, False)
            return
        if self.conn.amqp_0_8:
            translated = from_0_8(payload)
            if translated is None:              # access.request: granted, as RabbitMQ
                self.conn.write(method_frame(self.number, ACCESS_REQUEST_OK_PAYLOAD))
                return
            payload = translated
        method = decode_method(payload)
        self._current_method = divmod(method.index, 0x10000)
        handler = _HANDLERS.get(type(method))
        if handler is None:
            if method.name.startswith("Connection."):
                raise CommandInvalid(f"connection method {method.name} on channel {self.number}")
            if method.name == "Channel.Open":
                raise ChannelError("second 'channel.open' seen")
            raise NotImplemented_(f"method {method.name} is not supported")
        handler(self, method)

    def current_method(self) -> tuple[int, int]:
        return getattr(self, "_current_method", (0, 0))

    # ------------------------------------------------------------------ content
    def _content_frame(self, ftype: int, payload: bytes) -> None:
        if self._props is None:
            if ftype != FRAME_HEADER:
                raise UnexpectedFrame("expected content header for class 60, got non content "
                                      "header frame instead")
            class_id, size, props = parse_content_header(payload)
            if class_id != 60:
                raise UnexpectedFrame(f"expected content header for class 60, got {class_id}")
            limit = self.conn.config.max_message_size
            if size > limit:
                self._publish = None
                raise PreconditionFailed(
                    f"message size {size} is larger than configured max size {limit}")
            self._props = props
            self._body_size = size
            if size == 0:
                self._complete_publish()
            return
        if ftype != FRAME_BODY:
            raise UnexpectedFrame("expected content body, got non content body frame instead")
        received = self._received + len(payload)
        if received > self._body_size:
            raise UnexpectedFrame("content body exceeds the size given in the content header")
        if received == self._body_size and not self._body:
            # the usual case, the whole body in one frame: no list, no join
            self._complete_publish(payload)
            return
        self._received = received
        self._body.append(payload)
        if received == self._body_size:
            self._complete_publish()

    def _complete_publish(self, body: bytes | None = None) -> None:
        publish, props = self._publish, self._props
        assert publish is not None and props is not None   # a content header came first
        exchange, rk, mandatory = publish
        if body is None:
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._publish = None
        self._props = None
        self._body = []
        self._received = 0
        self._current_method = (60, 40)
        self._publish_message(exchange, rk, mandatory, props, body)

    def _publish_message(self, exchange_name: str, rk: str, mandatory: bool, props: bytes,
                         body: bytes) -> None:
        publisher = self.publisher
        ex = publisher.exchange(exchange_name)
        if len(props) == 3 and props[0] == 0x10 and props[1] == 0:
            # delivery_mode alone (what most publishers send): the flags the core needs are
            # read off the bytes, so the properties are never decoded on this path
            msg = Message.make(exchange_name, rk, body, CODEC, props, None, props[2] == 2,
                                 0, None)
        else:
            msg = Message(exchange_name, rk, body, codec=CODEC, raw_props=props)
            if len(props) >= 2 and props[1] & _USER_ID_FLAG:
                self._check_user_id(msg)
            msg = publisher.reply_to(msg, self.reply_to)
            if may_carry_routes(props):
                msg = with_header_routes(msg)
        if not self.conn.published:
            self.conn.started_publishing()
        if self.confirm:
            self.publish_seq += 1
        if self.tx:
            # refused at basic.publish, as RabbitMQ, not at tx.commit
            publisher.authorise(ex, rk)
            self._tx_publishes.append((ex, msg, mandatory))
            return
        self._route(ex, msg, mandatory, self.publish_seq if self.confirm else 0)

    def _check_user_id(self, msg: Message) -> None:
        uid = msg.properties.user_id
        if uid is not None and uid != self.conn.user.name:
            raise PreconditionFailed(f"user_id property set to '{uid}' but authenticated user "
                                     f"was '{self.conn.user.name}'")

    def _route(self, ex: Any, msg: Message, mandatory: bool, seq: int) -> None:
        routed = self.publisher.route(ex, msg, mandatory)
        if mandatory and routed.unroutable:
            self._basic_return(312, "NO_ROUTE", msg)
        if seq:
            # RabbitMQ nacks when any target queue rejected it (maxlength.html)
            self.confirms.insert(seq, None, routed.stored, not routed.rejected)
            self.conn.want_after_read(self)

    def _basic_return(self, code: int, text: str, msg: Message) -> None:
        ret = unvalidated(commands.Basic.Return)(reply_code=code, reply_text=text,
                                                 exchange=msg.exchange,
                                                 routing_key=msg.routing_key)
        payload = encode_method(ret, self.number)[7:-1]
        self.conn.write_parts(content_frames(self.number, payload, msg.encoded_props(),
                                             msg.body, self.conn.frame_max))

    # ------------------------------------------------------------------ confirms
    def after_read(self) -> None:
        """End of a read: ask the store for one sync covering this read's publishes."""
        d = self.confirms.sync(self.broker.sync)
        if d is not None:
            d.addBoth(self._synced)
        self.flush_confirms()

    def _synced(self, result: Any) -> None:
        if isinstance(result, Failure):
            log.warning("store sync failed, nacking publishes: %s", result.getErrorMessage())
        self.flush_confirms()
        self.conn.flush()

    def flush_confirms(self) -> None:
        """Send acks/nacks for the settled prefix, coalesced into multiple=true runs."""
        if self.closing:
            return
        settled = self.confirms.release()
        if not settled:
            return
        parts = []
        acked = 0
        i, n = 0, len(settled)
        while i < n:
            start = i
            first, _, state = settled[i]
            i += 1
            while i < n and settled[i][2] is state:
                i += 1
            last = settled[i - 1][0]
            if state:
                acked += i - start
            frame = basic_ack_frame if state else basic_nack_frame
            parts.append(frame(self.number, last, last != first))
        if acked:
            self.publisher.confirmed(acked)
        self.conn.write_parts(parts)

    # ------------------------------------------------------------------ channel methods
    def _on_close(self, m: commands.Channel.Close) -> None:
        self.send(commands.Channel.CloseOk())
        self.conn.channel_closed(self)

    def _on_close_ok(self, m: Any) -> None:
        self.conn.channel_closed(self)

    def _on_flow(self, m: commands.Channel.Flow) -> None:
        self.flow_active = bool(m.active)
        self.send(commands.Channel.FlowOk(active=m.active))
        if m.active:
            self._kick()

    # ------------------------------------------------------------------ exchanges
    def _on_exchange_declare(self, m: commands.Exchange.Declare) -> None:
        vh = self.vhost
        name = m.exchange
        if name == "" and m.passive:
            # rabbit_channel:check_not_default_exchange, passive or not
            raise AccessRefused("operation not permitted on the default exchange")
        if not m.passive:
            self.broker.check(self.conn.user, vh.name, "configure", "exchange", name)
            if m.exchange_type not in EXCHANGE_TYPES:
                # rabbit_exchange:check_type (RabbitMQ 3.13+): a channel-level 406
                raise PreconditionFailed(f"unknown exchange type '{m.exchange_type}'")
        if name == "" and not m.passive:
            raise AccessRefused("operation not permitted on the default exchange")
        vh.declare_exchange(name, m.exchange_type, durable=m.durable,
                            auto_delete=m.auto_delete, internal=m.internal,
                            arguments=m.arguments or {}, passive=m.passive)
        if not m.nowait:
            self.send(commands.Exchange.DeclareOk())

    def _on_exchange_delete(self, m: commands.Exchange.Delete) -> None:
        vh = self.vhost
        self.broker.check(self.conn.user, vh.name, "configure", "exchange", m.exchange)
        if m.exchange not in vh.exchanges and not m.exchange.startswith("amq.") and m.exchange:
            pass  # RabbitMQ answers delete-ok for a missing exchange
        else:
            vh.delete_exchange(m.exchange, if_unused=m.if_unused)
        if not m.nowait:
            self.send(commands.Exchange.DeleteOk())

    def _on_exchange_bind(self, m: commands.Exchange.Bind) -> None:
        self._exchange_binding(m, self.vhost.bind, commands.Exchange.BindOk, unbinding=False)

    def _on_exchange_unbind(self, m: commands.Exchange.Unbind) -> None:
        self._exchange_binding(m, self.vhost.unbind, commands.Exchange.UnbindOk, unbinding=True)

    def _exchange_binding(self, m: Any, change: Callable[..., Any], reply: type,
                          unbinding: bool) -> None:
        """exchange.bind/unbind: write on the destination, read on the source (RabbitMQ)."""
        vh = self.vhost
        user = self.conn.user
        self.broker.check(user, vh.name, "write", "exchange", m.destination)
        self.broker.check(user, vh.name, "read", "exchange", m.source)
        if unbinding and (m.destination not in vh.exchanges or m.source not in vh.exchanges):
            # RabbitMQ (since 3.2): unbinding from or to a missing exchange is unbind-ok,
            # so clean-up code may unbind after an auto-delete exchange went away
            if not m.nowait:
                self.send(reply())
            return
        dest = vh.exchange(m.destination)
        self.broker.check_topic(user, vh.name, vh.exchange(m.source), "read", m.routing_key)
        change(m.source, dest, m.routing_key, m.arguments or {})
        if not m.nowait:
            self.send(reply())

    # ------------------------------------------------------------------ queues
    def _queue_name(self, name: str) -> str:
        if name == "":
            if self.current_queue is None:
                raise NotFound("no previously declared queue")
            return self.current_queue
        return name

    def _on_queue_declare(self, m: commands.Queue.Declare) -> None:
        vh = self.vhost
        name = m.queue
        server_named = False
        if m.passive:
            name = self._queue_name(name)
            if name == REPLY_TO or direct_reply_to(self.broker).exists(name):
                # RabbitMQ answers for the pseudo-queue and live reply addresses
                if not m.nowait:
                    self.send(commands.Queue.DeclareOk(queue=name, message_count=0,
                                                       consumer_count=0))
                return
        elif name == "":
            name = vh.new_queue_name()
            server_named = True
        if not m.passive:
            self.broker.check(self.conn.user, vh.name, "configure", "queue", name)
        q = vh.declare_queue(name, durable=m.durable,
                             exclusive_owner=self.conn if m.exclusive else None,
                             auto_delete=m.auto_delete, arguments=m.arguments or {},
                             passive=m.passive, connection=self.conn,
                             check_reserved=not server_named)
        if q.exclusive_owner is self.conn:
            self.conn.exclusive_queues.add(q)
        self.current_queue = name
        if not m.nowait:
            self.send(unvalidated(commands.Queue.DeclareOk)(
                queue=name, message_count=q.message_count, consumer_count=q.consumer_count))

    def _on_queue_bind(self, m: commands.Queue.Bind) -> None:
        vh = self.vhost
        name = self._queue_name(m.queue)
        user = self.conn.user
        self.broker.check(user, vh.name, "write", "queue", name)
        self.broker.check(user, vh.name, "read", "exchange", m.exchange)
        q = vh.queue(name)
        q.check_access(self.conn)
        self.broker.check_topic(user, vh.name, vh.exchange(m.exchange), "read", m.routing_key)
        vh.bind(m.exchange, q, m.routing_key, m.arguments or {})
        if not m.nowait:
            self.send(commands.Queue.BindOk())

    def _on_queue_unbind(self, m: commands.Queue.Unbind) -> None:
        vh = self.vhost
        name = self._queue_name(m.queue)
        user = self.conn.user
        self.broker.check(user, vh.name, "write", "queue", name)
        self.broker.check(user, vh.name, "read", "exchange", m.exchange)
        q = vh.queues.get(name)
        if q is None or m.exchange not in vh.exchanges:
            # RabbitMQ (since 3.2): queue.unbind of a missing queue or exchange is unbind-ok
            self.send(commands.Queue.UnbindOk())
            return
        q.check_access(self.conn)
        self.broker.check_topic(user, vh.name, vh.exchanges[m.exchange], "read", m.routing_key)
        vh.unbind(m.exchange, q, m.routing_key, m.arguments or {})
        self.send(commands.Queue.UnbindOk())

    def _on_queue_purge(self, m: commands.Queue.Purge) -> None:
        vh = self.vhost
        name = self._queue_name(m.queue)
        self.broker.check(self.conn.user, vh.name, "read", "queue", name)
        q = vh.queue(name)
        q.check_access(self.conn)
        count = q.purge()
        if not m.nowait:
            self.send(commands.Queue.PurgeOk(message_count=count))

    def _on_queue_delete(self, m: commands.Queue.Delete) -> None:
        vh = self.vhost
        name = self._queue_name(m.queue)
        self.broker.check(self.conn.user, vh.name, "configure", "queue", name)
        if name not in vh.queues:
            # RabbitMQ: deleting a missing queue is not an error (delete-ok with 0)
            if not m.nowait:
                self.send(commands.Queue.DeleteOk(message_count=0))
            return
        self.deferred_cancels = []
        try:
            count = vh.delete_queue(name, if_unused=m.if_unused, if_empty=m.if_empty,
                                    connection=self.conn)
        finally:
            notices, self.deferred_cancels = self.deferred_cancels, None
        if not m.nowait:
            self.send(commands.Queue.DeleteOk(message_count=count))
        for notice in notices:
            self.send(notice)

    # ------------------------------------------------------------------ consuming
    def _on_qos(self, m: commands.Basic.Qos) -> None:
        if m.prefetch_size:
            raise NotImplemented_(f"prefetch_size!=0 ({m.prefetch_size})")
        if m.global_:
            self.global_prefetch = m.prefetch_count
        else:
            self.prefetch = m.prefetch_count
        self.send(commands.Basic.QosOk())
        self._kick()

    def _on_consume(self, m: commands.Basic.Consume) -> None:
        if m.queue == REPLY_TO:
            self._consume_reply_to(m)
            return
        vh = self.vhost
        name = self._queue_name(m.queue)
        self.broker.check(self.conn.user, vh.name, "read", "queue", name)
        q = vh.queue(name)
        q.check_access(self.conn)
        tag = m.consumer_tag or "amq.ctag-" + secrets.token_urlsafe(16)
        if tag in self.consumers:
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'")
        args = m.arguments or {}
        validate_consumer_arguments(vh.name, name, args)
        q.check_consume(m.no_ack, self.prefetch, self.global_prefetch, args)
        consumer = AmqpConsumer(self, tag, q, m.no_ack, m.exclusive, args, self.prefetch)
        # checked before consume-ok goes out (add_consumer checks again, for other callers)
        if (m.exclusive and q.consumers) or any(c.exclusive for c in q.consumers):
            raise AccessRefused(f"queue '{name}' in vhost '{vh.name}' in exclusive use")
        if not m.nowait:
            self.send(commands.Basic.ConsumeOk(consumer_tag=tag))
        self.consumers[tag] = consumer
        try:
            q.add_consumer(consumer, self.conn)
        except BrokerError:
            del self.consumers[tag]
            raise

    def _consume_reply_to(self, m: commands.Basic.Consume) -> None:
        """Direct reply-to: a consumer on no queue (see warren/broker/replyto.py)."""
        if self.reply_to is not None:
            raise PreconditionFailed("reply consumer already set")
        tag = m.consumer_tag or "amq.ctag-" + secrets.token_urlsafe(16)
        if tag in self.consumers:
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'")
        # on no queue: broker/replyto.py hands it the replies, and it is never in consumers
        consumer = AmqpConsumer(self, tag, None, m.no_ack, False, {}, 0)  # type: ignore[arg-type]
        self.reply_to = direct_reply_to(self.broker).subscribe(consumer)
        if not m.nowait:
            self.send(commands.Basic.ConsumeOk(consumer_tag=tag))

    def _on_cancel(self, m: commands.Basic.Cancel) -> None:
        if self.reply_to is not None and m.consumer_tag == self.reply_to.tag:
            direct_reply_to(self.broker).unsubscribe(self.reply_to)
            self.reply_to = None
        consumer = self.consumers.pop(m.consumer_tag or "", None)
        if not m.nowait:
            self.send(commands.Basic.CancelOk(consumer_tag=m.consumer_tag))
        if consumer is not None:
            consumer.queue.remove_consumer(consumer)

    def _on_get(self, m: commands.Basic.Get) -> None:
        vh = self.vhost
        name = self._queue_name(m.queue)
        self.broker.check(self.conn.user, vh.name, "read", "queue", name)
        q = vh.queue(name)
        q.check_access(self.conn)
        taken: list[QueueEntry | None] = []
        done = q.get_later(m.no_ack)
        done.addCallback(taken.append)
        if taken:   # the usual case: the head was in memory
            self._answer_get(q, m.no_ack, taken[0])
            return
        # its body is being read off the reactor thread: answered when it is in (taken[0]
        # by then), this channel's next frames held until
        self._get_waiting = done
        done.addCallbacks(lambda _: self._answer_waited_get(q, m.no_ack, taken[0]),
                          lambda failure: failure.trap(CancelledError))

    def _hold(self, ftype: int, payload: bytes) -> None:
        """A frame that came while a basic.get waits. A channel.close withdraws the get (the
        client gave up on it) and lets what came before it through."""
        self._held.append((ftype, self.number, payload))
        if len(self._held) >= HELD_FRAMES:
            self.conn.pause_reading()   # bounded memory; reading resumes with the held frames
        if ftype == FRAME_METHOD and payload[:4] == _CHANNEL_CLOSE:
            waiting, self._get_waiting = self._get_waiting, None
            waiting.cancel()
            self._release_held()

    def _answer_waited_get(self, q: Queue, no_ack: bool, entry: QueueEntry | None) -> None:
        self._get_waiting = None
        self._answer_get(q, no_ack, entry)
        self._release_held()

    def _release_held(self) -> None:
        """Handle the frames held while a get waited, as if they had just been read (one
        may be another get that waits in turn), and send what they answer."""
        held, self._held = self._held, []
        self.conn.handle_held(held)

    def _answer_get(self, q: Queue, no_ack: bool, entry: QueueEntry | None) -> None:
        stats = self.stats
        if entry is None:
            stats["get_empty"] += 1
            self.send(commands.Basic.GetEmpty())
            return
        self.next_tag += 1
        tag = self.next_tag
        if entry.redelivered:
            stats["redeliver"] += 1
        if no_ack:
            stats["get_no_ack"] += 1
        else:
            stats["get"] += 1
            self.unacked[tag] = (q, entry, None)
        msg = entry.message
        ok = unvalidated(commands.Basic.GetOk)(
            delivery_tag=tag, redelivered=entry.redelivered, exchange=msg.exchange,
            routing_key=msg.routing_key, message_count=q.message_count)
        payload = encode_method(ok, self.number)[7:-1]
        self.conn.write_parts(content_frames(self.number, payload, delivered_props(q, entry),
                                             msg.body, self.conn.frame_max))

    # ------------------------------------------------------------------ settling
    def _on_ack_method(self, m: commands.Basic.Ack) -> None:
        self._settle("ack", m.delivery_tag, m.multiple, False)

    def _on_reject(self, m: commands.Basic.Reject) -> None:
        self._settle("reject", m.delivery_tag or 0, False, bool(m.requeue))

    def _on_nack(self, m: commands.Basic.Nack) -> None:
        self._settle("reject", m.delivery_tag, m.multiple, m.requeue)

    def _take(self, tag: int, multiple: bool) -> list[tuple[Queue, QueueEntry, Any]]:
        unacked = self.unacked
        if multiple:
            if tag == 0:
                taken = list(unacked.values())
                unacked.clear()
                return taken
            if tag not in unacked and (not unacked or tag < next(iter(unacked))):
                raise PreconditionFailed(f"unknown delivery tag {tag}")
            taken = []
            for k in list(unacked):
                if k > tag:
                    break
                taken.append(unacked.pop(k))
            return taken
        found = unacked.pop(tag, None)
        if found is None:
            raise PreconditionFailed(f"unknown delivery tag {tag}")
        return [found]

    def _settle(self, how: str, tag: int, multiple: bool, requeue: bool) -> None:
        if self.tx:
            # validate now (RabbitMQ fails unknown tags at once), apply at commit
            if not multiple and tag not in self.unacked:
                raise PreconditionFailed(f"unknown delivery tag {tag}")
            self._tx_settles.append((how, tag, multiple, requeue))
            return
        taken = self._take(tag, multiple)
        self._apply_settle(how, taken, requeue)

    def _apply_settle(self, how: str, taken: list, requeue: bool) -> None:
        if not taken:
            return
        by_queue: dict[int, tuple[Queue, list[QueueEntry]]] = {}
        for q, entry, consumer in taken:
            if consumer is not None:
                consumer.unacked -= 1
            slot = by_queue.get(id(q))
            if slot is None:
                by_queue[id(q)] = (q, [entry])
            else:
                slot[1].append(entry)
        if how == "ack":
            self.stats["ack"] += len(taken)
        for q, entries in by_queue.values():
            q.settle(entries, ack=how == "ack", requeue=requeue)
        self._kick(by_queue.values())

    def _kick(self, extra: Any = ()) -> None:
        """Credit came back: let the queues this channel consumes from deliver again."""
        seen = set()
        for c in list(self.consumers.values()):
            q = c.queue
            if id(q) not in seen:
                seen.add(id(q))
                q.dispatch()
        for q, _ in extra:
            if id(q) not in seen:
                seen.add(id(q))
                q.dispatch()

    def _on_recover(self, m: Any) -> None:
        if not m.requeue:
            raise NotImplemented_("requeue=false")
        taken = list(self.unacked.values())
        self.unacked.clear()
        self._apply_settle("reject", taken, True)
        if isinstance(m, commands.Basic.Recover):
            self.send(commands.Basic.RecoverOk())

    # ------------------------------------------------------------------ confirm / tx
    def _on_confirm_select(self, m: commands.Confirm.Select) -> None:
        if self.tx:
            raise PreconditionFailed("cannot switch from tx to confirm mode")
        self.confirm = True
        if not m.nowait:
            self.send(commands.Confirm.SelectOk())

    def _on_tx_select(self, m: Any) -> None:
        if self.confirm:
            raise PreconditionFailed("cannot switch from confirm to tx mode")
        self.tx = True
        self.send(commands.Tx.SelectOk())

    def _on_tx_commit(self, m: Any) -> None:
        if not self.tx:
            raise PreconditionFailed("channel is not transactional")
        publishes, self._tx_publishes = self._tx_publishes, []
        settles, self._tx_settles = self._tx_settles, []
        for ex, msg, _mandatory in publishes:
            # all or nothing: a topic permission changed since basic.publish refuses the
            # commit before any of it is routed
            self.publisher.authorise(ex, msg.routing_key)
        stored = False
        for ex, msg, mandatory in publishes:
            routed = self.publisher.route(ex, msg)
            stored = stored or routed.stored
            if not routed.queues and mandatory:
                self._basic_return(312, "NO_ROUTE", msg)
        for how, tag, multiple, requeue in settles:
            try:
                taken = self._take(tag, multiple)
            except PreconditionFailed:
                continue
            self._apply_settle(how, taken, requeue)
        if stored:
            d = self.broker.sync()

            def done(_: Any) -> None:
                if not self.closing and self.number in self.conn.channels:
                    self.send(commands.Tx.CommitOk())
                    self.conn.flush()
            d.addCallbacks(done, lambda f: self.conn.channel_error(
                self, PreconditionFailed("commit failed: store unavailable")))
        else:
            self.send(commands.Tx.CommitOk())

    def _on_tx_rollback(self, m: Any) -> None:
        if not self.tx:
            raise PreconditionFailed("channel is not transactional")
        self._tx_publishes = []
        self._tx_settles = []
        self.send(commands.Tx.RollbackOk())

    # ------------------------------------------------------------------ teardown
    def release_all(self) -> None:
        """Channel or connection closed: cancel consumers, requeue every unacked delivery,
        withdraw a waiting basic.get."""
        self.closing = True
        if self._get_waiting is not None:
            waiting, self._get_waiting = self._get_waiting, None
            self._held = []
            waiting.cancel()
        if self.reply_to is not None:
            direct_reply_to(self.broker).unsubscribe(self.reply_to)
            self.reply_to = None
        consumers = list(self.consumers.values())
        self.consumers.clear()
        taken = list(self.unacked.values())
        self.unacked.clear()
        self._publish = None
        self.confirms.clear()
        for c in consumers:
            c.queue.remove_consumer(c)
        if taken:
            by_queue: dict[int, tuple[Queue, list[QueueEntry]]] = {}
            for q, entry, _c in taken:
                by_queue.setdefault(id(q), (q, []))[1].append(entry)
            for q, entries in by_queue.values():
                q.requeue(entries)
                q.dispatch()


#: method class -> the Channel method that handles it: one table for every channel, functions
#: and not each channel's bound methods, which would make each channel a reference cycle
#: (the channel -> its table -> a bound method -> the channel) that only the cyclic collector
#: frees once the channel is closed
_HANDLERS: dict[type, Callable[[Channel, Any], None]] = {
    commands.Channel.Close: Channel._on_close,
    commands.Channel.CloseOk: Channel._on_close_ok,
    commands.Channel.Flow: Channel._on_flow,
    commands.Channel.FlowOk: lambda channel, method: None,
    commands.Exchange.Declare: Channel._on_exchange_declare,
    commands.Exchange.Delete: Channel._on_exchange_delete,
    commands.Exchange.Bind: Channel._on_exchange_bind,
    commands.Exchange.Unbind: Channel._on_exchange_unbind,
    commands.Queue.Declare: Channel._on_queue_declare,
    commands.Queue.Bind: Channel._on_queue_bind,
    commands.Queue.Unbind: Channel._on_queue_unbind,
    commands.Queue.Purge: Channel._on_queue_purge,
    commands.Queue.Delete: Channel._on_queue_delete,
    commands.Basic.Qos: Channel._on_qos,
    commands.Basic.Consume: Channel._on_consume,
    commands.Basic.Cancel: Channel._on_cancel,
    commands.Basic.Get: Channel._on_get,
    commands.Basic.Ack: Channel._on_ack_method,
    commands.Basic.Reject: Channel._on_reject,
    commands.Basic.Nack: Channel._on_nack,
    commands.Basic.Recover: Channel._on_recover,
    commands.Basic.RecoverAsync: Channel._on_recover,
    commands.Confirm.Select: Channel._on_confirm_select,
    commands.Tx.Select: Channel._on_tx_select,
    commands.Tx.Commit: Channel._on_tx_commit,
    commands.Tx.Rollback: Channel._on_tx_rollback,
}
