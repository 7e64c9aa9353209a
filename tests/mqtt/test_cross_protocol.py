"""MQTT <-> AMQP 0-9-1 (pika) through amq.topic: topics, persistence, properties, RPC."""

from __future__ import annotations

import pika
from paho.mqtt.packettypes import PacketTypes

from tests.mqtt.helpers import V5, V311, Client, v5_props


def _amqp_queue(ch, pattern):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", pattern)
    return q


def _get(ch, q):
    for _ in range(200):
        method, props, body = ch.basic_get(q, auto_ack=True)
        if method is not None:
            return method, props, body
        ch.connection.process_data_events(time_limit=0.05)
    raise AssertionError("no message")


def test_mqtt_to_amqp(broker, unique, channel):
    key = unique.replace(".", "/")          # MQTT topic whose key has no surprises
    q = _amqp_queue(channel, "sensors.*.temp")
    pub = Client(broker.mqtt_port)
    pub.publish("sensors/kitchen/temp", b"21.5", 1)
    method, props, body = _get(channel, q)
    assert (method.routing_key, body, props.delivery_mode) == ("sensors.kitchen.temp",
                                                               b"21.5", 2)
    pub.publish("sensors/kitchen/temp", b"q0", 0)
    method, props, body = _get(channel, q)
    assert body == b"q0" and props.delivery_mode != 2


def test_amqp_to_mqtt(broker, unique, channel):
    sub = Client(broker.mqtt_port)
    sub.subscribe(f"{unique}/from-amqp/+", 1)
    key = f"{unique}/from-amqp/x".replace("/", "\x00").replace(".", "/").replace("\x00", ".")
    channel.basic_publish("amq.topic", key, b"persistent",
                          pika.BasicProperties(delivery_mode=2))
    channel.basic_publish("amq.topic", key, b"transient")
    a, b = sub.get(), sub.get()
    assert (a.topic, a.payload, a.qos) == (f"{unique}/from-amqp/x", b"persistent", 1)
    assert (b.payload, b.qos) == (b"transient", 0)


def test_v5_properties_to_amqp_and_back(broker, unique, channel):
    q = _amqp_queue(channel, "props.#")
    pub = Client(broker.mqtt_port, protocol=V5)
    props = v5_props(ContentType="application/json", ResponseTopic="replies/me",
                     CorrelationData=b"req-1", MessageExpiryInterval=60,
                     UserProperty=[("tenant", "acme"), ("trace", "t1")])
    pub.publish("props/x", b"{}", 1, properties=props)
    method, p, body = _get(channel, q)
    assert p.content_type == "application/json"
    assert p.reply_to == "replies.me"
    assert p.correlation_id == "req-1"
    assert p.expiration == "60000"
    assert p.headers["tenant"] == "acme" and p.headers["trace"] == "t1"

    sub = Client(broker.mqtt_port, protocol=V5)
    sub.subscribe(f"{unique}/back", 1)
    key = f"{unique}/back".replace("/", "\x00").replace(".", "/").replace("\x00", ".")
    channel.basic_publish("amq.topic", key, b"r", pika.BasicProperties(
        delivery_mode=2, content_type="text/plain", headers={"k": "v"},
        correlation_id="c-9", reply_to="a.b", expiration="30000"))
    m = sub.get()
    mp = m.properties
    assert mp.ContentType == "text/plain"
    assert mp.UserProperty == [("k", "v")]
    assert mp.CorrelationData == b"c-9"
    assert mp.ResponseTopic == "a/b"
    # the expiration still expires it, but as RabbitMQ 4 (mc_mqtt) only an MQTT publish
    # tells its subscribers a Message Expiry Interval
    assert not hasattr(mp, "MessageExpiryInterval")


def test_request_response_with_amqp_server(broker, unique, channel):
    """An MQTT 5 requester and an AMQP responder that answers on amq.topic/reply_to."""
    server_q = _amqp_queue(channel, "rpc.add")
    requester = Client(broker.mqtt_port, protocol=V5)
    reply_topic = f"replies/{unique.replace('.', '-')}"
    requester.subscribe(reply_topic, 1)
    requester.publish("rpc/add", b"1+2", 1, properties=v5_props(
        ResponseTopic=reply_topic, CorrelationData=b"corr-42"))
    method, props, body = _get(channel, server_q)
    channel.basic_publish("amq.topic", props.reply_to, b"3",
                          pika.BasicProperties(correlation_id=props.correlation_id))
    answer = requester.get()
    assert answer.topic == reply_topic
    assert answer.payload == b"3"
    assert answer.properties.CorrelationData == b"corr-42"


def test_response_topic_naming_direct_reply_to_is_refused(broker, unique, channel):
    """A Response Topic that maps to direct reply-to's pseudo-queue still goes through the
    core's reply-to rewrite (plain publishes skip it): an MQTT session has no reply consumer,
    so the publish is refused as RabbitMQ refuses it over AMQP (406), nothing is routed and
    the next connection publishes as usual."""
    topic = f"{unique.replace('.', '-')}/direct"
    q = _amqp_queue(channel, topic.replace("/", "."))
    pub = Client(broker.mqtt_port, protocol=V5)
    pub.publish(topic, b"refused", 1, wait=False,
                properties=v5_props(ResponseTopic="amq/rabbitmq/reply-to"))
    assert pub.disconnected.wait(10)
    again = Client(broker.mqtt_port, protocol=V5)
    again.publish(topic, b"plain", 1, properties=v5_props(ResponseTopic="replies/x"))
    method, props, body = _get(channel, q)
    assert (body, props.reply_to) == (b"plain", "replies.x")
    assert channel.basic_get(q, auto_ack=True)[0] is None
    assert not [line for line in broker.lines if "Traceback" in line]
