"""MQTT sessions on the core: packets -> VirtualHost/Queue calls, deliveries -> packets.

The model is RabbitMQ's MQTT plugin's:

* Publishing goes to ``amq.topic`` (``config.mqtt_exchange``) with the topic mapped by
  :mod:`warren.mqtt.topics` (``a/b`` -> ``a.b``). QoS 1/2 publishes are persistent
  (delivery_mode 2); their PUBACK/PUBREC goes out only after ``broker.sync()`` when the
  message was stored. A QoS 2 PUBLISH is routed when it arrives (the spec's "method A") and
  its packet id remembered until PUBREL, so a resent PUBLISH (DUP) is not routed twice.
* Each client's (non-shared) subscriptions are bindings of one queue per client id,
  ``mqtt-subscription-<clientid>qos1``, consumed by the session. A session that ends at
  disconnect (clean session / Session Expiry 0) gets a transient queue; a persistent one a
  durable queue, so QoS 1/2 messages wait while the client is away and survive a restart.
  QoS 0 messages are queued too while a persistent client is offline (allowed by the spec).
  The consumer is ``no_ack`` exactly while every subscription is QoS 0, so a QoS 0
  subscriber costs the queue nothing after hand-over.
* A shared subscription ``$share/g/f`` is a queue per (vhost, group, filter),
  ``mqtt-shared-<group>-<f>``: transient, deleted with its last member. Members consume from
  it round-robin. Shared subscriptions receive no retained messages on subscribe
  [MQTT-4.8.2-x], and messages queued for a shared group are lost when every member leaves.
* The session's own state (subscriptions, session expiry, the QoS 2 ids received and the
  deliveries in flight) is a :class:`SessionState` in the :class:`SessionRegistry`; it outlives
  the connection while the session does. Persistent sessions are also recorded as the broker
  parameter ``mqtt-session``/vhost/client id (joined by ``resource_key``) (store-backed), so
  their subscriptions come back after a restart. In-flight packet ids live in memory only:
  after a restart, an unacknowledged delivery comes back from the durable queue as a
  redelivery (DUP set, new packet id), and the QoS 2 ids awaiting PUBREL are forgotten.
* Deliveries re-check MQTT matching per subscription (``$`` topics, subscription QoS,
  identifiers, no-local, retain-as-published) since routing is by AMQP pattern.

Cross-protocol property mapping (MQTT 5 PUBLISH properties <-> AMQP basic properties):
user properties <-> headers (``x-mqtt-*`` headers are ours and not shown to MQTT clients),
Content Type <-> content_type, Response Topic <-> reply_to (as a routing key on amq.topic,
so an AMQP responder publishes its answer to amq.topic with routing_key=reply_to),
Correlation Data <-> correlation_id (UTF-8 data; other bytes go in the ``x-correlation-id``
header), Message Expiry Interval (s) <-> expiration (ms), Payload Format Indicator <->
header ``x-mqtt-payload-format``. QoS 2 and the RETAIN flag of a publish travel in the
``x-mqtt-publish-qos`` / ``x-mqtt-retain`` headers; for other messages QoS is 1 when
persistent, else 0.
"""

from __future__ import annotations

import enum
import logging
import math
import struct
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from warren.broker.confirms import ConfirmTracker
from warren.model.errors import AccessRefused, BrokerError, NotAllowed
from warren.model.message import Message, Properties, QueueEntry
from warren.broker.publish import Publisher
from warren.exchange.interface import Binding
from warren.exchange.topic import TopicTrie
from warren.mqtt import errors as rc
from warren.mqtt.codec import (Auth, ConnAck, Connect, Disconnect, MqttError, PingReq, PubAck,
                               PubComp, Publish, PubRec, PubRel, SubAck, Subscribe, UnsubAck,
                               Unsubscribe, Will, encode, validate_topic_filter)
from warren.mqtt.properties import encode_properties, encode_string, encode_varint
from warren.mqtt.retained import RetainedMessage, RetainedStore
from warren.store.interface import resource_key
from warren.mqtt.topics import (filter_matches, filter_to_pattern, key_to_topic, split_shared,
                                topic_to_key)

log = logging.getLogger("warren.mqtt")

NEVER_EXPIRES = 0xFFFFFFFF
TOPIC_ALIAS_MAXIMUM = 64          # aliases a client may set towards us
MAX_CLIENT_ID = 200               # longer ids are refused (queue names stay short)
SESSION_KEY_PREFIX = resource_key("mqtt-session", "")
_PACK_U16 = struct.Struct(">H").pack
_TOPIC_CACHE_LIMIT = 4096
#: filters subscribed per reactor turn; a bigger SUBSCRIBE continues at the next turn
SUBSCRIBE_SLICE = 2000
_OWN_HEADERS = ("x-mqtt-publish-qos", "x-mqtt-retain", "x-mqtt-publisher",
                "x-mqtt-payload-format", "x-correlation-id")


class State(enum.Enum):
    AWAIT_CONNECT = "awaiting CONNECT"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Sub:
    """One subscription of a session, as granted."""

    topic_filter: str            # the MQTT filter without any $share prefix
    group: str | None            # share group, or None
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    identifier: int | None = None

    @property
    def full_filter(self) -> str:
        return self.topic_filter if self.group is None else \
            f"$share/{self.group}/{self.topic_filter}"

    def to_record(self) -> dict[str, Any]:
        return {"filter": self.full_filter, "qos": self.qos, "nl": self.no_local,
                "rap": self.retain_as_published, "id": self.identifier}


@dataclass(slots=True)
class Inflight:
    """A delivery sent at QoS 1/2 and not yet completed by the client."""

    queue: Any                   # Queue it came from, or None for a retained message
    entry: QueueEntry | None
    qos: int
    retained: RetainedMessage | None = None
    released: bool = False       # QoS 2: PUBREC received, PUBREL sent, awaiting PUBCOMP


