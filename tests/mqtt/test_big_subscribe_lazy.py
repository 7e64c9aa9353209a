"""A big SUBSCRIBE's filters are decoded as the sliced subscribe reaches them, and its
retained messages are walked a slice at a time after the SUBACK (``subscribe_payload.py``,
``retained_delivery.py``): what that changes for a client, and for bad input."""

from __future__ import annotations

import sys
import threading

import pytest

from tests.mqtt.helpers import (Client, assert_ended_and_others_served, connected_raw)
from warren.mqtt.codec import (MqttError, MqttParser, Publish, SubAck,
                               Subscribe, Subscription, encode)
from warren.mqtt.subscribe_payload import EAGER_FILTERS, LazySubscriptions, one_pass

MANY = EAGER_FILTERS * 3


def _subscribe_bytes(filters: list[bytes], level: int) -> bytes:
    """A SUBSCRIBE of packet id 1 holding *filters* (each already a filter and its options)."""
    body = b"\x00\x01" + (b"\x00" if level == 5 else b"") + b"".join(filters)
    return encode(Subscribe(1, (Subscription("x"),)), level)[:1] + _varint(len(body)) + body


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _filter(text: str, options: int) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw + bytes((options,))


def test_the_sessions_one_pass_keeps_no_filter_it_handed_out():
    """The session subscribes a big SUBSCRIBE's filters in one pass (``one_pass``), which
    holds none of them once handed out, those decoded at the parse included: each is freed
    with the slice that subscribed it, not all together after the last."""
    filters = [f"a/{i}/+" for i in range(MANY)]
    subscribe = Subscribe(1, tuple(Subscription(f, 1) for f in filters))
    (packet,) = MqttParser(protocol_level=4).feed(encode(subscribe, 4))
    got = []
    for sub in one_pass(packet.subscriptions):
        assert sys.getrefcount(sub) == 2, f"{sub} is held elsewhere"   # ``sub`` and the call
        got.append(sub.topic_filter)
    assert got == filters


@pytest.mark.parametrize("level", [4, 5])
def test_the_parser_decodes_the_first_filters_and_the_rest_when_read(level):
    filters = [Subscription(f"a/{i}/+", i % 3) for i in range(MANY)]
    (packet,) = MqttParser(protocol_level=level).feed(encode(Subscribe(7, tuple(filters)), level))
    assert isinstance(packet.subscriptions, LazySubscriptions)
    assert list(packet.subscriptions) == filters
    assert packet == Subscribe(7, tuple(filters))
    small = Subscribe(7, tuple(filters[:EAGER_FILTERS]))
    assert MqttParser(protocol_level=level).feed(encode(small, level)) == [small]


@pytest.mark.parametrize("level,options,code", [(4, 0x03, 0x81), (4, 0x04, 0x81),
                                                (5, 0x03, 0x81), (5, 0x80, 0x81),
                                                (5, 0x30, 0x82)])
def test_a_bad_filter_past_the_first_is_reported_when_reached(level, options, code):
    """The same MqttError as at parse time, raised by the iteration that reaches it."""
    filters = [_filter(f"a/{i}", 1) for i in range(MANY)]
    filters[-2] = _filter("bad", options)
    (packet,) = MqttParser(protocol_level=level).feed(_subscribe_bytes(filters, level))
    got = []
    with pytest.raises(MqttError) as info:
        for sub in packet.subscriptions:
            got.append(sub.topic_filter)
    assert info.value.reason_code == code
    assert got == [f"a/{i}" for i in range(MANY - 2)]
    # within the first filters the parse itself refuses it, as before
    filters[3] = _filter("bad", options)
    with pytest.raises(MqttError):
        MqttParser(protocol_level=level).feed(_subscribe_bytes(filters, level))


@pytest.mark.parametrize("level,tail,code", [
    (5, _filter("bad", 0x03), 0x81),            # QoS 3 [MQTT-3.8.3-4]
    (5, _filter("bad", 0x30), 0x82),            # retain handling 3 [MQTT 5.0 3.8.3.1]
    (5, b"\x00\x05ab", 0x81),                   # truncated filter
    (5, b"\x00\x02\xc3\x28\x00", 0x81),         # invalid UTF-8 [MQTT-1.5.4-1]
    (4, _filter("bad", 0x04), None),            # 3.1.1: reserved bits, a close
    (5, _filter("a/b#", 0x01), 0x81),           # malformed filter [MQTT-4.7.1-1]
    (4, _filter("$share//x", 0x01), None),      # 3.1.1: malformed filter [MQTT-4.8.2-1]
])
def test_a_big_subscribe_with_a_bad_last_filter(broker, unique, level, tail, code):
    """The proper error once the session reaches the filter (DISCONNECT at 5.0, a close at
    3.1.1), no SUBACK, no traceback, and the broker serves the others as before."""
    raw = connected_raw(broker.mqtt_port, level)
    raw.send_raw(_subscribe_bytes([_filter(f"{unique}/{i}", 1) for i in range(MANY)] + [tail],
                                  level))
    assert_ended_and_others_served(broker, raw, code, unique)


N = 20_000


def test_retained_messages_of_a_big_subscribe_yield_to_other_clients(broker, unique):
    """Its retained messages follow the SUBACK, and their walk yields to other clients.

    A second client keeps replacing the retained message of the topic only the SUBSCRIBE's
    last filter matches, numbering each (QoS 1, one at a time). The retained message of that
    topic the subscriber gets was read from the tree when the walk reached the last filter:
    when its number is one the other client sent after the subscriber had read the SUBACK,
    the broker served that client between the SUBACK and the end of the walk. Walked in the
    SUBACK's turn, the number would be one sent before it."""
    first, last = f"{unique}/0/x", f"{unique}/{N - 1}/x"
    probe = Client(broker.mqtt_port)
    probe.publish(first, b"first", qos=1, retain=True)
    probe.publish(last, b"0", qos=1, retain=True)
    raw = connected_raw(broker.mqtt_port, 4)
    raw.sock.settimeout(120)
    stop = threading.Event()
    sent = [1]

    def probe_loop() -> None:
        while not stop.is_set():
            n = sent[0]
            sent[0] = n + 1
            probe.publish(last, str(n).encode(), qos=1, retain=True)

    t = threading.Thread(target=probe_loop, daemon=True)
    try:
        raw.send(Subscribe(1, tuple(Subscription(f"{unique}/{i}/+", 0) for i in range(N))))
        t.start()
        suback = raw.recv()
        after_suback = sent[0]
        assert isinstance(suback, SubAck) and suback.reason_codes == (0,) * N
        retained = []
        while not retained or retained[-1].topic != last:
            packet = raw.recv()
            assert isinstance(packet, Publish), packet
            retained.append(packet)
        stop.set()
        t.join(30)
    finally:
        stop.set()
        probe.disconnect()
        raw.close()
    assert [p.topic for p in retained] == [first, last]   # SUBSCRIBE order, after the SUBACK
    assert all(p.retain for p in retained)
    assert int(retained[-1].payload) >= after_suback, (
        f"the last filter's retained message is number {int(retained[-1].payload)}, sent"
        f" before the SUBACK was read ({after_suback} sent by then)")
