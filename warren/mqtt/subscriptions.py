"""MQTT subscriptions and delivery: SUBSCRIBE/UNSUBSCRIBE, PUBLISH to the client and the
acknowledgements of what it was sent (PUBACK, PUBREC/PUBCOMP).

An :class:`MqttConsumer` is the session's core consumer of one queue (its own, or a shared
group's); :class:`Subscriptions` is the part of :class:`~warren.mqtt.session.MqttSession` that
makes and ends them and writes deliveries. It is a base class of the session rather than an
object of its own because every step reads the connection's state (protocol level, window,
topic aliases, the attached :class:`~warren.mqtt.session_state.SessionState`).

Deliveries re-check MQTT matching per subscription (``$`` topics, subscription QoS,
identifiers, no-local, retain-as-published) since routing is by AMQP pattern.
"""

from __future__ import annotations

import logging
import math
import struct
from functools import partial
from typing import Any, Callable, Iterator

from warren.model.errors import AccessRefused, BrokerError
from warren.model.message import Message, QueueEntry
from warren.mqtt import errors as rc
from warren.mqtt.amqp_mapping import amqp1_properties, out_properties, published_qos
from warren.mqtt.codec import (MqttError, PubAck, PubComp, PubRec, PubRel, SubAck, Subscribe,
                               UnsubAck, Unsubscribe, validate_topic_filter)
from warren.mqtt.properties import encode_properties, encode_string, encode_varint
from warren.mqtt.retained import RetainedMessage
from warren.mqtt.retained_delivery import RetainedDelivery
from warren.mqtt.session_state import Inflight, SessionState, Sub
from warren.mqtt.states import State
from warren.mqtt.subscribe_payload import one_pass
from warren.mqtt.topics import filter_matches, filter_to_pattern, key_to_topic, split_shared
from warren.turn_slices import until_deadline

log = logging.getLogger("warren.mqtt")

__all__ = ["MqttConsumer", "Subscriptions"]

_PACK_U16 = struct.Struct(">H").pack
_new = object.__new__
#: the fixed header of every PUBLISH shorter than 128 bytes, by its flags << 7 | length
#: (a 2-byte bytes made per message cost a tuple and a type call)
_SHORT_FIXED = [bytes((0x30 | i >> 7, i & 0x7F)) for i in range(16 << 7)]
_TOPIC_CACHE_LIMIT = 4096
_COPIED_PAYLOAD = 2048   # a PUBLISH with a payload up to this size is written as one bytes
#: retained messages on SUBSCRIBE are flushed to the transport every this many bytes (its
#: buffer's size, Twisted's ``bufferSize``), so a full socket pauses them within a slice
RETAINED_FLUSH_BYTES = 64 * 1024


class MqttConsumer:
    """The session's consumer on one queue (its own, or a shared group's)."""

    __slots__ = ("session", "queue", "tag", "no_ack", "exclusive", "priority", "arguments",
                 "shared_sub", "deliver")

    def __init__(self, session: Subscriptions, queue: Any, shared_sub: Sub | None) -> None:
        self.session = session
        self.queue = queue
        self.tag = f"mqtt-{session.state.client_id}-{queue.name}"
        self.no_ack = False
        self.exclusive = False
        self.priority = 0
        self.arguments: dict[str, Any] = {}
        self.shared_sub = shared_sub   # None: the client's own queue
        # Consumer.deliver(queue, entry) is the session's deliver with this consumer bound
        # first: a C-level partial, not a Python method that only passes the call on (one
        # Python frame less per message)
        self.deliver: Callable[[Any, QueueEntry], None] = partial(session.deliver, self)

    def has_credit(self) -> bool:
        s = self.session
        if s.detached or s.conn.write_paused or s.retained_pending:
            return False
        return self.no_ack or len(s.state.inflight) < s.window

    def cancelled(self, queue: Any) -> None:
        self.session.consumer_cancelled(self)

    def removed(self) -> None:
        """Taken off its queue for good: ``deliver`` lets go of this consumer (the partial
        and the consumer referred to each other, a cycle left for the collector)."""
        self.deliver = _given_back


def _given_back(queue: Any, entry: QueueEntry) -> None:
    """``deliver`` of a consumer no longer on its queue: the entry goes back (not called
    while the queue keeps its consumers right)."""
    queue.requeue([entry])


