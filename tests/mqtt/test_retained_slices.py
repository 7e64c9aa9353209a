"""Retained messages on SUBSCRIBE are sent a slice at a time, as fast as the client takes them
(``warren/mqtt/retained_delivery.py``): the SUBACK first, then every matching retained
message in the tree's order, the client's own packets answered meanwhile, its Receive Maximum
and UNSUBSCRIBE respected, and a message published after the SUBSCRIBE after them all.

The time per slice is measured in ``bench/scale.py retained-subscribe``, not asserted here.
"""

from __future__ import annotations

import requests

from tests.mqtt.helpers import Client, RawClient, cid
from warren.mqtt.codec import (Connect, PingReq, PingResp, Publish, PubAck, SubAck, Subscribe,
                               Subscription, UnsubAck, Unsubscribe, encode)


def _retain(port: int, topics: list[str], qos: int = 0) -> None:
    """Retain one message per topic (payload = topic), pipelined in one write; the PINGRESP
    that follows them says they have all been handled."""
    raw = RawClient(port)
    raw.sock.settimeout(60)
    raw.send(Connect(client_id=cid("retainer"), username="guest", password=b"guest"))
    assert raw.recv().reason_code == 0
    raw.send_raw(b"".join(encode(Publish(t, t.encode(), qos, retain=True,
                                         packet_id=i + 1 if qos else None), 4)
                          for i, t in enumerate(topics)) + encode(PingReq(), 4))
    while not isinstance(raw.recv(), PingResp):
        pass                                 # the PUBACKs of QoS 1
    raw.close()


def _subscriber(port: int, level: int = 4, client_id: str | None = None,
                **props) -> RawClient:
    raw = RawClient(port, level)
    raw.sock.settimeout(60)
    raw.send(Connect(protocol_level=level, client_id=client_id or cid("sub"), username="guest",
                     password=b"guest", properties=props))
    assert raw.recv().reason_code == 0
    return raw


def test_a_wide_subscribe_gets_every_retained_message_in_order_after_its_suback(broker,
                                                                                   unique):
    u = unique.replace(".", "-")
    topics = [f"{u}/{i // 100}/{i}" for i in range(3000)]   # ~50 slices of the walk
    _retain(broker.mqtt_port, topics)
    sub = _subscriber(broker.mqtt_port)
    # the PINGREQ is read with the SUBSCRIBE: it is answered while the retained messages go
    sub.send_raw(encode(Subscribe(1, (Subscription(f"{u}/#", 0),)), 4) + encode(PingReq(), 4))
    assert sub.recv() == SubAck(1, (0,))
    live = Client(broker.mqtt_port)
    live.publish(f"{u}/live", b"live", 1)   # after the SUBSCRIBE: after every retained one
    got, pong_at = [], None
    while len(got) < len(topics) + 1:
        p = sub.recv()
        if isinstance(p, PingResp):
            pong_at = len(got)
            continue
        assert isinstance(p, Publish), p
        got.append(p)
    assert [(p.topic, p.payload, p.retain) for p in got[:-1]] == \
        [(t, t.encode(), True) for t in topics]
    assert (got[-1].topic, got[-1].payload, got[-1].retain) == (f"{u}/live", b"live", False)
    assert pong_at is not None and pong_at < len(topics), \
        "the client's PINGREQ waited for all the retained messages"
    live.disconnect()
    sub.close()


