"""STOMP SUBSCRIBE to a stream with ``x-stream-offset`` (RabbitMQ's STOMP dialect).

``first``, ``offset=<n>`` and ``timestamp=<unix seconds>``; each MESSAGE carries its
``x-stream-offset``; a stream subscription needs client acks and a prefetch (ERROR otherwise,
the stream left as it was). Stream filtering as RabbitMQ's STOMP plugin takes it: a SEND's
``x-stream-filter-value``, SUBSCRIBE's ``x-stream-filter`` (values split at commas) and
``x-stream-match-unfiltered`` (``true``/``True``/``false``/``False``, anything else no header).
"""

from __future__ import annotations

import asyncio

import pika
from rstream import Producer
from rstream._pyamqp.message import Properties
from rstream.amqp import AMQPMessage


def make_stream(broker, name, count):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
    for i in range(count):
        ch.basic_publish("", name, b"m%d" % i)
    conn.close()


def test_subscribe_from_first_offset_and_timestamp(broker, client_factory, unique):
    make_stream(broker, unique, 5)
    c = client_factory("1.2")
    c.subscribe(f"/amq/queue/{unique}", "a", ack="client-individual",
                **{"prefetch-count": "10", "x-stream-offset": "first"})
    got = [c.recorder.message() for _ in range(5)]
    assert [(f.body, f.headers["x-stream-offset"]) for f in got] == [
        (f"m{i}", str(i)) for i in range(5)]
    for f in got:
        c.ack(f)
    c.subscribe(f"/amq/queue/{unique}", "b", ack="client",
                **{"prefetch-count": "10", "x-stream-offset": "offset=3"})
    assert [c.recorder.message().body for _ in range(2)] == ["m3", "m4"]
    c.subscribe(f"/amq/queue/{unique}", "c", ack="client",
                **{"prefetch-count": "10", "x-stream-offset": "timestamp=0"})
    assert c.recorder.message().body == "m0"


def test_stream_subscription_needs_client_acks_and_prefetch(broker, client_factory, unique):
    make_stream(broker, unique, 1)
    c = client_factory("1.2")
    c.conn.subscribe(f"/amq/queue/{unique}", "a", ack="client")
    error = c.recorder.error()
    assert error.headers["message"] == "precondition_failed"
    assert ("consumer prefetch count is not set for stream queue "
            f"'{unique}' in vhost '/'") in error.body
    c2 = client_factory("1.2")
    c2.conn.subscribe(f"/amq/queue/{unique}", "a", ack="client",
                      headers={"prefetch-count": "1", "x-stream-offset": "offset=x"})
    error = c2.recorder.error()
    assert "failed consuming from stream queue" in error.body
    assert "invalid_max_age" in error.body
    c3 = client_factory("1.2")
    c3.subscribe(f"/amq/queue/{unique}", "a", ack="client",
                 **{"prefetch-count": "1", "x-stream-offset": "first"})
    assert c3.recorder.message().body == "m0"
    assert "Traceback" not in broker.log()


def test_subscribe_with_stream_filters(broker, client_factory, unique):
    make_stream(broker, unique, 0)
    c = client_factory("1.2")
    for body, value in (("a0", "apple"), ("u0", None), ("o0", "orange"), ("a1", "apple"),
                        ("u1", None), ("a-end", "apple")):
        headers = {"receipt": body} if value is None else {"receipt": body,
                                                             "x-stream-filter-value": value}
        c.send(f"/amq/queue/{unique}", body, **headers)
        assert c.recorder.receipt() == body

    def read(sub_id, count, **headers):
        c.subscribe(f"/amq/queue/{unique}", sub_id, ack="client",
                    **{"prefetch-count": "10", "x-stream-offset": "first", **headers})
        got = [c.recorder.message() for _ in range(count)]
        c.conn.unsubscribe(sub_id)
        c.sync()
        # a-end is last in the stream: whatever the filter let through came before it
        assert got[-1].body == "a-end"
        return [(f.body, f.headers.get("x-stream-filter-value")) for f in got]

    assert read("f1", 3, **{"x-stream-filter": "apple"}) == [
        ("a0", "apple"), ("a1", "apple"), ("a-end", "apple")]
    assert [b for b, _ in read("f2", 4, **{"x-stream-filter": "apple,orange"})] == [
        "a0", "o0", "a1", "a-end"]
    assert [b for b, _ in read("f3", 5, **{"x-stream-filter": "apple",
                                           "x-stream-match-unfiltered": "True"})] == [
        "a0", "u0", "a1", "u1", "a-end"]
    # not a boolean RabbitMQ reads: as if the header were not there
    assert [b for b, _ in read("f4", 3, **{"x-stream-filter": "apple",
                                           "x-stream-match-unfiltered": "yes"})] == [
        "a0", "a1", "a-end"]
    assert "Traceback" not in broker.log()


def test_stream_protocol_publish_reaches_a_stomp_subscriber_converted(broker, client_factory,
                                                                     unique):
    """An AMQP 1.0 message published over the Stream protocol: its data body, properties and
    application properties, as RabbitMQ's STOMP plugin gives a 0-9-1 message's."""
    async def publish():
        async with Producer("127.0.0.1", port=broker.stream_port, username="guest",
                            password="guest") as p:
            await p.create_stream(unique)
            await p.send_wait(unique, AMQPMessage(
                body=b"from stream", properties=Properties(
                    message_id="s-1", correlation_id="c-2", content_type="text/plain"),
                application_properties={"colour": "red"}))
    asyncio.run(publish())
    c = client_factory("1.2")
    c.subscribe(f"/amq/queue/{unique}", "a", ack="client",
                **{"prefetch-count": "10", "x-stream-offset": "first"})
    f = c.recorder.message()
    assert f.body == "from stream"
    assert (f.headers["amqp-message-id"], f.headers["correlation-id"], f.headers["content-type"],
            f.headers["colour"]) == ("s-1", "c-2", "text/plain", "red")
