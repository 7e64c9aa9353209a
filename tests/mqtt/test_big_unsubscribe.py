"""A big UNSUBSCRIBE is decoded and unbound a slice per reactor turn, as a big SUBSCRIBE is:
other clients are served between its slices, its UNSUBACK follows the last filter, and a bad
filter past the first ones gets the proper error when the session reaches it. Shown by the
order of events, not by time."""

from __future__ import annotations

import threading

import pytest

from tests.mqtt.helpers import (Client, assert_ended_and_others_served, connected_raw)
from warren.mqtt.codec import (MqttParser, Publish, SubAck, Subscribe,
                               Subscription, UnsubAck, Unsubscribe, encode)
from warren.mqtt.subscribe_payload import EAGER_FILTERS, LazyTopicFilters

N = 50_000
MANY = EAGER_FILTERS * 3


def test_other_clients_are_served_while_a_big_unsubscribe_is_done(broker, unique):
    """While one client unsubscribes N filters in one UNSUBSCRIBE, another publishes numbered
    pairs of QoS 1 messages, first to a topic only the first filter matches, then (once that
    one is acked) to a topic only the last filter matches. The filters are unbound in order,
    so a pair whose second message reached the subscriber while its first was routed nowhere
    came between the unbinding of the first filter and that of the last. Done in one reactor
    turn, the UNSUBSCRIBE would fall before, after or between a pair's two messages (both
    delivered, neither, or only the first), never the other way round."""
    filters = [f"{unique}/{i}/+" for i in range(N)]
    raw = connected_raw(broker.mqtt_port)
    raw.send(Subscribe(1, tuple(Subscription(f, 0) for f in [*filters, f"{unique}/end"])))
    suback = raw.recv()
    assert isinstance(suback, SubAck) and suback.reason_codes == (0,) * (N + 1)
    first, last = f"{unique}/0/x", f"{unique}/{N - 1}/x"

    probe = Client(broker.mqtt_port)
    stop = threading.Event()
    pairs: list[int] = []
    started = threading.Event()

    def probe_loop() -> None:
        while not stop.is_set():
            n = len(pairs)
            probe.publish(first, f"first {n}".encode(), qos=1)
            probe.publish(last, f"last {n}".encode(), qos=1)
            pairs.append(n)
            started.set()

    t = threading.Thread(target=probe_loop, daemon=True)
    got: list[bytes] = []
    try:
        t.start()
        assert started.wait(30)
        raw.send(Unsubscribe(2, tuple(filters)))
        while True:
            packet = raw.recv()
            if isinstance(packet, UnsubAck):
                break
            assert isinstance(packet, Publish), packet
            got.append(packet.payload)
        assert packet.packet_id == 2
        stop.set()
        t.join(30)
        # everything routed to the subscriber's queue before this is delivered before it
        probe.publish(f"{unique}/end", b"end", qos=1)
        while not got or got[-1] != b"end":
            packet = raw.recv()
            assert isinstance(packet, Publish), packet
            got.append(packet.payload)
    finally:
        stop.set()
        probe.disconnect()
        raw.close()
    firsts = {p.split()[1] for p in got if p.startswith(b"first ")}
    lasts = {p.split()[1] for p in got if p.startswith(b"last ")}
    assert pairs, "the other client got no PUBACK at all"
    assert lasts - firsts, (
        f"no pair answered in the middle of the UNSUBSCRIBE: {len(pairs)} pairs published,"
        f" {len(firsts)} first and {len(lasts)} last messages routed")


def test_a_big_unsubscribe_answers_each_filter_in_order(broker, unique):
    """5.0: one UNSUBACK code per filter, in the packet's order, whether it was subscribed
    (0x00) or not (0x11), past the filters the parser decodes at once; the subscriptions
    left keep delivering, those gone do not."""
    raw = connected_raw(broker.mqtt_port, 5)
    kept = f"{unique}/kept"
    subscribed = [f"{unique}/{i}" for i in range(0, MANY, 2)]
    raw.send(Subscribe(1, tuple(Subscription(f, 0) for f in [*subscribed, kept])))
    assert isinstance(raw.recv(), SubAck)
    asked = [f"{unique}/{i}" for i in range(MANY)]
    raw.send(Unsubscribe(2, tuple(asked)))
    unsuback = raw.recv()
    assert isinstance(unsuback, UnsubAck) and unsuback.packet_id == 2
    assert unsuback.reason_codes == tuple(0x00 if i % 2 == 0 else 0x11 for i in range(MANY))
    other = Client(broker.mqtt_port)
    other.publish(f"{unique}/{MANY - 2}", b"gone", qos=1)
    other.publish(kept, b"kept", qos=1)
    other.disconnect()
    packet = raw.recv()
    assert isinstance(packet, Publish) and packet.payload == b"kept"
    raw.close()


def test_the_parser_decodes_the_first_filters_of_an_unsubscribe_and_the_rest_when_read():
    filters = tuple(f"a/{i}/+" for i in range(MANY))
    (packet,) = MqttParser(protocol_level=4).feed(encode(Unsubscribe(7, filters), 4))
    assert isinstance(packet.topic_filters, LazyTopicFilters)
    assert tuple(packet.topic_filters) == filters
    small = Unsubscribe(7, filters[:EAGER_FILTERS])
    assert MqttParser(protocol_level=4).feed(encode(small, 4)) == [small]


def _unsubscribe_bytes(filters: list[bytes], level: int) -> bytes:
    body = b"\x00\x02" + (b"\x00" if level == 5 else b"") + b"".join(filters)
    length = bytearray()
    n = len(body)
    while True:
        byte, n = n & 0x7F, n >> 7
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return b"\xa2" + bytes(length) + body


def _filter(raw: bytes) -> bytes:
    return len(raw).to_bytes(2, "big") + raw


@pytest.mark.parametrize("level,tail,code", [
    (5, b"\x00\x05ab", 0x81),                   # truncated filter
    (5, _filter(b"\xc3\x28"), 0x81),            # invalid UTF-8 [MQTT-1.5.4-1]
    (5, _filter(b"a\x00b"), 0x81),              # U+0000 [MQTT-1.5.4-2]
    (4, _filter(b"\xc3\x28"), None),            # 3.1.1: a close
])
def test_a_big_unsubscribe_with_a_bad_last_filter(broker, unique, level, tail, code):
    """The proper error once the session reaches the filter (DISCONNECT at 5.0, a close at
    3.1.1), no UNSUBACK, no traceback; the filters before it were unsubscribed (Mosquitto's
    handle__unsubscribe also acts on each as it reads it), and the others are served."""
    raw = connected_raw(broker.mqtt_port, level)
    filters = [f"{unique}/{i}" for i in range(MANY)]
    raw.send(Subscribe(1, tuple(Subscription(f, 0) for f in filters)))
    assert isinstance(raw.recv(), SubAck)
    raw.send_raw(_unsubscribe_bytes([_filter(f.encode()) for f in filters] + [tail], level))
    assert_ended_and_others_served(broker, raw, code, unique)
