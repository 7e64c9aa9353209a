"""Poison messages with aio-pika: the delivery limit and the redelivery back-off as an asyncio
consumer sees them (``x-delivery-count`` from RabbitMQ's quorum queues; the back-off is
ActiveMQ's redelivery policy). Every wait is for a delivery, bounded by a timeout."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aio_pika

TIMEOUT = 30


async def _next(iterator):
    return await asyncio.wait_for(iterator.__anext__(), TIMEOUT)


def test_delivery_limit_and_count_with_aio_pika(broker, unique):
    async def main():
        async with await aio_pika.connect(broker.amqp_url) as conn:
            ch = await conn.channel()
            dlx = await ch.declare_exchange(f"{unique}.dlx", aio_pika.ExchangeType.FANOUT)
            dlq = await ch.declare_queue(f"{unique}.dlq")
            await dlq.bind(dlx)
            work = await ch.declare_queue(f"{unique}.work", arguments={
                "x-delivery-limit": 1, "x-dead-letter-exchange": dlx.name})
            await ch.default_exchange.publish(
                aio_pika.Message(b"bad", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                work.name)
            counts = []
            async with work.iterator() as it:
                for _ in range(2):
                    message = await _next(it)
                    counts.append(message.headers.get("x-delivery-count"))
                    await message.reject(requeue=True)
            assert counts == [0, 1]
            async with dlq.iterator() as it:
                dead = await _next(it)
                assert dead.body == b"bad"
                assert dead.headers["x-first-death-reason"] == "delivery_limit"
                assert dead.headers["x-death"][0]["reason"] == "delivery_limit"
                await dead.ack()
            declared = await ch.declare_queue(work.name, passive=True)
            assert declared.declaration_result.message_count == 0
    asyncio.run(main())


def test_back_off_with_multiplier_and_maximum_lets_later_messages_pass(broker, unique):
    """Each return of ``slow`` holds it back (1 s, then 2.5 s capped at 2 s), far longer than
    the message published right after the return takes to arrive: it is delivered first."""
    async def main():
        async with await aio_pika.connect(broker.amqp_url) as conn:
            ch = await conn.channel()
            queue = await ch.declare_queue(unique, arguments={
                "x-redelivery-initial-delay": 1000, "x-redelivery-multiplier": Decimal("2.5"),
                "x-redelivery-max-delay": 2000})
            order = []
            async with queue.iterator() as it:
                await ch.default_exchange.publish(aio_pika.Message(b"slow"), unique)
                for round_ in (1, 2):
                    message = await _next(it)
                    assert message.body == b"slow"
                    assert message.headers.get("x-delivery-count") == (
                        None if round_ == 1 else 1)
                    await message.nack(requeue=True)
                    # published after the return: overtakes the held message
                    await ch.default_exchange.publish(
                        aio_pika.Message(f"fast{round_}".encode()), unique)
                    message = await _next(it)
                    order.append(message.body)
                    await message.ack()
                message = await _next(it)
                order.append((message.body, message.headers.get("x-delivery-count")))
                await message.ack()
            assert order == [b"fast1", b"fast2", (b"slow", 2)]
            info = await ch.declare_queue(unique, passive=True)
            assert info.declaration_result.message_count == 0
    asyncio.run(main())
