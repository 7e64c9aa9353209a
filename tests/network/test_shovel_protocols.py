"""Shovels carry what any protocol published to what any protocol consumes, across brokers.

Two warren brokers: an MQTT (paho) publish on A crosses a shovel into a queue on B that a
STOMP (stomp.py) client reads; a STOMP SEND on B crosses back into A's ``amq.topic`` to an MQTT
subscriber. The shovels run on A, one with A as the source, one with A as the destination.
"""

from __future__ import annotations

import queue

import pika
import pytest
import stomp
from proton import Message, symbol
from proton.utils import BlockingConnection

from tests.amqp1.proton_raw import (FOOTER, MESSAGE_ANNOTATIONS, RawMessage, encoded,
                                    receive_raw, section, sections)
from tests.broker_process import BrokerProcess
from tests.mqtt.helpers import Client
from tests.polling import eventually
from tests.webconsole.conftest import ApiClient


class _Frames(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.frames: queue.Queue = queue.Queue()

    def on_message(self, frame) -> None:
        self.frames.put(frame)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    a = BrokerProcess(tmp_path_factory.mktemp("proto-a"))
    b = BrokerProcess(tmp_path_factory.mktemp("proto-b"))
    a.start()
    b.start()
    yield a, b
    for broker in (a, b):
        broker.stop()
        broker.kill()


def _running(api: ApiClient, name: str) -> bool:
    r = api.get(f"/api/shovels/%2F/{name}")
    return r.status_code == 200 and r.json()["state"] == "running"


def test_mqtt_on_a_reaches_stomp_on_b_and_back(pair, unique):
    a, b = pair
    api = ApiClient(a.http_url)
    word = unique.replace(".", "-")
    b_uri = f"amqp://guest:guest@127.0.0.1:{b.amqp_port}"
    out = api.put(f"/api/parameters/shovel/%2F/{word}-out", {"value": {
        "src-uri": "amqp://", "src-exchange": "amq.topic", "src-exchange-key": f"{word}.#",
        # both remote queues are missing: each shovel declares its own on connecting
        "dest-uri": b_uri, "dest-queue": f"{word}-at-b"}})
    back = api.put(f"/api/parameters/shovel/%2F/{word}-back", {"value": {
        "src-uri": b_uri, "src-queue": f"{word}-to-a",
        "dest-uri": "amqp://", "dest-exchange": "amq.topic",
        "dest-exchange-key": f"{word}.back"}})
    assert (out.status_code, back.status_code) == (201, 201), (out.text, back.text)
    eventually(lambda: _running(api, f"{word}-out") and _running(api, f"{word}-back"),
               "both shovels running")

    subscriber = Client(a.mqtt_port)
    subscriber.subscribe(f"{word}/back", qos=1)
    stomp_b = stomp.Connection([("127.0.0.1", b.stomp_port)])
    frames = _Frames()
    stomp_b.set_listener("frames", frames)
    stomp_b.connect("guest", "guest", wait=True)
    try:
        stomp_b.subscribe(f"/queue/{word}-at-b", id="1", ack="auto")
        Client(a.mqtt_port).publish(f"{word}/from/mqtt", b"over the shovel", qos=1)
        frame = frames.frames.get(timeout=30)
        assert frame.body == "over the shovel"
        assert frame.headers["destination"] == f"/queue/{word}-at-b"

        stomp_b.send(f"/queue/{word}-to-a", "and back", headers={"persistent": "true"})
        assert subscriber.get(timeout=30).payload == b"and back"
    finally:
        stomp_b.disconnect()
        subscriber.disconnect()
        for name in (f"{word}-out", f"{word}-back"):
            api.delete(f"/api/parameters/shovel/%2F/{name}")
    assert not any("Traceback" in line for line in a.lines + b.lines)


def _amqp1(broker):
    return BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                              allowed_mechs="PLAIN", timeout=30)