class Subscriptions:
    """SUBSCRIBE/UNSUBSCRIBE and delivery (PUBLISH out, PUBACK/PUBREC/PUBCOMP in) of an
    :class:`~warren.mqtt.session.MqttSession`."""

    # the session's state that a consumer reads (MqttSession sets it)
    state: SessionState
    detached: bool                 # no connection attached: nothing is delivered
    window: int                    # unacknowledged QoS>0 deliveries allowed
    conn: Any                      # the listener (MqttConnection)
    # retained messages on SUBSCRIBE still being sent (retained_delivery.py): the queues'
    # deliveries wait for them
    retained_pending = False
    _retained_out: RetainedDelivery | None = None
    _retained_unflushed = 0        # bytes of retained messages written since the last flush
    # the session's: a SUBACK/UNSUBACK sent once a persistent session's record holds what its
    # packet changed, then the callable run
    answer_when_saved: Callable[..., None]

    def _own_queue(self) -> Any:
        vh = self.vhost
        name = self.state.queue_name
        q = vh.queues.get(name)
        if q is None:
            q = vh.declare_queue(name, durable=self.state.expiry != 0)
        if self.consumer is None or self.consumer.queue is not q:
            self.consumer = MqttConsumer(self, q, None)
        return q

    # ------------------------------------------------------------------ delivery out
    def _subs_changed(self) -> None:
        self._match_cache.clear()
        self._has_no_local = self.state.no_local_count > 0
        if self.consumer is not None:
            self.consumer.no_ack = self.state.own_qos_count == 0

    def _matching(self, key: str) -> tuple[str, int, tuple[Sub, ...]]:
        """(MQTT topic, max QoS, subscriptions) of the client's own subscriptions matching
        the topic of routing key ``key``; remembered by key, so a delivery on a known topic
        costs one dict lookup for all three."""
        found = self._match_cache.get(key)
        if found is None:
            topic = key_to_topic(key)
            subs = self.state.matching(topic)
            found = (topic, max((s.qos for s in subs), default=-1), subs)
            if len(self._match_cache) >= _TOPIC_CACHE_LIMIT:
                self._match_cache.clear()
            self._match_cache[key] = found
        return found

    def deliver(self, consumer: MqttConsumer, queue: Any, entry: QueueEntry) -> None:
        msg = entry.message
        shared = consumer.shared_sub
        if shared is None:
            # _matching's remembered answer read here: one Python call less per message
            found = self._match_cache.get(msg.routing_key)
            topic, sub_qos, subs = found if found is not None else \
                self._matching(msg.routing_key)
        else:
            topic = key_to_topic(msg.routing_key)
            if filter_matches(shared.topic_filter, topic):
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
            qos = published_qos(msg)
        state = self.state
        if qos:
            # the next packet id, unless it is still in flight (allocate_id looks further)
            pid = state.next_id % 65535 + 1
            if pid in state.inflight:
                pid = state.allocate_id()
            else:
                state.next_id = pid
            # made bare (as the queue makes its entries): no dataclass __init__ per message
            flight = state.inflight[pid] = _new(Inflight)
            flight.queue = queue
            flight.entry = entry
            flight.qos = qos
            flight.retained = None
            flight.released = False
        else:
            pid = 0
            if not consumer.no_ack:
                queue.ack([entry])
        retain = False
        if self.level == 5:
            if any(s.retain_as_published for s in subs):
                h = msg.properties.headers
                retain = bool(h and h.get("x-mqtt-retain"))
            props = out_properties(msg, subs, entry, self.clock, self.exchange.name)
            if msg.amqp1_sections is not None:
                amqp1_properties(msg, props, self.exchange.name)   # an AMQP 1.0 publish
        else:
            if not qos:
                # the commonest delivery (QoS 0, no properties, no size limit below 5.0):
                # _write_publish's work for it in line, one Python call less per message
                tb = self._topic_bytes.get(topic)
                body = msg.body
                if tb is not None and len(body) <= _COPIED_PAYLOAD:
                    length = len(tb) + len(body)
                    self.conn.write((_SHORT_FIXED[length] if length < 0x80
                                     else b"\x30" + encode_varint(length)) + tb + body)
                    return
            props = None
        self._write_publish(topic, msg.body, qos, pid, entry.redelivered and qos > 0, retain,
                            props)

    def _local_only(self, msg: Message, subs: tuple[Sub, ...]) -> bool:
        """No-local [MQTT-3.8.3-3]: our own message and every matching subscription says so."""
        if not all(s.no_local for s in subs):
            return False
        h = msg.properties.headers
        return bool(h) and h.get("x-mqtt-publisher") == self.state.client_id

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
            head = tb + _PACK_U16(pid) if qos else tb
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
            fixed = _SHORT_FIXED[(first & 0x0F) << 7 | length]
        else:
            fixed = bytes((first,)) + encode_varint(length)
        if self.client_max_packet and len(fixed) + length > self.client_max_packet:
            if new_alias:
                # the client never learns an alias set by a packet it does not get: the
                # next PUBLISH on this topic must carry the name again [MQTT-3.3.2-12]
                del self.aliases_out[topic]
            self._drop_oversized(len(fixed) + length, qos, pid)
            return
        if len(payload) <= _COPIED_PAYLOAD:
            self.conn.write(fixed + head + payload)   # one small copy beats a list of two
        else:
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

    def _resend(self, pid: int, flight: Inflight) -> None:
        """Resend an unacknowledged PUBLISH with DUP set [MQTT-4.4.0-1]."""
        if flight.retained is not None:
            r = flight.retained
            props = dict(r.properties) if self.level == 5 else None
            self._write_publish(r.topic, r.payload, flight.qos, pid, True, True, props)
            return
        msg = flight.entry.message
        props = None
        if self.level == 5:
            props = out_properties(msg, (), flight.entry, self.clock, self.exchange.name)
            if msg.amqp1_sections is not None:
                amqp1_properties(msg, props, self.exchange.name)
        self._write_publish(key_to_topic(msg.routing_key), msg.body, flight.qos, pid, True,
                            False, props)

    def on_puback(self, p: PubAck) -> None:
        """A PUBACK from the client (the listener calls it directly for a connected session,
        as it does ``on_publish``: a subscriber sends one per QoS 1 message)."""
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
        else:
            # a retained message's slot of the window is free: for the next retained one,
            # or the queues' deliveries (nothing else would dispatch them: no entry to settle)
            self.kick()

    def _on_pubrec(self, p: PubRec) -> None:
        """Outbound QoS 2, step 1: the client has it; settle the queue entry, send PUBREL."""
        flight = self.state.inflight.get(p.packet_id)
        if flight is None:
            # tolerated, answered (a PUBREC resent after we forgot the id, e.g. a restart);
            # with a plain PUBREL, as Mosquitto's
            self.send(PubRel(p.packet_id))
            return
        if flight.qos != 2:
            # [MQTT-4.3.2] a QoS 1 delivery is answered by PUBACK: protocol error, as Mosquitto
            raise MqttError(rc.PROTOCOL_ERROR, f"PUBREC for QoS 1 packet {p.packet_id}")
        if p.reason_code >= 0x80:
            del self.state.inflight[p.packet_id]   # the client refused it: done
            if flight.entry is None:
                self.kick()                        # as for a retained one's PUBACK
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
        self.kick()

    def kick(self) -> None:
        """Credit came back: let the queues (or the retained messages) deliver again."""
        if self.detached:
            return
        if self.retained_pending:
            self._retained_out.wake()
            return
        if self.consumer is not None and not self.consumer.queue.deleted:
            self.consumer.queue.dispatch()
        for c in self.shared.values():
            if not c.queue.deleted:
                c.queue.dispatch()

    def consumer_cancelled(self, consumer: MqttConsumer) -> None:
        consumer.removed()
        if consumer is self.consumer:
            self.consumer = None
        else:
            for full, c in list(self.shared.items()):
                if c is consumer:
                    del self.shared[full]

    # ------------------------------------------------------------------ SUBSCRIBE
    def _on_subscribe(self, s: Subscribe) -> None:
        """Subscribe each filter, then one SUBACK. A SUBSCRIBE with more filters than the
        turn's budget allows is done a slice per reactor turn (until ``turn_deadline``, the
        clock read after each filter; ``pending_work``: the listener reads none of
        this client's further packets meanwhile), so other clients' round trips stay short;
        the SUBACK still follows the last subscription. The filters are iterated, not
        indexed: a big SUBSCRIBE's are decoded as they are reached (``subscribe_payload.py``),
        so its decoding is sliced with its subscribing.

        A filter that is not well formed (as for UNSUBSCRIBE, ``_on_unsubscribe``) ends the
        connection: DISCONNECT 0x81 at 5.0, a close at 3.1.1, no SUBACK; the filters before
        it stay subscribed, those after it are not reached. Mosquitto 2.0.11 does the same
        (tried: "Invalid subscription string", the earlier filters kept in the session), but
        grants a ``$share`` filter without group or filter. A well-formed filter that is
        refused keeps its SUBACK code (``rc.suback_code``): 0x80 at 3.1.1; at 5.0 0x87 Not
        authorized (permissions), 0x97 Quota exceeded (a limit), 0x83 or 0x80 otherwise."""
        ids = s.properties.get("subscription_identifier")
        identifier = ids[0] if ids else None
        codes: list[int] = []
        wants_retained: list[Sub] = []
        self._in_slices(
            s.subscriptions,
            lambda req: self._subscribe_one(req, identifier, codes, wants_retained),
            lambda: self._subscribed(s, codes, wants_retained))

    def _in_slices(self, items: Any, one: Callable[[Any], None],
                   done: Callable[[], None]) -> None:
        """``one`` for each of ``items`` until the turn's deadline (``until_deadline``, the
        clock read after each item), the rest at the next turn (``pending_work``: the
        listener reads none of this client's further packets meanwhile), then ``done``: a
        SUBSCRIBE's and an UNSUBSCRIBE's filters, each acked after its last, each let go
        once done (``one_pass``)."""
        left = one_pass(items)

        def work() -> bool:
            if self.state_name is State.CLOSED:
                return True
            if not until_deadline(left, one):
                self._subs_changed()
                return False
            done()
            return True

        if not work():
            self.pending_work = work

    def _subscribe_one(self, req: Any, identifier: Any, codes: list[int],
                       wants_retained: list[Sub]) -> None:
        state = self.state
        validate_topic_filter(req.topic_filter)   # malformed: the connection ends
        group, filt = split_shared(req.topic_filter)
        if group is not None and req.no_local:
            # [MQTT-3.8.3-4] no-local on a shared subscription is a protocol error
            raise MqttError(rc.PROTOCOL_ERROR, "no-local on a shared subscription")
        try:
            self._check_binding(filt)
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
        handling = req.retain_handling
        if group is None and (handling == 0 or (handling == 1 and not existed)):
            # retained messages are sent on SUBSCRIBE [MQTT-3.3.1-9], unless the Retain
            # Handling option says not at all or only to a new subscription [MQTT 5.0
            # 3.8.3.1]; never to a shared one
            wants_retained.append(sub)

    def _check_binding(self, filt: str) -> None:
        """Raise AccessRefused unless the client may bind (SUBSCRIBE) or unbind (UNSUBSCRIBE)
        ``filt``: read access to the MQTT exchange and the topic permission's ``read``
        pattern, the same for both as in RabbitMQ's MQTT plugin."""
        self.broker.check(self.user, self.vhost.name, "read", "exchange", self.exchange.name)
        self.broker.check_topic(self.user, self.vhost.name, self.exchange, "read",
                                filter_to_pattern(filt), self.state.client_id)

    def _subscribed(self, s: Subscribe, codes: list[int], wants_retained: list[Sub]) -> None:
        """The SUBACK, then the session's consumer if it has none yet and (in slices,
        ``retained_delivery.py``) the retained messages of the filters that want them: each
        filter's walk of the retained tree is made when the delivery reaches it, not here,
        so 50,000 filters cost this turn no 50,000 walks."""
        self._subs_changed()

        def deliver() -> None:
            consumer = self.consumer
            if consumer is not None and consumer not in list(consumer.queue.consumers):
                consumer.queue.add_consumer(consumer)
            if wants_retained and self.registry.retained.has_any(self.vhost.name):
                self._send_retained(wants_retained)   # [MQTT-3.3.1-9], [MQTT 5.0 3.8.3.1]

        # the session's first consumer and the retained messages start after the SUBACK,
        # which waits for a persistent session's record (answer_when_saved); a consumer
        # already running may deliver on the new filters before it [MQTT 5.0 3.8.4]
        self.answer_when_saved(SubAck(s.packet_id, tuple(codes)), deliver)

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

    def _send_retained(self, subs: list[Sub]) -> None:
        """Send the retained messages each subscription's filter matches to it, after those
        of earlier SUBSCRIBEs, a slice per reactor turn (``retained_delivery.py``)."""
        out = self._retained_out
        if out is None:
            out = self._retained_out = RetainedDelivery(self, self.registry.retained_slices)
        self.retained_pending = True
        out.add(subs)

    def retained_walk(self, sub: Sub) -> Iterator[RetainedMessage | None]:
        """The lazy walk of the vhost's retained messages *sub*'s filter matches (expired
        ones deleted on the way)."""
        return self.registry.retained.matching_steps(self.vhost.name, sub.topic_filter,
                                                     self.clock.seconds)

    def retained_blocked(self, qos: int) -> bool:
        """No retained PUBLISH now: the socket is backed up, or at QoS 1/2 the in-flight
        window is full (the client's Receive Maximum)."""
        return self.detached or self.conn.write_paused or (
            qos > 0 and len(self.state.inflight) >= self.window)

    def current_sub(self, sub: Sub) -> Sub | None:
        """The subscription of *sub*'s filter now: None once unsubscribed, a newer one
        (other QoS or identifier) once subscribed again."""
        return self.state.subs.get(sub.full_filter)

    def send_retained(self, sub: Sub, r: RetainedMessage) -> None:
        """One retained PUBLISH (RETAIN set [MQTT-3.3.1-8]) at the lower of both QoS."""
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
                props["message_expiry_interval"] = max(
                    0, math.ceil(r.expires_at - self.clock.seconds()))
            if sub.identifier:
                props["subscription_identifier"] = [sub.identifier]
        self._write_publish(r.topic, r.payload, qos, pid, False, True, props)
        # written to the transport every so many bytes, so that it can say it is full
        # (pauseProducing: retained_blocked) before a 4 ms slice has queued megabytes
        self._retained_unflushed += len(r.payload) + len(r.topic)
        if self._retained_unflushed >= RETAINED_FLUSH_BYTES:
            self._retained_unflushed = 0
            self.conn.flush()

    def retained_sent(self) -> None:
        """The last retained message is out: the queues deliver again."""
        self.retained_pending = False
        self.kick()

    def _stop_retained(self) -> None:
        if self._retained_out is not None:
            self._retained_out.stop()
        self.retained_pending = False

    def _on_unsubscribe(self, u: Unsubscribe) -> None:
        """Unbind each filter, then one UNSUBACK. As RabbitMQ's MQTT plugin, unbinding needs
        what binding needed: a filter whose topic permission no longer allows reading it
        (changed since the SUBSCRIBE) is refused, 0x87 Not authorized in a 5.0 UNSUBACK (a
        3.1.1 UNSUBACK has no codes), and the subscription stays and keeps delivering.

        Sliced as SUBSCRIBE is (``_on_subscribe``): the filters are decoded and unbound until
        the turn's deadline, the rest at the next turn (``pending_work``), the UNSUBACK after
        the last. 50,000 filters in one turn were 1.1 s of CPU that every other client
        waited for.

        A filter that is not well formed (empty [MQTT-4.7.3-1], a misplaced ``#`` or ``+``
        [MQTT-4.7.1-1], [MQTT-4.7.1-2], a shared one without group or filter [MQTT-4.8.2-1])
        ends the connection: DISCONNECT 0x81 Malformed Packet at 5.0, a close at 3.1.1, no
        UNSUBACK, the filters before it unsubscribed. An UNSUBACK has no code for it: 0x8F
        is for a filter "correctly formed but not allowed for this Client", 0x11 for a valid
        one not subscribed [MQTT 5.0 3.11.3]. Mosquitto 2.0.11 answers the same (DISCONNECT
        0x81, "Invalid/Empty unsubscription string"), except that it lets a ``$share`` filter
        without group or filter through to an UNSUBACK 0x11. A SUBSCRIBE ends the same way
        (``_on_subscribe``)."""
        codes: list[int] = []

        def done() -> None:
            self._subs_changed()
            self.answer_when_saved(UnsubAck(u.packet_id, tuple(codes) if self.level == 5 else ()))

        self._in_slices(u.topic_filters, lambda filt: self._unsubscribe_one(filt, codes), done)

    def _unsubscribe_one(self, filt: str, codes: list[int]) -> None:
        state = self.state
        sub = state.subs.get(filt)
        if sub is None:
            # malformed: the connection ends (a subscribed filter passed this at its SUBSCRIBE)
            validate_topic_filter(filt)
            codes.append(rc.NO_SUBSCRIPTION_EXISTED)
            return
        try:
            self._check_binding(sub.topic_filter)
        except AccessRefused as e:
            log.warning("MQTT unsubscription from %s refused: %s", filt, e.reply_text)
            codes.append(rc.reason_for(e))
            return
        state.pop_sub(filt)
        if sub.group is None:
            q = self.vhost.queues.get(state.queue_name)
            if q is not None:
                self.vhost.unbind(self.exchange.name, q, filter_to_pattern(sub.topic_filter))
        else:
            c = self.shared.pop(filt, None)
            if c is not None:
                self._leave(c)
        codes.append(rc.SUCCESS)

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
        consumer.removed()
