"""MQTT <-> STOMP (stomp.py) through amq.topic: /topic/a.b is MQTT topic a/b."""

from __future__ import annotations

import queue

import stomp

from tests.mqtt.helpers import Client


class _Listener(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.frames: queue.Queue = queue.Queue()

    def on_message(self, frame) -> None:
        self.frames.put(frame)


def _stomp(broker):
    conn = stomp.Connection([("127.0.0.1", broker.stomp_port)])
    listener = _Listener()
    conn.set_listener("l", listener)
    conn.connect("guest", "guest", wait=True)
    return conn, listener


def test_mqtt_to_stomp(broker, unique):
    conn, listener = _stomp(broker)
    word = unique.replace(".", "-")
    conn.subscribe(f"/topic/{word}.*", id="1", ack="auto", receipt="sub1")
    # the receipt tells us the subscription exists before we publish
    conn.send(f"/topic/{word}.ping", b"ping")
    assert listener.frames.get(timeout=10).body == "ping"
    Client(broker.mqtt_port).publish(f"{word}/from-mqtt", b"hello stomp", 1)
    frame = listener.frames.get(timeout=10)
    assert frame.body == "hello stomp"
    conn.disconnect()


def test_stomp_to_mqtt(broker, unique):
    word = unique.replace(".", "-")
    sub = Client(broker.mqtt_port)
    sub.subscribe(f"{word}/+", 1)
    conn, _ = _stomp(broker)
    conn.send(f"/topic/{word}.from-stomp", "persistent", headers={"persistent": "true"})
    conn.send(f"/topic/{word}.from-stomp", "transient")
    a, b = sub.get(), sub.get()
    assert (a.topic, a.payload, a.qos) == (f"{word}/from-stomp", b"persistent", 1)
    assert (b.payload, b.qos) == (b"transient", 0)
    conn.disconnect()
