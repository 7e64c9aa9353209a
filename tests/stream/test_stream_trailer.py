"""The trailer of a stream chunk, seen through rstream's ``Client`` (its Deliver frames).

osiris writes the tracking of a chunk's writers after its entries: for each named publisher
that wrote in it, its last publishing id as ``type u8 (0), id size u8, id, id u64``. A
subscriber (osiris' ``user_data`` selector) gets the chunk header, which tells the trailer's
length, and the entries, without the trailer; the CRC covers the entries alone. rstream's own
``test_deliver`` asserts RabbitMQ's header for one message of the publisher "test-reference":
a trailer of 24 bytes. An unnamed publisher writes no tracking: no trailer. Publishes that
come a confirm apart are chunks of their own, each with its trailer, as osiris keeps each
writer batch a chunk. The trailer is read back from the log after a restart, and with it
the publisher's sequence.
"""

from __future__ import annotations

import asyncio
import zlib

from rstream import schema
from rstream.client import Client

from tests.stream.rstream_client import client

TIMEOUT = 30


async def deliver_after(c: Client, send) -> schema.Deliver:
    waiter = c.wait_frame(schema.Deliver, timeout=TIMEOUT)
    await send()
    return await waiter


def test_a_named_publishers_chunk_tells_its_trailer_an_unnamed_ones_none(broker):
    async def main():
        c = await client(broker)
        try:
            await c.create_stream("trailer-a")
            await c.declare_publisher("trailer-a", "test-reference", 1)
            await c.declare_publisher("trailer-a", None, 2)
            await c.declare_publisher("trailer-a", "w" * 255, 3)
            await c.subscribe("trailer-a", 1, initial_credit=10)
            got = []
            for pub_id, ref_id in ((1, 1), (2, 1), (3, 7)):
                msg = schema.Message(publishing_id=ref_id, filter_value=None,
                                     data=b"test message")
                got.append(await deliver_after(c, lambda: c.publish([msg], pub_id)))
            return got
        finally:
            await c.close()

    named, unnamed, longest = asyncio.run(main())
    # RabbitMQ's header for rstream's test_deliver: 1 + 1 + 14 + 8 bytes of trailer
    assert (named.magic_version, named.chunk_type, named.num_entries, named.num_records,
            named.epoch, named.chunk_first_offset) == (0x50, 0, 1, 1, 1, 0)
    assert named.data == b"\x00\x00\x00\x0ctest message" and named.data_length == 16
    assert named.chunk_crc == zlib.crc32(named.data) == 307778378   # the entries alone
    assert named.trailer_length == 24
    assert (unnamed.chunk_first_offset, unnamed.trailer_length) == (1, 0)
    assert (longest.chunk_first_offset, longest.trailer_length) == (2, 1 + 1 + 255 + 8)
    assert "Traceback" not in broker.log()


async def chunks_of(c: Client, stream: str, count: int) -> list[schema.Deliver]:
    """The first ``count`` chunks a subscription from the start gets."""
    got: list[schema.Deliver] = []
    done = asyncio.Event()

    async def on_chunk(frame: schema.Deliver) -> None:
        got.append(frame)
        if len(got) >= count:
            done.set()

    c.add_handler(schema.Deliver, on_chunk, name="1")   # rstream keys them by subscription
    await c.run_queue_listener_task(1, on_chunk)
    await c.subscribe(stream, 1, initial_credit=count)
    await asyncio.wait_for(done.wait(), TIMEOUT)
    return got


def test_publishes_a_confirm_apart_are_chunks_of_their_own_with_their_trailers(broker):
    async def main():
        c = await client(broker)
        try:
            await c.create_stream("trailer-b")
            await c.declare_publisher("trailer-b", "a", 1)
            await c.declare_publisher("trailer-b", "bb", 2)
            for i in range(1, 4):   # a, bb, a, bb, a, bb, each confirmed before the next
                for pub_id, ids in ((1, [i]), (2, [10 * i, 10 * i + 1])):
                    confirmed = c.wait_frame(schema.PublishConfirm, timeout=TIMEOUT)
                    await c.publish([schema.Message(publishing_id=n, filter_value=None,
                                                    data=b"m") for n in ids], pub_id)
                    await confirmed
            return await chunks_of(c, "trailer-b", 6)
        finally:
            await c.close()

    chunks = asyncio.run(main())
    # RabbitMQ 3.10.8 with the same publishes: a chunk each, its trailer its writer's entry
    assert [(d.chunk_first_offset, d.num_records, d.trailer_length) for d in chunks] == [
        (0, 1, 11), (1, 2, 12), (3, 1, 11), (4, 2, 12), (6, 1, 11), (7, 2, 12)]


def test_the_trailer_and_the_sequence_come_back_after_a_restart(private):
    broker = private

    async def publish():
        c = await client(broker)
        try:
            await c.create_stream("trailer-c")
            await c.declare_publisher("trailer-c", "test-reference", 1)
            await c.subscribe("trailer-c", 1)
            msg = schema.Message(publishing_id=5, filter_value=None, data=b"before")
            return await deliver_after(c, lambda: c.publish([msg], 1))
        finally:
            await c.close()

    async def again():
        c = await client(broker)
        try:
            sequence = await c.query_publisher_sequence("trailer-c", "test-reference")
            chunk = await deliver_after(c, lambda: c.subscribe("trailer-c", 1))
            return sequence, chunk
        finally:
            await c.close()

    before = asyncio.run(publish())
    broker.stop()
    broker.start()
    sequence, after = asyncio.run(again())
    assert sequence == 5
    assert after.trailer_length == before.trailer_length == 24
    assert after.data == before.data
    assert "Traceback" not in broker.log()
