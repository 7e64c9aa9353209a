"""The MQTT session registry: sessions by (vhost, client id), their records in the store, the
end of a session (its queue, will and record go) and the retained store all connections share.

Apart from the session because it outlives every connection: a persistent session is restored
from its records (``session_records.py``: a head ``mqtt-session``/vhost/client id and parts of
its subscriptions) at start, and a connection that takes a client id over finds the earlier
one's state here.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet.defer import Deferred

from warren.broker.broker import Broker
from warren.config import Config
from warren.model.errors import BrokerError
from warren.mqtt.codec import Will
from warren.mqtt.retained import RetainedStore
from warren.turn_slices import sliced_cooperator
from warren.mqtt.amqp_mapping import build_message, retained_from
from warren.mqtt.session_records import SessionRecords
from warren.mqtt.session_state import NEVER_EXPIRES, SessionState

log = logging.getLogger("warren.mqtt")

__all__ = ["LET_GO_AT_ONCE", "SessionRegistry"]

#: subscriptions of an ended session left to go with it at once (about 1 ms of freeing);
#: those of a bigger one are removed in slices (``SessionState.let_go``)
LET_GO_AT_ONCE = 1000


class SessionRegistry:
    """Sessions by (vhost, client id) plus the retained store: what all connections share."""

    def __init__(self, broker: Broker, config: Config, clock: Any) -> None:
        self.broker = broker
        self.config = config
        self.clock = clock
        self.retained = RetainedStore(broker)
        # every session's retained messages on SUBSCRIBE share 4 ms per reactor turn
        self.retained_slices = sliced_cooperator(clock)
        # ended sessions' subscriptions released a turn's budget at a time
        self.releases = sliced_cooperator(clock)
        self.sessions: dict[tuple[str, str], SessionState] = {}
        # persistent sessions' records: a head and parts, written in slices
        self.records = SessionRecords(broker, clock)
        for state in self.records.restore():
            self.sessions[(state.vhost, state.client_id)] = state
            if state.expiry != NEVER_EXPIRES:
                state.expiry_call = self.clock.callLater(state.expiry, self.end, state)

    def save_soon(self, state: SessionState) -> None:
        """Record a persistent session's subscriptions as they are now (the packets that
        changed them are answered) and its expiry: what changed since the last save, in
        slices from the next reactor turn on (``session_records.py``); a save under way goes
        on with it."""
        self.records.save(state)

    save = save_soon

    def save_durably(self, state: SessionState) -> Deferred:
        """:meth:`save_soon`, and a Deferred fired once those changes are on disk (at once for
        a session that is not stored): what a SUBACK or UNSUBACK waits for."""
        return self.records.save_durably(state)

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
        self.records.drop(state)
        if len(state.subs) > LET_GO_AT_ONCE:
            self.releases.cooperate(state.let_go())

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
            self.retained.put(vhost_name, retained_from(will.topic, will.payload, will.qos,
                                                         props, self.clock.seconds()))
        publisher.publish(ex, msg)

