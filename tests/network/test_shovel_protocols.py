"""Shovels carry what any protocol published to what any protocol consumes, across brokers.

Two warren brokers: an MQTT (paho) publish on A crosses a shovel into a queue on B that a
STOMP (stomp.py) client reads; a STOMP SEND on B crosses back into A's ``amq.topic`` to an MQTT
subscriber. The shovels run on A, one with A as the source, one with A as the destination.
"""

from __future__ import annotations

import queue

import pytest
import stomp

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
