"""The MQTT session on a fake connection and a fake clock (no broker process, no sockets, no
sleeps).

:class:`FakeConn` stands in for the listener's ``MqttConnection`` (what ``MqttSession``'s
docstring lists): it parses the packets the session writes back into packet objects and
records closes. The broker is the real in-process :class:`~warren.broker.broker.Broker` on a
``Clock``; the :class:`~warren.mqtt.registry.SessionRegistry` is the real one, shared by the
sessions of one test as the listener's factory shares it. ``send`` does what the listener does
per read: stamp ``last_recv``, hand the packet over, then ``after_read``.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from tests.memory_store import HeldSyncStore, MemoryStore
from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.config import Config
from warren.mqtt import errors as rc
from warren.mqtt.codec import (ConnAck, Connect, Disconnect, MqttError, MqttParser, PingReq,
                               PingResp, PubAck, PubComp, Publish, PubRec, PubRel, SubAck,
                               Subscribe, Subscription, Will)
from warren.mqtt.registry import LET_GO_AT_ONCE, SessionRegistry
from warren.mqtt.session import MqttSession
from warren.mqtt.states import State


class FakeConn:
    """The session's connection: packets written are parsed back; closes recorded."""

    def __init__(self) -> None:
        self.write_paused = False
        self.peer = ("127.0.0.1", 40000)
        self.local = ("127.0.0.1", 1883)
        self.loopback = True
        self.name = "fake-mqtt"
        self.parser = MqttParser()          # the listener's parser; CONNECT raises its limit
        self.out: MqttParser | None = None  # parses what the session writes, once connected
        self.level: int | None = None
        self.packets: list = []
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        if self.out is None:
            self.out = MqttParser(protocol_level=self.level)
        self.packets.extend(self.out.feed(data))

    def write_parts(self, parts: list[bytes]) -> None:
        self.write(b"".join(parts))

    def flush(self) -> None: ...

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def certificate_name(self) -> str | None:
        return None

    def parser_level(self) -> int | None:
        return self.level

    def take(self) -> list:
        packets, self.packets = self.packets, []
        return packets


