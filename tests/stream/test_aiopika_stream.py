"""Stream consumption with aio-pika (asyncio): offsets and timestamps as consume arguments,
the ``x-stream-offset`` header, acks that only give credit back, and a 406 for a consumer
without a prefetch, all on one connection."""

from __future__ import annotations

import asyncio
import datetime

import aio_pika
import pytest

TIMEOUT = 30


async def take(queue, count, arguments):
    got = []
    async with queue.iterator(arguments=arguments) as it:
        async for message in it:
            got.append((message.body, message.headers["x-stream-offset"]))
            await message.ack()
            if len(got) == count:
                break
    return got


def test_offsets_timestamps_and_prefetch_with_aio_pika(broker, unique):
    async def main():
        conn = await aio_pika.connect_robust(broker.amqp_url)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            await ch.set_qos(prefetch_count=3)
            q = await ch.declare_queue(unique, durable=True,
                                       arguments={"x-queue-type": "stream"})
            for i in range(8):
                await ch.default_exchange.publish(aio_pika.Message(b"a%d" % i), unique)
            assert await asyncio.wait_for(take(q, 8, {"x-stream-offset": "first"}),
                                          TIMEOUT) == [(b"a%d" % i, i) for i in range(8)]
            assert await asyncio.wait_for(take(q, 2, {"x-stream-offset": 6}),
                                          TIMEOUT) == [(b"a6", 6), (b"a7", 7)]
            hour_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
            got = await asyncio.wait_for(take(q, 8, {"x-stream-offset": hour_ago}), TIMEOUT)
            assert got[0] == (b"a0", 0)
            bare = await conn.channel()
            bq = await bare.get_queue(unique)
            async def ignore(message):
                pass

            with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed) as e:
                await bq.consume(ignore)
            assert "consumer prefetch count is not set for stream queue" in str(e.value)
    asyncio.run(main())
    assert "Traceback" not in broker.log()
