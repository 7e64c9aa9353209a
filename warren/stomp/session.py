"""A STOMP session: connection state, frames -> core calls, deliveries -> MESSAGE frames.

The middle of the three STOMP layers (``codec.py`` parses bytes, this module acts, and
``listener.py`` owns the socket), after RabbitMQ's ``rabbit_stomp_processor``. The session
never touches a socket: it writes encoded frames through its :class:`Link` (the listener's
protocol object), which batches them into one transport write per read or reactor turn.

States are data (:data:`ALLOWED`): before CONNECT only CONNECT/STOMP may come; a frame its
state does not allow is one error. Errors are fatal to the connection (STOMP 1.2 "ERROR":
the server closes after it) and are mapped to an ERROR frame in ``stomp/errors.py`` only; the
exception is ``Refused`` (an invalid selector, as ActiveMQ), answered while the session goes on.

What the frames mean, where STOMP leaves it to the broker (RabbitMQ's STOMP plugin unless said):

- CONNECT/STOMP: ``login``/``passcode`` against warren's users (no login: the configured default
  user, as RabbitMQ's ``default_user``; guest only from loopback). ``host`` names the vhost
  when such a vhost exists, else ``/`` (stomp.py and others send the DNS host name there).
  Heart-beats: as the client's ``heart-beat`` asks, above a floor (``heartbeats.py``).
- Headers <-> AMQP properties (both ways): content-type, content-encoding, persistent
  (delivery_mode 2), priority, correlation-id, reply-to, expiration (relative ms, RabbitMQ),
  expires (absolute epoch ms, ActiveMQ; converted to expiration), amqp-message-id
  (message_id), timestamp, type, user-id (must be the logged-in user), app-id; any other
  header is an AMQP header (a string) and comes back as a STOMP header. MESSAGE frames carry
  ``subscription``, ``destination``, ``message-id``, ``ack`` (1.2, acked modes) and
  ``redelivered:true`` when it is so.
- Receipts are written in frame order. A receipt that follows a persistent SEND routed to a
  durable queue (or a COMMIT containing one, or a persistent scheduled message) waits until
  ``broker.sync()`` says it is on disk, and so does every receipt after it.
- ACK/NACK: ``id`` (1.2) or ``message-id`` (1.0/1.1). ``client`` mode acks cumulatively (the
  message and every earlier one of that subscription), ``client-individual`` one message.
  NACK's ``requeue`` header defaults to true; ``requeue:false`` rejects (dead-letters when the
  queue has a DLX, else drops). An unknown id is an error. UNSUBSCRIBE requeues the
  subscription's unacked messages (there is no one left to ack them).
- Transactions: SEND, ACK and NACK with ``transaction`` are held until COMMIT (applied in
  order) or dropped by ABORT; a closed connection aborts its open transactions.
- ActiveMQ extras: ``selector`` (JMS SQL-92 subset, evaluated in the broker: non-matching
  messages stay queued for others), message groups (``JMSXGroupID``, broker/groups.py),
  scheduled delivery (``AMQ_SCHEDULED_*``, broker/scheduler.py), durable topic subscriptions
  (``activemq.subscriptionName``, or ``durable:true``/``persistent:true`` with ``id``).
"""

from __future__ import annotations

import enum
import logging
import secrets
from typing import Any, Callable, Protocol

from .. import __version__
from ..broker.confirms import ConfirmTracker
from ..model.errors import AccessRefused, BrokerError, PreconditionFailed
from ..broker.groups import GROUP_ID_HEADER, GROUP_SEQ_HEADER, groups_of
from ..model.message import Message, Properties, QueueEntry, parse_expiration
from ..broker.publish import Publisher
from ..broker.queue import PRIORITIZED_ARGUMENT, Queue
from ..broker.scheduler import DELAY_HEADER, PERIOD_HEADER, REPEAT_HEADER, ScheduledDelivery
from ..broker.selector import Selector, SelectorError
from ..broker.subscriptions import DURABLE_SUBSCRIPTION_ARGUMENT
from ..broker.subscriptions import describe as describe_subscription
from .client_ids import ClientIds
from .codec import Frame, StompError, encode, negotiate_version
from .destinations import Destination, Kind, destination_header, parse_destination
from .errors import VERSION_HEADER, Refused, SubscriptionRefused
from .heartbeats import negotiate as negotiate_heartbeats
from .jms import (MAX_TIMESTAMP_MS, amqp_timestamp, expires_ttl, jms_defaults, now_ms,
                  selector_lookup)