def _091_view(broker, queue):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        method, props, body = eventually(
            lambda: (got := conn.channel().basic_get(queue, auto_ack=True))[0] is not None
            and got, f"a message in {queue}")
        return (body, props.type, props.content_type, props.delivery_mode, props.headers)
    finally:
        conn.close()


def _amqp1_view(broker, queue):
    conn = _amqp1(broker)
    try:
        got = sections(receive_raw(conn, f"/queues/{queue}"))
    finally:
        conn.close()
    annotations = got.pop(MESSAGE_ANNOTATIONS)
    annotations.pop("x-exchange"), annotations.pop("x-routing-key")   # where it was published
    return got, annotations


def test_an_amqp1_message_through_a_local_and_a_remote_shovel(pair, unique):
    """A shovel in one broker keeps an AMQP 1.0 message whole (its subject, footer,
    annotations); over 0-9-1 to another broker the 0-9-1 form crosses, as with RabbitMQ 4's
    0-9-1 shovel: the body and its footer (typed amqp-1.0), application properties and x-
    annotations, but not the subject nor other annotations. Consumed over 0-9-1 it looks the
    same everywhere."""
    a, b = pair
    api = ApiClient(a.http_url)
    word = unique.replace(".", "-")
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    ch = conn.channel()
    ch.exchange_declare(f"{word}-x", "fanout")
    for name in ("ref", "local-src", "remote-src"):
        ch.queue_declare(f"{word}-{name}", durable=True)
        ch.queue_bind(f"{word}-{name}", f"{word}-x")
    conn.close()
    shovels = {f"{word}-local": {"src-uri": "amqp://", "src-queue": f"{word}-local-src",
                                 "dest-uri": "amqp://", "dest-queue": f"{word}-local-dst"},
               f"{word}-remote": {"src-uri": "amqp://", "src-queue": f"{word}-remote-src",
                                  "dest-uri": f"amqp://guest:guest@127.0.0.1:{b.amqp_port}",
                                  "dest-queue": f"{word}-at-b"}}
    for name, value in shovels.items():
        assert api.put(f"/api/parameters/shovel/%2F/{name}", {"value": value}).status_code \
            == 201
    eventually(lambda: all(_running(api, name) for name in shovels), "both shovels running")
    message = Message(body="value", subject="subject", content_type="text/plain",
                      properties={"colour": "red", "n": 7})
    message.annotations = {symbol("vendor"): "v", symbol("x-opt-tag"): "t"}
    sent = RawMessage(encoded(message, after=section(FOOTER, {symbol("sig"): b"s"})))
    sender_conn = _amqp1(a)
    sender = sender_conn.create_sender(f"/exchanges/{word}-x")
    sender.send(sent)
    sender.send(sent)       # one copy read over 1.0, one over 0-9-1, everywhere
    sender_conn.close()
    try:
        at_a, annotations_a = _amqp1_view(a, f"{word}-ref")
        assert (at_a[0x77], at_a[FOOTER], at_a[0x73][3]) == ("value", {"sig": b"s"}, "subject")
        assert _amqp1_view(a, f"{word}-local-dst") == (at_a, annotations_a)
        at_b, annotations_b = _amqp1_view(b, f"{word}-at-b")
        # no "vendor"; the 0-9-1 type as an annotation, as RabbitMQ 4's mc_amqpl adds it
        assert annotations_b == {"x-opt-tag": "t", "x-basic-type": "amqp-1.0"}
        assert at_b[0x73][3] is None and at_a[0x73][3] == "subject"     # no subject
        at_a[0x73][3] = None
        assert at_b == at_a         # body, footer, other properties, application properties
        view = _091_view(a, f"{word}-ref")
        assert view[:4] == (section(0x77, "value") + section(FOOTER, {symbol("sig"): b"s"}),
                            "amqp-1.0", "text/plain", None)
        assert _091_view(a, f"{word}-local-dst") == view
        assert _091_view(b, f"{word}-at-b") == view
    finally:
        for name in shovels:
            api.delete(f"/api/parameters/shovel/%2F/{name}")
    assert not any("Traceback" in line for line in a.lines + b.lines)
