"""What an MQTT subscriber gets of an AMQP 1.0 message and an AMQP 1.0 receiver of an MQTT
publish, as RabbitMQ 4 (4.3)'s ``mc_mqtt`` converts them. 1.0 -> MQTT: data sections'
bytes as the payload; any other body (an amqp-value even of a string or binary, amqp-sequence
sections) the sections encoded, typed ``message/vnd.rabbitmq.amqp`` (no unwrapping, no
Payload-Format-Indicator: RabbitMQ 3.13 unwrapped them); x- annotations then application
properties as User Properties in RabbitMQ's text forms; a Response Topic only for a reply-to
naming a key on the MQTT exchange. MQTT -> 1.0: one data section whatever the
Payload-Format-Indicator says, User Properties as application properties and x-
annotations, none of the MQTT front end's own headers."""

from __future__ import annotations

import uuid

import pika
import pytest
from proton import Message, byte, symbol, ulong

from tests.amqp1.proton_raw import RawMessage, section
from tests.mqtt.helpers import V5, V311, Client, v5_props

AMQP_SEQUENCE, AMQP_VALUE, FOOTER = 0x76, 0x77, 0x78
AMQP_TYPE = "message/vnd.rabbitmq.amqp"
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.fixture
def topic(broker):
    return uuid.uuid4().hex


def subscriber(broker, topic, protocol=V5):
    client = Client(broker.mqtt_port, protocol=protocol)
    client.subscribe(f"conv/{topic}", qos=1)
    return client


def send(amqp1, topic, *messages):
    sender = amqp1.create_sender(f"/exchanges/amq.topic/conv.{topic}")
    for message in messages:
        sender.send(message)
    sender.close()


def props(got):
    """The MQTT 5 properties a test looks at, by name (absent ones left out)."""
    p = got.properties
    names = ("PayloadFormatIndicator", "ContentType", "ResponseTopic", "CorrelationData",
             "UserProperty")
    return {n: getattr(p, n) for n in names if hasattr(p, n)}


# (what the 1.0 sender sends, the payload the subscriber gets, its properties)
BODIES = [
    (Message(body=b"as data", inferred=True, content_type="text/plain"), b"as data",
     {"ContentType": "text/plain"}),
    (Message(body=b"\x00\xff", inferred=False), section(AMQP_VALUE, b"\x00\xff"),
     {"ContentType": AMQP_TYPE}),
    (Message(body="h\u00e9llo", content_type="text/plain"), section(AMQP_VALUE, "h\u00e9llo"),
     {"ContentType": AMQP_TYPE}),
    (Message(body=-42), section(AMQP_VALUE, -42), {"ContentType": AMQP_TYPE}),
    (Message(body={"a": 1}), section(AMQP_VALUE, {"a": 1}), {"ContentType": AMQP_TYPE}),
]


def test_an_amqp1_body_reaches_mqtt_5_as_rabbitmq_4_gives_it(broker, amqp1, topic):
    client = subscriber(broker, topic)
    send(amqp1, topic, *(message for message, _, _ in BODIES))
    sequences = section(AMQP_SEQUENCE, [1, "a"]) + section(AMQP_SEQUENCE, [b"b"])
    # the footer after a non-data body is part of the payload (amqp_encoded_body_and_footer)
    with_footer = section(AMQP_VALUE, "v") + section(FOOTER, {symbol("sig"): b"s"})
    send(amqp1, topic, RawMessage(sequences), RawMessage(with_footer))
    got = [client.get() for _ in range(len(BODIES) + 2)]
    client.disconnect()
    assert [(m.payload, props(m)) for m in got] == \
        [(payload, expected) for _, payload, expected in BODIES] + \
        [(sequences, {"ContentType": AMQP_TYPE}), (with_footer, {"ContentType": AMQP_TYPE})]


def test_an_mqtt_3_subscriber_gets_the_same_payload(broker, amqp1, topic):
    client = subscriber(broker, topic, V311)
    send(amqp1, topic, Message(body="text"), Message(body=b"data", inferred=True))
    got = [client.get().payload for _ in range(2)]
    client.disconnect()
    assert got == [section(AMQP_VALUE, "text"), b"data"]


def test_amqp1_properties_as_mqtt_5_properties(broker, amqp1, topic):
    client = subscriber(broker, topic)
    send(amqp1, topic,
         Message(body=b"p", inferred=True, content_type="text/plain", correlation_id="c-1",
                 reply_to="/exchanges/amq.topic/answers.here",
                 annotations={symbol("x-opt-tag"): "t", symbol("x-count"): 3},
                 properties={"s": "x", "n": 7, "b": False, "f": 2.5, "none": None,
                             "bin": b"\x01"}),
         Message(body=b"q", inferred=True, correlation_id=ulong(12),
                 reply_to="/queues/elsewhere"),
         Message(body=b"r", inferred=True, correlation_id=ID, reply_to="/topic/jms.replies",
                 annotations={symbol("x-opt-jms-reply-to"): byte(1)}))
    first, second, third = client.get(), client.get(), client.get()
    client.disconnect()
    assert props(first) == {
        "ContentType": "text/plain", "CorrelationData": b"c-1", "ResponseTopic": "answers/here",
        # x- annotations first, then application properties; binary has no text form
        "UserProperty": [("x-opt-tag", "t"), ("x-count", "3"), ("s", "x"), ("n", "7"),
                         ("b", "false"), ("f", "2.50000000000000000000e+00"), ("none", "")]}
    # a reply-to that is no address on the MQTT exchange has no Response Topic
    assert props(second) == {"CorrelationData": b"12"}
    # Qpid JMS says the reply-to is a topic: the address is the topic (its '.' and '/'
    # swapped, as any routing key's); a uuid correlation-id as its URN
    assert props(third) == {"CorrelationData": ID.urn.encode(),
                            "ResponseTopic": ".topic.jms/replies",
                            "UserProperty": [("x-opt-jms-reply-to", "1")]}