log = logging.getLogger("warren.stomp")

__all__ = ["Link", "State", "StompSession", "StompSubscription"]

SERVER_NAME = f"warren/{__version__}"


class Link(Protocol):
    """What the session needs from the connection that carries it (``listener.py``)."""

    write_paused: bool
    name: str                                           # for logs and events

    def write(self, data: bytes) -> None: ...          # batched until the next flush

    def flush(self) -> None: ...

    def close(self) -> None: ...                        # flush, then close the transport

    def set_version(self, version: str) -> None: ...    # header escaping of the parser

    def start_heartbeats(self, send_ms: int, expect_ms: int) -> None: ...

    def set_reading(self, reading: bool) -> None: ...   # memory alarm: stop/start reading


class State(enum.Enum):
    AWAIT_CONNECT = "awaiting CONNECT"
    CONNECTED = "connected"
    CLOSED = "closed"


#: Client frames each state allows; anything else is a protocol error in that state.
ALLOWED: dict[State, frozenset[str]] = {
    State.AWAIT_CONNECT: frozenset({"CONNECT", "STOMP"}),
    State.CONNECTED: frozenset({"SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN",
                                "COMMIT", "ABORT", "DISCONNECT"}),
    State.CLOSED: frozenset(),
}

ACK_MODES = frozenset({"auto", "client", "client-individual"})
_TRANSACTIONAL = frozenset({"SEND", "ACK", "NACK"})   # frames a 'transaction' header holds back

# SEND headers that are about the frame or map to AMQP properties: not copied to AMQP headers.
_NOT_AMQP_HEADERS = frozenset({
    "destination", "receipt", "transaction", "content-length", "content-type",
    "content-encoding", "persistent", "priority", "correlation-id", "reply-to", "expiration",
    "expires", "amqp-message-id", "timestamp", "type", "user-id", "app-id", "message-id",
    DELAY_HEADER, PERIOD_HEADER, REPEAT_HEADER,
})
# AMQP headers never rendered as STOMP headers: they would clash with MESSAGE's own.
_RESERVED_MESSAGE_HEADERS = frozenset({
    "subscription", "message-id", "destination", "ack", "content-length", "redelivered",
    "receipt", "transaction", "JMSXDeliveryCount",
})
DELIVERY_COUNT_HEADER = "JMSXDeliveryCount"
_TRUE = ("true", "True", "TRUE")
# x- headers of SUBSCRIBE/SEND that are not queue arguments
_NOT_QUEUE_ARGUMENTS = frozenset({"x-priority", "x-queue-name"})


def _header_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _int_header(frame: Frame, name: str, low: int = 0, high: int | None = None) -> int | None:
    raw = frame.get(name)
    if raw is None:
        return None
    text = raw.strip()
    if not (text.isascii() and text.lstrip("-").isdigit()):
        raise StompError(f"Invalid {name}", f"'{name}' must be an integer, got {raw[:40]!r}")
    value = int(text)
    if value < low or (high is not None and value > high):
        raise StompError(f"Invalid {name}", f"'{name}' {value} is out of range")
    return value


