"""Topic permissions enforced as RabbitMQ's topic authorisation, over AMQP, MQTT and STOMP.

Each test makes a user with full normal permissions on '/' and one topic permission on
``amq.topic`` (through the HTTP API, as an operator would), then drives pika, paho-mqtt and
stomp.py: refused routing keys get RabbitMQ's 403 texts (AMQP channel close, STOMP ERROR),
MQTT's SUBACK 0x80 (3.1.1) / 0x87 (5.0) for the refused filter only, a closed connection
(3.1.1) or PUBACK 0x87 (5.0) for a refused PUBLISH; allowed keys still work, other exchanges
are not affected, and the broker logs no traceback.
"""

from __future__ import annotations

import uuid

import pika
import pytest
import requests
from pika.exceptions import ChannelClosedByBroker

from paho.mqtt.packettypes import PacketTypes

from tests.mqtt.helpers import V5, V311, Client, RawClient, cid, v5_props
from tests.stomp.conftest import Client as StompClient
from warren.mqtt.codec import Connect, PingReq, PingResp, SubAck, Subscribe, Subscription

TEXT = ("ACCESS_REFUSED - {kind} access to topic '{key}' in exchange '{exchange}' in vhost '/' "
        "refused for user '{user}'")


class Operator:
    """Users and topic permissions through the HTTP API, removed afterwards."""

    def __init__(self, broker) -> None:
        self.base = broker.http_url
        self.users: list[str] = []

    def user(self) -> str:
        name = f"tp-{uuid.uuid4().hex[:8]}"
        r = requests.put(f"{self.base}/api/users/{name}", json={"password": "pw", "tags": ""},
                         auth=("guest", "guest"), timeout=30)
        assert r.status_code == 201, r.text
        r = requests.put(f"{self.base}/api/permissions/%2F/{name}",
                         json={"configure": ".*", "write": ".*", "read": ".*"},
                         auth=("guest", "guest"), timeout=30)
        assert r.status_code == 201, r.text
        self.users.append(name)
        return name

    def topic(self, user: str, write: str, read: str, exchange: str = "amq.topic") -> None:
        r = requests.put(f"{self.base}/api/topic-permissions/%2F/{user}",
                         json={"exchange": exchange, "write": write, "read": read},
                         auth=("guest", "guest"), timeout=30)
        assert r.status_code in (201, 204), r.text

    def cleanup(self) -> None:
        for name in self.users:
            requests.delete(f"{self.base}/api/users/{name}", auth=("guest", "guest"),
                            timeout=30)


@pytest.fixture
def op(broker):
    o = Operator(broker)
    yield o
    o.cleanup()


@pytest.fixture
def amqp(broker, op):
    """(user, connection) for a user with write ^allowed\\. and read ^seen\\. on amq.topic."""
    user = op.user()
    op.topic(user, "^allowed\\.", "^seen\\.")
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        port=broker.amqp_port, credentials=pika.PlainCredentials(user, "pw")))
    yield user, conn
    if conn.is_open:
        conn.close()


def _private_queue(ch) -> str:
    return ch.queue_declare("", exclusive=True).method.queue


