"""A stream's messages across protocols, as RabbitMQ converts them: a Stream protocol reader
(rstream with its ``amqp_decoder``, rbfly by default) gets an AMQP 0-9-1 or MQTT publish as
an AMQP 1.0 message with its properties and headers, and an AMQP 0-9-1 reader (pika) gets a Stream
protocol publish's AMQP 1.0 sections as properties and headers. Bytes that are no AMQP 1.0
message go through as they came, both ways, and break nothing (RabbitMQ 3.10.8 closes the
0-9-1 consumer's connection with INTERNAL_ERROR instead)."""

from __future__ import annotations

import asyncio

import pika
from paho.mqtt.packettypes import PacketTypes
from proton import Message as ProtonMessage, symbol
from proton.utils import BlockingConnection
from paho.mqtt.properties import Properties as MqttProperties
from rbfly.streams import Offset, get_message_ctx, streams_client
from rstream import Producer
from rstream.amqp import AMQPMessage, amqp_decoder
from rstream._pyamqp.message import Properties

from tests.mqtt.helpers import V5, Client
from tests.stream.rstream_reader import read

TIMEOUT = 30


def producer(broker):
    return Producer("127.0.0.1", port=broker.stream_port, username="guest", password="guest")


def amqp_read(broker, stream, count):
    """``count`` (body, properties) from ``stream`` over AMQP 0-9-1, from its first offset."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    got = []
    for method, props, body in ch.consume(stream, arguments={"x-stream-offset": "first"},
                                          inactivity_timeout=TIMEOUT):
        assert method is not None, f"{len(got)} of {count} delivered"
        got.append((body, props))
        ch.basic_ack(method.delivery_tag)
        if len(got) == count:
            break
    conn.close()
    return got


def test_amqp_publish_reaches_a_stream_protocol_reader_as_amqp_1_0(broker, unique):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(unique, durable=True, arguments={"x-queue-type": "stream"})
    ch.basic_publish("", unique, b"from amqp", pika.BasicProperties(
        message_id="m-1", correlation_id="c-1", content_type="text/plain", delivery_mode=2,
        headers={"colour": "blue", "count": 7, "x-tag": "t"}))
    conn.close()

    # two readers of the same offset: each gets the whole message
    for _ in range(2):
        [(offset, message)] = asyncio.run(read(broker, unique, 1, decoder=amqp_decoder))
        assert offset == 0
        assert message.body == b"from amqp"
        assert message.header.durable is True
        assert (message.properties.message_id, message.properties.correlation_id,
                message.properties.content_type) == (b"m-1", b"c-1", b"text/plain")
        assert message.application_properties == {b"colour": b"blue", b"count": 7}
        # x- headers as message annotations, and where it was published (RabbitMQ 4)
        assert message.message_annotations == {b"x-tag": b"t", b"x-exchange": b"",
                                               b"x-routing-key": unique.encode()}

    async def rbfly_read():
        client = streams_client(
            f"rabbitmq-stream://guest:guest@127.0.0.1:{broker.stream_port}/")
        try:
            async for body in client.subscribe(unique, offset=Offset.FIRST):
                return body, get_message_ctx()
        finally:
            await client.disconnect()
    body, ctx = asyncio.run(asyncio.wait_for(rbfly_read(), TIMEOUT))
    assert body == b"from amqp"
    assert ctx.properties.message_id == "m-1"
    assert str(ctx.properties.content_type) == "text/plain"   # a symbol, as AMQP 1.0 says
    assert ctx.app_properties == {"colour": "blue", "count": 7}
    assert "Traceback" not in broker.log()


def test_stream_protocol_publish_reaches_an_amqp_reader_with_its_properties(broker, unique):
    async def publish():
        async with producer(broker) as p:
            await p.create_stream(unique)
            await p.send_wait(unique, AMQPMessage(
                body=b"from stream",
                properties=Properties(message_id="s-1", correlation_id="c-2",
                                      content_type="application/json", subject="kind"),
                application_properties={"colour": "red", "count": 7},
                message_annotations={"x-opt": "o"}))
    asyncio.run(publish())

    [(body, props)] = amqp_read(broker, unique, 1)
    assert body == b"from stream"
    # the subject is no 0-9-1 property (RabbitMQ 4's mc_amqpl): no type for a data body
    assert (props.message_id, props.correlation_id, props.content_type, props.type) == \
        ("s-1", "c-2", "application/json", None)
    assert props.delivery_mode is None   # no header: transient, as RabbitMQ 4.2+ reads it
    assert props.headers == {"colour": "red", "count": 7, "x-opt": "o", "x-stream-offset": 0}
    # the Stream protocol's own readers still get the message as it was published
    [(_, raw)] = asyncio.run(read(broker, unique, 1))
    assert amqp_decoder(raw).application_properties == {b"colour": b"red", b"count": 7}


def test_raw_and_malformed_stream_publishes_go_through_as_sent(broker, unique):
    sent = [b"raw bytes",
            b"\x00\x53\x75\xa0\x10ab",                 # a data section 14 bytes short
            b"\x00\x53\x70\xc0\x05\x02\x41",           # a header with a list cut short
            b"\x00\x53\x75\xa0\x02ok\x00\x53\x77\x40",  # a data section, then an amqp-value
            b""]

    async def publish():
        async with producer(broker) as p:
            await p.create_stream(unique)
            for body in sent:
                await p.send_wait(unique, body)
    asyncio.run(publish())

    got = amqp_read(broker, unique, len(sent))
    assert [body for body, _ in got] == sent
    assert [props.headers for _, props in got] == \
        [{"x-stream-offset": i} for i in range(len(sent))]
    assert asyncio.run(read(broker, unique, len(sent))) == list(enumerate(sent))
    assert "Traceback" not in broker.log()


def test_a_stream_deleted_and_declared_again_is_converted_afresh(broker, unique):
    """Converted messages are kept by stream and offset for the readers after the first: a
    new stream of the same name has new messages at the same offsets."""
    for body in (b"first life", b"second life"):
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(unique, durable=True, arguments={"x-queue-type": "stream"})
        ch.basic_publish("", unique, body)
        [(offset, message)] = asyncio.run(read(broker, unique, 1, decoder=amqp_decoder))
        assert (offset, message.body) == (0, body)
        ch.queue_delete(unique)
        conn.close()


def test_mqtt_publish_reaches_a_stream_protocol_reader_as_amqp_1_0(broker, unique):
    """An MQTT 5 publish routed into a stream (amq.topic, as RabbitMQ's MQTT plugin
    publishes): its payload, content type and user properties, where it was published."""
    key = "conv." + unique.rsplit(".", 1)[-1]   # MQTT topics swap '.' and '/'
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(unique, durable=True, arguments={"x-queue-type": "stream"})
    ch.queue_bind(unique, "amq.topic", key)
    conn.close()
    props = MqttProperties(PacketTypes.PUBLISH)
    props.ContentType = "text/plain"
    props.UserProperty = [("colour", "green")]
    client = Client(broker.mqtt_port, protocol=V5)
    client.publish(key.replace(".", "/"), b"from mqtt", qos=1, properties=props)
    client.disconnect()

    [(_, message)] = asyncio.run(read(broker, unique, 1, decoder=amqp_decoder))
    assert message.body == b"from mqtt"
    assert message.properties.content_type == b"text/plain"
    assert message.application_properties[b"colour"] == b"green"
    assert message.message_annotations[b"x-exchange"] == b"amq.topic"
    assert message.message_annotations[b"x-routing-key"] == key.encode()


def test_amqp_1_0_publish_reaches_a_stream_protocol_reader_whole(broker, unique):
    """An AMQP 1.0 publish into a stream: its annotations without a 0-9-1 form too (kept
    beside its properties, as RabbitMQ 4 keeps the whole message)."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    conn.channel().queue_declare(unique, durable=True, arguments={"x-queue-type": "stream"})
    conn.close()
    amqp1 = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                               allowed_mechs="PLAIN", timeout=TIMEOUT)
    message = ProtonMessage(body=b"from amqp 1.0", id="p-1", properties={"colour": "pink"})
    message.annotations = {symbol("x-opt-trace"): "abc", symbol("custom"): 5}
    amqp1.create_sender(f"/queues/{unique}").send(message)
    amqp1.close()

    [(_, got)] = asyncio.run(read(broker, unique, 1, decoder=amqp_decoder))
    assert got.value == b"from amqp 1.0"   # proton sends an amqp-value: it stays one
    assert got.properties.message_id == b"p-1"
    assert got.application_properties == {b"colour": b"pink"}
    assert got.message_annotations[b"x-opt-trace"] == b"abc"
    assert got.message_annotations[b"custom"] == 5
