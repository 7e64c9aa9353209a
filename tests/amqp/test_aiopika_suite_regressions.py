"""Regressions found by running aio-pika's own test suite (mosquito/aio-pika tests/) against warren.

Each test drives the behaviour the suite relied on with aio-pika itself against our broker.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pika
import pytest


def test_unbind_after_auto_delete_exchange_went_away_is_ok(broker, unique):
    """aio-pika test_simple_publish_and_receive_to_bound_exchange: its clean-up unbinds the
    destination exchange from the source after the destination (auto-delete) was deleted with
    its last binding. RabbitMQ (since 3.2) answers exchange.unbind-ok for missing exchanges."""
    async def main():
        async with await aio_pika.connect(broker.amqp_url) as conn:
            ch = await conn.channel()
            src = await ch.declare_exchange(unique + ".src", auto_delete=True)
            dst = await ch.declare_exchange(unique + ".dst", auto_delete=True)
            q = await ch.declare_queue(auto_delete=True)
            await q.bind(dst, "k")
            await dst.bind(src, "k")
            await src.publish(aio_pika.Message(b"via e2e"), "k")
            got = await q.get(timeout=5)
            await got.ack()
            assert got.body == b"via e2e"
            await q.unbind(dst, "k")  # dst loses its last binding: auto-deleted
            await dst.unbind(src, "k")  # must not close the channel
            assert not ch.is_closed
            await ch.declare_queue(unique + ".still-open", auto_delete=True)

    asyncio.run(main())


def test_unbind_of_deleted_queue_is_ok(broker, unique):
    """aio-pika test_big_message: clean-up deletes the queue, then unbinds it.
    RabbitMQ answers queue.unbind-ok for a missing queue (and a missing exchange)."""
    async def main():
        async with await aio_pika.connect(broker.amqp_url) as conn:
            ch = await conn.channel()
            ex = await ch.declare_exchange(unique + ".x", auto_delete=True)
            keeper = await ch.declare_queue(unique + ".keeper", auto_delete=True)
            await keeper.bind(ex, "keep")  # keeps the auto-delete exchange alive
            q = await ch.declare_queue(unique + ".q")
            await q.bind(ex, "k")
            await q.delete()
            await q.unbind(ex, "k")
            assert not ch.is_closed
            await keeper.unbind(ex, "keep")  # the exchange goes with its last binding
            await keeper.unbind(ex, "keep")  # ...and unbinding again is still ok
            assert not ch.is_closed

    asyncio.run(main())


def test_unbind_from_default_exchange_is_still_refused(broker, unique):
    """The missing-resource leniency must not open the default exchange to unbinding."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = conn.channel()
        ch.queue_declare(unique, auto_delete=True)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            ch.queue_unbind(unique, "", routing_key=unique)
        assert e.value.reply_code == 403
    finally:
        conn.close()
