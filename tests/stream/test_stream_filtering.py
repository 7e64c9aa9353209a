"""Stream filtering (RabbitMQ 3.13) over the Stream protocol (rstream) and AMQP 0-9-1 (pika).

rstream publishes with a filter value (publish version 2) and subscribes with ``filter.N``
properties; a block of offsets whose Bloom filter cannot match is not delivered at all, a
block that may match comes whole (as RabbitMQ sends a matching chunk), so rstream's own
post-filter sees it. An AMQP 0-9-1 consumer with ``x-stream-filter`` gets exactly the matching
messages. The values cross protocols: the header ``x-stream-filter-value`` of an AMQP publish
is the value the Stream protocol filters on, and the other way round.
"""

from __future__ import annotations

import asyncio

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker
from rstream import ConsumerOffsetSpecification, FilterConfiguration, OffsetType, Producer
from rstream import Consumer as RConsumer
from rstream.amqp import amqp_decoder

TIMEOUT = 30
BLOCK = 256   # warren/stream/filters.py


def producer(broker, extractor):
    return Producer("127.0.0.1", port=broker.stream_port, username="guest", password="guest",
                    filter_value_extractor=extractor)


async def colour(message):
    return bytes(message).split(b":")[0].decode()


async def read_filtered(broker, stream, values, match_unfiltered, until, predicate=None):
    """(offset, body) delivered to a filtered subscription until offset ``until`` is seen."""
    got = []
    done = asyncio.Event()

    async def on_message(msg, ctx):
        got.append((ctx.offset, bytes(msg)))
        if ctx.offset >= until:
            done.set()

    consumer = RConsumer("127.0.0.1", port=broker.stream_port, username="guest",
                         password="guest")
    await consumer.start()
    await consumer.subscribe(
        stream, on_message,
        offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST),
        filter_input=FilterConfiguration(values, predicate=predicate,
                                         match_unfiltered=match_unfiltered))
    await asyncio.wait_for(done.wait(), TIMEOUT)
    await consumer.close()
    return got


def amqp_consume(broker, stream, count, arguments):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=100)
    got = []
    for method, props, body in ch.consume(stream, arguments=arguments,
                                          inactivity_timeout=TIMEOUT):
        assert method is not None, f"only {len(got)} of {count}"
        got.append((props.headers["x-stream-offset"], body))
        ch.basic_ack(method.delivery_tag)
        if len(got) == count:
            break
    ch.cancel()
    conn.close()
    return got


def test_filtered_blocks_over_both_protocols(broker, unique):
    """Offsets 0-255 blue, 256-511 red (rstream, publish v2), then 512-515 without a value
    and 516-519 green or none, alternating (AMQP)."""
    async def publish():
        async with producer(broker, colour) as p:
            await p.create_stream(unique)
            await p.send_batch(unique, [b"blue:%d" % i for i in range(BLOCK)])
            await p.send_batch(unique, [b"red:%d" % i for i in range(BLOCK)])
    asyncio.run(publish())
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(4):
        ch.basic_publish("", unique, b"plain:%d" % i)
    for i in range(4):
        headers = {"x-stream-filter-value": "green"} if i % 2 == 0 else None
        ch.basic_publish("", unique, b"mixed:%d" % i,
                         pika.BasicProperties(headers=headers))
    conn.close()

    # the blue block is passed over: the first chunk delivered is the red block
    red = asyncio.run(read_filtered(broker, unique, ["red"], False, 2 * BLOCK - 1))
    assert [o for o, _ in red] == list(range(BLOCK, 2 * BLOCK))
    # with unfiltered messages: the red block, then the last block (512-519), where rstream's
    # post-filter keeps what the application wants
    wanted = asyncio.run(read_filtered(
        broker, unique, ["red"], True, 2 * BLOCK + 3,
        predicate=lambda m: b"mixed:" not in bytes(m)))   # AMQP 0-9-1's come as AMQP 1.0
    assert [o for o, _ in wanted] == list(range(BLOCK, 2 * BLOCK + 4))

    # AMQP 0-9-1: exactly the matching messages, whichever protocol published them
    assert amqp_consume(broker, unique, 2, {"x-stream-offset": "first",
                                            "x-stream-filter": "green"}) == [
        (516, b"mixed:0"), (518, b"mixed:2")]
    got = amqp_consume(broker, unique, BLOCK + 6, {
        "x-stream-offset": "first", "x-stream-filter": ["blue", "nothing"],
        "x-stream-match-unfiltered": True})
    assert [o for o, _ in got] == list(range(BLOCK)) + [512, 513, 514, 515, 517, 519]
    assert got[0] == (0, b"blue:0")


def test_filter_value_of_an_amqp_publish_filters_a_stream_subscription(broker, unique):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(unique, durable=True, arguments={"x-queue-type": "stream"})
    ch.basic_publish("", unique, b"x", pika.BasicProperties(
        headers={"x-stream-filter-value": "k"}))
    conn.close()
    [(offset, message)] = asyncio.run(read_filtered(broker, unique, ["k"], False, 0))
    assert offset == 0 and amqp_decoder(message).body == b"x"   # as AMQP 1.0, one data section


def test_filter_size_argument(broker, unique):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(unique, durable=True, arguments={"x-queue-type": "stream",
                                                      "x-stream-filter-size-bytes": 32})
    for bad, text in ((300, "Invalid value"), (8, "Invalid value"), ("big", "Invalid type")):
        with pytest.raises(ChannelClosedByBroker) as e:
            ch.queue_declare(unique + "-bad", durable=True, arguments={
                "x-queue-type": "stream", "x-stream-filter-size-bytes": bad})
        assert e.value.reply_code == 406
        assert e.value.reply_text == (f"PRECONDITION_FAILED - {text} for "
                                      f"x-stream-filter-size-bytes")
        ch = conn.channel()
    conn.close()
    assert "Traceback" not in broker.log()


def test_publish_v2_entries_without_a_value_and_bad_ones(broker, unique):
    """A v2 entry with length -1 has no value; a v2 publish that runs short closes the
    connection with UNKNOWN_FRAME (13), nothing stored."""
    import struct

    from tests.stream.raw_frames import Raw, frame, string
    raw = Raw(broker)
    raw.login()
    assert raw.ask(13, struct.pack(">I", 1), string(unique), struct.pack(">i", 0))[0] == 1
    assert raw.ask(1, struct.pack(">IB", 2, 0), string(""), string(unique))[0] == 1
    raw.send(frame(2, struct.pack(">Bi", 0, 2),
                   struct.pack(">Qh", 1, -1), struct.pack(">I", 3), b"one",
                   struct.pack(">QH", 2, 1), b"v", struct.pack(">I", 3), b"two",
                   version=2))
    key, body = raw.frame()
    assert key == 3 and struct.unpack_from(">Bi2Q", body) == (0, 2, 1, 2)
    assert amqp_consume(broker, unique, 1, {"x-stream-offset": "first",
                                            "x-stream-filter": "v"}) == [(1, b"two")]
    raw.send(frame(2, struct.pack(">Bi", 0, 1), struct.pack(">QH", 3, 40), b"short",
                   version=2))
    key, body = raw.frame()
    assert key == 22 and struct.unpack_from(">IH", body)[1] == 13
    assert raw.closed()
    assert "Traceback" not in broker.log()