class SessionState:
    """What outlives a connection: subscriptions, in-flight deliveries, QoS 2 ids."""

    def __init__(self, vhost: str, client_id: str, expiry: int) -> None:
        self.vhost = vhost
        self.client_id = client_id
        self.expiry = expiry                         # seconds; NEVER_EXPIRES = forever
        self.subs: dict[str, Sub] = {}               # full filter -> subscription (put_sub)
        self.no_local_count = 0                      # subscriptions with no-local
        self.own_qos_count = 0                       # non-shared subscriptions with QoS > 0
        self.save_pending = False                    # a coalesced save is scheduled
        self.sub_trie = TopicTrie()                  # own subscriptions by pattern
        self._trie_entries: dict[str, Binding] = {}  # full filter -> its trie entry
        self._seq = 0                                # subscription order
        self.inflight: dict[int, Inflight] = {}      # outbound packet id -> delivery
        self.qos2_received: set[int] = set()         # inbound QoS 2 ids awaiting PUBREL
        self.next_id = 0
        self.session: MqttSession | None = None      # attached connection, if any
        self.expiry_call = None                      # pending session end
        self.will_call = None                        # timer of a pending delayed will
        self.pending_will: tuple | None = None  # (vhost, Will, user, client id) to publish
        self.ended = False

    def put_sub(self, full: str, sub: Sub) -> None:
        """Add or replace a subscription (a replaced one keeps its place); the counters and
        the trie keep SUBSCRIBE O(1) per filter and delivery independent of their number."""
        old = self.subs.get(full)
        seq = None
        if old is not None:
            self._count(old, -1)
            seq = self._untrie(full)
        self.subs[full] = sub
        self._count(sub, 1)
        if sub.group is None:
            if seq is None:
                self._seq += 1
                seq = self._seq
            b = Binding("", (seq, sub), filter_to_pattern(sub.topic_filter))
            self.sub_trie.insert(b.routing_key, b)
            self._trie_entries[full] = b

    def pop_sub(self, full: str) -> Sub | None:
        sub = self.subs.pop(full, None)
        if sub is not None:
            self._count(sub, -1)
            self._untrie(full)
        return sub

    def _untrie(self, full: str) -> int | None:
        b = self._trie_entries.pop(full, None)
        if b is None:
            return None
        self.sub_trie.remove(b.routing_key, b)
        return b.destination[0]

    def matching(self, topic: str) -> tuple[Sub, ...]:
        """Own (non-shared) subscriptions matching ``topic``, in subscription order: the trie
        gives the candidates (it may over-match ``$`` topics), MQTT's rule decides."""
        found = sorted(self.sub_trie.match(topic_to_key(topic)), key=lambda d: d[0])
        return tuple(sub for _seq, sub in found if filter_matches(sub.topic_filter, topic))

    def _count(self, sub: Sub, n: int) -> None:
        if sub.no_local:
            self.no_local_count += n
        if sub.group is None and sub.qos:
            self.own_qos_count += n

    @property
    def queue_name(self) -> str:
        return f"mqtt-subscription-{self.client_id}qos1"

    def allocate_id(self) -> int:
        inflight = self.inflight
        for _ in range(65535):
            self.next_id = self.next_id % 65535 + 1
            if self.next_id not in inflight:
                return self.next_id
        raise MqttError(rc.QUOTA_EXCEEDED, "no free packet identifier")

    def to_record(self) -> dict[str, Any]:
        return {"vhost": self.vhost, "client_id": self.client_id, "expiry": self.expiry,
                "subscriptions": [s.to_record() for s in self.subs.values()]}


class SessionRegistry:
    """Sessions by (vhost, client id) plus the retained store: what all connections share."""

    def __init__(self, broker: Any, config: Any, clock: Any) -> None:
        self.broker = broker
        self.config = config
        self.clock = clock
        self.retained = RetainedStore(broker)
        self.sessions: dict[tuple[str, str], SessionState] = {}
        for key, value in list(broker.parameters.items()):
            if key.startswith(SESSION_KEY_PREFIX) and isinstance(value, dict):
                try:
                    self._restore(value)
                except (KeyError, TypeError, ValueError, MqttError):
                    log.warning("ignoring unreadable MQTT session record %r", key)

    def _restore(self, record: dict[str, Any]) -> None:
        state = SessionState(record["vhost"], record["client_id"], int(record["expiry"]))
        for s in record.get("subscriptions", []):
            group, filt = split_shared(s["filter"])
            sub = Sub(filt, group, int(s["qos"]), bool(s.get("nl")), bool(s.get("rap")),
                      s.get("id"))
            state.put_sub(s["filter"], sub)
        self.sessions[(state.vhost, state.client_id)] = state
        if state.expiry != NEVER_EXPIRES:
            state.expiry_call = self.clock.callLater(state.expiry, self.end, state)

    def _key(self, state: SessionState) -> str:
        return resource_key("mqtt-session", state.vhost, state.client_id)

    def save_soon(self, state: SessionState) -> None:
        """``save`` once at the next reactor turn, however many (UN)SUBSCRIBEs come before:
        the record holds every subscription, so saving it per packet would make N SUBSCRIBEs
        cost O(N^2). The store writes a turn's definitions together anyway."""
        if state.save_pending or state.expiry == 0 or state.ended:
            return
        state.save_pending = True
        self.clock.callLater(0, self._save_pending, state)

    def _save_pending(self, state: SessionState) -> None:
        if state.save_pending:
            self.save(state)

    def save(self, state: SessionState) -> None:
        """Record a persistent session (subscriptions, expiry) in the store."""
        state.save_pending = False
        if state.expiry == 0 or state.ended:
            return
        record = state.to_record()
        self.broker.parameters[self._key(state)] = record
        self.broker.save_definition("parameter", self._key(state), record)

    def end(self, state: SessionState) -> None:
        """The session is over: its queue, shared memberships, record and will go."""
        if state.ended:
            return
        state.ended = True
        if state.expiry_call is not None and state.expiry_call.active():
            state.expiry_call.cancel()
        state.expiry_call = None
        # [MQTT-3.1.3-9]: the will goes at the earlier of the will delay and the end of the
        # session. Twisted's DelayedCall.cancel() drops its function and arguments, so the
        # will itself is kept in ``pending_will`` rather than read back from the timer.
        if state.will_call is not None and state.will_call.active():
            state.will_call.cancel()
        state.will_call = None
        pending, state.pending_will = state.pending_will, None
        if pending is not None:
            self.publish_will(*pending)
        if self.sessions.get((state.vhost, state.client_id)) is state:
            del self.sessions[(state.vhost, state.client_id)]
        vh = self.broker.vhosts.get(state.vhost)
        if vh is not None:
            for flight in state.inflight.values():
                if flight.entry is not None and not flight.released and \
                        not flight.queue.deleted:
                    flight.queue.requeue([flight.entry])
            q = vh.queues.get(state.queue_name)
            if q is not None:
                vh.delete_queue(state.queue_name, reason="MQTT session ended")
        state.inflight.clear()
        key = self._key(state)
        if key in self.broker.parameters:
            del self.broker.parameters[key]
            self.broker.save_definition("parameter", key, None)

    def publish_will(self, vhost_name: str, will: Will, user: Any,
                     client_id: str | None = None) -> None:
        """Route a will message as if its client had published it (so the client's topic
        permissions apply to it too)."""
        vh = self.broker.vhosts.get(vhost_name)
        if vh is None:
            return
        ex = vh.exchanges.get(self.config.mqtt_exchange)
        if ex is None:
            return
        publisher = self.broker.publisher(vh, user, client_id)
        props = will.properties
        msg = build_message(self.broker, ex.name, will.topic, will.payload, will.qos,
                            will.retain, props, None)
        try:
            publisher.exchange(ex.name)
            publisher.authorise(ex, msg.routing_key)
        except BrokerError as e:
            log.info("will of a client of user %s not published: %s",
                     getattr(user, "name", "?"), e.reply_text)
            return
        if will.retain:
            self.retained.put(vhost_name, _retained_from(will.topic, will.payload, will.qos,
                                                         props, self.clock.seconds()))
        publisher.publish(ex, msg)