class Harness:
    """One broker and registry on one clock; ``client`` opens a session on a new FakeConn."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.clock = Clock()
        self.broker = Broker(clock=self.clock, codec=CODEC, store=store)
        self.broker.ensure_defaults()
        self.config = Config()
        self.registry = SessionRegistry(self.broker, self.config, self.clock)

    def client(self, level: int = 4, **connect) -> "Client":
        return Client(self, level, **connect)


class Client:
    def __init__(self, h: Harness, level: int, **connect) -> None:
        self.h = h
        self.conn = FakeConn()
        self.conn.level = level
        self.session = MqttSession(self.conn, h.registry)
        self.level = level
        self.connect_args = connect

    def send(self, packet) -> list:
        self.session.last_recv = self.h.clock.seconds()
        try:
            self.session.handle(packet)
        except MqttError as error:
            self.session.fail(error)
        self.session.after_read()
        return self.conn.take()

    def connect(self, **overrides) -> ConnAck:
        args = {"protocol_level": self.level, "client_id": "c1", **self.connect_args,
                **overrides}
        packets = self.send(Connect(**args))
        assert type(packets[0]) is ConnAck
        self.conn.packets[:0] = packets[1:]           # resent deliveries stay to be taken
        return packets[0]

    def subscribe(self, topic_filter: str, qos: int, packet_id: int = 1) -> list:
        return self.send(Subscribe(packet_id, (Subscription(topic_filter, qos),)))


def _publishes(packets: list) -> list[Publish]:
    return [p for p in packets if type(p) is Publish]


# ------------------------------------------------------------------------------ CONNECT
def test_connect_3_1_1_is_accepted_with_a_new_session():
    c = Harness().client(4)
    ack = c.connect(clean_start=True)
    assert (ack.session_present, ack.reason_code, ack.properties) == (False, 0, {})
    assert c.session.state_name is State.CONNECTED


def test_connect_5_states_its_limits_and_assigns_a_client_id():
    c = Harness().client(5)
    ack = c.connect(client_id="")
    assert ack.reason_code == 0
    assert ack.properties["assigned_client_identifier"].startswith("warren-")
    assert ack.properties["receive_maximum"] == c.h.config.mqtt_receive_maximum
    assert ack.properties["topic_alias_maximum"] > 0


def test_an_empty_client_id_with_a_persistent_3_1_1_session_is_refused():
    c = Harness().client(4)
    (ack,) = c.send(Connect(protocol_level=4, client_id="", clean_start=False))
    assert ack.reason_code == 2                       # 3.1.1 "identifier rejected"
    assert c.conn.closed and c.session.state_name is State.CLOSED


@pytest.mark.parametrize("level, code", [(4, 4), (5, rc.BAD_USER_NAME_OR_PASSWORD)])
def test_a_bad_password_is_refused_in_the_levels_own_code(level, code):
    c = Harness().client(level)
    (ack,) = c.send(Connect(protocol_level=level, client_id="c1", username="guest",
                            password=b"wrong"))
    assert type(ack) is ConnAck and ack.reason_code == code
    assert c.conn.closed and ("/", "c1") not in c.h.registry.sessions


def test_a_packet_before_connect_is_a_protocol_error():
    c = Harness().client(4)
    with pytest.raises(MqttError) as error:
        c.session.handle(PingReq())
    assert error.value.reason_code == rc.PROTOCOL_ERROR


def test_a_persistent_session_is_present_on_reconnect():
    h = Harness()
    a = h.client(4)
    a.connect(clean_start=False)
    a.subscribe("t/#", 1)
    a.session.detach()                                # the connection is gone
    b = h.client(4)
    assert b.connect(clean_start=False).session_present is True


# ------------------------------------------------------------------------------ delivery
@pytest.mark.parametrize("level", [4, 5])
def test_subscribe_is_answered_with_the_granted_qos(level):
    c = Harness().client(level)
    c.connect()
    (suback,) = c.send(Subscribe(7, (Subscription("a/+", 0), Subscription("b/#", 1),
                                     Subscription("c", 2))))
    assert type(suback) is SubAck and suback.packet_id == 7
    assert suback.reason_codes == (0, 1, 2)


def test_qos_0_is_delivered_without_a_packet_id():
    h = Harness()
    sub, pub = h.client(4, client_id="sub"), h.client(4, client_id="pub")
    sub.connect(), pub.connect()
    sub.subscribe("t/+", 0)
    assert pub.send(Publish("t/x", b"hello", 0)) == []
    (msg,) = _publishes(sub.conn.take())
    assert (msg.topic, msg.payload, msg.qos, msg.packet_id) == ("t/x", b"hello", 0, None)


def test_qos_1_publish_is_pubacked_and_delivery_waits_for_puback():
    h = Harness()
    sub, pub = h.client(4, client_id="sub"), h.client(4, client_id="pub")
    sub.connect(), pub.connect()
    sub.subscribe("t", 1)
    assert pub.send(Publish("t", b"m", 1, packet_id=5)) == [PubAck(5)]
    (msg,) = _publishes(sub.conn.take())
    assert msg.qos == 1 and msg.packet_id is not None
    q = h.broker.vhost("/").queues[sub.session.state.queue_name]
    assert q.unacked == 1
    sub.send(PubAck(msg.packet_id))
    assert q.unacked == 0 and q.message_count == 0


def test_acks_of_stored_publishes_wait_for_the_store_sync_and_keep_their_order():
    store = HeldSyncStore()
    h = Harness(store)
    sub, pub = h.client(4, client_id="sub"), h.client(4, client_id="pub")
    sub.connect(clean_start=False), pub.connect()    # a persistent session: a durable queue
    sub.subscribe("t", 1)
    store.release()
    assert pub.send(Publish("t", b"m", 1, packet_id=1)) == []
    # an answer that needs no sync still waits behind the earlier one
    assert pub.send(PubRel(77)) == []
    store.release()
    assert pub.conn.take() == [PubAck(1), PubComp(77)]


def test_an_unacked_qos_1_delivery_is_resent_with_dup_on_resume():
    h = Harness()
    sub, pub = h.client(4, client_id="sub"), h.client(4, client_id="pub")
    sub.connect(clean_start=False), pub.connect()
    sub.subscribe("t", 1)
    pub.send(Publish("t", b"m", 1, packet_id=5))
    (first,) = _publishes(sub.conn.take())
    sub.session.detach()
    again = h.client(4, client_id="sub")
    again.connect(clean_start=False)
    (resent,) = _publishes(again.conn.take())
    assert resent.dup and resent.packet_id == first.packet_id and resent.payload == b"m"


def test_qos_2_both_ways_runs_the_four_packet_exchange_and_routes_once():
    h = Harness()
    sub, pub = h.client(4, client_id="sub"), h.client(4, client_id="pub")
    sub.connect(), pub.connect()
    sub.subscribe("t", 2)
    assert pub.send(Publish("t", b"m", 2, packet_id=9)) == [PubRec(9)]
    # a resent PUBLISH (DUP) before PUBREL is answered but not routed again
    assert pub.send(Publish("t", b"m", 2, dup=True, packet_id=9)) == [PubRec(9)]
    assert pub.send(PubRel(9)) == [PubComp(9)]
    (msg,) = _publishes(sub.conn.take())
    assert msg.qos == 2
    assert sub.send(PubRec(msg.packet_id)) == [PubRel(msg.packet_id)]
    q = h.broker.vhost("/").queues[sub.session.state.queue_name]
    assert q.unacked == 0 and q.message_count == 0
    assert sub.send(PubComp(msg.packet_id)) == []
    assert sub.session.state.inflight == {}


def test_delivery_qos_is_the_lower_of_publish_and_subscription():
    h = Harness()
    sub, pub = h.client(4, client_id="sub"), h.client(4, client_id="pub")
    sub.connect(), pub.connect()
    sub.subscribe("t", 1)
    pub.send(Publish("t", b"m", 2, packet_id=3))
    pub.send(PubRel(3))
    (msg,) = _publishes(sub.conn.take())
    assert msg.qos == 1


# ------------------------------------------------------------------------------ keep-alive
def test_keep_alive_drops_a_silent_client_after_one_and_a_half_periods():
    h = Harness()
    c = h.client(5)
    c.connect(keep_alive=10)
    h.clock.advance(14)
    assert c.send(PingReq()) == [PingResp()]          # any packet restarts the count
    h.clock.advance(14.9)
    assert not c.conn.closed
    h.clock.advance(0.2)                              # 15 s silent since the PINGREQ
    assert c.conn.closed and c.session.state_name is State.CLOSED
    assert c.conn.take() == [Disconnect(rc.KEEP_ALIVE_TIMEOUT)]


def test_keep_alive_zero_never_times_out():
    h = Harness()
    c = h.client(4)
    c.connect(keep_alive=0)
    h.clock.advance(100_000)
    assert not c.conn.closed


# ------------------------------------------------------------------------------ takeover
@pytest.mark.parametrize("level", [4, 5])
def test_a_second_connection_with_the_same_client_id_takes_the_session_over(level):
    h = Harness()
    # a 5.0 session outlives its connection only with a Session Expiry Interval
    persistent = {"properties": {"session_expiry_interval": 300}} if level == 5 else {}
    old, new = h.client(level, **persistent), h.client(level, **persistent)
    old.connect(clean_start=False)
    old.subscribe("t", 1)
    assert new.connect(clean_start=False).session_present is True
    assert old.conn.closed and old.session.state_name is State.CLOSED
    told = old.conn.take()
    assert told == ([Disconnect(rc.SESSION_TAKEN_OVER)] if level == 5 else [])
    assert h.registry.sessions[("/", "c1")].session is new.session
    pub = h.client(4, client_id="pub")
    pub.connect()
    pub.send(Publish("t", b"after", 1, packet_id=1))
    assert [p.payload for p in _publishes(new.conn.take())] == [b"after"]
    assert old.conn.take() == []


# ------------------------------------------------------------------------------ wills
def _watcher(h: Harness):
    w = h.client(4, client_id="watcher")
    w.connect()
    w.subscribe("will/#", 0)
    return w


def test_the_will_is_published_when_the_connection_ends_abnormally():
    h = Harness()
    w = _watcher(h)
    c = h.client(4, will=Will("will/c1", b"gone", 0))
    c.connect()
    c.session.detach()                                # the socket went away, no DISCONNECT
    assert [(p.topic, p.payload) for p in _publishes(w.conn.take())] == [("will/c1", b"gone")]


def test_a_normal_disconnect_discards_the_will():
    h = Harness()
    w = _watcher(h)
    c = h.client(4, will=Will("will/c1", b"gone", 0))
    c.connect()
    c.send(Disconnect())
    assert c.conn.closed
    assert _publishes(w.conn.take()) == []


def test_a_big_clean_sessions_subscriptions_are_let_go_over_turns_once_it_ends():
    """A clean session of more subscriptions than ``LET_GO_AT_ONCE`` ends: they are removed
    from its state a turn's budget at a time from the next turn on (not freed together with
    the connection), all of them; the client id's next session starts empty."""
    h = Harness()
    c = h.client(4)
    c.connect(clean_start=True)
    n = 5 * LET_GO_AT_ONCE
    packets = c.send(Subscribe(1, tuple(Subscription(f"a/{i}/+", 1) for i in range(n))))
    while c.session.pending_work is not None:         # the listener's part: its slices
        if c.session.pending_work():
            c.session.pending_work = None
    packets += c.conn.take()
    assert [(type(p), len(p.reason_codes)) for p in packets] == [(SubAck, n)]
    state = c.session.state
    c.send(Disconnect())
    c.session.detach()                                # the socket goes
    assert state.ended and len(state.subs) == n       # nothing released in the call
    for _ in range(10 * n):
        if not state.subs:
            break
        h.clock.advance(0)
    assert state.subs == {} and state.sub_trie.match("a.1.x") == []
    again = h.client(4)
    assert not again.connect(clean_start=False).session_present


