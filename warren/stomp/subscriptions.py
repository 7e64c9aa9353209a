"""STOMP subscriptions and delivery: SUBSCRIBE/UNSUBSCRIBE, MESSAGE frames, ACK/NACK.

A :class:`StompSubscription` is one core consumer of one queue (``broker/consumers.py``);
:class:`Subscriptions` is the part of :class:`~warren.stomp.session.StompSession` that makes,
ends and settles them, the durable topic subscriptions' life cycle included. It is a base
class of the session rather than an object of its own because every step reads the session's
state (vhost, user, permission cache, version, the queues to kick after a read).

- ACK/NACK: ``id`` (1.2) or ``message-id`` (1.0/1.1). ``client`` mode acks cumulatively (the
  message and every earlier one of that subscription), ``client-individual`` one message.
  NACK's ``requeue`` header defaults to true; ``requeue:false`` rejects (dead-letters when the
  queue has a DLX, else drops). An unknown id is an error. UNSUBSCRIBE requeues the
  subscription's unacked messages (there is no one left to ack them).
- ActiveMQ extras: ``selector`` (JMS SQL-92 subset, evaluated in the broker: non-matching
  messages stay queued for others), message groups (``JMSXGroupID``, broker/groups.py),
  durable topic subscriptions (``activemq.subscriptionName``, or ``durable:true``/
  ``persistent:true`` with ``id``).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from ..broker.broker import Broker
from ..broker.groups import GROUP_ID_HEADER, GROUP_SEQ_HEADER, groups_of
from ..broker.queue import Queue
from ..broker.selector import Selector, SelectorError
from ..broker.subscriptions import DURABLE_SUBSCRIPTION_ARGUMENT
from ..broker.subscriptions import describe as describe_subscription
from ..model.errors import AccessRefused, BrokerError
from ..model.message import QueueEntry
from .codec import Frame, StompError, encode, encode_message
from .destinations import Destination, Kind, destination_header, parse_destination
from .errors import VERSION_HEADER, Refused, SubscriptionRefused
from .headers import DELIVERY_COUNT_HEADER, header_value, int_header, property_headers, \
    representable
from .jms import selector_lookup
from .link import Link
from .message_frames import MessageFrames
from .states import State

__all__ = ["ACK_MODES", "StompSubscription", "Subscriptions", "consumer_tag"]

ACK_MODES = frozenset({"auto", "client", "client-individual"})
# read per delivery (has_credit): a module name, where ``State.CONNECTED`` is an Enum class
# attribute read (some 100 ns on Python 3.11)
_CONNECTED = State.CONNECTED



def _consumer_arguments(frame: Frame) -> dict[str, Any]:
    """SUBSCRIBE's consumer arguments as RabbitMQ's STOMP plugin reads its headers, turned
    into the values an AMQP consumer would send: ``x-stream-offset`` (``first``, ``last``,
    ``next``, ``offset=<n>``, ``timestamp=<unix seconds>``; another text is an age, as over
    AMQP); ``x-stream-filter``, values split at every comma (``stream_filter_header``);
    ``x-stream-match-unfiltered``, ``true``/``True`` or ``false``/``False`` (another text is
    no header, as ``boolean_header`` reads it)."""
    arguments: dict[str, Any] = {}
    value = frame.get("x-stream-offset")
    if value is not None:
        kind, eq, number = value.partition("=")
        if eq and kind in ("offset", "timestamp") and number.isascii() and number.isdigit():
            arguments["x-stream-offset"] = int(number) if kind == "offset" else \
                datetime.datetime.fromtimestamp(int(number), datetime.timezone.utc)
        else:
            arguments["x-stream-offset"] = value
    values = frame.get("x-stream-filter")
    if values is not None:
        arguments["x-stream-filter"] = values.split(",")
    match = {"true": True, "True": True, "false": False, "False": False}.get(
        frame.get("x-stream-match-unfiltered") or "")
    if match is not None:
        arguments["x-stream-match-unfiltered"] = match
    return arguments


class StompSubscription:
    """One SUBSCRIBE: a core consumer of one queue (``broker/consumers.py`` ``Consumer``)."""

    __slots__ = ("session", "id", "index", "tag", "queue", "destination", "no_ack",
                 "cumulative", "exclusive", "priority", "arguments", "prefetch", "unacked",
                 "selector", "arbitrates", "durable_name", "private_queue", "id_prefix",
                 "named", "held", "frames")

    def __init__(self, session: Subscriptions, sub_id: str, index: int, queue: Queue,
                 destination: str, ack_mode: str, prefetch: int, selector: Selector | None,
                 priority: int, durable_name: str | None, private_queue: bool,
                 named: bool = True) -> None:
        self.session = session
        self.id = sub_id
        self.index = index                   # session-local number
        # RabbitMQ's consumer tag: T_<id>, or Q_<destination> for a 1.0 SUBSCRIBE without id
        self.named = named                   # False: 1.0 SUBSCRIBE without id (no header)
        self.tag = consumer_tag(sub_id, destination, self.named)
        self.held = False                    # True until the SUBSCRIBE's receipt is written
        self.queue = queue
        self.destination = destination       # as subscribed (MESSAGE of temp queues)
        self.no_ack = ack_mode == "auto"
        self.cumulative = ack_mode == "client"
        self.exclusive = False
        self.priority = priority
        self.arguments: dict[str, Any] = {}
        self.prefetch = prefetch             # 0 = unlimited (RabbitMQ's STOMP default)
        self.unacked: dict[int, QueueEntry] = {}  # delivery number -> entry, in order
        self.selector = selector
        # without a selector, accepts only keeps message groups apart: a subscription alone
        # on its queue is not asked (broker/consumers.py)
        self.arbitrates = selector is None
        self.durable_name = durable_name     # durable topic subscription's queue, or None
        self.private_queue = private_queue   # this subscription's own queue (delete at end)
        # message-id / ack: <consumer tag>@@<session id>@@<delivery number>, as RabbitMQ
        self.id_prefix = f"{self.tag}@@{session.session_id}@@"
        # its MESSAGE frames' pieces, encoded once (None: built the general way)
        self.frames: MessageFrames | None = None

    def has_credit(self) -> bool:
        session = self.session
        if session.link.write_paused or session.state is not _CONNECTED or self.held:
            return False
        if self.no_ack or not self.prefetch:
            return True
        return len(self.unacked) < self.prefetch

    def accepts(self, queue: Queue, entry: QueueEntry) -> bool:
        """Message groups and the selector (see ``broker/consumers.py``)."""
        props = entry.message.properties
        headers = props.headers
        if headers:
            group = headers.get(GROUP_ID_HEADER)
            if group is not None and not groups_of(queue).may_take(header_value(group), self):
                return False
        selector = self.selector
        if selector is None:
            return True
        return selector.matches(selector_lookup(entry))

    def deliver(self, queue: Queue, entry: QueueEntry) -> None:
        headers = entry.message.properties.headers
        if headers:
            group = headers.get(GROUP_ID_HEADER)
            if group is not None:
                groups = groups_of(queue)
                group = header_value(group)
                if header_value(headers.get(GROUP_SEQ_HEADER, "")) == "-1":
                    groups.close(group)
                else:
                    groups.claim(group, self)
        self.session.deliver(self, entry)

    def cancelled(self, queue: Queue) -> None:
        self.session.subscription_cancelled(self)


def consumer_tag(sub_id: str, destination: str, named: bool) -> str:
    """RabbitMQ's consumer tag of a subscription (also the start of its message ids)."""
    return "T_" + sub_id if named else "Q_" + destination


