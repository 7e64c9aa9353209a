"""A STOMP session: connection state, frames -> core calls, deliveries -> MESSAGE frames.

The middle of the three STOMP layers (``codec.py`` parses bytes, this module acts, and
``listener.py`` owns the socket), after RabbitMQ's ``rabbit_stomp_processor``. The session
never touches a socket: it writes encoded frames through its :class:`Link` (the listener's
protocol object), which batches them into one transport write per read or reactor turn.

States are data (``states.py``): before CONNECT only CONNECT/STOMP may come; a frame its
state does not allow is one error. Errors are fatal to the connection (STOMP 1.2 "ERROR":
the server closes after it) and are mapped to an ERROR frame in ``stomp/errors.py`` only; the
exception is ``Refused`` (an invalid selector, as ActiveMQ), answered while the session goes on.

What the frames mean, where STOMP leaves it to the broker (RabbitMQ's STOMP plugin unless said):

- CONNECT/STOMP: ``login``/``passcode`` against warren's users (no login: the configured default
  user, as RabbitMQ's ``default_user``; guest only from loopback). ``host`` names the vhost
  when such a vhost exists, else ``/`` (stomp.py and others send the DNS host name there).
  Heart-beats: as the client's ``heart-beat`` asks, above a floor (``heartbeats.py``).
- Headers <-> AMQP properties (both ways): ``headers.py``, RabbitMQ's mapping as tables.
  MESSAGE frames, subscriptions, ACK/NACK and durable subscriptions: ``subscriptions.py``.
- Receipts are written in frame order. A receipt that follows a persistent SEND routed to a
  durable queue (or a COMMIT containing one, or a persistent scheduled message) waits until
  ``broker.sync()`` says it is on disk, and so does every receipt after it.
- Transactions: SEND, ACK and NACK with ``transaction`` are held until COMMIT (applied in
  order) or dropped by ABORT; a closed connection aborts its open transactions.
- ActiveMQ extras here: scheduled delivery (``AMQ_SCHEDULED_*``, broker/scheduler.py) and
  ``client-id``.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Callable

from .. import __version__
from ..broker.broker import Broker
from ..broker.confirms import ConfirmTracker
from ..model.errors import AccessRefused, BrokerError
from ..model.message import Message, QueueEntry, parse_expiration
from ..broker.publish import Publisher
from ..broker.queue import PRIORITIZED_ARGUMENT, Queue
from ..broker.scheduler import ScheduledDelivery
from ..config import Config
from .client_ids import ClientIds
from .codec import Frame, StompError, encode, negotiate_version
from .destinations import Destination, Kind, parse_destination
from .errors import VERSION_HEADER
from .headers import send_properties
from .heartbeats import negotiate as negotiate_heartbeats
from .jms import expires_ttl, jms_defaults, now_ms
from .link import Link
from .states import ALLOWED, State
from .subscriptions import StompSubscription, Subscriptions

log = logging.getLogger("warren.stomp")

__all__ = ["Link", "StompSession"]

SERVER_NAME = f"warren/{__version__}"


_TRANSACTIONAL = frozenset({"SEND", "ACK", "NACK"})   # frames a 'transaction' header holds back
# x- headers of SUBSCRIBE/SEND that are not queue arguments
_NOT_QUEUE_ARGUMENTS = frozenset({"x-priority", "x-queue-name"})
# the kinds every SEND compares with, as module names: ``Kind.QUEUE`` is an Enum class
# attribute, some 100 ns per read on Python 3.11 against 20 for a global
_QUEUE, _TOPIC, _TEMP_QUEUE = Kind.QUEUE, Kind.TOPIC, Kind.TEMP_QUEUE
_CONNECTED = State.CONNECTED
_CONNECTED_ALLOWS = ALLOWED[State.CONNECTED]


# ------------------------------------------------------------------------------- session
class StompSession(Subscriptions):
    """One STOMP connection's state and behaviour, between codec and core (subscriptions and
    delivery in :class:`~warren.stomp.subscriptions.Subscriptions`)."""

    def __init__(self, link: Link, broker: Broker, config: Config, scheduler: ScheduledDelivery,
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
        self.vhost_name = ""                 # after CONNECT
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
        # ACKed entries not yet handed to their queue: a run of ACK frames is settled in one
        # queue.ack per queue, before the next other frame and at the end of the read
        self._acked: dict[int, tuple[Queue, list[QueueEntry]]] = {}
        # encoded RECEIPT frames in frame order; one after a stored publish waits for the sync
        self._receipts = ConfirmTracker()
        self._unsynced = False                    # stored publishes since the last sync asked
        self._close_after_receipts = False

    # ------------------------------------------------------------------ frames in
    def handle(self, frame: Frame) -> None:
        """Act on one client frame; raises StompError/BrokerError (the listener reports it)."""
        if self._close_after_receipts:
            return      # after DISCONNECT nothing more is acted on (STOMP 1.2 "DISCONNECT")
        command = frame.command
        if self._acked and command != "ACK":
            self.settle_acked()
        state = self.state
        # a connected session's frames skip the dict: an Enum's __hash__ is a Python call
        if command not in (_CONNECTED_ALLOWS if state is _CONNECTED else ALLOWED[state]):
            if state is State.AWAIT_CONNECT:
                raise StompError("Not connected",
                                 f"expected CONNECT or STOMP, got {command}")
            raise StompError("Unexpected frame", f"{command} is not allowed {self.state.value}")
        try:
            _HANDLERS[command](self, frame)
        finally:
            held = self._held
            if held:        # a new list only when a SUBSCRIBE held one back
                self._held = []
        receipt = frame.first.get("receipt")
        if receipt is not None and command not in ("CONNECT", "STOMP") and not (
                command in _TRANSACTIONAL and "transaction" in frame.first):
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
        if self._acked:
            self.settle_acked()
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
        passcode: str | None = frame.get("passcode") or ""
        if login is None:
            # RabbitMQ's stomp.ssl_cert_login: the client certificate names the user, whose
            # password is not asked for; without a name, the default user
            cert_name = self.link.certificate_name() if self.config.stomp_ssl_cert_login \
                else None
            if cert_name is not None:
                login, passcode = cert_name, None
            else:
                login, passcode = self.config.default_user, self.config.default_pass
        try:
            self.user = self.broker.authenticate(login, passcode, loopback=self.loopback,
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
        first = frame.first
        if "message-id" in first:
            # RabbitMQ: the broker names messages; a client-set message-id is refused
            raise StompError("Invalid header", "'message-id' is not allowed on 'SEND'.\n")
        destination = parse_destination(first.get("destination"))
        tx = first.get("transaction")
        if tx is not None:
            self._transaction(tx).append(frame)
            return
        self._publish(destination, frame)

    def _publish(self, destination: Destination, frame: Frame) -> None:
        vhost = self.vhost
        kind = destination.kind
        routing_key = destination.routing_key
        if kind is _QUEUE:
            queue = vhost.queues.get(destination.name)
            if queue is None:
                self._ensure_queue(destination.name, frame)
            elif queue.exclusive_owner is not None:
                queue.check_access(self)
        elif kind is _TEMP_QUEUE:
            routing_key = self._temp_queue(destination).name
        exchange_name = destination.exchange
        publisher = self.publisher
        assert publisher is not None    # SEND comes after CONNECT (states.py)
        exchange = publisher.exchange(exchange_name)
        props, scheduled = send_properties(frame, self.user.name, self._reply_to)
        now = now_ms()
        if kind is _QUEUE or kind is _TOPIC:
            # ActiveMQ-style destinations get JMS's defaults; /amq/queue/ and /exchange/ are
            # RabbitMQ's world, where a message carries only what its publisher set
            jms_defaults(props, now)
        message = Message.make(exchange_name, routing_key, frame.body, self.broker.codec,
                                 None, props, props.delivery_mode == 2, props.priority or 0,
                                 parse_expiration(props.expiration))
        if not self._publishing:
            self._publishing = True
            self.broker.register_blockable(self)
        expires = props.headers.get("expires") if props.headers else None
        if expires and expires_ttl(int(expires), now) == -1:
            return      # expired before it arrived: never delivered (ActiveMQ drops it too)
        if scheduled is not None:
            # checked now: the scheduler publishes later, as the broker
            publisher.authorise(exchange, routing_key)
            delay, period, repeat = scheduled
            if self.scheduler.schedule(vhost.name, message, delay, period, repeat):
                self._unsynced = True
            return
        if props.reply_to is None:
            # nothing for direct reply-to to rewrite (Publisher.reply_to): straight to routing
            routed = publisher.route(exchange, message)
        else:
            routed = publisher.publish(exchange, message)
        if routed.stored:
            self._unsynced = True

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
            # an ACK/NACK without the header was refused before it was held
            sub, number = self._delivery(held.first[name], held.command, name)
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
        if self._unsynced or self._receipts.entries:
            self._receipts.add((data, confirms), self._unsynced)
        else:
            self._write_receipt(data, confirms)

    def _write_receipt(self, data: bytes, confirms: bool) -> None:
        self.link.write(data)
        if confirms and self.publisher is not None:
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
        """Everything the session holds is released before its RECEIPT is written (as
        ActiveMQ answers DISCONNECT once the connection's removal is done, and warren's AMQP
        releases before ``close-ok``): a client that reconnects as soon as it has the
        RECEIPT finds its client-id free and its exclusive queues gone, although the
        socket's teardown may come later (a WebSocket close handshake, a burst of
        teardowns in ``poll_slices``)."""
        self._release()

    def closed(self) -> None:
        """The transport is gone: requeue unacked messages, drop consumers and private queues."""
        self.state = State.CLOSED
        self.broker.unregister_blockable(self)
        self._receipts.clear()
        self._release()
        # queues this session's last read (or the release) settled or requeued to: a read
        # that closed the connection (DISCONNECT, an error) ends without ``after_read``, and
        # kept here they would hold this session in a cycle through their exclusive owner
        queues, self._kick = self._kick, {}
        for q in queues.values():
            if not q.deleted:
                q.dispatch()

    def _release(self) -> None:
        """Unacked messages requeued, open transactions dropped, subscriptions ended, the
        client-id freed, private queues deleted (once; a second call finds nothing)."""
        if self._acked:
            self.settle_acked()
        if self.client_id is not None:
            self.client_ids.release(self.client_id, self)
        self.transactions.clear()
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


#: command -> the StompSession method that handles it: one table for every session, functions
#: and not each session's bound methods, which would make each session a reference cycle
#: (the session -> its table -> a bound method -> the session) left to the cyclic collector
_HANDLERS: dict[str, Callable[[StompSession, Frame], None]] = {
    "CONNECT": StompSession._on_connect, "STOMP": StompSession._on_connect,
    "SEND": StompSession._on_send, "SUBSCRIBE": StompSession._on_subscribe,
    "UNSUBSCRIBE": StompSession._on_unsubscribe, "ACK": StompSession._on_ack,
    "NACK": StompSession._on_nack, "BEGIN": StompSession._on_begin,
    "COMMIT": StompSession._on_commit, "ABORT": StompSession._on_abort,
    "DISCONNECT": StompSession._on_disconnect,
}