def bound_queue(channel, topic):
    name = f"conv-{topic}"
    channel.queue_declare(name, auto_delete=False)
    channel.queue_bind(name, "amq.topic", routing_key=f"conv.{topic}")
    return name


def test_an_mqtt_5_publish_reaches_amqp1_as_rabbitmq_4_converts_it(broker, amqp1, channel,
                                                                   topic):
    queue = bound_queue(channel, topic)
    client = Client(broker.mqtt_port, protocol=V5)
    client.subscribe(f"answers/{topic}", qos=1)
    client.publish(f"conv/{topic}", "h\u00e9llo".encode(), qos=1,
                   properties=v5_props(PayloadFormatIndicator=1, ContentType="text/plain",
                                       UserProperty=[("k", "v"), ("x-k", "xv")],
                                       ResponseTopic=f"answers/{topic}",
                                       CorrelationData=b"c-1"))
    client.publish(f"conv/{topic}", b"\x00raw", qos=2, retain=True,
                   properties=v5_props(PayloadFormatIndicator=0, CorrelationData=b"\xff\x00"))
    client.publish(f"conv/{topic}", b"", retain=True)   # the retained message cleared
    receiver = amqp1.create_receiver(f"/queues/{queue}", credit=2)
    text, raw = receiver.receive(timeout=30), receiver.receive(timeout=30)
    receiver.accept()
    receiver.close()
    channel.queue_delete(queue)
    # the Response Topic as an address on the MQTT exchange, the Correlation Data binary
    assert (text.reply_to, text.correlation_id) == (f"/exchanges/amq.topic/answers.{topic}",
                                                    b"c-1")
    assert (raw.reply_to, raw.correlation_id) == (None, b"\xff\x00")
    # so a 1.0 responder's answer reaches the MQTT requester
    amqp1.create_sender(text.reply_to).send(
        Message(body=b"answer", inferred=True, correlation_id=bytes(text.correlation_id)))
    answer = client.get()
    client.disconnect()
    assert (answer.payload, props(answer)) == (b"answer", {"CorrelationData": b"c-1"})
    # one data section, whatever the Payload-Format-Indicator says
    assert (text.inferred, bytes(text.body), text.content_type) == \
        (True, "h\u00e9llo".encode(), "text/plain")
    assert (raw.inferred, bytes(raw.body)) == (True, b"\x00raw")
    # user properties: x- ones as message annotations, the others application properties;
    # none of the MQTT front end's own headers (QoS 2, retain, format) show
    assert text.properties == {"k": "v"} and raw.properties is None
    assert text.annotations == {"x-k": "xv", "x-exchange": "amq.topic",
                                "x-routing-key": f"conv.{topic}"}
    assert raw.annotations == {"x-exchange": "amq.topic", "x-routing-key": f"conv.{topic}"}


def test_only_an_mqtt_publish_tells_its_message_expiry_interval(broker, amqp1, channel,
                                                                 topic):
    # RabbitMQ 4's mc_mqtt knows how long a message waited only when it was published over
    # MQTT: an AMQP 1.0 TTL or a 0-9-1 expiration still expires the message, but the MQTT
    # subscriber is told no Message Expiry Interval; an MQTT publish's is the time left
    client = subscriber(broker, topic)
    send(amqp1, topic, Message(body=b"t", inferred=True, ttl=600))
    channel.basic_publish("amq.topic", f"conv.{topic}", b"e",
                          pika.BasicProperties(expiration="600000"))
    publisher = Client(broker.mqtt_port, protocol=V5)
    publisher.publish(f"conv/{topic}", b"m", 1,
                      properties=v5_props(MessageExpiryInterval=600))
    got = {bytes(m.payload): m.properties for m in (client.get() for _ in range(3))}
    client.disconnect()
    publisher.disconnect()
    assert sorted(got) == [b"e", b"m", b"t"]
    assert not hasattr(got[b"t"], "MessageExpiryInterval")
    assert not hasattr(got[b"e"], "MessageExpiryInterval")
    assert 0 < got[b"m"].MessageExpiryInterval <= 600


def test_a_response_topic_is_the_x_reply_to_topic_header(broker, channel, topic):
    # RabbitMQ 4 (mc_mqtt): an MQTT publish's Response Topic reaches 0-9-1 consumers as the
    # x-reply-to-topic header (its routing key form), and that header of a 0-9-1 publish is
    # an MQTT subscriber's Response Topic, not one of its User Properties
    q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(q, "amq.topic", f"ask.{topic}")
    publisher = Client(broker.mqtt_port, protocol=V5)
    publisher.publish(f"ask/{topic}", b"q", 1,
                      properties=v5_props(ResponseTopic=f"replies/{topic}/x"))
    publisher.disconnect()
    for _ in range(200):
        method, got, _body = channel.basic_get(q, auto_ack=True)
        if method is not None:
            break
        channel.connection.process_data_events(time_limit=0.05)
    assert got.headers["x-reply-to-topic"] == f"replies.{topic}.x"

    client = subscriber(broker, topic)
    channel.basic_publish("amq.topic", f"conv.{topic}", b"r", pika.BasicProperties(
        headers={"x-reply-to-topic": "answers.here", "k": "v"}))
    got = client.get()
    client.disconnect()
    assert got.properties.ResponseTopic == "answers/here"
    assert got.properties.UserProperty == [("k", "v")]