class Subscriptions:
    """SUBSCRIBE/UNSUBSCRIBE/ACK/NACK and MESSAGE delivery of a :class:`StompSession`."""

    # the session's state this part reads and writes (StompSession.__init__ sets it all)
    session_id: str
    state: State
    link: Link
    broker: Broker
    user: Any
    vhost: Any
    version: str
    client_id: str | None
    subscriptions: dict[str, StompSubscription]
    _subs_by_prefix: dict[str, StompSubscription]
    _held: list[StompSubscription]
    _next_sub_index: int
    _next_delivery: int
    exclusive_queues: list[Queue]
    _temp_queues: dict[str, Queue]
    _kick: dict[int, Queue]
    _acked: dict[int, tuple[Queue, list[QueueEntry]]]

    if TYPE_CHECKING:
        # the session's queue and permission helpers (StompSession defines them)
        def _check(self, kind: str, resource_kind: str, name: str) -> None: ...
        def _ensure_queue(self, name: str, frame: Frame, for_subscribe: bool = False
                          ) -> Queue: ...
        def _private_queue(self, prefix: str) -> Queue: ...
        @staticmethod
        def _queue_arguments(frame: Frame) -> dict[str, Any]: ...
        def _transaction(self, tx: str) -> list[Frame]: ...

    def _on_subscribe(self, frame: Frame) -> None:
        destination = parse_destination(frame.get("destination"), "SUBSCRIBE")
        sub_id = frame.get("id")
        named = sub_id is not None
        if sub_id is None:
            if self.version != "1.0":
                raise StompError("Missing header 'id'", "SUBSCRIBE needs an 'id' header")
            if any((frame.get(h) or "").lower() == "true" for h in ("durable", "persistent")):
                raise StompError("Missing Header",
                                 "A durable subscription requires an 'id' header\n")
            sub_id = destination.text
        if sub_id in self.subscriptions:
            raise SubscriptionRefused("Duplicated subscription identifier",
                             f"A subscription identified by "
                             f"'{consumer_tag(sub_id, destination.text, named)}' already exists.")
        ack_mode = frame.get("ack", "auto")
        if ack_mode not in ACK_MODES:
            raise StompError("Invalid ack mode",
                             f"ack must be auto, client or client-individual, not {ack_mode!r}")
        prefetch = int_header(frame, "prefetch-count", 0)
        if prefetch is None:
            prefetch = int_header(frame, "activemq.prefetchSize", 0)
        priority = int_header(frame, "x-priority", -2 ** 31, 2 ** 31) or \
            int_header(frame, "activemq.priority", 0, 127) or 0
        selector = None
        text = frame.get("selector")
        if text is not None and text.strip():
            try:
                selector = Selector.parse(text)
            except SelectorError as error:
                # ActiveMQ: refused, not fatal; the ERROR's message is the selector, its body
                # starts with the JMS exception's name (then warren says what is wrong)
                raise Refused(text,
                              f"javax.jms.InvalidSelectorException: {text}\n{error}\n") from None
        queue, durable_name, private = self._subscription_queue(destination, sub_id, frame)
        self._check("read", "queue", queue.name)
        arguments = _consumer_arguments(frame)
        queue.check_consume(ack_mode == "auto", prefetch or 0, 0, arguments)
        # held: no MESSAGE before this SUBSCRIBE's RECEIPT (RabbitMQ's order); see handle()
        self._add_subscription(sub_id, queue, destination.text, ack_mode, prefetch or 0,
                               selector, priority, durable_name, private, named=named, held=True,
                               arguments=arguments)

    def _subscription_queue(self, destination: Destination, sub_id: str, frame: Frame
                            ) -> tuple[Queue, str | None, bool]:
        vhost = self.vhost
        kind = destination.kind
        if kind is Kind.QUEUE:
            return self._ensure_queue(destination.name, frame, for_subscribe=True), None, False
        if kind in (Kind.AMQ_QUEUE, Kind.REPLY_QUEUE):
            queue = vhost.queue(destination.name)
            queue.check_access(self)
            return queue, None, False
        if kind is Kind.TEMP_QUEUE:
            queue = self._temp_queues.get(destination.name)
            if queue is None or queue.deleted:
                queue = self._private_queue("stomp-temp-")
                self._temp_queues[destination.name] = queue
            return queue, None, True
        # TOPIC / EXCHANGE: a queue of this subscription's own, bound to the exchange
        exchange_name = destination.exchange
        exchange = vhost.exchange(exchange_name)
        self._check("read", "exchange", exchange_name)
        # before any queue is made for the subscription: nothing is left behind when refused.
        # RabbitMQ's STOMP plugin makes this check itself, so its ERROR body is the bare
        # explanation, without the "ACCESS_REFUSED - " of errors from a channel
        try:
            self.broker.check_topic(self.user, vhost.name, exchange, "read",
                                    destination.routing_key)
        except AccessRefused as e:
            raise StompError("access_refused", e.text) from None
        durable_name = self._durable_subscription_name(sub_id, frame)
        if durable_name is not None:
            queue = vhost.queues.get(durable_name)
            if queue is not None and self._durable_subscription_changed(queue, destination,
                                                                        frame):
                # JMS: a new topic or selector for a durable subscription is an unsubscribe
                # and a new subscription (ActiveMQ drops what the old one held)
                if len(queue.consumers):
                    raise Refused("Durable consumer is in use",
                                  "javax.jms.JMSException: Durable consumer is in use\n")
                self._check("configure", "queue", durable_name)
                vhost.delete_queue(durable_name, connection=self)
                queue = None
            if queue is None:
                self._check("configure", "queue", durable_name)
                arguments = self._queue_arguments(frame)
                arguments[DURABLE_SUBSCRIPTION_ARGUMENT] = describe_subscription(
                    self.client_id or frame.get("client-id"),
                    frame.get("activemq.subscriptionName") or sub_id, destination.text,
                    frame.get("selector"))
                queue = vhost.declare_queue(durable_name, durable=True, auto_delete=False,
                                            arguments=arguments, connection=self)
            else:
                queue.check_access(self)
            private = False
        elif name := frame.get("x-queue-name"):
            # RabbitMQ: the subscriber names its queue (AMQP clients can then publish to it);
            # not durable, gone with its last consumer; with ``exclusive:true`` this session's
            # alone (the console's watch panel binds one such queue from several SUBSCRIBEs)
            queue = vhost.queues.get(name)
            if queue is None:
                self._check("configure", "queue", name)
                exclusive = (frame.get("exclusive") or "").lower() == "true"
                queue = vhost.declare_queue(name, durable=False, auto_delete=True,
                                            exclusive_owner=self if exclusive else None,
                                            arguments=self._queue_arguments(frame),
                                            connection=self)
                if exclusive:
                    self.exclusive_queues.append(queue)
            else:
                queue.check_access(self)
            private = False
        else:
            queue = self._private_queue("stomp-subscription-")
            private = True
        self._check("write", "queue", queue.name)
        vhost.bind(exchange_name, queue, destination.routing_key)
        return queue, durable_name, private

    @staticmethod
    def _durable_subscription_changed(queue: Queue, destination: Destination,
                                      frame: Frame) -> bool:
        """True when *frame* names the durable subscription of *queue* with another topic or
        selector than it was made with (a queue made before warren recorded that: False)."""
        about = queue.arguments.get(DURABLE_SUBSCRIPTION_ARGUMENT)
        if not isinstance(about, dict):
            return False
        selector = (frame.get("selector") or "").strip()
        return (about.get("destination") != destination.text
                or (about.get("selector") or "").strip() != selector)

    def _durable_subscription_name(self, sub_id: str, frame: Frame) -> str | None:
        """The queue of a durable topic subscription named by this frame, or None."""
        name = frame.get("activemq.subscriptionName")
        if name is None:
            durable = (frame.get("durable") or frame.get("persistent") or "").lower() == "true"
            if not durable or (frame.get("auto-delete") or "").lower() == "true":
                return None
            if frame.get("x-queue-name"):
                return frame.get("x-queue-name")     # RabbitMQ: the subscriber names the queue
            name = sub_id
        client = self.client_id or frame.get("client-id")
        return f"stomp-subscription-{client}-{name}" if client else f"stomp-subscription-{name}"

    def _add_subscription(self, sub_id: str, queue: Queue, destination: str, ack_mode: str,
                          prefetch: int, selector: Selector | None, priority: int,
                          durable_name: str | None, private: bool, named: bool = True,
                          held: bool = False,
                          arguments: dict[str, Any] | None = None) -> StompSubscription:
        self._next_sub_index += 1
        sub = StompSubscription(self, sub_id, self._next_sub_index, queue, destination, ack_mode,
                                prefetch, selector, priority, durable_name, private, named)
        sub.held = held
        sub.arguments = arguments or {}
        try:
            sub.frames = MessageFrames(
                self.version, sub_id, named, sub.id_prefix,
                not sub.no_ack and self.version == "1.2",
                destination if private and destination.startswith("/temp-queue/") else None)
        except ValueError:
            pass        # a piece this version cannot write: the general way leaves it out
        self.subscriptions[sub_id] = sub
        self._subs_by_prefix[sub.id_prefix] = sub
        try:
            queue.add_consumer(sub, self)
        except BrokerError:
            del self.subscriptions[sub_id]
            del self._subs_by_prefix[sub.id_prefix]
            raise
        if held:
            self._held.append(sub)
        return sub

    # ------------------------------------------------------------------ UNSUBSCRIBE
    def _on_unsubscribe(self, frame: Frame) -> None:
        """End a subscription; with ``activemq.subscriptionName`` (or RabbitMQ's
        ``durable:true``) also remove the durable subscription it names and its pending
        messages. Without it a durable subscription is only deactivated: its queue keeps
        collecting messages (JMS "close" versus "unsubscribe")."""
        sub_id = frame.get("id")
        if sub_id is None:
            if self.version != "1.0":
                raise StompError("Missing header 'id'", "UNSUBSCRIBE needs an 'id' header")
            sub_id = frame.get("destination")
            if sub_id is None:
                raise StompError("Missing header 'id'",
                                 "UNSUBSCRIBE needs an 'id' or 'destination' header")
        sub = self.subscriptions.get(sub_id)
        removing = frame.get("activemq.subscriptionName") is not None or (
            frame.get("durable") or frame.get("persistent") or "").lower() == "true"
        if not removing or (sub is not None and sub.durable_name is None):
            if sub is None:
                raise StompError("No subscription found",
                                 "UNSUBSCRIBE must refer to an existing subscription.\n"
                                 f"Subscription to \"id='{sub_id}'\" not found.\n")
            self._end_subscription(sub)
            return
        name = sub.durable_name if sub is not None else \
            self._durable_subscription_name(sub_id, frame)
        queue = self.vhost.queues.get(name) if name is not None else None
        if sub is None and queue is None:
            subscription_name = frame.get("activemq.subscriptionName")
            if subscription_name is None:
                raise StompError("No subscription found",
                                 "UNSUBSCRIBE must refer to an existing subscription.\n"
                                 f"Subscription to \"id='{sub_id}'\" not found.\n")
            # ActiveMQ's words (RegionBroker.removeSubscription), not fatal there either
            text = (f"No durable subscription exists for clientID: {self.client_id or ''} "
                    f"and subscriptionName: {subscription_name}")
            raise Refused(text, f"javax.jms.InvalidDestinationException: {text}\n")
        if queue is not None and any(c is not sub for c in queue.consumers):
            # ActiveMQ (TopicRegion.removeSubscription): refused, and it goes on delivering
            raise Refused("Durable consumer is in use",
                          "javax.jms.JMSException: Durable consumer is in use\n")
        if sub is not None:
            self._end_subscription(sub)
        if queue is not None:
            self._check("configure", "queue", queue.name)
            self.vhost.delete_queue(queue.name, connection=self)

    def _end_subscription(self, sub: StompSubscription, requeue: bool = True) -> None:
        self.subscriptions.pop(sub.id, None)
        self._subs_by_prefix.pop(sub.id_prefix, None)
        queue = sub.queue
        entries = list(sub.unacked.values())
        sub.unacked.clear()
        released = groups_of(queue).release(sub) if not queue.deleted else ()
        if entries:
            queue.requeue(entries)
        if not queue.deleted:
            queue.remove_consumer(sub)
            if released or entries:
                queue.dispatch()

    def subscription_cancelled(self, sub: StompSubscription) -> None:
        """The queue was deleted under the subscription: tell the client, keep the session."""
        self.subscriptions.pop(sub.id, None)
        self._subs_by_prefix.pop(sub.id_prefix, None)
        sub.unacked.clear()
        if self.state is State.CONNECTED:
            body = f"subscription '{sub.id}' ended: its queue '{sub.queue.name}' was deleted"
            self.link.write(encode(Frame("ERROR", (
                ("message", "Server cancelled subscription"), ("content-type", "text/plain"),
                VERSION_HEADER, ("subscription", sub.id), ("content-length", str(len(body)))),
                body.encode()), self.version))

    # ------------------------------------------------------------------ delivery
    def deliver(self, sub: StompSubscription, entry: QueueEntry) -> None:
        """Write one MESSAGE frame (the queue already counted the delivery)."""
        self._next_delivery += 1
        number = self._next_delivery
        if not sub.no_ack:
            sub.unacked[number] = entry
        frames = sub.frames
        if frames is not None:
            data = frames.build(entry, number, sub.queue.own_log)
            if data is not None:
                self.link.write(data)
                return
        message_id = sub.id_prefix + str(number)
        message = entry.message
        # RabbitMQ's order; 'subscription' only when the SUBSCRIBE named one (1.0 may not)
        headers = [("subscription", sub.id)] if sub.named else []
        headers.append(("destination", sub.destination if sub.private_queue and
                        sub.destination.startswith("/temp-queue/")
                        else destination_header(message.exchange, message.routing_key)))
        headers.append(("message-id", message_id))
        headers.append(("redelivered", "true" if entry.redelivered else "false"))
        if not sub.no_ack and self.version == "1.2":
            headers.append(("ack", message_id))
        property_headers(message.properties, headers)
        if sub.queue.own_log:   # a stream: where the message is in it (RabbitMQ's header)
            headers.append(("x-stream-offset", str(entry.seq)))
        # ActiveMQ's count: 1 on the first delivery, one more for each return to the queue
        headers.append((DELIVERY_COUNT_HEADER, str(entry.delivery_count + 1)))
        body = message.body
        headers.append(("content-length", str(len(body))))
        try:
            data = encode_message(headers, body, self.version)
        except ValueError:
            # a header this version cannot carry (1.0 has no escapes): leave that header out
            data = encode_message(representable(headers, self.version), body, self.version)
        self.link.write(data)

    # ------------------------------------------------------------------ ACK / NACK
    def _on_ack(self, frame: Frame) -> None:
        self._settle_frame(frame, "ack", False)

    def _on_nack(self, frame: Frame) -> None:
        requeue = (frame.get("requeue") or "true").lower() != "false"
        self._settle_frame(frame, "nack", requeue)

    def _settle_frame(self, frame: Frame, how: str, requeue: bool) -> None:
        name = "id" if self.version == "1.2" else "message-id"
        first = frame.first
        ack_id = first.get(name)
        if ack_id is None:
            raise StompError("Missing header", f'"{frame.command}" must include the "{name}" '
                             "header\n")
        sub, number = self._delivery(ack_id, frame.command, name)
        if number not in sub.unacked:
            raise StompError("Unknown message id",
                             f"{frame.command} for '{ack_id}', which is not an unacknowledged "
                             "message of this session")
        tx = first.get("transaction")
        if tx is not None:
            self._transaction(tx).append(frame)
            return
        self._settle(sub, number, how, requeue)

    def settle_acked(self) -> None:
        """Hand the ACKed entries gathered since the last other frame to their queues."""
        acked, self._acked = self._acked, {}
        for queue, entries in acked.values():
            if not queue.deleted:
                queue.ack(entries)

    def _delivery(self, ack_id: str, command: str, name: str) -> tuple[StompSubscription, int]:
        """The subscription and delivery number an ACK/NACK id names; RabbitMQ's errors for
        an id of another shape and for one naming no subscription of this session."""
        prefix, sep, tail = ack_id.rpartition("@@")
        if not (sep and tail.isdigit()):
            raise StompError("Invalid header", f'"{command}" must include a valid "{name}" '
                             "header\n")
        sub = self._subs_by_prefix.get(prefix + sep)
        if sub is None:
            raise StompError("Subscription not found",
                             f'Message with id "{ack_id}" has no subscription')
        return sub, int(tail)

    def _settle(self, sub: StompSubscription, number: int, how: str, requeue: bool) -> None:
        unacked = sub.unacked
        if sub.cumulative:
            entries = []
            for n in list(unacked):
                if n > number:
                    break
                entries.append(unacked.pop(n))
        else:
            entry = unacked.pop(number, None)
            entries = [entry] if entry is not None else []
        if not entries:
            return
        queue = sub.queue
        if how == "ack":   # a run of ACKs: settled with one queue.ack (flush_acks)
            acked = self._acked.get(id(queue))
            if acked is None:
                self._acked[id(queue)] = (queue, entries)
            else:
                acked[1].extend(entries)
        else:
            queue.settle(entries, ack=False, requeue=requeue)
        self._kick[id(queue)] = queue
