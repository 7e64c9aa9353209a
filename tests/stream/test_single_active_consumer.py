"""Single active consumer on streams and super stream partitions, with rstream (RabbitMQ 3.11).

Subscriptions sharing a name and ``single-active-consumer: true`` form a group: one reads,
the others wait; the next takes over, from the offset its consumer_update answer names, when
the active one leaves. On a super stream the partitions spread over the group's members
(partition index modulo the member count), the active member stepping down before the next
one starts. Raw frames check the refusals: no name (PRECONDITION_FAILED), credit to a passive
subscription (a credit response with PRECONDITION_FAILED).
"""

from __future__ import annotations

import asyncio
import struct

import pika
from rstream import (ConsumerOffsetSpecification, OffsetSpecification, OffsetType, Producer,
                     SuperStreamConsumer, SuperStreamCreationOption, SuperStreamProducer)
from rstream import Consumer as RConsumer

from tests.stream.raw_frames import Raw, frame, string

TIMEOUT = 30


def consumer(broker):
    return RConsumer("127.0.0.1", port=broker.stream_port, username="guest",
                     password="guest")


async def wait_for(condition):
    async def poll():
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), TIMEOUT)


def test_the_next_member_takes_over_from_the_offset_it_asks(broker, unique):
    async def main():
        async with Producer("127.0.0.1", port=broker.stream_port, username="guest",
                            password="guest") as p:
            await p.create_stream(unique)
            await p.send_batch(unique, [b"a", b"b", b"c"])
            got_a, got_b, events_b = [], [], []

            async def on_a(msg, ctx):
                got_a.append(ctx.offset)

            async def on_b(msg, ctx):
                got_b.append(ctx.offset)

            async def update_a(active, ctx):
                # rstream answers "next" without a listener, and the answer counts
                return OffsetSpecification(OffsetType.FIRST, 0)

            async def update_b(active, ctx):
                events_b.append(active)
                return OffsetSpecification(OffsetType.OFFSET, 2)

            sac = {"single-active-consumer": "true", "name": "app"}
            first, second = consumer(broker), consumer(broker)
            await first.start()
            await second.start()
            await first.subscribe(unique, on_a, properties=dict(sac),
                                  consumer_update_listener=update_a,
                                  offset_specification=ConsumerOffsetSpecification(
                                      OffsetType.FIRST))
            await wait_for(lambda: len(got_a) == 3)
            await second.subscribe(unique, on_b, properties=dict(sac),
                                   consumer_update_listener=update_b,
                                   offset_specification=ConsumerOffsetSpecification(
                                       OffsetType.FIRST))
            await p.send_batch(unique, [b"d"])
            await wait_for(lambda: len(got_a) == 4)
            assert got_b == [] and events_b == []
            await first.close()
            await wait_for(lambda: got_b == [2, 3])
            assert events_b == [True]
            await p.send_wait(unique, b"e")
            await wait_for(lambda: got_b == [2, 3, 4])
            await second.close()
            return got_a

    assert asyncio.run(main()) == [0, 1, 2, 3]


def test_super_stream_partitions_spread_over_the_group(broker, unique):
    async def main():
        async with SuperStreamProducer(
                "127.0.0.1", port=broker.stream_port, username="guest", password="guest",
                super_stream=unique, routing_extractor=lambda m: "x",
                super_stream_creation_option=SuperStreamCreationOption(n_partitions=3)):
            pass
        got: dict[str, list[str]] = {"a": [], "b": []}
        activated_b = asyncio.Event()

        def on(who):
            async def on_message(msg, ctx):
                got[who].append(ctx.stream)
            return on_message

        async def update_b(active, ctx):
            if active:
                activated_b.set()
            return OffsetSpecification(OffsetType.FIRST, 0)

        props = {"single-active-consumer": "true", "name": "g", "super-stream": unique}
        a = SuperStreamConsumer("127.0.0.1", port=broker.stream_port, username="guest",
                                password="guest", super_stream=unique)
        b = SuperStreamConsumer("127.0.0.1", port=broker.stream_port, username="guest",
                                password="guest", super_stream=unique)
        await a.start()
        await b.start()
        await a.subscribe(on("a"), properties=dict(props))
        await b.subscribe(on("b"), properties=dict(props), consumer_update_listener=update_b)
        # partition 1 (1 % 2 members) moved to b once a stepped down from it
        await asyncio.wait_for(activated_b.wait(), TIMEOUT)
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        ch = conn.channel()
        ch.confirm_delivery()
        for key in ("0", "1", "2"):
            ch.basic_publish(unique, key, b"m" + key.encode())
        conn.close()
        await wait_for(lambda: len(got["a"]) + len(got["b"]) == 3)
        seen = {who: list(streams) for who, streams in got.items()}
        await a.close()   # b takes partitions 0 and 2 over now: not what is checked
        await b.close()
        return seen

    got = asyncio.run(main())
    assert sorted(got["a"]) == [f"{unique}-0", f"{unique}-2"]
    assert got["b"] == [f"{unique}-1"]


def test_refusals(broker, unique):
    raw = Raw(broker)
    raw.login()
    assert raw.ask(13, struct.pack(">I", 1), string(unique), struct.pack(">i", 0))[0] == 1

    def subscribe(corr, sub_id, *props):
        return raw.ask(7, struct.pack(">IB", corr, sub_id), string(unique),
                       struct.pack(">HH", 1, 5), struct.pack(">i", len(props) // 2),
                       *[string(p) for p in props])[0]

    assert subscribe(2, 1, "single-active-consumer", "true") == 17   # no name
    assert subscribe(3, 1, "single-active-consumer", "true", "name", "n") == 1
    # the first member is told it is active; nothing reads until it answers
    key, body = raw.frame()
    assert key == 26
    corr, sub_id, active = struct.unpack(">IBB", body)
    assert (sub_id, active) == (1, 1)
    assert subscribe(4, 2, "single-active-consumer", "true", "name", "n") == 1
    raw.send(frame(9, struct.pack(">BH", 2, 1)))      # credit to the passive one
    key, body = raw.frame()
    assert (key, body) == (0x8009, struct.pack(">HB", 17, 2))
    # an answer with an offset type nobody knows: the connection is closed
    raw.send(frame(26 | 0x8000, struct.pack(">IHH", corr, 1, 9)))
    key, body = raw.frame()
    assert key == 22 and struct.unpack_from(">IH", body)[1] == 13
    assert "Traceback" not in broker.log()