# ------------------------------------------------------------------------------------ AMQP
@pytest.fixture
def guest(broker):
    """A channel of the unrestricted guest, to watch what the restricted user's publishes
    reach."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    yield conn.channel()
    conn.close()


def test_amqp_publish_allowed_key_is_routed(amqp, guest, unique):
    _user, conn = amqp
    watched = _private_queue(guest)
    guest.queue_bind(watched, "amq.topic", "allowed.#")
    ch = conn.channel()
    q = _private_queue(ch)
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "allowed.x", b"allowed")
    ch.exchange_declare(unique, "topic", auto_delete=True)
    ch.queue_bind(q, unique, "anything.#")                  # no topic permission there
    ch.basic_publish(unique, "anything.goes", b"other exchange")
    ch.queue_bind(q, "amq.direct", "k")
    ch.basic_publish("amq.direct", "k", b"not a topic exchange")
    assert ch.basic_get(q, auto_ack=True)[2] == b"other exchange"
    assert ch.basic_get(q, auto_ack=True)[2] == b"not a topic exchange"
    assert guest.basic_get(watched, auto_ack=True)[2] == b"allowed"


def test_amqp_publish_refused_key_closes_channel_403(amqp):
    user, conn = amqp
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_publish("amq.topic", "other.x", b"no")
    assert e.value.reply_code == 403
    assert e.value.reply_text == TEXT.format(kind="write", key="other.x", exchange="amq.topic",
                                             user=user)
    assert conn.is_open                              # only the channel is closed
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "allowed.y", b"still fine")


def test_amqp_refused_publish_in_a_transaction_is_refused_at_publish(amqp, guest):
    """As RabbitMQ: the refused basic.publish closes the channel, so the transaction never
    commits, and an allowed publish before it in the same transaction is not routed."""
    _user, conn = amqp
    watched = _private_queue(guest)
    guest.queue_bind(watched, "amq.topic", "#")
    ch = conn.channel()
    ch.tx_select()
    ch.basic_publish("amq.topic", "allowed.t", b"in the refused transaction")
    ch.basic_publish("amq.topic", "other.x", b"no")
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.tx_commit()
    assert e.value.reply_code == 403 and "write access to topic 'other.x'" in e.value.reply_text
    guest.confirm_delivery()
    guest.basic_publish("amq.topic", "marker", b"marker")
    assert guest.basic_get(watched, auto_ack=True)[2] == b"marker"


def test_amqp_transaction_refused_whole_when_permission_changes_before_commit(
        amqp, guest, op):
    user, conn = amqp
    watched = _private_queue(guest)
    guest.queue_bind(watched, "amq.topic", "#")
    ch = conn.channel()
    ch.tx_select()
    ch.basic_publish("amq.topic", "allowed.a", b"a")
    ch.basic_publish("amq.topic", "allowed.b", b"b")
    op.topic(user, "^allowed\\.a$", "^seen\\.")      # b is refused from now on
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.tx_commit()
    assert e.value.reply_text == TEXT.format(kind="write", key="allowed.b",
                                             exchange="amq.topic", user=user)
    guest.confirm_delivery()
    guest.basic_publish("amq.topic", "marker", b"marker")
    assert guest.basic_get(watched, auto_ack=True)[2] == b"marker"     # neither a nor b


def test_amqp_bind_refused_and_allowed(amqp, unique):
    user, conn = amqp
    ch = conn.channel()
    q = _private_queue(ch)
    ch.queue_bind(q, "amq.topic", "seen.*")
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_bind(q, "amq.topic", "hidden.*")
    assert e.value.reply_code == 403
    assert e.value.reply_text == TEXT.format(kind="read", key="hidden.*", exchange="amq.topic",
                                             user=user)
    ch = conn.channel()
    ch.exchange_declare(unique, "fanout", auto_delete=True)
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.exchange_bind(unique, "amq.topic", "#")
    assert e.value.reply_text == TEXT.format(kind="read", key="#", exchange="amq.topic",
                                             user=user)
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_unbind(q, "amq.topic", "hidden.*")
    assert e.value.reply_code == 403
    ch = conn.channel()
    ch.queue_unbind(q, "amq.topic", "seen.*")


def test_amqp_variable_expansion_and_empty_pattern(broker, op):
    user = op.user()
    op.topic(user, "^{username}\\.{vhost}\\.", "")
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        port=broker.amqp_port, credentials=pika.PlainCredentials(user, "pw")))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("amq.topic", f"{user}./.x", b"mine")
        q = _private_queue(ch)
        ch.queue_bind(q, "amq.topic", "")            # the empty pattern allows only ''
        with pytest.raises(ChannelClosedByBroker) as e:
            ch.queue_bind(q, "amq.topic", "a")
        assert e.value.reply_code == 403
        ch = conn.channel()
        ch.confirm_delivery()
        with pytest.raises(ChannelClosedByBroker) as e:
            ch.basic_publish("amq.topic", "guest./.x", b"theirs")
        assert e.value.reply_text == TEXT.format(kind="write", key="guest./.x",
                                                 exchange="amq.topic", user=user)
    finally:
        conn.close()


def test_topic_permission_set_while_connected_applies(broker, op):
    user = op.user()
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        port=broker.amqp_port, credentials=pika.PlainCredentials(user, "pw")))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("amq.topic", "other.x", b"no topic permission yet")
        op.topic(user, "^allowed\\.", ".*")
        with pytest.raises(ChannelClosedByBroker) as e:
            ch.basic_publish("amq.topic", "other.x", b"now refused")
        assert e.value.reply_code == 403
    finally:
        conn.close()


# ------------------------------------------------------------------------------------ MQTT
@pytest.mark.parametrize("protocol, refused", [(V311, 0x80), (V5, 0x87)])
def test_mqtt_subscribe_refused_filter_only(broker, op, protocol, refused):
    user = op.user()
    op.topic(user, ".*", "^seen\\.")
    c = Client(broker.mqtt_port, protocol=protocol, username=user, password="pw")
    try:
        codes = c.subscribe([("seen/a", 1), ("hidden/a", 1), ("seen/+", 0), ("#", 0)])
        assert [rc.value for rc in codes] == [1, refused, 0, refused]
        # the connection stays, the granted filters deliver
        assert c.publish("seen/a", b"hello", qos=1).value == 0
        assert c.get().payload == b"hello"
    finally:
        c.disconnect()


@pytest.mark.parametrize("level, refused", [(4, 0x80), (5, 0x87)])
def test_paho_interop_subscribe_failure(broker, op, level, refused):
    """Paho's interoperability suites (client_test.py / client_test5.py,
    ``test_subscribe_failure``) subscribe at QoS 2 to ``test/nosubscribe``, which the broker is
    set up to refuse, and expect SUBACK 0x80 (3.1.1) / 0x87 Not authorized (5.0); here the
    refusal is a topic permission, in raw packets."""
    user = op.user()
    op.topic(user, ".*", "^(?!test\\.nosubscribe$)")
    raw = RawClient(broker.mqtt_port, level=level)
    try:
        raw.send(Connect(protocol_level=level, client_id=f"interop-{level}", username=user,
                         password=b"pw"))
        assert raw.recv().reason_code == 0
        raw.send(Subscribe(3, (Subscription("test/nosubscribe", 2),
                               Subscription("test/subscribe", 2))))
        ack = raw.recv()
        assert isinstance(ack, SubAck) and ack.packet_id == 3
        assert ack.reason_codes == (refused, 2)
        raw.send(PingReq())
        assert isinstance(raw.recv(), PingResp)      # still connected
    finally:
        raw.close()


def test_mqtt311_refused_publish_closes_connection(broker, op):
    user = op.user()
    op.topic(user, "^allowed\\.", ".*")
    watcher = Client(broker.mqtt_port, protocol=V311)
    c = Client(broker.mqtt_port, protocol=V311, username=user, password="pw")
    try:
        watcher.subscribe("#", 1)
        assert c.publish("allowed/x", b"ok", qos=1).value == 0
        assert watcher.get().payload == b"ok"
        c.publish("other/x", b"no", qos=1, wait=False)
        assert c.disconnected.wait(10), "the connection was not closed"
        broker.wait_for_line("write access to topic 'other.x' in exchange 'amq.topic' in vhost "
                             f"'/' refused for user '{user}'")
        assert watcher.publish("allowed/marker", b"marker", qos=1).value == 0
        assert [m.payload for m in watcher.drain_until(b"marker")] == [b"marker"]
    finally:
        c.paho.loop_stop()
        watcher.disconnect()


def test_mqtt5_refused_publish_puback_0x87(broker, op):
    user = op.user()
    op.topic(user, "^allowed\\.", ".*")
    c = Client(broker.mqtt_port, protocol=V5, username=user, password="pw")
    try:
        c.subscribe("#", 1)
        assert c.publish("other/x", b"no", qos=1).value == 0x87
        c.publish("other/x", b"no", qos=0)               # dropped
        assert c.publish("allowed/x", b"ok", qos=1).value == 0
        assert [m.payload for m in c.drain_until(b"ok")] == [b"ok"]
        assert not c.disconnected.is_set()
    finally:
        c.disconnect()


def test_mqtt_refused_retained_message_is_not_kept(broker, op):
    user = op.user()
    op.topic(user, "^rt\\.ok$", ".*")
    c = Client(broker.mqtt_port, protocol=V5, username=user, password="pw")
    try:
        assert c.publish("rt/denied", b"denied", qos=1, retain=True).value == 0x87
        assert c.publish("rt/ok", b"kept", qos=1, retain=True).value < 0x80
    finally:
        c.disconnect()
    reader = Client(broker.mqtt_port, protocol=V5)
    try:
        reader.subscribe("rt/#", 1)
        reader.publish("rt/marker", b"marker", qos=1)
        assert [m.payload for m in reader.drain_until(b"marker")] == [b"kept", b"marker"]
    finally:
        reader.publish("rt/ok", b"", qos=1, retain=True)
        reader.disconnect()


def test_mqtt_will_is_checked_like_a_publish(broker, op):
    user = op.user()
    op.topic(user, "^allowed\\.", ".*")
    watcher = Client(broker.mqtt_port, protocol=V5)
    try:
        watcher.subscribe([("will/#", 1), ("allowed/will", 1)])
        refused = Client(broker.mqtt_port, protocol=V311, username=user, password="pw",
                         will=("will/refused", b"refused will", 1, False))
        refused.drop()
        broker.wait_for_line(f"will of a client of user {user} not published: ACCESS_REFUSED "
                             "- write access to topic 'will.refused'")
        allowed = Client(broker.mqtt_port, protocol=V311, username=user, password="pw",
                         will=("allowed/will", b"allowed will", 1, False))
        allowed.drop()
        assert watcher.get().payload == b"allowed will"
        watcher.publish("will/marker", b"marker", qos=1)
        assert [m.payload for m in watcher.drain_until(b"marker")] == [b"marker"]
    finally:
        watcher.disconnect()


def test_mqtt_client_id_expansion_is_escaped(broker, op):
    """{client_id} is replaced by the client id as a literal: a client id that is itself a
    regular expression does not widen the pattern (RabbitMQ escapes it since 3.13)."""
    user = op.user()
    op.topic(user, "^{client_id}-sensors$", "^{client_id}-")
    crafted = "\\w*"
    c = Client(broker.mqtt_port, protocol=V5, username=user, password="pw",
               client_id=crafted)
    try:
        codes = c.subscribe([(crafted + "-x/#", 0), ("any-x/#", 0)])
        assert [rc.value for rc in codes] == [0, 0x87]
        assert c.publish(crafted + "-sensors", b"mine", qos=1).value < 0x80
        assert c.publish("anything-sensors", b"not mine", qos=1).value == 0x87
    finally:
        c.disconnect()
    named = Client(broker.mqtt_port, protocol=V5, username=user, password="pw",
                   client_id="dev1")
    try:
        assert named.publish("dev1-sensors", b"mine", qos=1).value < 0x80
        assert named.publish("dev2-sensors", b"not mine", qos=1).value == 0x87
    finally:
        named.disconnect()


@pytest.mark.parametrize("protocol", [V311, V5])
def test_mqtt_unsubscribe_needs_read_permission(broker, op, protocol):
    """As RabbitMQ's MQTT plugin, which checks an unbind as a bind: a filter subscribed
    while allowed, then refused by a topic permission set before the session is resumed,
    cannot be unsubscribed (5.0: 0x87 in the UNSUBACK; 3.1.1: an UNSUBACK without codes),
    and it keeps delivering; an allowed filter is unsubscribed."""
    user = op.user()
    client_id = cid("unsub")
    props = v5_props(PacketTypes.CONNECT, SessionExpiryInterval=300) if protocol == V5 else None

    def session(clean: bool = False) -> Client:
        return Client(broker.mqtt_port, protocol=protocol, username=user, password="pw",
                      client_id=client_id, clean=clean, properties=props)

    c = session()
    assert [rc.value for rc in c.subscribe([("seen/a", 1), ("hidden/a", 1)])] == [1, 1]
    c.disconnect()
    op.topic(user, ".*", "^seen\\.")
    c = session()
    try:
        assert c.session_present
        codes = c.unsubscribe(["seen/a", "hidden/a", "never/a"])
        if protocol == V5:
            assert [rc.value for rc in codes] == [0, 0x87, 0x11]
        nobody = 0x10 if protocol == V5 else 0          # 5.0: No matching subscribers
        assert c.publish("seen/a", b"unsubscribed", qos=1).value == nobody
        assert c.publish("hidden/a", b"still subscribed", qos=1).value == 0
        assert [m.payload for m in c.drain_until(b"still subscribed")] == [b"still subscribed"]
        broker.wait_for_line(f"MQTT unsubscription from hidden/a refused: ACCESS_REFUSED - read "
                             f"access to topic 'hidden.a' in exchange 'amq.topic' in vhost '/' "
                             f"refused for user '{user}'")
    finally:
        c.disconnect()
        if protocol == V311:
            session(clean=True).disconnect()      # the 3.1.1 session would outlive the test


# ------------------------------------------------------------------------------------ STOMP
def test_stomp_send_refused_error_and_close(broker, op):
    user = op.user()
    op.topic(user, "^allowed\\.", "^seen\\.")
    c = StompClient(broker.stomp_port, "1.2", login=user, passcode="pw")
    c.subscribe("/topic/seen.x")
    c.send("/topic/allowed.x", "fine")
    c.send("/topic/denied.x", "no")
    error = c.recorder.error()
    assert error.headers["message"] == "access_refused"
    assert error.body.strip() == TEXT.format(kind="write", key="denied.x", exchange="amq.topic",
                                             user=user)
    assert c.recorder.disconnected.wait(10)


def test_stomp_subscribe_refused_error(broker, op):
    user = op.user()
    op.topic(user, ".*", "^seen\\.")
    c = StompClient(broker.stomp_port, "1.2", login=user, passcode="pw")
    c.subscribe("/topic/seen.x")
    c.send("/topic/seen.x", "delivered")
    assert c.recorder.message().body == "delivered"
    c.conn.subscribe("/topic/hidden.x", "s2")
    error = c.recorder.error()
    assert error.headers["message"] == "access_refused"
    # as RabbitMQ's STOMP plugin, which checks this itself: no "ACCESS_REFUSED - " in front
    assert error.body == TEXT.format(kind="read", key="hidden.x", exchange="amq.topic",
                                     user=user).removeprefix("ACCESS_REFUSED - ")
    assert c.recorder.disconnected.wait(10)


def test_no_traceback_in_broker_log(broker):
    """Last in the module: none of the refusals above left a traceback in the log."""
    assert not [line for line in broker.lines if "Traceback" in line or "Unhandled" in line]