# ------------------------------------------------------------------------------- consumers
class StompSubscription:
    """One SUBSCRIBE: a core consumer of one queue (``broker/consumers.py`` ``Consumer``)."""

    __slots__ = ("session", "id", "index", "tag", "queue", "destination", "no_ack",
                 "cumulative", "exclusive", "priority", "arguments", "prefetch", "unacked",
                 "selector", "durable_name", "private_queue", "id_prefix", "named", "held")

    def __init__(self, session: "StompSession", sub_id: str, index: int, queue: Queue,
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
        self.durable_name = durable_name     # durable topic subscription's queue, or None
        self.private_queue = private_queue   # this subscription's own queue (delete at end)
        # message-id / ack: <consumer tag>@@<session id>@@<delivery number>, as RabbitMQ
        self.id_prefix = f"{self.tag}@@{session.session_id}@@"

    def has_credit(self) -> bool:
        session = self.session
        if session.link.write_paused or session.state is not State.CONNECTED or self.held:
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
            if group is not None and not groups_of(queue).may_take(_header_value(group), self):
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
                group = _header_value(group)
                if _header_value(headers.get(GROUP_SEQ_HEADER, "")) == "-1":
                    groups.close(group)
                else:
                    groups.claim(group, self)
        self.session.deliver(self, entry)

    def cancelled(self, queue: Queue) -> None:
        self.session.subscription_cancelled(self)


def consumer_tag(sub_id: str, destination: str, named: bool) -> str:
    """RabbitMQ's consumer tag of a subscription (also the start of its message ids)."""
    return "T_" + sub_id if named else "Q_" + destination


# ------------------------------------------------------------------------------- session
class StompSession:
    """One STOMP connection's state and behaviour, between codec and core."""

    def __init__(self, link: Link, broker: Any, config: Any, scheduler: ScheduledDelivery,
                 *, peer_host: str, loopback: bool, client_ids: ClientIds | None = None,
                 peer_port: int = 0) -> None:
        self.link = link
        self.broker = broker
        self.config = config
        self.scheduler = scheduler
        self.client_ids = client_ids if client_ids is not None else ClientIds(config.node_name)
        self.peer_port = peer_port
        self.peer_host = peer_host
        self.loopback = loopback
        self.state = State.AWAIT_CONNECT
        self.version = "1.0"
        self.session_id = "session-" + secrets.token_urlsafe(12)
        self.user: Any = None
        self.vhost: Any = None
        self.vhost_name: str | None = None
        self.publisher: Publisher | None = None   # the core's publish pipeline, after CONNECT
        self.client_id: str | None = None
        self.heartbeat = (0, 0)              # (server sends every ms, expects every ms)
        self.subscriptions: dict[str, StompSubscription] = {}
        self._subs_by_prefix: dict[str, StompSubscription] = {}  # message-id prefix -> sub
        self._held: list[StompSubscription] = []  # new subscriptions waiting for their receipt
        self._next_sub_index = 0
        self._next_delivery = 0
        self.transactions: dict[str, list[Frame]] = {}
        self.exclusive_queues: list[Queue] = []
        self._temp_queues: dict[str, Queue] = {}  # /temp-queue/ name -> this session's queue
        self._checked: set[tuple[str, str, str]] = set()  # permission checks passed
        self._publishing = False
        self._kick: dict[int, Queue] = {}         # queues to dispatch after this read
        # encoded RECEIPT frames in frame order; one after a stored publish waits for the sync
        self._receipts = ConfirmTracker()
        self._unsynced = False                    # stored publishes since the last sync asked
        self._close_after_receipts = False
        self._handlers: dict[str, Callable[[Frame], None]] = {
            "CONNECT": self._on_connect, "STOMP": self._on_connect, "SEND": self._on_send,
            "SUBSCRIBE": self._on_subscribe, "UNSUBSCRIBE": self._on_unsubscribe,
            "ACK": self._on_ack, "NACK": self._on_nack, "BEGIN": self._on_begin,
            "COMMIT": self._on_commit, "ABORT": self._on_abort,
            "DISCONNECT": self._on_disconnect,
        }

    # ------------------------------------------------------------------ frames in
    def handle(self, frame: Frame) -> None:
        """Act on one client frame; raises StompError/BrokerError (the listener reports it)."""
        if self._close_after_receipts:
            return      # after DISCONNECT nothing more is acted on (STOMP 1.2 "DISCONNECT")
        command = frame.command
        if command not in ALLOWED[self.state]:
            if self.state is State.AWAIT_CONNECT:
                raise StompError("Not connected",
                                 f"expected CONNECT or STOMP, got {command}")
            raise StompError("Unexpected frame", f"{command} is not allowed {self.state.value}")
        try:
            self._handlers[command](frame)
        finally:
            held, self._held = self._held, []
        receipt = frame.get("receipt")
        if receipt is not None and command not in ("CONNECT", "STOMP") and not (
                command in _TRANSACTIONAL and frame.get("transaction") is not None):
            # a transactional frame's receipt is written when its COMMIT applies it (RabbitMQ)
            self._queue_receipt(receipt, confirms=command == "SEND")
        for sub in held:
            sub.held = False
            self._kick[id(sub.queue)] = sub.queue
        if command == "DISCONNECT":
            self._close_after_receipts = True
            self._release_receipts()

    def after_read(self) -> None:
        """End of a read: one store sync for this read's stored publishes; dispatch queues."""
        if self._kick:
            queues, self._kick = self._kick, {}
            for q in queues.values():
                q.dispatch()
        if self._unsynced:
            self._unsynced = False
            d = self._receipts.sync(self.broker.sync)
            if d is not None:
                d.addCallbacks(self._synced, self._sync_failed)

    # ------------------------------------------------------------------ CONNECT
    def _on_connect(self, frame: Frame) -> None:
        version = negotiate_version(frame.get("accept-version"))
        if version is None:
            raise StompError(
                "Version mismatch", "Supported versions are 1.0,1.1,1.2\n")
        self.version = version
        self.link.set_version(version)
        login = frame.get("login")
        passcode = frame.get("passcode")
        if login is None:
            login, passcode = self.config.default_user, self.config.default_pass
        try:
            self.user = self.broker.authenticate(login, passcode or "", loopback=self.loopback,
                                                 peer=self.peer_host, protocol="STOMP")
        except AccessRefused:
            raise StompError("Bad CONNECT", f"Access refused for user '{login}'\n") from None
        host = frame.get("host")
        if host is not None and host in self.broker.vhosts:
            vhost_name = host
        elif host is not None and "/" in host:
            # a vhost-shaped name (no DNS host name has a '/') that does not exist: refused
            raise StompError("Bad CONNECT", f"Virtual host '{host}' access denied")
        else:
            vhost_name = "/"
        try:
            self.vhost = self.broker.open_vhost(self.user, vhost_name, peer=self.peer_host,
                                                protocol="STOMP", connection=self.link)
        except BrokerError:
            raise StompError("Bad CONNECT", f"Virtual host '{vhost_name}' access denied") from None
        self.vhost_name = vhost_name
        self.publisher = self.broker.publisher(self.vhost, self.user)
        client_id = frame.get("client-id")    # an empty one is an id too (ActiveMQ)
        if client_id is not None:
            self.client_ids.claim(client_id, self, f"tcp://{self.peer_host}:{self.peer_port}")
            self.client_id = client_id
        beats = negotiate_heartbeats(frame.get("heart-beat"), version,
                                     int(self.config.stomp_heartbeat_floor))
        # RabbitMQ's order: server, session, heart-beat (0,0 for 1.0), version
        headers = [("server", SERVER_NAME), ("session", self.session_id),
                   ("heart-beat", beats.header), ("version", version)]
        self.heartbeat = (beats.send_ms, beats.expect_ms)
        self.state = State.CONNECTED
        self.link.write(encode(Frame("CONNECTED", tuple(headers)), version))
        self.link.start_heartbeats(beats.send_ms, beats.expect_ms)
        self.broker.emit("connection.created", name=self.link.name)

    # ------------------------------------------------------------------ SEND
    def _on_send(self, frame: Frame) -> None:
        if frame.get("message-id") is not None:
            # RabbitMQ: the broker names messages; a client-set message-id is refused
            raise StompError("Invalid header", "'message-id' is not allowed on 'SEND'.\n")
        destination = parse_destination(frame.get("destination"))
        tx = frame.get("transaction")
        if tx is not None:
            self._transaction(tx).append(frame)
            return
        self._publish(destination, frame)

    def _publish(self, destination: Destination, frame: Frame) -> None:
        vhost = self.vhost
        kind = destination.kind
        routing_key = destination.routing_key
        if kind is Kind.QUEUE:
            queue = vhost.queues.get(destination.name)
            if queue is None:
                self._ensure_queue(destination.name, frame)
            elif queue.exclusive_owner is not None:
                queue.check_access(self)
        elif kind is Kind.TEMP_QUEUE:
            routing_key = self._temp_queue(destination).name
        exchange_name = destination.exchange
        exchange = self.publisher.exchange(exchange_name)
        props, scheduled = self._properties(frame)
        if kind in (Kind.QUEUE, Kind.TOPIC):
            # ActiveMQ-style destinations get JMS's defaults; /amq/queue/ and /exchange/ are
            # RabbitMQ's world, where a message carries only what its publisher set
            jms_defaults(props, now_ms())
        message = Message(exchange_name, routing_key, frame.body, codec=self.broker.codec,
                          props=props, persistent=props.delivery_mode == 2,
                          priority=props.priority or 0, ttl=parse_expiration(props.expiration))
        if not self._publishing:
            self._publishing = True
            self.broker.register_blockable(self)
        if expires_ttl(int((props.headers or {}).get("expires") or 0), now_ms()) == -1:
            return      # expired before it arrived: never delivered (ActiveMQ drops it too)
        if scheduled is not None:
            # checked now: the scheduler publishes later, as the broker
            self.publisher.authorise(exchange, routing_key)
            delay, period, repeat = scheduled
            if self.scheduler.schedule(vhost.name, message, delay, period, repeat):
                self._unsynced = True
            return
        routed = self.publisher.publish(exchange, message)
        if routed.stored:
            self._unsynced = True

    def _properties(self, frame: Frame) -> tuple[Properties, tuple[int, int, int] | None]:
        """AMQP properties from a SEND's headers, and (delay, period, repeat) if scheduled."""
        props = Properties()
        custom: dict[str, Any] = {}
        scheduled = None
        seen: set[str] = set()
        for name, value in frame.headers:
            if name in seen:
                continue          # STOMP 1.2: the first of repeated headers wins
            seen.add(name)
            if name not in _NOT_AMQP_HEADERS:
                custom[name] = value
            elif name == "content-type":
                props.content_type = value
            elif name == "persistent":
                props.delivery_mode = 2 if value.lower() == "true" else 1
            elif name == "priority":
                props.priority = _int_header(frame, "priority", 0, 255)
            elif name == "correlation-id":
                props.correlation_id = value
            elif name == "reply-to":
                props.reply_to = self._reply_to(value)
            elif name == "expiration":
                ttl = _int_header(frame, "expiration", 0)
                props.expiration = str(ttl)
            elif name == "expires":
                # JMSExpiration (jms.py): kept as sent, and the ms left as the AMQP expiration
                ttl = expires_ttl(_int_header(frame, "expires", 0), now_ms())
                custom[name] = value.strip()
                if ttl is not None and props.expiration is None:
                    props.expiration = str(max(ttl, 0))
            elif name == "amqp-message-id":
                props.message_id = value
            elif name == "content-encoding":
                props.content_encoding = value
            elif name == "timestamp":
                stamp = _int_header(frame, "timestamp", 0, MAX_TIMESTAMP_MS)
                props.timestamp = amqp_timestamp(stamp)
                if props.timestamp != stamp:
                    custom[name] = value.strip()   # ms, as ActiveMQ clients send: kept as sent
            elif name == "type":
                props.type = value
            elif name == "user-id":
                if value != self.user.name:
                    raise PreconditionFailed(
                        f"user_id property set to '{value}' but authenticated user was "
                        f"'{self.user.name}'")
                props.user_id = value
            elif name == "app-id":
                props.app_id = value
            elif name in (DELAY_HEADER, PERIOD_HEADER, REPEAT_HEADER):
                if scheduled is None:
                    delay = _int_header(frame, DELAY_HEADER, 0) or 0
                    period = _int_header(frame, PERIOD_HEADER, 0) or 0
                    repeat = _int_header(frame, REPEAT_HEADER, 0) or 0
                    scheduled = (delay, period, repeat)
        if custom:
            props.headers = custom
        return props, scheduled

    def _reply_to(self, value: str) -> str:
        """``/temp-queue/x`` becomes this session's private queue (AMQP sees its bare name)."""
        if value.startswith(Kind.TEMP_QUEUE.value):
            destination = parse_destination(value)
            queue = self._temp_queue(destination)
            return queue.name
        return value

    # ------------------------------------------------------------------ queues
    def _check(self, kind: str, resource_kind: str, name: str) -> None:
        key = (kind, resource_kind, name)
        if key not in self._checked:
            self.broker.check(self.user, self.vhost_name, kind, resource_kind, name)
            self._checked.add(key)

    def _ensure_queue(self, name: str, frame: Frame, for_subscribe: bool = False) -> Queue:
        """A /queue/ destination's queue, declared as RabbitMQ does if it is missing."""
        vhost = self.vhost
        queue = vhost.queues.get(name)
        if queue is None:
            self._check("configure", "queue", name)
            durable = (frame.get("durable") or "true").lower() != "false" if for_subscribe \
                else True
            auto_delete = for_subscribe and (frame.get("auto-delete") or "").lower() == "true"
            exclusive = for_subscribe and (frame.get("exclusive") or "").lower() == "true"
            queue = vhost.declare_queue(
                name, durable=durable, exclusive_owner=self if exclusive else None,
                auto_delete=auto_delete, arguments=self._queue_arguments(frame),
                connection=self)
            if exclusive:
                self.exclusive_queues.append(queue)
        else:
            queue.check_access(self)
        return queue

    @staticmethod
    def _queue_arguments(frame: Frame) -> dict[str, Any]:
        """RabbitMQ reads ``x-*`` headers of SEND/SUBSCRIBE as queue arguments; a queue a
        STOMP client creates orders by JMS priority unless they say otherwise (jms.py); the
        argument is one AMQP's redeclare ignores, so AMQP clients can still declare it."""
        arguments: dict[str, Any] = {}
        for name, value in frame.headers:
            if name.startswith("x-") and name not in _NOT_QUEUE_ARGUMENTS \
                    and name not in arguments:
                arguments[name] = int(value) if value.isdigit() else value
        arguments.setdefault(PRIORITIZED_ARGUMENT, True)
        return arguments

    def _private_queue(self, prefix: str) -> Queue:
        vhost = self.vhost
        name = prefix + secrets.token_urlsafe(16)
        while name in vhost.queues:
            name = prefix + secrets.token_urlsafe(16)
        queue = vhost.declare_queue(name, durable=False, exclusive_owner=self, auto_delete=True,
                                    connection=self)
        self.exclusive_queues.append(queue)
        return queue

    def _temp_queue(self, destination: Destination) -> Queue:
        """This session's queue for ``/temp-queue/name``, subscribed to implicitly."""
        queue = self._temp_queues.get(destination.name)
        if queue is not None and not queue.deleted:
            return queue
        queue = self._private_queue("stomp-temp-")
        self._temp_queues[destination.name] = queue
        if destination.text not in self.subscriptions:
            self._add_subscription(destination.text, queue, destination.text, "auto", 0, None,
                                   0, None, private=True)
        return queue

    # ------------------------------------------------------------------ SUBSCRIBE
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
        prefetch = _int_header(frame, "prefetch-count", 0)
        if prefetch is None:
            prefetch = _int_header(frame, "activemq.prefetchSize", 0)
        priority = _int_header(frame, "x-priority", -2 ** 31, 2 ** 31) or \
            _int_header(frame, "activemq.priority", 0, 127) or 0
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
        # held: no MESSAGE before this SUBSCRIBE's RECEIPT (RabbitMQ's order); see handle()
        self._add_subscription(sub_id, queue, destination.text, ack_mode, prefetch or 0,
                               selector, priority, durable_name, private, named=named, held=True)

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
        elif frame.get("x-queue-name"):
            # RabbitMQ: the subscriber names its queue (AMQP clients can then publish to it);
            # not durable, gone with its last consumer; with ``exclusive:true`` this session's
            # alone (the console's watch panel binds one such queue from several SUBSCRIBEs)
            name = frame.get("x-queue-name")
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
                          held: bool = False) -> StompSubscription:
        self._next_sub_index += 1
        sub = StompSubscription(self, sub_id, self._next_sub_index, queue, destination, ack_mode,
                                prefetch, selector, priority, durable_name, private, named)
        sub.held = held
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
        message_id = sub.id_prefix + str(number)
        if not sub.no_ack:
            sub.unacked[number] = entry
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
        _property_headers(message.properties, headers)
        # ActiveMQ's count: 1 on the first delivery, one more for each return to the queue
        headers.append((DELIVERY_COUNT_HEADER, str(entry.delivery_count + 1)))
        body = message.body
        headers.append(("content-length", str(len(body))))
        try:
            data = encode(Frame("MESSAGE", tuple(headers), bytes(body)), self.version)
        except ValueError:
            # a header this version cannot carry (1.0 has no escapes): leave that header out
            data = encode(Frame("MESSAGE", _representable(headers, self.version), bytes(body)),
                          self.version)
        self.link.write(data)

    # ------------------------------------------------------------------ ACK / NACK
    def _on_ack(self, frame: Frame) -> None:
        self._settle_frame(frame, "ack", False)

    def _on_nack(self, frame: Frame) -> None:
        requeue = (frame.get("requeue") or "true").lower() != "false"
        self._settle_frame(frame, "nack", requeue)

    def _settle_frame(self, frame: Frame, how: str, requeue: bool) -> None:
        name = "id" if self.version == "1.2" else "message-id"
        ack_id = frame.get(name)
        if ack_id is None:
            raise StompError("Missing header", f'"{frame.command}" must include the "{name}" '
                             "header\n")
        sub, number = self._delivery(ack_id, frame.command, name)
        if number not in sub.unacked:
            raise StompError("Unknown message id",
                             f"{frame.command} for '{ack_id}', which is not an unacknowledged "
                             "message of this session")
        tx = frame.get("transaction")
        if tx is not None:
            self._transaction(tx).append(frame)
            return
        self._settle(sub, number, how, requeue)

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
        if how == "ack":
            queue.ack(entries)
        elif requeue:
            queue.requeue(entries)
        else:
            queue.reject(entries)
        self._kick[id(queue)] = queue

    # ------------------------------------------------------------------ transactions
    def _transaction(self, tx: str) -> list[Frame]:
        frames = self.transactions.get(tx)
        if frames is None:
            raise StompError("Bad transaction", f'Invalid transaction identifier: "{tx}"\n')
        return frames

    def _tx_header(self, frame: Frame) -> str:
        tx = frame.get("transaction")
        if tx is None:
            raise StompError("Missing header 'transaction'",
                             f"{frame.command} needs a 'transaction' header")
        return tx

    def _on_begin(self, frame: Frame) -> None:
        tx = self._tx_header(frame)
        if tx in self.transactions:
            raise StompError("Duplicate transaction", f"transaction '{tx}' is already open")
        self.transactions[tx] = []

    def _on_commit(self, frame: Frame) -> None:
        tx = self._tx_header(frame)
        frames = self._transaction(tx)
        del self.transactions[tx]
        for held in frames:
            self._apply_held(held)
            receipt = held.get("receipt")
            if receipt is not None:
                self._queue_receipt(receipt, confirms=held.command == "SEND")

    def _apply_held(self, held: Frame) -> None:
        """One SEND/ACK/NACK of a committed transaction."""
        if held.command == "SEND":
            self._publish(parse_destination(held.get("destination")), held)
            return
        name = "id" if self.version == "1.2" else "message-id"
        try:
            sub, number = self._delivery(held.get(name), held.command, name)
        except StompError:
            return   # its subscription ended meanwhile: the message was requeued
        if held.command == "ACK":
            self._settle(sub, number, "ack", False)
        else:
            self._settle(sub, number, "nack",
                         (held.get("requeue") or "true").lower() != "false")

    def _on_abort(self, frame: Frame) -> None:
        tx = self._tx_header(frame)
        self._transaction(tx)
        del self.transactions[tx]

    # ------------------------------------------------------------------ receipts
    def _queue_receipt(self, receipt: str, confirms: bool = False) -> None:
        """Write a RECEIPT in frame order. A SEND's receipt is RabbitMQ's publisher confirm
        (its STOMP adapter answers receipts on confirms), counted as ``confirm`` when it is
        written."""
        data = encode(Frame("RECEIPT", (("receipt-id", receipt),)), self.version)
        if self._unsynced or self._receipts:
            self._receipts.add((data, confirms), self._unsynced)
        else:
            self._write_receipt(data, confirms)

    def _write_receipt(self, data: bytes, confirms: bool) -> None:
        self.link.write(data)
        if confirms:
            self.publisher.confirmed(1)

    def _synced(self, _: Any) -> None:
        if self.state is State.CLOSED:
            return
        self._release_receipts()
        self.link.flush()

    def _release_receipts(self) -> None:
        for _seq, (data, confirms), _ok in self._receipts.release():
            self._write_receipt(data, confirms)
        if self._close_after_receipts and not self._receipts and self.state is not State.CLOSED:
            self.state = State.CLOSED
            self.link.close()

    def _sync_failed(self, failure: Any) -> None:
        log.warning("store sync failed on STOMP session %s: %s", self.session_id,
                    failure.getErrorMessage())
        if self.state is State.CLOSED:
            return
        self._receipts.clear()
        self.link.write(encode(_store_failed_frame(), self.version))
        self.state = State.CLOSED
        self.link.close()

    # ------------------------------------------------------------------ DISCONNECT / close
    def _on_disconnect(self, frame: Frame) -> None:
        for sub in list(self.subscriptions.values()):
            self._end_subscription(sub)

    def closed(self) -> None:
        """The transport is gone: requeue unacked messages, drop consumers and private queues."""
        self.state = State.CLOSED
        self.broker.unregister_blockable(self)
        if self.client_id is not None:
            self.client_ids.release(self.client_id, self)
        self.transactions.clear()
        self._receipts.clear()
        for sub in list(self.subscriptions.values()):
            self._end_subscription(sub)
        for queue in self.exclusive_queues:
            vhost = queue.vhost
            if not queue.deleted and vhost.queues.get(queue.name) is queue:
                vhost.delete_queue(queue.name, reason="owner closed")
        self.exclusive_queues.clear()
        self._temp_queues.clear()

    def set_blocked(self, blocked: bool, reason: str) -> None:
        """Memory alarm (``Broker.register_blockable``): stop reading from this client."""
        if self.state is not State.CLOSED:
            self.link.set_reading(not blocked)

    def kick(self) -> None:
        """Write room came back: let this session's queues deliver again."""
        for sub in list(self.subscriptions.values()):
            sub.queue.dispatch()


