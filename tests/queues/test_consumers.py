"""Consumers: exclusive, single active with fail-over, priorities with prefetch, cancel notify."""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from .conftest import message_count, wait_until


def _consume(channel, queue, sink, name, **kw):
    def on_message(ch, method, props, body):
        sink.append((name, body, method.delivery_tag))
    return channel.basic_consume(queue, on_message, **kw)


def test_exclusive_consumer_locks_out_others(broker, channel, unique):
    channel.queue_declare(unique)
    channel.basic_consume(unique, lambda *a: None, exclusive=True)
    other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        with pytest.raises(ChannelClosedByBroker) as e:
            other.channel().basic_consume(unique, lambda *a: None)
        assert e.value.reply_code == 403
        assert e.value.reply_text == (
            f"ACCESS_REFUSED - queue '{unique}' in vhost '/' in exclusive use")
    finally:
        other.close()


def test_exclusive_consume_refused_when_queue_has_consumers(broker, channel, unique):
    channel.queue_declare(unique)
    channel.basic_consume(unique, lambda *a: None)
    ch2 = channel.connection.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch2.basic_consume(unique, lambda *a: None, exclusive=True)
    assert e.value.reply_code == 403


def test_single_active_consumer_fails_over_on_cancel_and_close(broker, channel, unique):
    channel.queue_declare(unique, arguments={"x-single-active-consumer": True})
    conns = [pika.BlockingConnection(pika.URLParameters(broker.amqp_url)) for _ in range(2)]
    got: list = []
    tag_a = _consume(channel, unique, got, "a", auto_ack=True)
    _consume(conns[0].channel(), unique, got, "b", auto_ack=True)
    _consume(conns[1].channel(), unique, got, "c", auto_ack=True)

    def pump(n):
        def cond():
            for c in conns:
                if c.is_open:
                    c.process_data_events(time_limit=0)
            return len(got) >= n
        wait_until(channel.connection, cond)

    for i in range(4):
        channel.basic_publish("", unique, str(i).encode())
    pump(4)
    assert {n for n, _, _ in got} == {"a"}
    channel.basic_cancel(tag_a)
    channel.basic_publish("", unique, b"4")
    pump(5)
    assert got[-1][:2] == ("b", b"4")
    conns[0].close()
    channel.basic_publish("", unique, b"5")
    pump(6)
    assert got[-1][:2] == ("c", b"5")
    conns[1].close()


def test_single_active_consumer_unacked_go_to_the_next(broker, channel, unique):
    channel.queue_declare(unique, arguments={"x-single-active-consumer": True})
    first = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    got_a: list = []
    got_b: list = []
    _consume(first.channel(), unique, got_a, "a")          # manual ack, never acks
    _consume(channel, unique, got_b, "b")
    for i in range(3):
        channel.basic_publish("", unique, str(i).encode())
    wait_until(first, lambda: len(got_a) == 3)
    channel.connection.process_data_events(time_limit=0.05)
    assert got_b == []
    first.close()
    wait_until(channel.connection, lambda: len(got_b) == 3)
    assert [b for _, b, _ in got_b] == [b"0", b"1", b"2"]


def test_consumer_priority_with_prefetch(broker, channel, unique):
    """High-priority consumers get messages while they have room; the rest go lower."""
    channel.queue_declare(unique)
    high = channel.connection.channel()
    high.basic_qos(prefetch_count=2)
    low = channel.connection.channel()
    low.basic_qos(prefetch_count=10)
    got: list = []
    _consume(low, unique, got, "low", arguments={"x-priority": 1})
    _consume(high, unique, got, "high", arguments={"x-priority": 10})
    for i in range(5):
        channel.basic_publish("", unique, str(i).encode())
    wait_until(channel.connection, lambda: len(got) == 5)
    assert [n for n, _, _ in got[:2]] == ["high", "high"]
    assert [n for n, _, _ in got[2:]] == ["low", "low", "low"]
    # an ack gives the high-priority consumer room again: the next message is its
    high_tags = [t for n, _, t in got if n == "high"]
    high.basic_ack(high_tags[0])
    channel.basic_publish("", unique, b"5")
    wait_until(channel.connection, lambda: len(got) == 6)
    assert got[-1][:2] == ("high", b"5")


def test_equal_priorities_share_round_robin(channel, unique):
    channel.queue_declare(unique)
    got: list = []
    for name in ("a", "b"):
        _consume(channel, unique, got, name, auto_ack=True, arguments={"x-priority": 3})
    for i in range(4):
        channel.basic_publish("", unique, str(i).encode())
    wait_until(channel.connection, lambda: len(got) == 4)
    assert sorted(n for n, _, _ in got) == ["a", "a", "b", "b"]


def test_consumer_cancel_notification_on_queue_delete(broker, channel, unique):
    channel.queue_declare(unique)
    cancelled: list = []
    channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = channel.basic_consume(unique, lambda *a: None)
    other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    other.channel().queue_delete(unique)
    other.close()
    wait_until(channel.connection, lambda: cancelled)
    assert cancelled == [tag]
    assert channel.is_open


def test_aio_pika_consumer_priority(broker, unique):
    import asyncio

    import aio_pika

    async def main():
        conn = await aio_pika.connect_robust(broker.amqp_url)
        async with conn:
            ch_low = await conn.channel()
            ch_high = await conn.channel()
            await ch_high.set_qos(prefetch_count=1)
            q_low = await ch_low.declare_queue(unique)
            q_high = await ch_high.get_queue(unique)
            got = []
            done = asyncio.Event()

            def handler(name):
                async def on_message(message):
                    got.append(name)
                    if len(got) == 3:
                        done.set()
                return on_message
            await q_high.consume(handler("high"), arguments={"x-priority": 5})
            await q_low.consume(handler("low"), no_ack=True)
            for i in range(3):
                await ch_low.default_exchange.publish(aio_pika.Message(b"m"), routing_key=unique)
            await asyncio.wait_for(done.wait(), 5)
            return got
    got = asyncio.run(main())
    assert got[0] == "high" and got.count("high") == 1
