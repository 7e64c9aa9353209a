"""MQTT 5 features: topic aliases, shared subscriptions, subscription identifiers, no-local,
maximum packet size, message expiry, reason codes."""

from __future__ import annotations

import queue

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.mqtt.helpers import V5, Client, RawClient, cid, v5_props
from warren.mqtt.codec import (Connect, MqttParser, PubComp, Publish, PubRel, Subscribe,
                               Subscription)


def _raw5(port, **props):
    raw = RawClient(port, level=5)
    raw.send(Connect(protocol_level=5, client_id=cid(), username="guest", password=b"guest",
                     properties=props))
    ack = raw.recv()
    assert ack.reason_code == 0
    return raw, ack


def test_inbound_topic_alias(broker, unique):
    sub = Client(broker.mqtt_port, protocol=V5)
    sub.subscribe(f"{unique}/alias", 1)
    raw, ack = _raw5(broker.mqtt_port)
    assert ack.properties["topic_alias_maximum"] >= 1
    raw.send(Publish(f"{unique}/alias", b"first", 1, packet_id=1,
                     properties={"topic_alias": 1}))
    raw.send(Publish("", b"second", 1, packet_id=2, properties={"topic_alias": 1}))
    assert [raw.recv().packet_id, raw.recv().packet_id] == [1, 2]
    assert [sub.get().payload, sub.get().payload] == [b"first", b"second"]


def test_unknown_topic_alias_is_protocol_error(broker):
    raw, _ = _raw5(broker.mqtt_port)
    raw.send(Publish("", b"x", 0, properties={"topic_alias": 5}))
    d = raw.recv()
    assert type(d).__name__ == "Disconnect" and d.reason_code == 0x82


def test_outbound_topic_alias(broker, unique):
    raw, _ = _raw5(broker.mqtt_port, topic_alias_maximum=4)
    raw.send(Subscribe(1, (Subscription(f"{unique}/oa", 0),)))
    raw.recv()
    pub = Client(broker.mqtt_port)
    pub.publish(f"{unique}/oa", b"1", 1)
    pub.publish(f"{unique}/oa", b"2", 1)
    a, b = raw.recv(), raw.recv()
    assert a.topic == f"{unique}/oa" and a.properties["topic_alias"] == 1
    assert b.topic == "" and b.properties["topic_alias"] == 1 and b.payload == b"2"


def test_shared_subscription_splits_messages(broker, unique):
    members = [Client(broker.mqtt_port, protocol=V5) for _ in range(2)]
    both: queue.Queue = queue.Queue()
    for i, m in enumerate(members):
        m.paho.on_message = lambda c, u, msg, i=i: both.put((i, msg.payload))
        m.subscribe(f"$share/g1/{unique}/work", 1)
    plain = Client(broker.mqtt_port, protocol=V5)
    plain.subscribe(f"{unique}/work", 1)
    pub = Client(broker.mqtt_port)
    for i in range(10):
        pub.publish(f"{unique}/work", f"{i}".encode(), 1)
    assert len([plain.get() for _ in range(10)]) == 10   # a normal subscriber gets all
    got = [both.get(timeout=10) for _ in range(10)]
    assert sorted(p for _, p in got) == sorted(f"{i}".encode() for i in range(10))
    assert {i for i, _ in got} == {0, 1}                 # shared round-robin
    for m in members:
        m.disconnect()


def test_subscription_identifiers(broker, unique):
    sub = Client(broker.mqtt_port, protocol=V5)
    sub.subscribe(f"{unique}/id/+", 1,
                  properties=v5_props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7))
    sub.subscribe(f"{unique}/id/#", 1,
                  properties=v5_props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=9))
    Client(broker.mqtt_port).publish(f"{unique}/id/x", b"both", 1)
    m = sub.get()
    assert sorted(m.properties.SubscriptionIdentifier) == [7, 9]


def test_no_local(broker, unique):
    me = Client(broker.mqtt_port, protocol=V5)
    me.subscribe(f"{unique}/nl", options=SubscribeOptions(qos=1, noLocal=True))
    me.subscribe(f"{unique}/marker", 1)
    me.publish(f"{unique}/nl", b"mine", 1)
    Client(broker.mqtt_port).publish(f"{unique}/nl", b"theirs", 1)
    Client(broker.mqtt_port).publish(f"{unique}/marker", b"marker", 1)
    assert [m.payload for m in me.drain_until(b"marker")] == [b"theirs", b"marker"]


