"""A big SUBSCRIBE yields to other clients between its slices (``turn_slices.TurnRange``),
shown by the order of events, not by time.

While one client subscribes N filters in one SUBSCRIBE, another publishes numbered pairs of
QoS 1 messages: first to a topic only the SUBSCRIBE's first filter matches, then, once that one
is acked, to a topic only its last filter matches. The filters are bound in order, so a pair
whose first message reached the subscriber while its second was routed nowhere was answered
between the binding of the first filter and that of the last: the broker served the other
client in the middle of the SUBSCRIBE. Done in one reactor turn, the SUBSCRIBE would fall
before, after or between a pair's two messages, never inside one of them.
"""

from __future__ import annotations

import threading

from tests.mqtt.helpers import Client, RawClient, cid
from warren.mqtt.codec import Connect, Publish, SubAck, Subscribe, Subscription

N = 20_000


def test_other_clients_are_served_while_a_big_subscribe_is_done(broker, unique):
    raw = RawClient(broker.mqtt_port)
    raw.sock.settimeout(120)
    raw.send(Connect(client_id=cid("big"), username="guest", password=b"guest"))
    assert raw.recv().reason_code == 0
    first, last = f"{unique}/0/x", f"{unique}/{N - 1}/x"

    probe = Client(broker.mqtt_port)
    stop = threading.Event()
    pairs: list[int] = []

    def probe_loop() -> None:
        while not stop.is_set():
            n = len(pairs)
            probe.publish(first, f"first {n}".encode(), qos=1)
            probe.publish(last, f"last {n}".encode(), qos=1)
            pairs.append(n)

    t = threading.Thread(target=probe_loop, daemon=True)
    try:
        t.start()
        raw.send(Subscribe(1, tuple(Subscription(f"{unique}/{i}/+", 0) for i in range(N))))
        suback = raw.recv()     # deliveries begin after it (the consumer starts with it)
        assert isinstance(suback, SubAck) and suback.reason_codes == (0,) * N
        stop.set()
        t.join(30)
        probe.publish(last, b"end", qos=1)
        got: list[bytes] = []
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
    assert firsts - lasts, (
        f"no pair answered in the middle of the SUBSCRIBE: {len(pairs)} pairs published,"
        f" {len(firsts)} first and {len(lasts)} last messages routed")
