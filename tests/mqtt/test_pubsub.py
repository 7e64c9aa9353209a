"""PUBLISH/SUBSCRIBE at QoS 0, 1 and 2, both protocol levels; wildcards, $-topics, downgrade."""

from __future__ import annotations

import pytest

from tests.mqtt.helpers import V5, V311, Client, RawClient, cid
from warren.mqtt.codec import Connect, SubAck, Subscribe, Subscription


@pytest.mark.parametrize("protocol", [V311, V5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_subscribe_each_qos(broker, unique, protocol, qos):
    sub = Client(broker.mqtt_port, protocol=protocol)
    pub = Client(broker.mqtt_port, protocol=protocol)
    topic = f"{unique}/qos{qos}"
    assert [int(getattr(c, "value", c)) for c in sub.subscribe(topic, qos)] == [qos]
    for i in range(20):
        pub.publish(topic, f"m{i}".encode(), qos)
    got = [sub.get() for _ in range(20)]
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(20)]
    assert all(m.qos == qos for m in got)
    assert all(not m.retain for m in got)
    sub.disconnect()
    pub.disconnect()


def test_wildcards_and_levels(broker, unique):
    sub = Client(broker.mqtt_port)
    pub = Client(broker.mqtt_port)
    sub.subscribe(f"{unique}/+/temp", 0)
    sub.subscribe(f"{unique}/house/#", 0)
    pub.publish(f"{unique}/garden/temp", b"1")
    pub.publish(f"{unique}/house", b"2")           # '#' matches the parent level
    pub.publish(f"{unique}/house/a/b", b"3")
    pub.publish(f"{unique}/garden/hum", b"x")      # no match
    pub.publish(f"{unique}/house/temp", b"4")      # both filters: one copy (one queue)
    sub.subscribe(f"{unique}/end", 0)
    pub.publish(f"{unique}/end", b"end", 1)
    got = [m.payload for m in sub.drain_until(b"end")]
    assert got == [b"1", b"2", b"3", b"4", b"end"]


def test_dollar_topics_not_matched_by_leading_wildcards(broker, unique):
    sub = Client(broker.mqtt_port)
    pub = Client(broker.mqtt_port)
    sub.subscribe("#", 0)
    sub.subscribe(f"+/{unique}", 0)
    sub.subscribe(f"$SYS/{unique}/x", 0)
    pub.publish(f"$SYS/{unique}", b"hidden")       # '#' and '+/...' must not match
    pub.publish(f"$SYS/{unique}/x", b"explicit")   # explicit $ filter matches
    got = sub.drain_until(b"explicit")
    assert [m.payload for m in got] == [b"explicit"]
    sub.disconnect()


def test_subscription_qos_downgrade(broker, unique):
    sub = Client(broker.mqtt_port)
    pub = Client(broker.mqtt_port)
    sub.subscribe(f"{unique}/low", 0)
    sub.subscribe(f"{unique}/one", 1)
    pub.publish(f"{unique}/low", b"a", 2)
    pub.publish(f"{unique}/one", b"b", 2)
    pub.publish(f"{unique}/one", b"c", 0)
    got = [sub.get() for _ in range(3)]
    assert [(m.payload, m.qos) for m in got] == [(b"a", 0), (b"b", 1), (b"c", 0)]


def test_unsubscribe_stops_delivery(broker, unique):
    sub = Client(broker.mqtt_port)
    pub = Client(broker.mqtt_port)
    sub.subscribe(f"{unique}/a", 1)
    sub.subscribe(f"{unique}/b", 1)
    sub.unsubscribe(f"{unique}/a")
    pub.publish(f"{unique}/a", b"gone", 1)
    pub.publish(f"{unique}/b", b"here", 1)
    assert [m.payload for m in sub.drain_until(b"here")] == [b"here"]


def test_topic_with_dots_round_trips(broker, unique):
    sub = Client(broker.mqtt_port)
    pub = Client(broker.mqtt_port)
    sub.subscribe(f"{unique}/v1.0/+", 1)
    pub.publish(f"{unique}/v1.0/x", b"dotted", 1)
    m = sub.get()
    assert m.topic == f"{unique}/v1.0/x"


def test_subscriber_that_stops_reading_gets_everything_in_order(broker, unique):
    """More than the sockets hold is delivered while the subscriber does not read: the broker
    writes what the socket takes at once and queues the rest behind it (then holds deliveries
    back), so once the subscriber reads again every message arrives whole and in order."""
    raw = RawClient(broker.mqtt_port)
    raw.send(Connect(client_id=cid("slow"), username="guest", password=b"guest"))
    assert raw.recv().reason_code == 0
    raw.send(Subscribe(1, (Subscription(f"{unique}/big", 0),)))
    assert isinstance(raw.recv(), SubAck)
    pub = Client(broker.mqtt_port)
    count, size = 64, 256 * 1024          # 16 MiB: more than loopback's socket buffers
    for i in range(count):
        pub.publish(f"{unique}/big", i.to_bytes(4, "big") * (size // 4), qos=1)
    try:
        for i in range(count):
            got = raw.recv()
            assert got.topic == f"{unique}/big" and len(got.payload) == size, got
            assert got.payload == i.to_bytes(4, "big") * (size // 4), f"message {i} garbled"
    finally:
        raw.close()
        pub.disconnect()