def test_puback_no_matching_subscribers(broker, unique):
    pub = Client(broker.mqtt_port, protocol=V5)
    code = pub.publish(f"{unique}/nobody", b"x", 1)
    assert code.value == 0x10


def test_pubrec_without_subscribers_is_success(broker, unique):
    # as Mosquitto (its 02-subpub-qos2-1322 test): 0x10 is for PUBACK only; the PUBREC is
    # the short success form, remaining length 2
    raw = RawClient(broker.mqtt_port, level=5)
    raw.send(Connect(protocol_level=5, client_id=cid(), username="guest", password=b"guest"))
    assert raw.recv().reason_code == 0
    raw.send(Publish(f"{unique}/nobody", b"x", 2, packet_id=7))
    data = b""
    while len(data) < 4:
        chunk = raw.sock.recv(4 - len(data))
        assert chunk, data
        data += chunk
    assert data == b"\x50\x02\x00\x07"
    raw.send(PubRel(7))
    assert raw.recv() == PubComp(7)
    raw.close()


def test_client_maximum_packet_size_drops_big_messages(broker, unique):
    raw, _ = _raw5(broker.mqtt_port, maximum_packet_size=200)
    raw.send(Subscribe(1, (Subscription(f"{unique}/big", 1),)))
    raw.recv()
    pub = Client(broker.mqtt_port)
    pub.publish(f"{unique}/big", b"x" * 500, 1)
    pub.publish(f"{unique}/big", b"small", 1)
    m = raw.recv()
    assert m.payload == b"small"


def test_message_expiry_while_queued(broker, unique):
    client_id = cid()
    props = v5_props(PacketTypes.CONNECT, SessionExpiryInterval=300)
    sub = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=False,
                 properties=props)
    sub.subscribe(f"{unique}/exp", 1)
    sub.disconnect()
    pub = Client(broker.mqtt_port, protocol=V5)
    pub.publish(f"{unique}/exp", b"keeps", 1, properties=v5_props(MessageExpiryInterval=100))
    back = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=False,
                  properties=props)
    m = back.get()
    assert m.payload == b"keeps"
    assert 0 < m.properties.MessageExpiryInterval <= 100
    back.disconnect()