def test_a_will_delay_holds_the_will_until_it_passes():
    h = Harness()
    w = _watcher(h)
    c = h.client(5, will=Will("will/c1", b"late", 0, properties={"will_delay_interval": 30}))
    c.connect(properties={"session_expiry_interval": 300})
    c.session.detach()
    h.clock.advance(29.9)
    assert _publishes(w.conn.take()) == []
    h.clock.advance(0.2)
    assert [p.payload for p in _publishes(w.conn.take())] == [b"late"]


def test_reconnecting_within_the_will_delay_cancels_the_will():
    h = Harness()
    w = _watcher(h)
    will = Will("will/c1", b"late", 0, properties={"will_delay_interval": 30})
    c = h.client(5, will=will)
    c.connect(properties={"session_expiry_interval": 300})
    c.session.detach()
    h.clock.advance(10)
    h.client(5).connect(clean_start=False, properties={"session_expiry_interval": 300})
    h.clock.advance(60)
    assert _publishes(w.conn.take()) == []


def test_the_session_ending_before_the_will_delay_publishes_the_will_then():
    h = Harness()
    w = _watcher(h)
    c = h.client(5, will=Will("will/c1", b"early", 0, properties={"will_delay_interval": 60}))
    c.connect(properties={"session_expiry_interval": 5})
    c.session.detach()
    h.clock.advance(4.9)
    assert _publishes(w.conn.take()) == []
    h.clock.advance(0.2)                              # the session expires at 5 s
    assert [p.payload for p in _publishes(w.conn.take())] == [b"early"]


def test_a_qos_1_delivery_records_every_in_flight_field():
    """``deliver`` builds its in-flight record without ``__init__`` (a call less per
    message): a field added to ``Inflight`` must be set there too, or reading it fails here."""
    import dataclasses

    from warren.mqtt.session_state import Inflight

    h = Harness()
    sub, pub = h.client(4, client_id="sub"), h.client(4, client_id="pub")
    sub.connect(), pub.connect()
    sub.subscribe("t", 1)
    pub.send(Publish("t", b"m", 1, packet_id=4))
    (msg,) = _publishes(sub.conn.take())
    flight = sub.session.state.inflight[msg.packet_id]
    q = h.broker.vhost("/").queues[sub.session.state.queue_name]
    fields = {f.name: getattr(flight, f.name) for f in dataclasses.fields(Inflight)}
    assert fields.pop("entry").message.body == b"m"
    assert fields == {"queue": q, "qos": 1, "retained": None, "released": False}
