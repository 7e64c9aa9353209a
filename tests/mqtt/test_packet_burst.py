"""Thousands of small packets in one write are parsed and handled a batch at a time until
the turn's deadline, the rest at the next turns (the listener's ``READ_BATCH``, the parser's
``feed(data, limit)``), reading paused meanwhile: every packet is answered, in order, and
other clients are served in between. Shown by the order of events, not by time."""

from __future__ import annotations

import threading

from tests.mqtt.helpers import Client, RawClient, cid
from warren.mqtt.codec import (Connect, MqttParser, PingReq, PingResp, PubAck, Publish,
                               Subscribe, Subscription, encode)

#: QoS 1 PUBLISHes of 8 bytes each: some 48 KB, one read of the broker's
BURST = 6000


def _connected(port: int) -> RawClient:
    raw = RawClient(port)
    raw.sock.settimeout(60)
    raw.send(Connect(client_id=cid("burst"), username="guest", password=b"guest"))
    assert raw.recv().reason_code == 0
    return raw


def test_a_burst_in_one_write_is_answered_in_order_while_others_are_served(broker, unique):
    """One client writes a PUBLISH to a topic a subscriber reads, thousands of QoS 1
    PUBLISHes to a topic nobody reads, then a second PUBLISH to the read topic, all at once.
    Another client keeps publishing numbered messages to the read topic meanwhile, one at a
    time. When one of those reaches the subscriber between the burst's two, the broker
    served the other client in the middle of the burst; handled in one turn, as the parse of
    a whole read was, the burst's two would be adjacent. Every PUBLISH of the burst is
    answered, the PUBACKs in the order of the PUBLISHes."""
    watched = f"{unique}/watched"
    sub = Client(broker.mqtt_port)
    sub.subscribe(watched, 0)
    raw = _connected(broker.mqtt_port)
    other = Client(broker.mqtt_port)
    stop = threading.Event()
    sent = threading.Event()

    def other_loop() -> None:
        n = 0
        while not stop.is_set():
            other.publish(watched, f"other {n}".encode(), qos=1)
            n += 1
            sent.set()

    t = threading.Thread(target=other_loop, daemon=True)
    try:
        t.start()
        assert sent.wait(30)
        burst = [Publish(watched, b"burst first", 1, packet_id=1),
                 *(Publish("u", b"x", 1, packet_id=i + 2) for i in range(BURST)),
                 Publish(watched, b"burst last", 1, packet_id=BURST + 2)]
        raw.send_raw(b"".join(encode(p, 4) for p in burst))
        acks = []
        while len(acks) < len(burst):
            packet = raw.recv()
            assert isinstance(packet, PubAck), packet
            acks.append(packet.packet_id)
        assert acks == [p.packet_id for p in burst]
        stop.set()
        t.join(30)
        other.publish(watched, b"end", qos=1)
        got = [m.payload for m in sub.drain_until(b"end")]
    finally:
        stop.set()
        other.disconnect()
        sub.disconnect()
        raw.close()
    first, last = got.index(b"burst first"), got.index(b"burst last")
    assert first < last
    assert got[first + 1:last], (
        f"the burst was handled with no other client served in between ({len(got)} messages)")


def test_pings_in_one_write_are_all_answered_in_order_with_what_follows(broker, unique):
    """PINGREQs, a SUBSCRIBE among them and PUBLISHes to it, in one write: every PINGREQ gets
    its PINGRESP, and the subscription is made before the PUBLISHes after it are routed."""
    raw = _connected(broker.mqtt_port)
    topic = f"{unique}/self"
    packets = [*(PingReq() for _ in range(5000)), Subscribe(1, (Subscription(topic, 0),)),
               *(PingReq() for _ in range(5000)),
               *(Publish(topic, str(i).encode(), 0) for i in range(100))]
    raw.send_raw(b"".join(encode(p, 4) for p in packets))
    pongs, payloads = 0, []
    while len(payloads) < 100:
        packet = raw.recv()
        if isinstance(packet, PingResp):
            pongs += 1
        elif isinstance(packet, Publish):
            payloads.append(packet.payload)
    raw.close()
    assert pongs == 10_000
    assert payloads == [str(i).encode() for i in range(100)]


def test_a_limited_feed_keeps_the_rest_for_the_next():
    """The parser returns at most ``limit`` packets and goes on with the rest of the bytes,
    a packet cut by the read's end included."""
    data = b"".join(encode(Publish("t", str(i).encode(), 0), 4) for i in range(200))
    parser = MqttParser(protocol_level=4)
    got = parser.feed(data[:-3], 64)
    assert len(got) == 64 and parser.held
    while parser.held:
        got += parser.feed(b"", 64)
    got += parser.feed(data[-3:], 64)
    assert [p.payload for p in got] == [str(i).encode() for i in range(200)]
    assert not parser.held
