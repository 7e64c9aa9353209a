"""A SUBSCRIBE with tens of thousands of filters: bindings are found in O(1) (it used to take
88 s at 10,000), the work is done a slice per reactor turn so other clients are served between
slices, and the semantics stay: one SUBACK with a code per filter, sent once every subscription
exists, and the client's next packets answered after it, in order.

Durations are measured in ``bench/scale.py`` (``python -m bench.scale mqtt``), not asserted here.
"""

from __future__ import annotations

import threading

from tests.mqtt.helpers import Client, RawClient, cid
from warren.mqtt.codec import (Connect, PingReq, PingResp, SubAck, Subscribe, Subscription,
                               UnsubAck, Unsubscribe, encode)

N = 20_000   # tens of slices (warren.turn_slices.TurnRange)


def test_a_big_subscribe_is_acked_whole_and_the_next_packets_follow_in_order(broker, unique):
    raw = RawClient(broker.mqtt_port)
    raw.sock.settimeout(120)
    raw.send(Connect(client_id=cid("big"), username="guest", password=b"guest"))
    assert raw.recv().reason_code == 0
    filters = [f"{unique}/{i}/+" for i in range(N)]
    subscribe = Subscribe(1, tuple(Subscription(f, 1) for f in filters))
    # one write: the SUBSCRIBE, then an UNSUBSCRIBE of its first filter, then a PINGREQ
    raw.send_raw(encode(subscribe, 4) + encode(Unsubscribe(2, (filters[0],)), 4)
                 + encode(PingReq(), 4))

    # meanwhile another client's round trips go on (counted, not timed)
    probe = Client(broker.mqtt_port)
    done = threading.Event()
    round_trips = []

    def probe_loop() -> None:
        while not done.is_set():
            probe.publish(f"{unique}-probe/x", b"p", qos=1)
            round_trips.append(1)

    t = threading.Thread(target=probe_loop, daemon=True)
    t.start()
    try:
        suback = raw.recv()
        assert isinstance(suback, SubAck) and suback.packet_id == 1
        assert suback.reason_codes == (1,) * N
        unsuback = raw.recv()
        assert isinstance(unsuback, UnsubAck) and unsuback.packet_id == 2
        assert isinstance(raw.recv(), PingResp)
    finally:
        done.set()
        t.join(30)
    assert round_trips, "the other client got no PUBACK at all"

    # every subscription exists: the last filter delivers, the unsubscribed first one not
    pub = Client(broker.mqtt_port)
    try:
        pub.publish(f"{unique}/0/x", b"first", qos=1)
        pub.publish(f"{unique}/{N - 1}/x", b"last", qos=1)
        got = raw.recv()
        assert got.topic == f"{unique}/{N - 1}/x" and got.payload == b"last"
    finally:
        pub.disconnect()
        probe.disconnect()
        raw.close()


def test_thousands_of_subscribes_in_one_write_are_acked_in_order(broker, unique):
    """More packets than the listener handles per reactor turn (turn_slices.turn_deadline):
    the rest wait for the next turns, and every reply keeps its place."""
    n = 3000
    raw = RawClient(broker.mqtt_port)
    raw.sock.settimeout(120)
    raw.send(Connect(client_id=cid("many"), username="guest", password=b"guest"))
    assert raw.recv().reason_code == 0
    data = b"".join(encode(Subscribe(i, (Subscription(f"{unique}/{i}", 0),)), 4)
                    for i in range(1, n + 1))
    raw.send_raw(data + encode(PingReq(), 4))
    try:
        for i in range(1, n + 1):
            ack = raw.recv()
            assert isinstance(ack, SubAck) and ack.packet_id == i, ack
            assert ack.reason_codes == (0,)
        assert isinstance(raw.recv(), PingResp)
        pub = Client(broker.mqtt_port)
        pub.publish(f"{unique}/{n}", b"last", qos=1)
        got = raw.recv()
        assert got.topic == f"{unique}/{n}" and got.payload == b"last"
        pub.disconnect()
    finally:
        raw.close()