def _read_packet_bytes(raw: RawClient) -> bytes:
    """One whole packet as sent (fixed header included), for size checks."""
    data = b""

    def more(n: int) -> bytes:
        nonlocal data
        while len(data) < n:
            chunk = raw.sock.recv(n - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data

    more(2)
    length, shift, pos = 0, 0, 1
    for _ in range(4):
        byte = more(pos + 1)[pos]
        length |= (byte & 0x7F) << shift
        shift += 7
        pos += 1
        if not byte & 0x80:
            break
    return more(pos + length)


def _publish_size(topic: str, payload_len: int) -> int:
    """Bytes of a QoS 1 PUBLISH to a 5.0 client: no properties, no alias."""
    remaining = 2 + len(topic.encode()) + 2 + 1 + payload_len
    varint = 1 if remaining < 128 else 2 if remaining < 16384 else 3
    return 1 + varint + remaining


def test_maximum_packet_size_is_exact(broker, unique):
    """A PUBLISH of exactly the client's Maximum Packet Size arrives, one byte more is dropped
    [MQTT-3.1.2-25] (the limit counted the largest fixed header instead of the real one), and
    the dropped QoS 1 message is settled at once, not left waiting for an acknowledgement
    (it stayed unacknowledged until the client's next packet)."""
    import requests

    limit = 300
    topic = f"{unique}/exact"
    fit = next(n for n in range(limit) if _publish_size(topic, n) == limit)
    client_id = cid()
    raw = RawClient(broker.mqtt_port, level=5)
    raw.send(Connect(protocol_level=5, client_id=client_id, username="guest",
                     password=b"guest", properties={"maximum_packet_size": limit}))
    assert raw.recv().reason_code == 0
    raw.send(Subscribe(1, (Subscription(topic, 1),)))
    raw.recv()
    pub = Client(broker.mqtt_port)
    pub.publish(topic, b"o" * (fit + 1), 1)
    pub.publish(topic, b"f" * fit, 1)
    data = _read_packet_bytes(raw)
    assert len(data) == limit and data.endswith(b"f" * fit)
    r = requests.get(f"{broker.http_url}/api/queues/%2F/mqtt-subscription-{client_id}qos1",
                     auth=("guest", "guest"), timeout=10)
    r.raise_for_status()
    q = r.json()
    assert q["messages_unacknowledged"] == 1        # the one sent; not the one dropped
    assert q["messages_ready"] == 0
    raw.close()


def test_connack_fits_clients_maximum_packet_size(broker):
    """[MQTT-3.1.2-24] no CONNACK larger than the client allows: properties that only state
    defaults go first, then Topic Alias Maximum, then Receive Maximum."""
    sizes = {}
    for limit in (200, 8, 5):
        raw = RawClient(broker.mqtt_port, level=5)
        raw.send(Connect(protocol_level=5, client_id=cid(), username="guest",
                         password=b"guest", properties={"maximum_packet_size": limit}))
        data = _read_packet_bytes(raw)
        assert len(data) <= limit and data[3] == 0          # accepted
        ack = MqttParser(protocol_level=5).feed(data)[0]
        sizes[limit] = set(ack.properties)
        raw.close()
    assert "retain_available" in sizes[200]
    assert sizes[8] == {"receive_maximum"}
    assert sizes[5] == set()


def test_connack_with_assigned_id_too_large_is_refused(broker):
    """An assigned client id cannot be left out: refused with 0x95 when it does not fit."""
    raw = RawClient(broker.mqtt_port, level=5)
    raw.send(Connect(protocol_level=5, client_id="", username="guest", password=b"guest",
                     properties={"maximum_packet_size": 20}))
    data = _read_packet_bytes(raw)
    assert data[:4] == b"\x20\x03\x00\x95"
    assert raw.closed()


def test_disconnect_fits_a_small_maximum_packet_size(broker):
    """[MQTT-3.14.2-3] nothing beyond the reason code where the client allows little."""
    raw = RawClient(broker.mqtt_port, level=5)
    raw.send(Connect(protocol_level=5, client_id=cid(), username="guest", password=b"guest",
                     properties={"maximum_packet_size": 10}))
    assert raw.recv().reason_code == 0
    raw.send(Publish("", b"x", 0, properties={"topic_alias": 5}))
    assert _read_packet_bytes(raw) == b"\xe0\x01\x82"   # no properties at all
    assert raw.closed()


@pytest.mark.parametrize("publish", [
    Publish("", b"x", 0, properties={"topic_alias": 5}),      # alias never set: 0x82
    Publish("a/+", b"x", 0),                                    # wildcard in a name: 0x90
], ids=["unknown topic alias", "wildcard topic name"])
def test_protocol_error_disconnect_is_the_bare_reason_code(broker, publish):
    """As Mosquitto (its 02-subpub-qos0-topic-alias-unknown test): a DISCONNECT for a fault
    is three bytes, whatever room the client allows."""
    raw = RawClient(broker.mqtt_port, level=5)
    raw.send(Connect(protocol_level=5, client_id=cid(), username="guest", password=b"guest"))
    assert raw.recv().reason_code == 0
    raw.send(publish)
    data = _read_packet_bytes(raw)
    assert len(data) == 3 and data[:2] == b"\xe0\x01" and data[2] >= 0x80, data
    assert raw.closed()
    Client(broker.mqtt_port).publish("after/fault", b"ok", 1)   # the broker serves on


def test_dropped_publish_does_not_set_a_topic_alias(broker, unique):
    """An alias set by a PUBLISH that was too large to send is not used afterwards: the
    client never learnt it, so the next PUBLISH on that topic carries the name."""
    raw, _ = _raw5(broker.mqtt_port, maximum_packet_size=200, topic_alias_maximum=5)
    raw.send(Subscribe(1, (Subscription(f"{unique}/al", 1),)))
    raw.recv()
    pub = Client(broker.mqtt_port)
    pub.publish(f"{unique}/al", b"x" * 500, 1)
    pub.publish(f"{unique}/al", b"small", 1)
    m = raw.recv()
    assert (m.topic, m.payload) == (f"{unique}/al", b"small")
    assert m.properties.get("topic_alias") == 1
