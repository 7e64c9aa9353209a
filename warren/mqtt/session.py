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
  the connection while the session does. Persistent sessions are also recorded in the store
  (``session_records.py``: a head ``mqtt-session``/vhost/client id and parts of subscription
  changes, written in slices), so their subscriptions come back after a restart. In-flight
  packet ids live in memory only: after a restart, an unacknowledged delivery comes back from
  the durable queue as a redelivery (DUP set, new packet id), and the QoS 2 ids awaiting
  PUBREL are forgotten.
* Deliveries re-check MQTT matching per subscription (``$`` topics, subscription QoS,
  identifiers, no-local, retain-as-published) since routing is by AMQP pattern.

The module layout: the session's state that outlives a connection is ``session_state.py``,
the registry of sessions (restore, end, wills) ``registry.py``, subscriptions and delivery
``subscriptions.py``, and the cross-protocol property mapping (MQTT 5 PUBLISH properties <->
AMQP basic properties) ``amqp_mapping.py``. This module keeps CONNECT, inbound PUBLISH and
the connection's life cycle.
"""

from __future__ import annotations

import logging
import struct
import uuid
from collections import deque
from typing import Any, Callable

from warren.broker.confirms import ConfirmTracker
from warren.model.errors import AccessRefused, NotAllowed
from warren.model.message import Message, Properties, QueueEntry
from warren.broker.publish import Publisher
from warren.mqtt import errors as rc
from warren.mqtt.amqp_mapping import build_message, retained_from
from warren.mqtt.codec import (Auth, ConnAck, Connect, Disconnect, MqttError, PingReq, PubAck,
                               PubComp, Publish, PubRec, PubRel, Subscribe, Unsubscribe, Will,
                               encode)
from warren.mqtt.registry import SessionRegistry
from warren.mqtt.session_state import NEVER_EXPIRES, SessionState, Sub
from warren.mqtt.states import State
from warren.mqtt.subscriptions import MqttConsumer, Subscriptions
from warren.mqtt.topics import filter_to_pattern, key_cache, topic_to_key
from warren.turn_slices import until_deadline

log = logging.getLogger("warren.mqtt")

TOPIC_ALIAS_MAXIMUM = 64          # aliases a client may set towards us
MAX_CLIENT_ID = 200               # longer ids are refused (queue names stay short)
_PACK_PUBACK = struct.Struct(">HH").pack   # (0x4002, id): a plain PUBACK in one call
_make_message = Message.make


class MqttSession(Subscriptions):
    """One MQTT network connection's protocol state, from CONNECT to close.

    ``conn`` is the listener's transport glue: ``write(bytes)``, ``write_parts(list)``,
    ``close()``, ``pause_reading()``, ``resume_reading()``, ``write_paused``, ``peer``,
    ``local`` and ``loopback``. Subscriptions and delivery are its base class
    :class:`~warren.mqtt.subscriptions.Subscriptions`.
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
        # encoded PUBACK/PUBREC/PUBCOMP in order, and a persistent session's SUBACK/UNSUBACK
        # (answer_when_saved)
        self._acks = ConfirmTracker()
        self._after_ack: dict[int, Callable[[], None]] = {}   # _acks number -> run once written
        self._save_now = False                  # this read asked for a durable save
        self._qos1_unacked: deque[int] = deque()  # _acks numbers of QoS 1 PUBACKs not sent
        self._confirmed = 0                     # PUBACKs written this read, not yet counted
        self.receive_maximum = max(1, min(self.config.mqtt_receive_maximum, 65535))
        self._settle: dict[Any, list[QueueEntry]] = {}  # queue -> entries acked this read
        self._write_ok = False                  # write permission on the exchange checked
        self._publishing = False
        self._match_cache: dict[str, tuple[str, int, tuple[Sub, ...]]] = {}
        self._has_no_local = False
        # long work for this client (a big SUBSCRIBE) continued a slice per reactor turn: a
        # callable returning True when done; the listener holds further packets until then
        self.pending_work: Callable[[], bool] | None = None
        self._topic_bytes: dict[str, bytes] = {}
        # encoded properties of a QoS 0 / QoS 1 publish without MQTT 5 properties (CONNECT)
        self._plain_props: tuple[bytes, bytes] = (b"", b"")

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
        handler = _HANDLERS.get(type(packet))
        if handler is None:
            raise MqttError(rc.PROTOCOL_ERROR, f"unexpected {type(packet).__name__} from a client")
        handler(self, packet)

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
        codec = self.broker.codec
        self._plain_props = (codec.encode(Properties()), codec.encode(Properties(delivery_mode=2)))
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
            # a new connection for the client id came before the will delay passed: the
            # delayed will is not sent [MQTT-3.1.2-8], [MQTT-3.1.3-9], though the clean start
            # ends the session it waited on (Mosquitto likewise)
            old.pending_will = None
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
        password: str | None
        if username is None:
            # RabbitMQ's mqtt.ssl_cert_login: with neither user name nor password, the client
            # certificate names the user (no password asked), before anonymous login
            cert_name = self.conn.certificate_name() \
                if cfg.mqtt_ssl_cert_login and c.password is None else None
            if cert_name is not None:
                username, password = cert_name, None
            elif not cfg.mqtt_allow_anonymous:
                raise MqttError(rc.NOT_AUTHORIZED, "anonymous connections are not allowed")
            else:
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
        """Resume the session: resend what is in flight, bind its subscriptions again, then
        start consuming. The binds go until the turn's deadline and on at the next turns
        (``pending_work``, the client's next packets held meanwhile, as for a big
        SUBSCRIBE): a session of 50,000 subscriptions coming back was one turn of every
        bind."""
        state = self.state
        vh = self.vhost
        for pid in sorted(state.inflight):
            flight = state.inflight[pid]
            if flight.released:
                self.send(PubRel(pid))
            else:
                self._resend(pid, flight)
        # the filters, not their (filter, Sub) pairs: 50,000 tuples made at once were some
        # milliseconds of this turn
        fulls = iter(list(state.subs))
        own_queue = None
        if state.queue_name in vh.queues or any(s.group is None for s in state.subs.values()):
            own_queue = self._own_queue()

        def bind_again(full: str) -> None:
            s = state.subs.get(full)
            if s is None:
                return
            if s.group is None:
                vh.bind(self.exchange.name, own_queue, filter_to_pattern(s.topic_filter))
            else:
                self._join_group(full, s)

        def work() -> bool:
            if self.state_name is State.CLOSED:
                return True
            if not until_deadline(fulls, bind_again):
                return False
            self._subs_changed()
            if self.consumer is not None:
                self.consumer.queue.add_consumer(self.consumer)
            return True

        if not work():
            self.pending_work = work

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
    def on_publish(self, p: Publish) -> None:
        """A PUBLISH from the client (the listener calls it directly for a connected session:
        the commonest packet skips ``handle``'s dispatch)."""
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
            # [MQTT 5.0 3.3.4] and not routed (paho's test_flow_control2 expects it; Mosquitto
            # 2.0.11 answers PUBREC 0x97 instead and stays connected). Unacknowledged: its
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
        if not props and not p.retain and qos < 2 and not self._has_no_local:
            # the commonest publish: nothing but the persistence flag, its properties already
            # in the broker's encoding (made at CONNECT; decoded only if a consumer reads
            # them, and an AMQP consumer sends them as they are)
            # topic_to_key's memo read in line: one Python call less per message
            msg = _make_message(self.exchange.name, key_cache.get(topic) or topic_to_key(topic),
                                p.payload,
                                self.broker.codec, self._plain_props[qos], None, qos == 1, 0,
                                None)
        else:
            msg = build_message(self.broker, self.exchange.name, topic, p.payload, qos,
                                p.retain, props,
                                self.state.client_id if self._has_no_local else None)
        try:
            if p.retain:
                # the topic permission is checked before the retained message is kept
                self.publisher.authorise(self.exchange, msg.routing_key)
                self.registry.retained.put(self.vhost.name, retained_from(
                    topic, p.payload, qos, props, self.clock.seconds()))
            if props and "response_topic" in props:
                # a Response Topic is the only way to a reply_to: only then can it name
                # direct reply-to's pseudo-queue (Publisher.reply_to)
                routed = self.publisher.publish(self.exchange, msg)
            else:
                routed = self.publisher.route(self.exchange, msg)
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
            elif self.level == 5 and qos == 1:
                # a MAY of the specification; Mosquitto says it on PUBACK only: its PUBREC
                # is written once the QoS 2 message is held, before any routing
                code = rc.NO_MATCHING_SUBSCRIBERS
        if qos == 1:
            ack: Any = PubAck(p.packet_id, code) if code else None
        else:
            if code < 0x80:
                # a refused QoS 2 flow ends with its PUBREC: no PUBREL comes [MQTT-4.3.3]
                self.state.qos2_received.add(p.packet_id)
            ack = PubRec(p.packet_id, code)
        if ack is None:
            data = _PACK_PUBACK(0x4002, p.packet_id)
        else:
            data = encode(ack, self.level)
        # an accepting PUBACK/PUBREC is RabbitMQ's publisher confirm, counted when written
        confirms = 1 if code < 0x80 else 0
        if routed.stored or self._acks.entries:
            seq = self._acks.add((data, confirms), routed.stored)
            if qos == 1:
                self._qos1_unacked.append(seq)
        else:
            self.conn.write(data)
            self._confirmed += confirms   # counted once per read (after_read)

    def _queue_ack(self, packet: Any) -> None:
        """An answer that needs no sync, still written after the earlier ones."""
        data = encode(packet, self.level)
        if self._acks.entries:
            self._acks.add((data, 0))
        else:
            self.conn.write(data)

    def answer_when_saved(self, packet: Any, then: Callable[[], None] | None = None) -> None:
        """Send a SUBACK or UNSUBACK once the session's record holds what its packet changed
        (``SessionRecords.save_durably``: written and synced), then run *then*.

        A persistent session's answer is held in the acks' order (``_acks.hold``): answers to
        packets sent after it (PUBACKs too) wait behind it, so the client hears every answer
        in the order it sent the packets, and a SUBACK never overtakes an earlier one. A
        session that is not stored is answered at once."""
        state = self.state
        if not state.expiry:
            self.send(packet)
            if then is not None:
                then()
            return
        seq = self._acks.hold((encode(packet, self.level), 0))
        if then is not None:
            self._after_ack[seq] = then
        self.registry.save_durably(state).addCallbacks(self._saved, self._sync_failed,
                                                       callbackArgs=(seq,))
        self._save_now = True

    def _saved(self, _: Any, seq: int) -> None:
        self._acks.settle_held(seq)
        self._flush_acks()
        self.conn.flush()

    def _publish_refused(self, p: Publish, code: int) -> None:
        if p.qos == 1:
            self._queue_ack(PubAck(p.packet_id, code))
        elif p.qos == 2:
            self._queue_ack(PubRec(p.packet_id, code))

    def _on_pubrel(self, p: PubRel) -> None:
        """Inbound QoS 2, step 2: forget the id, PUBCOMP [MQTT-4.3.3-11].

        A PUBREL for an id we do not hold is answered too, with plain success rather than the
        0x92 5.0 allows: it is what a client resends after a reconnect whose PUBCOMP it missed,
        and Mosquitto answers it so (its 03-publish-c2b-disconnect-qos2 test)."""
        self.state.qos2_received.discard(p.packet_id)
        self._queue_ack(PubComp(p.packet_id))

    # ------------------------------------------------------------------ end of a read
    def after_read(self) -> None:
        """Settle this read's acks in one go; one store sync for this read's QoS 1/2 publishes;
        the session records' saves this read's SUBACKs wait for begin now, not a turn later
        (``SessionRecords.write_now``): their sync then goes with this turn's."""
        if self._save_now:
            self._save_now = False
            self.registry.records.write_now()
        if self._settle:
            settle, self._settle = self._settle, {}
            for queue, entries in settle.items():
                if not queue.deleted:
                    queue.ack(entries)
            self.kick()
        if self._confirmed:
            self.publisher.confirmed(self._confirmed)
            self._confirmed = 0
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
        self._after_ack.clear()
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
            if self._after_ack:
                for seq, _value, _ok in settled:
                    then = self._after_ack.pop(seq, None)
                    if then is not None and self.state_name is State.CONNECTED:
                        then()

    def fits(self, data: bytes) -> bool:
        """Whether a packet may go to this client under its Maximum Packet Size."""
        return not self.client_max_packet or len(data) <= self.client_max_packet

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
            # the reason code alone, as Mosquitto (a Reason String is the sender's choice);
            # the text is in the broker's log
            self.conn.write(encode(Disconnect(reason), 5))
        self.close()

    def _disconnect(self, reason: int, text: str) -> bytes:
        """A 5.0 DISCONNECT an operator asked for, with their text as its Reason String, left
        out where it would make the packet larger than the client's Maximum Packet Size
        [MQTT-3.14.2-3]."""
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
        self._stop_retained()
        state = self.state
        if self._settle:
            settle, self._settle = self._settle, {}
            for queue, entries in settle.items():
                if not queue.deleted:
                    queue.ack(entries)
        for c in list(self.shared.values()):
            self._leave(c)
        self.shared.clear()
        if self.consumer is not None:
            if not self.consumer.queue.deleted:
                self.consumer.queue.remove_consumer(self.consumer)
            self.consumer.removed()
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

    def release(self, conn: Any) -> None:
        """The connection is gone for good (after ``detach``): let go of what refers back to
        this session (its consumers, the retained delivery) and of the connection, which
        refers to it, for *conn*, a stand-in. Without it each closed connection left some 70
        objects in reference cycles for the cyclic collector."""
        self.conn = conn
        self.consumer = None
        self.shared = {}
        self._retained_out = None
        self._match_cache = {}

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


#: the session's handler of each packet a client sends once connected: functions of the
#: class, called with the session (a dict of bound methods per session was a reference cycle
#: of a dozen objects per connection, left for the cyclic collector after every close)
_HANDLERS: dict[type, Callable[[MqttSession, Any], None]] = {
    Publish: MqttSession.on_publish,
    PubAck: MqttSession.on_puback,
    PubRec: MqttSession._on_pubrec,
    PubRel: MqttSession._on_pubrel,
    PubComp: MqttSession._on_pubcomp,
    Subscribe: MqttSession._on_subscribe,
    Unsubscribe: MqttSession._on_unsubscribe,
    PingReq: MqttSession._on_pingreq,
    Disconnect: MqttSession._on_disconnect,
    Auth: MqttSession._on_auth,
    Connect: MqttSession._on_second_connect,
}
