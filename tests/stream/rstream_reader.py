"""Reading a stream with rstream's consumer until a count of messages has come, shared by the
Stream protocol tests."""

from __future__ import annotations

import asyncio

from rstream import Consumer as RConsumer
from rstream import ConsumerOffsetSpecification, OffsetType

TIMEOUT = 30


async def read(broker, stream, count, offset_type=OffsetType.FIRST, offset=None,
               name=None, decoder=None):
    """``count`` (offset, body) pairs from ``stream``; with ``decoder`` (rstream's
    ``amqp_decoder``) (offset, the message it decodes)."""
    got: list[tuple[int, bytes]] = []
    done = asyncio.Event()

    async def on_message(msg, ctx):
        got.append((ctx.offset, msg if decoder is not None else bytes(msg)))
        if len(got) >= count:
            done.set()

    consumer = RConsumer("127.0.0.1", port=broker.stream_port, username="guest",
                         password="guest")
    await consumer.start()
    await consumer.subscribe(stream, on_message, subscriber_name=name, decoder=decoder,
                             offset_specification=ConsumerOffsetSpecification(offset_type,
                                                                               offset))
    await asyncio.wait_for(done.wait(), TIMEOUT)
    await consumer.close()
    return got[:count]