def _store_failed_frame() -> Frame:
    body = b"the message store could not make published messages durable"
    return Frame("ERROR", (("message", "Store failure"), ("content-type", "text/plain"),
                           VERSION_HEADER, ("content-length", str(len(body)))), body)


def _property_headers(props: Properties, out: list[tuple[str, str]]) -> None:
    """Append the STOMP headers of AMQP properties (RabbitMQ's mapping) to *out*."""
    if props.content_type is not None:
        out.append(("content-type", props.content_type))
    if props.content_encoding is not None:
        out.append(("content-encoding", props.content_encoding))
    if props.delivery_mode == 2:
        out.append(("persistent", "true"))
    if props.priority is not None:
        out.append(("priority", str(props.priority)))
    if props.correlation_id is not None:
        out.append(("correlation-id", props.correlation_id))
    if props.reply_to is not None:
        reply_to = props.reply_to
        out.append(("reply-to", reply_to if reply_to.startswith("/")
                    else "/reply-queue/" + reply_to))
    if props.expiration is not None:
        out.append(("expiration", props.expiration))
    if props.message_id is not None:
        out.append(("amqp-message-id", props.message_id))
    if props.timestamp is not None and not (props.headers and "timestamp" in props.headers):
        out.append(("timestamp", str(props.timestamp)))
    if props.type is not None:
        out.append(("type", props.type))
    if props.user_id is not None:
        out.append(("user-id", props.user_id))
    if props.app_id is not None:
        out.append(("app-id", props.app_id))
    headers = props.headers
    if headers:
        for name, value in headers.items():
            if name not in _RESERVED_MESSAGE_HEADERS and value is not None and name:
                text = _header_value(value)
                if isinstance(value, (dict, list, tuple)):
                    continue
                out.append((name, text))


def _representable(headers: list[tuple[str, str]], version: str) -> tuple[tuple[str, str], ...]:
    """*headers* without the ones *version* cannot write (LF, or ':' in a 1.0 name)."""
    kept = []
    for name, value in headers:
        if not name or "\n" in name or "\n" in value or name.endswith("\r") \
                or value.endswith("\r") and version != "1.2":
            continue
        if version == "1.0" and ":" in name:
            continue
        kept.append((name, value))
    return tuple(kept)
