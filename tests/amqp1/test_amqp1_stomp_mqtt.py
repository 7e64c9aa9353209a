"""AMQP 1.0 across to STOMP and MQTT: the same queues, headers as application-properties."""

from __future__ import annotations

import queue as queues

import paho.mqtt.client as mqtt
import pika
import requests
import stomp
from proton import Message
from proton.utils import BlockingConnection

from tests.amqp1.proton_raw import section
from tests.polling import eventually


def open_amqp1(broker):
    return BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                              allowed_mechs="PLAIN", timeout=30)


class Messages(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.got: queues.Queue = queues.Queue()

    def on_message(self, frame) -> None:
        self.got.put(frame)


def test_stomp_send_reaches_an_amqp1_receiver(broker, unique):
    conn = stomp.Connection12([("127.0.0.1", broker.stomp_port)])
    conn.connect("guest", "guest", wait=True)
    conn.send(f"/queue/{unique}", "from stomp", headers={"receipt": "r", "colour": "blue"})
    amqp1 = open_amqp1(broker)
    receiver = amqp1.create_receiver(f"/queues/{unique}")   # STOMP declared it
    got = receiver.receive(timeout=30)
    receiver.accept()
    amqp1.close()
    conn.disconnect()
    assert bytes(got.body) == b"from stomp" and got.properties["colour"] == "blue"


def test_amqp1_send_reaches_a_stomp_subscriber(broker, unique):
    conn = stomp.Connection12([("127.0.0.1", broker.stomp_port)])
    listener = Messages()
    conn.set_listener("m", listener)
    conn.connect("guest", "guest", wait=True)
    conn.subscribe(f"/queue/{unique}", id="1", headers={"receipt": "s"})
    amqp1 = open_amqp1(broker)
    eventually(lambda: unique in [q["name"] for q in _queues(broker)], "the queue declared")
    amqp1.create_sender(f"/queues/{unique}").send(
        Message(body=b"to stomp", inferred=True, properties={"colour": "red"},
                content_type="text/plain"))
    frame = listener.got.get(timeout=30)
    amqp1.close()
    conn.disconnect()
    assert frame.body == "to stomp" and frame.headers["colour"] == "red"
    assert frame.headers["content-type"] == "text/plain"


def test_an_amqp_value_reaches_a_stomp_subscriber_as_rabbitmq_4_gives_it(broker, unique):
    # the body an AMQP 0-9-1 consumer gets (mc_amqpl): the amqp-value section encoded, typed
    conn = stomp.Connection12([("127.0.0.1", broker.stomp_port)], auto_decode=False)
    listener = Messages()
    conn.set_listener("m", listener)
    conn.connect("guest", "guest", wait=True)
    conn.subscribe(f"/queue/{unique}", id="1", headers={"receipt": "s"})
    amqp1 = open_amqp1(broker)
    eventually(lambda: unique in [q["name"] for q in _queues(broker)], "the queue declared")
    amqp1.create_sender(f"/queues/{unique}").send(Message(body="text"))
    frame = listener.got.get(timeout=30)
    amqp1.close()
    conn.disconnect()
    assert frame.body == section(0x77, "text") and frame.headers["type"] == "amqp-1.0"


def _queues(broker):
    return requests.get(f"{broker.http_url}/api/queues", auth=("guest", "guest")).json()


def test_mqtt_publish_reaches_an_amqp1_receiver(broker, unique):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(unique)
    ch.queue_bind(unique, "amq.topic", routing_key="sensors.t1")
    conn.close()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set("guest", "guest")
    client.connect("127.0.0.1", broker.mqtt_port)
    client.loop_start()
    client.publish("sensors/t1", b"21.5", qos=1).wait_for_publish(timeout=30)
    client.loop_stop()
    client.disconnect()
    amqp1 = open_amqp1(broker)
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    got = receiver.receive(timeout=30)
    receiver.accept()
    amqp1.close()
    assert bytes(got.body) == b"21.5"