class MqttConsumer:
    """The session's consumer on one queue (its own, or a shared group's)."""

    __slots__ = ("session", "queue", "tag", "no_ack", "exclusive", "priority", "arguments",
                 "shared_sub")

    def __init__(self, session: "MqttSession", queue: Any, shared_sub: Sub | None) -> None:
        self.session = session
        self.queue = queue
        self.tag = f"mqtt-{session.state.client_id}-{queue.name}"
        self.no_ack = False
        self.exclusive = False
        self.priority = 0
        self.arguments: dict[str, Any] = {}
        self.shared_sub = shared_sub   # None: the client's own queue

    def has_credit(self) -> bool:
        s = self.session
        if s.detached or s.conn.write_paused:
            return False
        return self.no_ack or len(s.state.inflight) < s.window

    def deliver(self, queue: Any, entry: QueueEntry) -> None:
        self.session.deliver(self, queue, entry)

    def cancelled(self, queue: Any) -> None:
        self.session.consumer_cancelled(self)


class MqttSession:
    """One MQTT network connection's protocol state, from CONNECT to close.

    ``conn`` is the listener's transport glue: ``write(bytes)``, ``write_parts(list)``,
    ``close()``, ``pause_reading()``, ``resume_reading()``, ``write_paused``, ``peer``,
    ``local`` and ``loopback``.
    """

    def __init__(self, conn: Any, registry: SessionRegistry) -> None:
        self.conn = conn
        self.registry = registry
        self.broker = registry.broker
        self.config = registry.config
        self.clock = registry.clock
        self.state_name = State.AWAIT_CONNECT
        self.level = 4
        self.state: SessionState = None  # type: ignore[assignment]
        self.detached = True
        self.user = None
        self.vhost = None
        self.exchange = None
        self.publisher: Publisher | None = None  # the core's publish pipeline, after CONNECT
        self.will: Will | None = None
        self.keep_alive = 0
        self.window = max(1, self.config.mqtt_max_inflight)
        self.client_max_packet = 0             # 0 = no limit from the client
        self.client_alias_max = 0
        self.consumer: MqttConsumer | None = None
        self.shared: dict[str, MqttConsumer] = {}   # full filter -> consumer on group queue
        self.aliases_in: dict[int, str] = {}
        self.aliases_out: dict[str, int] = {}
        self.connected_at = self.clock.seconds()
        self.last_recv = self.connected_at
        self._ka_call = None
        self._acks = ConfirmTracker()           # encoded PUBACK/PUBREC/PUBCOMP in order
        self._qos1_unacked: deque[int] = deque()  # _acks numbers of QoS 1 PUBACKs not sent
        self.receive_maximum = max(1, min(self.config.mqtt_receive_maximum, 65535))
        self._settle: dict[Any, list[QueueEntry]] = {}  # queue -> entries acked this read
        self._write_ok = False                  # write permission on the exchange checked
        self._publishing = False
        self._match_cache: dict[str, tuple[int, tuple[Sub, ...]]] = {}
        self._has_no_local = False
        # long work for this client (a big SUBSCRIBE) continued a slice per reactor turn: a
        # callable returning True when done; the listener holds further packets until then
        self.pending_work: Callable[[], bool] | None = None
        self._topic_bytes: dict[str, bytes] = {}
        self._handlers: dict[type, Callable[[Any], None]] = {
            Publish: self._on_publish,
            PubAck: self._on_puback,
            PubRec: self._on_pubrec,
            PubRel: self._on_pubrel,
            PubComp: self._on_pubcomp,
            Subscribe: self._on_subscribe,
            Unsubscribe: self._on_unsubscribe,
            PingReq: self._on_pingreq,
            Disconnect: self._on_disconnect,
            Auth: self._on_auth,
            Connect: self._on_second_connect,
        }

    # ------------------------------------------------------------------ dispatch
    def handle(self, packet: Any) -> None:
        """One packet from the client; raises MqttError/BrokerError (the listener maps them)."""
        if self.state_name is State.AWAIT_CONNECT:
            if type(packet) is not Connect:
                # [MQTT-3.1.0-1] the first packet must be CONNECT
                raise MqttError(rc.PROTOCOL_ERROR, f"{type(packet).__name__} before CONNECT")
            self._on_connect(packet)
            return
        if self.state_name is State.CLOSED:
            return
        handler = self._handlers.get(type(packet))
        if handler is None:
            raise MqttError(rc.PROTOCOL_ERROR, f"unexpected {type(packet).__name__} from a client")
        handler(packet)

    def send(self, packet: Any) -> None:
        self.conn.write(encode(packet, self.level))

    # ------------------------------------------------------------------ CONNECT
    def _on_connect(self, c: Connect) -> None:
        self.level = c.protocol_level
        props = c.properties
        if self.level == 5:
            # known first, so that even a refusing CONNACK respects it [MQTT-3.1.2-24]
            self.client_max_packet = props.get("maximum_packet_size", 0)
        if "authentication_method" in props:
            raise MqttError(rc.BAD_AUTHENTICATION_METHOD, "enhanced authentication unsupported")
        client_id = c.client_id
        assigned = None
        if not client_id:
            if self.level == 3:
                # MQTT 3.1 requires a client id of 1 to 23 characters (empty ones came with
                # 3.1.1): refused with "identifier rejected" (2), as Mosquitto does.
                raise MqttError(rc.CLIENT_IDENTIFIER_NOT_VALID, "empty client id in MQTT 3.1")
            if not c.clean_start and self.level != 5:
                # [MQTT-3.1.3-8] zero-length id needs Clean Session = 1 in 3.1.1
                raise MqttError(rc.CLIENT_IDENTIFIER_NOT_VALID, "empty client id with a "
                                "persistent session")
            client_id = assigned = "warren-" + uuid.uuid4().hex
        if len(client_id) > MAX_CLIENT_ID:
            raise MqttError(rc.CLIENT_IDENTIFIER_NOT_VALID, "client id too long")
        user, vhost = self._authenticate(c)
        self.user = user
        self.vhost = vhost
        self.exchange = vhost.exchanges.get(self.config.mqtt_exchange)
        if self.exchange is None:
            raise MqttError(rc.SERVER_UNAVAILABLE,
                            f"exchange '{self.config.mqtt_exchange}' does not exist")
        self.publisher = self.broker.publisher(vhost, user, client_id)
        if self.level == 5:
            expiry = props.get("session_expiry_interval", 0)
            self.window = min(self.window, props.get("receive_maximum", 65535))
            self.client_alias_max = props.get("topic_alias_maximum", 0)
        else:
            expiry = 0 if c.clean_start else NEVER_EXPIRES
        ack_props = self._connack_properties(assigned)
        registry = self.registry
        key = (vhost.name, client_id)
        old = registry.sessions.get(key)
        if old is not None and old.session is not None:
            old.session.taken_over()
            if old.ended:
                # The connection taken over had a clean session: closing it ended that
                # session, so there is nothing to resume [MQTT-3.1.2-6] (reporting it present
                # kept its subscriptions delivering to the new connection).
                old = None
        if old is not None and c.clean_start:
            registry.end(old)
            old = None
        session_present = old is not None
        state = old if old is not None else SessionState(vhost.name, client_id, expiry)
        state.expiry = expiry
        if state.expiry_call is not None and state.expiry_call.active():
            state.expiry_call.cancel()
        state.expiry_call = None
        if state.will_call is not None and state.will_call.active():
            state.will_call.cancel()  # reconnected before the will delay [MQTT-3.1.3-9]
        state.will_call = None
        state.pending_will = None
        registry.sessions[key] = state
        self.state = state
        state.session = self
        self.will = c.will
        self.keep_alive = c.keep_alive
        self.state_name = State.CONNECTED
        self.detached = False
        # authenticated: packets may now be as large as configured (see MqttConnection)
        self.conn.parser.max_packet_size = self.config.mqtt_max_packet_size
        self.send(ConnAck(session_present, 0, ack_props))
        if expiry:
            registry.save(state)
        self._start_keep_alive()
        self._attach()

    def _connack_properties(self, assigned: str | None) -> dict[str, Any]:
        """The 5.0 CONNACK properties, cut down to fit the client's Maximum Packet Size.

        The server must not send a packet larger than the client allows [MQTT-3.1.2-24].
        What a too-small limit costs, in order: the properties that only state their default
        (availability flags 1, Maximum Packet Size when it is the protocol's largest), then
        Topic Alias Maximum (absent = 0: the client sets no aliases, a restriction it must
        follow), then Receive Maximum (absent = 65535: we then do not enforce ours on this
        connection; a client that small hardly floods us). An assigned client id cannot go;
        if it still does not fit, the CONNECT is refused with 0x95 (a refusal too large to
        send is not sent; Mosquitto closes then).
        """
        if self.level != 5:
            return {}
        max_packet = min(self.config.mqtt_max_packet_size, 268_435_455)
        props: dict[str, Any] = {"receive_maximum": self.receive_maximum,
                                 "topic_alias_maximum": TOPIC_ALIAS_MAXIMUM,
                                 "maximum_packet_size": max_packet,
                                 "retain_available": 1, "wildcard_subscription_available": 1,
                                 "subscription_identifier_available": 1,
                                 "shared_subscription_available": 1}
        if assigned:
            props["assigned_client_identifier"] = assigned
        defaults = ["retain_available", "wildcard_subscription_available",
                    "subscription_identifier_available", "shared_subscription_available"]
        if max_packet == 268_435_455:
            defaults.append("maximum_packet_size")
        if self.receive_maximum == 65535:
            defaults.append("receive_maximum")
        for optional in (defaults, ["topic_alias_maximum"], ["receive_maximum"]):
            if self.fits(encode(ConnAck(True, 0, props), 5)):
                return props
            for name in optional:
                props.pop(name, None)
        if self.fits(encode(ConnAck(True, 0, props), 5)):
            self.receive_maximum = 65535   # not stated, so not enforced: absent means 65535
            return props
        raise MqttError(rc.PACKET_TOO_LARGE, "CONNACK larger than the client's maximum "
                        "packet size")

    def _authenticate(self, c: Connect) -> tuple[Any, Any]:
        cfg = self.config
        vhost_name = cfg.mqtt_vhost
        username = c.username
        if username is None:
            if not cfg.mqtt_allow_anonymous:
                raise MqttError(rc.NOT_AUTHORIZED, "anonymous connections are not allowed")
            username, password = cfg.default_user, cfg.default_pass
        else:
            if ":" in username:      # RabbitMQ's "vhost:username"
                vhost_name, username = username.split(":", 1)
            try:
                password = (c.password or b"").decode("utf-8")
            except UnicodeDecodeError:
                raise MqttError(rc.BAD_USER_NAME_OR_PASSWORD, "password is not UTF-8") from None
        try:
            user = self.broker.authenticate(username, password, loopback=self.conn.loopback,
                                            peer=self.conn.peer[0], protocol="MQTT")
        except AccessRefused:
            raise MqttError(rc.BAD_USER_NAME_OR_PASSWORD, f"login refused for {username!r}") \
                from None
        try:
            vhost = self.broker.open_vhost(user, vhost_name, peer=self.conn.peer[0],
                                           protocol="MQTT", connection=self.conn)
        except (NotAllowed, AccessRefused):
            raise MqttError(rc.NOT_AUTHORIZED, f"no access to vhost {vhost_name!r}") from None
        return user, vhost

    def _attach(self) -> None:
        """Resume the session: resend what is in flight, then start consuming."""
        state = self.state
        vh = self.vhost
        for pid in sorted(state.inflight):
            flight = state.inflight[pid]
            if flight.released:
                self.send(PubRel(pid))
            else:
                self._resend(pid, flight)
        own = [s for s in state.subs.values() if s.group is None]
        if own or state.queue_name in vh.queues:
            q = self._own_queue()
            for s in own:
                vh.bind(self.exchange.name, q, filter_to_pattern(s.topic_filter))
        for full, s in state.subs.items():
            if s.group is not None:
                self._join_group(full, s)
        self._subs_changed()
        if self.consumer is not None:
            self.consumer.queue.add_consumer(self.consumer)

    def _own_queue(self) -> Any:
        vh = self.vhost
        name = self.state.queue_name
        q = vh.queues.get(name)
        if q is None:
            q = vh.declare_queue(name, durable=self.state.expiry != 0)
        if self.consumer is None or self.consumer.queue is not q:
            self.consumer = MqttConsumer(self, q, None)
        return q

    # ------------------------------------------------------------------ keep alive
    def _start_keep_alive(self) -> None:
        if self.keep_alive:
            self._ka_call = self.clock.callLater(self.keep_alive * 1.5, self._keep_alive_check)

    def _keep_alive_check(self) -> None:
        """[MQTT-3.1.2-24] nothing received for 1.5 x keep-alive: drop, the will fires."""
        self._ka_call = None
        if self.state_name is not State.CONNECTED:
            return
        idle = self.clock.seconds() - self.last_recv
        limit = self.keep_alive * 1.5
        if idle >= limit:
            log.info("MQTT client %s: keep-alive timeout", self.state.client_id)
            self.fail(MqttError(rc.KEEP_ALIVE_TIMEOUT, "keep alive timeout"))
            self.conn.flush()
        else:
            self._ka_call = self.clock.callLater(limit - idle, self._keep_alive_check)

    # ------------------------------------------------------------------ PUBLISH in
    def _on_publish(self, p: Publish) -> None:
        topic = p.topic
        props = p.properties
        if props:
            alias = props.get("topic_alias")
            if alias is not None:
                if alias > TOPIC_ALIAS_MAXIMUM:
                    raise MqttError(rc.TOPIC_ALIAS_INVALID, f"topic alias {alias} too large")
                if topic:
                    self.aliases_in[alias] = topic
                else:
                    topic = self.aliases_in.get(alias)
                    if topic is None:
                        raise MqttError(rc.PROTOCOL_ERROR, f"unknown topic alias {alias}")
            if "subscription_identifier" in props:
                raise MqttError(rc.PROTOCOL_ERROR, "subscription identifier in a PUBLISH")
            if props.get("payload_format_indicator") == 1:
                try:
                    p.payload.decode("utf-8")
                except UnicodeDecodeError:
                    self._publish_refused(p, rc.PAYLOAD_FORMAT_INVALID)
                    return
        qos = p.qos
        if qos == 2 and p.packet_id in self.state.qos2_received:
            # a resent QoS 2 PUBLISH we already routed: only answer [MQTT-4.3.3-10]
            self._queue_ack(PubRec(p.packet_id))
            return
        if qos and self.level == 5 and \
                len(self._qos1_unacked) + len(self.state.qos2_received) >= self.receive_maximum:
            # [MQTT-3.3.4-7] a client keeps at most the Receive Maximum our CONNACK stated
            # of QoS 1/2 publishes unacknowledged; one more is answered with DISCONNECT 0x93
            # [MQTT 5.0 3.3.4] (Mosquitto does so too) and not routed. Unacknowledged: its
            # PUBACK not sent yet (waiting for the store) or a QoS 2 id awaiting PUBREL.
            raise MqttError(rc.RECEIVE_MAXIMUM_EXCEEDED,
                            f"more than {self.receive_maximum} QoS 1/2 publishes unacknowledged")
        if not self._write_ok:
            try:
                self.publisher.exchange(self.exchange.name)
            except AccessRefused as e:
                if self.level == 5:
                    self._publish_refused(p, rc.NOT_AUTHORIZED)
                    return
                raise e
            self._write_ok = True
            self._publishing = True
            self.broker.register_blockable(self.conn)
        msg = build_message(self.broker, self.exchange.name, topic, p.payload, qos, p.retain,
                            props, self.state.client_id if self._has_no_local else None)
        try:
            if p.retain:
                # the topic permission is checked before the retained message is kept
                self.publisher.authorise(self.exchange, msg.routing_key)
                self.registry.retained.put(self.vhost.name, _retained_from(
                    topic, p.payload, qos, props, self.clock.seconds()))
            routed = self.publisher.publish(self.exchange, msg)
        except AccessRefused as e:
            # RabbitMQ's words in the log; 3.1.1 has no refusal code: the connection closes
            log.warning("MQTT topic access refused: %s", e.reply_text)
            if self.level == 5:
                self._publish_refused(p, rc.NOT_AUTHORIZED)
                return
            raise
        if not qos:
            return
        code = 0
        if not routed.queues:
            if routed.rejected:
                code = rc.QUOTA_EXCEEDED
            elif self.level == 5:
                code = rc.NO_MATCHING_SUBSCRIBERS
        if qos == 1:
            ack: Any = PubAck(p.packet_id, code) if code else None
        else:
            if code < 0x80:
                # a refused QoS 2 flow ends with its PUBREC: no PUBREL comes [MQTT-4.3.3]
                self.state.qos2_received.add(p.packet_id)
            ack = PubRec(p.packet_id, code)
        if ack is None:
            data = b"\x40\x02" + _PACK_U16(p.packet_id)
        else:
            data = encode(ack, self.level)
        # an accepting PUBACK/PUBREC is RabbitMQ's publisher confirm, counted when written
        confirms = 1 if code < 0x80 else 0
        if routed.stored or self._acks:
            seq = self._acks.add((data, confirms), routed.stored)
            if qos == 1:
                self._qos1_unacked.append(seq)
        else:
            self.conn.write(data)
            if confirms:
                self.publisher.confirmed(confirms)

    def _queue_ack(self, packet: Any) -> None:
        """An answer that needs no sync, still written after the earlier ones."""
        data = encode(packet, self.level)
        if self._acks:
            self._acks.add((data, 0))
        else:
            self.conn.write(data)

    def _publish_refused(self, p: Publish, code: int) -> None:
        if p.qos == 1:
            self._queue_ack(PubAck(p.packet_id, code))
        elif p.qos == 2:
            self._queue_ack(PubRec(p.packet_id, code))

    def _on_pubrel(self, p: PubRel) -> None:
        """Inbound QoS 2, step 2: forget the id, PUBCOMP [MQTT-4.3.3-11].

        A PUBREL for an id we do not hold is answered too (0x92 at 5.0), not refused: it is
        what a client resends after a reconnect whose PUBCOMP it missed; Mosquitto does the
        same ("could be due to a repeated PUBREL after a client has reconnected")."""
        if p.packet_id in self.state.qos2_received:
            self.state.qos2_received.discard(p.packet_id)
            self._queue_ack(PubComp(p.packet_id))
        else:
            self._queue_ack(PubComp(p.packet_id, rc.PACKET_IDENTIFIER_NOT_FOUND))

    # ------------------------------------------------------------------ end of a read
    def after_read(self) -> None:
        """Settle this read's acks in one go; one store sync for this read's QoS 1/2 publishes."""
        if self._settle:
            settle, self._settle = self._settle, {}
            for queue, entries in settle.items():
                if not queue.deleted:
                    queue.ack(entries)
            self._kick()
        d = self._acks.sync(self.broker.sync)
        if d is not None:
            d.addCallbacks(self._synced, self._sync_failed)
        self._flush_acks()

    def _synced(self, _: Any) -> None:
        self._flush_acks()
        self.conn.flush()

    def _sync_failed(self, failure: Any) -> None:
        log.warning("store sync failed; closing MQTT connection of %s without acks: %s",
                    self.state.client_id if self.state else "?", failure.getErrorMessage())
        self._acks.clear()
        self._qos1_unacked.clear()
        self.fail(MqttError(rc.UNSPECIFIED_ERROR, "store failure"))
        self.conn.flush()

    def _flush_acks(self) -> None:
        settled = self._acks.release()
        if settled:
            self.conn.write_parts([data for _seq, (data, _confirms), _ok in settled])
            confirms = sum(c for _seq, (_d, c), _ok in settled)
            if confirms:
                self.publisher.confirmed(confirms)
            last, pending = settled[-1][0], self._qos1_unacked
            while pending and pending[0] <= last:
                pending.popleft()

    # ------------------------------------------------------------------ delivery out
    def _subs_changed(self) -> None:
        self._match_cache.clear()
        self._has_no_local = self.state.no_local_count > 0
        if self.consumer is not None:
            self.consumer.no_ack = self.state.own_qos_count == 0

    def _matching(self, topic: str) -> tuple[int, tuple[Sub, ...]]:
        """(max QoS, subscriptions) of the client's own subscriptions matching ``topic``."""
        found = self._match_cache.get(topic)
        if found is None:
            subs = self.state.matching(topic)
            found = (max((s.qos for s in subs), default=-1), subs)
            if len(self._match_cache) >= _TOPIC_CACHE_LIMIT:
                self._match_cache.clear()
            self._match_cache[topic] = found
        return found

    def deliver(self, consumer: MqttConsumer, queue: Any, entry: QueueEntry) -> None:
        msg = entry.message
        topic = key_to_topic(msg.routing_key)
        shared = consumer.shared_sub
        if shared is None:
            sub_qos, subs = self._matching(topic)
        elif filter_matches(shared.topic_filter, topic):
            sub_qos, subs = shared.qos, (shared,)
        else:
            sub_qos, subs = -1, ()
        if sub_qos < 0 or (self._has_no_local and self._local_only(msg, subs)):
            if not consumer.no_ack:
                queue.ack([entry])   # not for this client after all ($-topic, no-local)
            return
        if sub_qos == 0 or not msg.persistent:
            qos = 0
        elif sub_qos == 1:
            qos = 1
        else:
            qos = _published_qos(msg)
        state = self.state
        if qos:
            pid = state.allocate_id()
            state.inflight[pid] = Inflight(queue, entry, qos)
        else:
            pid = 0
            if not consumer.no_ack:
                queue.ack([entry])
        retain = False
        if self.level == 5:
            if any(s.retain_as_published for s in subs):
                h = msg.properties.headers
                retain = bool(h and h.get("x-mqtt-retain"))
            props = self._out_properties(msg, subs, entry)
        else:
            props = None
        self._write_publish(topic, msg.body, qos, pid, entry.redelivered and qos > 0, retain,
                            props)

    def _local_only(self, msg: Message, subs: tuple[Sub, ...]) -> bool:
        """No-local [MQTT-3.8.3-3]: our own message and every matching subscription says so."""
        if not all(s.no_local for s in subs):
            return False
        h = msg.properties.headers
        return bool(h) and h.get("x-mqtt-publisher") == self.state.client_id

    def _out_properties(self, msg: Message, subs: tuple[Sub, ...],
                        entry: QueueEntry | None) -> dict[str, Any]:
        """MQTT 5 PUBLISH properties for a core message (see the module docstring)."""
        p = msg.properties
        out: dict[str, Any] = {}
        headers = p.headers
        if headers:
            pfi = headers.get("x-mqtt-payload-format")
            if pfi is not None:
                out["payload_format_indicator"] = int(pfi)
        if p.content_type is not None:
            out["content_type"] = p.content_type
        if p.reply_to is not None:
            out["response_topic"] = key_to_topic(p.reply_to)
        if p.correlation_id is not None:
            out["correlation_data"] = p.correlation_id.encode("utf-8")
        elif headers and "x-correlation-id" in headers:
            cd = headers["x-correlation-id"]
            out["correlation_data"] = cd if isinstance(cd, bytes) else str(cd).encode()
        if msg.ttl is not None and entry is not None and entry.expires_at is not None:
            out["message_expiry_interval"] = max(
                0, math.ceil(entry.expires_at - self.clock.seconds()))
        if headers:
            users = [(str(k), _header_text(v)) for k, v in headers.items()
                     if k not in _OWN_HEADERS]
            if users:
                out["user_property"] = users
        ids = [s.identifier for s in subs if s.identifier]
        if ids:
            out["subscription_identifier"] = ids
        return out

    def _write_publish(self, topic: str, payload: bytes, qos: int, pid: int, dup: bool,
                       retain: bool, props: dict[str, Any] | None) -> None:
        """Encode one outbound PUBLISH (topic alias, size limit) and queue it for writing."""
        first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
        tb = self._topic_bytes.get(topic)
        if tb is None:
            tb = encode_string(topic)
            if len(self._topic_bytes) >= _TOPIC_CACHE_LIMIT:
                self._topic_bytes.clear()
            self._topic_bytes[topic] = tb
        new_alias = False
        if props is None:
            pb = b""
        else:
            if self.client_alias_max:
                alias = self.aliases_out.get(topic)
                if alias is not None:
                    tb = b"\x00\x00"
                    props["topic_alias"] = alias
                elif len(self.aliases_out) < self.client_alias_max:
                    alias = self.aliases_out[topic] = len(self.aliases_out) + 1
                    props["topic_alias"] = alias
                    new_alias = True
            pb = encode_properties(props, "publish") if props else b"\x00"
        head = tb + _PACK_U16(pid) + pb if qos else tb + pb
        length = len(head) + len(payload)
        if length < 0x80:
            fixed = bytes((first, length))
        else:
            fixed = bytes((first,)) + encode_varint(length)
        if self.client_max_packet and len(fixed) + length > self.client_max_packet:
            if new_alias:
                # the client never learns an alias set by a packet it does not get: the
                # next PUBLISH on this topic must carry the name again [MQTT-3.3.2-12]
                del self.aliases_out[topic]
            self._drop_oversized(len(fixed) + length, qos, pid)
            return
        self.conn.write_parts([fixed + head, payload])

    def _drop_oversized(self, size: int, qos: int, pid: int) -> None:
        """[MQTT-3.1.2-25] a PUBLISH larger than the client's Maximum Packet Size (the whole
        packet, fixed header included [MQTT 5.0 3.1.2.11.4]) is discarded without sending it.

        The server then behaves "as if it had completed sending" it: a QoS 1/2 one leaves the
        in-flight window at once and its queue entry is settled now, not when the client's
        next packet ends a read (the client never saw it, so nothing of its will settle it,
        and it must not hold a slot of the window meanwhile). Mosquitto likewise removes it
        from its in-flight list; Artemis and LavinMQ complete the delivery. Settled as acked,
        not rejected: a rejection would dead-letter it, and a dead-letter exchange leading
        back to this queue would deliver, drop and reject it again without end (cycles
        through a rejection are not broken, see ``deadletter.is_cycle``).
        """
        log.debug("dropping a %d byte PUBLISH for %s: over its maximum packet size %d",
                  size, self.state.client_id, self.client_max_packet)
        if not qos:
            return
        flight = self.state.inflight.pop(pid)
        if flight.entry is not None and not flight.queue.deleted:
            flight.queue.ack([flight.entry])

    def fits(self, data: bytes) -> bool:
        """Whether a packet may go to this client under its Maximum Packet Size."""
        return not self.client_max_packet or len(data) <= self.client_max_packet

    def _resend(self, pid: int, flight: Inflight) -> None:
        """Resend an unacknowledged PUBLISH with DUP set [MQTT-4.4.0-1]."""
        if flight.retained is not None:
            r = flight.retained
            props = dict(r.properties) if self.level == 5 else None
            self._write_publish(r.topic, r.payload, flight.qos, pid, True, True, props)
            return
        msg = flight.entry.message
        props = self._out_properties(msg, (), flight.entry) if self.level == 5 else None
        self._write_publish(key_to_topic(msg.routing_key), msg.body, flight.qos, pid, True,
                            False, props)

    def _on_puback(self, p: PubAck) -> None:
        flight = self.state.inflight.get(p.packet_id)
        if flight is None:
            return  # unknown id: nothing to settle (e.g. after a restart), as Mosquitto
        if flight.qos != 1:
            # [MQTT-4.3.3] a QoS 2 delivery is answered by PUBREC; Mosquitto disconnects
            # ("mismatched QoS"), so a client confusing its flows does not hold messages
            raise MqttError(rc.PROTOCOL_ERROR, f"PUBACK for QoS 2 packet {p.packet_id}")
        del self.state.inflight[p.packet_id]
        if flight.entry is not None:
            settle = self._settle.get(flight.queue)
            if settle is None:
                self._settle[flight.queue] = [flight.entry]
            else:
                settle.append(flight.entry)

    def _on_pubrec(self, p: PubRec) -> None:
        """Outbound QoS 2, step 1: the client has it; settle the queue entry, send PUBREL."""
        flight = self.state.inflight.get(p.packet_id)
        if flight is None:
            # tolerated, answered (a PUBREC resent after we forgot the id, e.g. a restart);
            # Mosquitto too sends PUBREL for an unknown id
            self.send(PubRel(p.packet_id, rc.PACKET_IDENTIFIER_NOT_FOUND))
            return
        if flight.qos != 2:
            # [MQTT-4.3.2] a QoS 1 delivery is answered by PUBACK: protocol error, as Mosquitto
            raise MqttError(rc.PROTOCOL_ERROR, f"PUBREC for QoS 1 packet {p.packet_id}")
        if p.reason_code >= 0x80:
            del self.state.inflight[p.packet_id]   # the client refused it: done
        else:
            flight.released = True
            self.send(PubRel(p.packet_id))
        if flight.entry is not None:
            self._settle.setdefault(flight.queue, []).append(flight.entry)
            flight.entry = None

    def _on_pubcomp(self, p: PubComp) -> None:
        """Outbound QoS 2, step 2: done. PUBCOMP for a QoS 1 delivery, or before its PUBREC
        (we sent no PUBREL yet) is a protocol error [MQTT-4.3.3-3] (Mosquitto: mismatched QoS
        or state); an unknown id is ignored, as Mosquitto does."""
        flight = self.state.inflight.get(p.packet_id)
        if flight is None:
            return
        if flight.qos != 2 or not flight.released:
            raise MqttError(rc.PROTOCOL_ERROR, f"PUBCOMP out of order for packet {p.packet_id}")
        del self.state.inflight[p.packet_id]
        self._kick()

    def _kick(self) -> None:
        """Credit came back: let the queues deliver again."""
        if self.detached:
            return
        if self.consumer is not None and not self.consumer.queue.deleted:
            self.consumer.queue.dispatch()
        for c in self.shared.values():
            if not c.queue.deleted:
                c.queue.dispatch()

    def consumer_cancelled(self, consumer: MqttConsumer) -> None:
        if consumer is self.consumer:
            self.consumer = None
        else:
            for full, c in list(self.shared.items()):
                if c is consumer:
                    del self.shared[full]

    # ------------------------------------------------------------------ SUBSCRIBE
    def _on_subscribe(self, s: Subscribe) -> None:
        """Subscribe each filter, then one SUBACK. A SUBSCRIBE with more than
        ``SUBSCRIBE_SLICE`` filters is done a slice per reactor turn (``pending_work``: the
        listener reads none of this client's further packets meanwhile), so other clients'
        round trips stay short; the SUBACK still follows the last subscription."""
        ids = s.properties.get("subscription_identifier")
        identifier = ids[0] if ids else None
        codes: list[int] = []
        fresh: list[tuple[Sub, bool, int]] = []
        reqs = s.subscriptions
        pos = 0

        def work() -> bool:
            nonlocal pos
            if self.state_name is State.CLOSED:
                return True
            end = min(pos + SUBSCRIBE_SLICE, len(reqs))
            for i in range(pos, end):
                self._subscribe_one(reqs[i], identifier, codes, fresh)
            pos = end
            if pos < len(reqs):
                self._subs_changed()
                return False
            self._subscribed(s, codes, fresh)
            return True

        if not work():
            self.pending_work = work

    def _subscribe_one(self, req: Any, identifier: Any, codes: list[int],
                       fresh: list[tuple[Sub, bool, int]]) -> None:
        state = self.state
        try:
            validate_topic_filter(req.topic_filter)
        except MqttError as e:
            codes.append(rc.suback_code(e.reason_code, self.level))
            return
        group, filt = split_shared(req.topic_filter)
        if group is not None and req.no_local:
            # [MQTT-3.8.3-4] no-local on a shared subscription is a protocol error
            raise MqttError(rc.PROTOCOL_ERROR, "no-local on a shared subscription")
        try:
            self.broker.check(self.user, self.vhost.name, "read", "exchange",
                              self.exchange.name)
            self.broker.check_topic(self.user, self.vhost.name, self.exchange, "read",
                                    filter_to_pattern(filt), state.client_id)
        except AccessRefused as e:
            log.warning("MQTT subscription to %s refused: %s", req.topic_filter, e.reply_text)
            codes.append(rc.suback_code(rc.reason_for(e), self.level))
            return
        sub = Sub(filt, group, req.qos, req.no_local, req.retain_as_published, identifier)
        existed = req.topic_filter in state.subs
        try:
            if group is None:
                q = self._own_queue()
                self.vhost.bind(self.exchange.name, q, filter_to_pattern(filt))
                state.put_sub(req.topic_filter, sub)
            else:
                state.put_sub(req.topic_filter, sub)
                old = self.shared.get(req.topic_filter)
                if old is not None:
                    old.shared_sub = sub
                else:
                    self._join_group(req.topic_filter, sub)
        except BrokerError as e:
            state.pop_sub(req.topic_filter)
            codes.append(rc.suback_code(rc.reason_for(e), self.level))
            return
        codes.append(req.qos)
        fresh.append((sub, existed, req.retain_handling))

    def _subscribed(self, s: Subscribe, codes: list[int],
                    fresh: list[tuple[Sub, bool, int]]) -> None:
        state = self.state
        self._subs_changed()
        self.send(SubAck(s.packet_id, tuple(codes)))
        self.registry.save_soon(state)
        if self.consumer is not None and self.consumer not in list(self.consumer.queue.consumers):
            self.consumer.queue.add_consumer(self.consumer)
        for sub, existed, handling in fresh:
            if sub.group is None and (handling == 0 or (handling == 1 and not existed)):
                self._send_retained(sub)   # [MQTT-3.3.1-9], [MQTT 5.0 3.8.3.1]

    def _join_group(self, full: str, sub: Sub) -> None:
        vh = self.vhost
        name = f"mqtt-shared-{sub.group}-{sub.topic_filter}"
        q = vh.queues.get(name)
        if q is None:
            q = vh.declare_queue(name, auto_delete=True)
        vh.bind(self.exchange.name, q, filter_to_pattern(sub.topic_filter))
        consumer = MqttConsumer(self, q, sub)
        consumer.no_ack = sub.qos == 0
        self.shared[full] = consumer
        q.add_consumer(consumer)

    def _send_retained(self, sub: Sub) -> None:
        now = self.clock.seconds()
        for r in self.registry.retained.matching(self.vhost.name, sub.topic_filter, now):
            qos = min(sub.qos, r.qos)
            pid = 0
            if qos:
                pid = self.state.allocate_id()
                self.state.inflight[pid] = Inflight(None, None, qos, r)
            props = None
            if self.level == 5:
                props = dict(r.properties)
                props.pop("topic_alias", None)
                if r.expires_at is not None:
                    props["message_expiry_interval"] = max(0, math.ceil(r.expires_at - now))
                if sub.identifier:
                    props["subscription_identifier"] = [sub.identifier]
            self._write_publish(r.topic, r.payload, qos, pid, False, True, props)

    def _on_unsubscribe(self, u: Unsubscribe) -> None:
        codes = []
        state = self.state
        for filt in u.topic_filters:
            sub = state.pop_sub(filt)
            if sub is None:
                codes.append(rc.NO_SUBSCRIPTION_EXISTED)
                continue
            if sub.group is None:
                q = self.vhost.queues.get(state.queue_name)
                if q is not None:
                    self.vhost.unbind(self.exchange.name, q, filter_to_pattern(sub.topic_filter))
            else:
                c = self.shared.pop(filt, None)
                if c is not None:
                    self._leave(c)
            codes.append(rc.SUCCESS)
        self._subs_changed()
        self.registry.save_soon(state)
        self.send(UnsubAck(u.packet_id, tuple(codes) if self.level == 5 else ()))

    def _leave(self, consumer: MqttConsumer) -> None:
        """Stop consuming; what the client has not acknowledged goes back to the queue."""
        q = consumer.queue
        inflight = self.state.inflight
        back = [pid for pid, f in inflight.items() if f.queue is q and not f.released]
        entries = [inflight.pop(pid).entry for pid in back]
        if not q.deleted:
            if entries:
                q.requeue(entries)
            q.remove_consumer(consumer)

    # ------------------------------------------------------------------ misc packets
    def _on_pingreq(self, p: PingReq) -> None:
        self.conn.write(b"\xd0\x00")

    def _on_auth(self, p: Auth) -> None:
        raise MqttError(rc.PROTOCOL_ERROR, "AUTH without enhanced authentication")

    def _on_second_connect(self, p: Connect) -> None:
        raise MqttError(rc.PROTOCOL_ERROR, "second CONNECT")  # [MQTT-3.1.0-2]

    def _on_disconnect(self, d: Disconnect) -> None:
        if self.level == 5:
            new_expiry = d.properties.get("session_expiry_interval")
            if new_expiry is not None:
                if self.state.expiry == 0 and new_expiry:
                    # [MQTT-3.14.2-2]
                    raise MqttError(rc.PROTOCOL_ERROR, "session expiry raised from 0")
                self.state.expiry = new_expiry
        if d.reason_code != rc.DISCONNECT_WITH_WILL:
            self.will = None   # normal disconnect: the will is discarded [MQTT-3.14.4-3]
        self.close()

    # ------------------------------------------------------------------ closing
    def fail(self, error: BaseException) -> None:
        """Protocol or broker error: tell the client how we can, then close."""
        reason = rc.reason_for(error)
        if self.state_name is State.AWAIT_CONNECT:
            code = rc.connack_code(reason, self.conn.parser_level() or 4)
            if code is not None:
                data = encode(ConnAck(False, code), self.conn.parser_level() or 4)
                if self.fits(data):   # else only the close tells [MQTT-3.1.2-24]
                    self.conn.write(data)
        elif self.state_name is State.CONNECTED and self.level == 5:
            self.conn.write(self._disconnect(reason, rc.text_for(error)))
        self.close()

    def _disconnect(self, reason: int, text: str) -> bytes:
        """A 5.0 DISCONNECT; its Reason String is left out where it would make the packet
        larger than the client's Maximum Packet Size [MQTT-3.14.2-3]."""
        data = encode(Disconnect(reason, {"reason_string": text[:200]}), 5)
        return data if self.fits(data) else encode(Disconnect(reason), 5)

    def close(self) -> None:
        if self.state_name is State.CLOSED:
            return
        self.detach()
        self.conn.close()

    def taken_over(self) -> None:
        """Another connection took this client id [MQTT-3.1.4-3]."""
        if self.level == 5:
            self.conn.write(encode(Disconnect(rc.SESSION_TAKEN_OVER), 5))
        self.close()
        self.conn.flush()

    def force_close(self, reason: str) -> None:
        if self.level == 5 and self.state_name is State.CONNECTED:
            self.conn.write(self._disconnect(rc.ADMINISTRATIVE_ACTION, reason))
        self.close()
        self.conn.flush()

    def detach(self) -> None:
        """The network connection is gone (or going): stop consuming, keep or end the session."""
        was = self.state_name
        self.state_name = State.CLOSED
        if self._ka_call is not None and self._ka_call.active():
            self._ka_call.cancel()
        self._ka_call = None
        if self._publishing:
            self.broker.unregister_blockable(self.conn)
        if was is not State.CONNECTED:
            return
        self.detached = True
        state = self.state
        if self._settle:
            settle, self._settle = self._settle, {}
            for queue, entries in settle.items():
                if not queue.deleted:
                    queue.ack(entries)
        for c in list(self.shared.values()):
            self._leave(c)
        self.shared.clear()
        if self.consumer is not None and not self.consumer.queue.deleted:
            self.consumer.queue.remove_consumer(self.consumer)
        if state.session is self:
            state.session = None
        registry = self.registry
        will = self.will
        if will is not None:
            delay = will.properties.get("will_delay_interval", 0) if self.level == 5 else 0
            user, vhost_name = self.user, self.vhost.name
            if delay and state.expiry:
                state.pending_will = (vhost_name, will, user, state.client_id)
                state.will_call = self.clock.callLater(delay, self._delayed_will, state)
            else:
                registry.publish_will(vhost_name, will, user, state.client_id)
        if state.expiry == 0:
            registry.end(state)
        elif state.expiry != NEVER_EXPIRES:
            state.expiry_call = self.clock.callLater(state.expiry, registry.end, state)
        registry.save(state)

    def _delayed_will(self, state: SessionState) -> None:
        state.will_call = None
        pending, state.pending_will = state.pending_will, None
        if pending is not None:
            self.registry.publish_will(*pending)

    # ------------------------------------------------------------------ introspection
    def info(self) -> dict[str, Any]:
        return {"client_id": self.state.client_id if self.state else "",
                "protocol": {3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0"}.get(self.level),
                "user": getattr(self.user, "name", ""),
                "vhost": self.vhost.name if self.vhost else "",
                "state": "running" if self.state_name is State.CONNECTED else
                self.state_name.name.lower()}


# ---------------------------------------------------------------------- message mapping
def build_message(broker: Any, exchange: str, topic: str, payload: bytes, qos: int,
                  retain: bool, props: dict[str, Any], publisher: str | None) -> Message:
    """A core message for an MQTT publish (mapping in the module docstring)."""
    key = topic_to_key(topic)
    if not props and not retain and qos < 2 and publisher is None:
        # the hot path: nothing but the persistence flag
        p = Properties(delivery_mode=2) if qos else Properties()
        return Message(exchange, key, payload, codec=broker.codec, props=p,
                       persistent=bool(qos), priority=0, ttl=None)
    headers: dict[str, Any] = {}
    p = Properties(delivery_mode=2 if qos else None)
    for name, value in props.get("user_property", ()):
        headers[name] = value
    if qos == 2:
        headers["x-mqtt-publish-qos"] = 2
    if retain:
        headers["x-mqtt-retain"] = True
    if publisher is not None:
        headers["x-mqtt-publisher"] = publisher
    if "payload_format_indicator" in props:
        headers["x-mqtt-payload-format"] = props["payload_format_indicator"]
    if "content_type" in props:
        p.content_type = props["content_type"]
    if "response_topic" in props:
        p.reply_to = topic_to_key(props["response_topic"])
    cd = props.get("correlation_data")
    if cd is not None:
        try:
            text = cd.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and len(cd) <= 255:
            p.correlation_id = text
        else:
            headers["x-correlation-id"] = bytes(cd)
    expiry = props.get("message_expiry_interval")
    if expiry is not None:
        p.expiration = str(expiry * 1000)
    if headers:
        p.headers = headers
    return Message(exchange, key, payload, codec=broker.codec, props=p)


def _retained_from(topic: str, payload: bytes, qos: int, props: dict[str, Any],
                   now: float) -> RetainedMessage:
    keep = {k: v for k, v in props.items()
            if k in ("payload_format_indicator", "content_type", "response_topic",
                     "correlation_data", "user_property")}
    expiry = props.get("message_expiry_interval")
    return RetainedMessage(topic, bytes(payload), qos, keep,
                           now + expiry if expiry is not None else None)


def _published_qos(msg: Message) -> int:
    h = msg.properties.headers
    if h and h.get("x-mqtt-publish-qos") == 2:
        return 2
    return 1


def _header_text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)