def test_retained_messages_wait_for_the_receive_maximum_and_others_are_served(broker,
                                                                                unique):
    u = unique.replace(".", "-")
    topics = [f"{u}/{i}" for i in range(40)]
    _retain(broker.mqtt_port, topics, qos=1)
    sub = _subscriber(broker.mqtt_port, 5, receive_maximum=5)
    sub.send(Subscribe(1, (Subscription(f"{u}/#", 1),)))
    assert sub.recv().reason_codes == (1,)
    first = [sub.recv() for _ in range(5)]
    assert [p.topic for p in first] == topics[:5] and all(p.qos == 1 for p in first)
    # the window is full: the broker waits for acknowledgements, and serves other clients
    other = Client(broker.mqtt_port)
    other.publish(f"{unique}-elsewhere", b"x", 1)          # a full round trip meanwhile
    other.publish(f"{u}/live", b"live", 1)                 # arrives after the retained ones
    sub.send(PingReq())
    assert isinstance(sub.recv(), PingResp), "a 6th PUBLISH went past the Receive Maximum"
    got = first
    for p in first:
        sub.send(PubAck(p.packet_id))
    while len(got) < len(topics) + 1:
        p = sub.recv()
        assert isinstance(p, Publish), p
        got.append(p)
        sub.send(PubAck(p.packet_id))
    assert [(p.topic, p.retain) for p in got] == [(t, True) for t in topics] + \
        [(f"{u}/live", False)]
    other.disconnect()
    sub.close()


def test_an_unsubscribe_stops_the_retained_messages_of_its_filter(broker, unique):
    u = unique.replace(".", "-")
    topics = [f"{u}/{i}" for i in range(40)]
    _retain(broker.mqtt_port, topics, qos=1)
    sub = _subscriber(broker.mqtt_port, 5, receive_maximum=3)
    sub.send(Subscribe(1, (Subscription(f"{u}/#", 1),)))
    assert sub.recv().reason_codes == (1,)
    first = [sub.recv() for _ in range(3)]
    assert [p.topic for p in first] == topics[:3]
    # in one write: unsubscribe, then free the window, then a PINGREQ
    sub.send_raw(encode(Unsubscribe(2, (f"{u}/#",)), 5)
                 + b"".join(encode(PubAck(p.packet_id), 5) for p in first)
                 + encode(PingReq(), 5))
    assert isinstance(sub.recv(), UnsubAck)
    assert isinstance(sub.recv(), PingResp), "a retained message came after the UNSUBACK"
    # the session goes on: a new subscription gets them again
    sub.send(Subscribe(3, (Subscription(f"{u}/1", 1),)))
    assert sub.recv().packet_id == 3
    p = sub.recv()
    assert (p.topic, p.retain) == (f"{u}/1", True)
    sub.close()


def test_a_subscriber_that_does_not_read_pauses_its_retained_messages_and_gets_them_all(
        broker, unique):
    """16 MB of retained messages, more than the sockets between broker and client buffer: the
    broker stops sending when its transport is full (pauseProducing) and goes on when the
    client reads, instead of holding them all in memory; other clients are served meanwhile."""
    u = unique.replace(".", "-")
    topics = [f"{u}/{i}" for i in range(1000)]
    payload = bytes(16 * 1024)
    raw = RawClient(broker.mqtt_port)
    raw.sock.settimeout(60)
    raw.send(Connect(client_id=cid("retainer"), username="guest", password=b"guest"))
    assert raw.recv().reason_code == 0
    raw.send_raw(b"".join(encode(Publish(t, payload, 0, retain=True), 4) for t in topics)
                 + encode(PingReq(), 4))
    assert isinstance(raw.recv(), PingResp)
    raw.close()
    sub_id = cid("slow")
    sub = _subscriber(broker.mqtt_port, client_id=sub_id)
    sub.send(Subscribe(1, (Subscription(f"{u}/#", 0),)))
    assert sub.recv() == SubAck(1, (0,))
    other = Client(broker.mqtt_port)
    for i in range(20):                      # while the subscriber reads nothing
        other.publish(f"{unique}-elsewhere", b"x", 1)
    # what the broker has written towards it (socket and transport buffer): what the sockets
    # took, not the 16 MB (loopback takes some 4 MB with Linux's default buffer sizes)
    conns = requests.get(broker.http_url + "/api/connections", auth=("guest", "guest"),
                         timeout=30).json()
    (written,) = [c["send_oct"] for c in conns
                  if c["client_properties"].get("client_id") == sub_id]
    assert written < len(topics) * len(payload) * 5 // 8, written
    got = [sub.recv() for _ in topics]
    assert [(p.topic, len(p.payload), p.retain) for p in got] == \
        [(t, len(payload), True) for t in topics]
    other.disconnect()
    sub.close()
