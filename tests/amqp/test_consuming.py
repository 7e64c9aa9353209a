"""Consuming and settling: consume/cancel/get, ack/nack/reject/recover, qos, order on requeue.

Absence of a delivery is checked deterministically: the broker writes deliveries caused by a
method before that method's reply, so after a synchronous round trip on the same connection
(``_sync``) every delivery the broker meant to send has been received.
"""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pika
import pytest
from pika.exceptions import ChannelClosedByBroker


def _sync(conn, ch, queue):
    """A round trip on ``ch``; then dispatch whatever arrived before its reply."""
    ok = ch.queue_declare(queue, passive=True)
    conn.process_data_events(time_limit=0)
    return ok.method


def _wait(conn, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        conn.process_data_events(time_limit=0.05)


def _publish(ch, queue, n, start=0):
    for i in range(start, start + n):
        ch.basic_publish("", queue, str(i).encode())


class Collector:
    def __init__(self):
        self.got = []   # (delivery_tag, body, redelivered, consumer_tag)

    def __call__(self, ch, method, props, body):
        self.got.append((method.delivery_tag, body.decode(), method.redelivered,
                         method.consumer_tag))

    @property
    def bodies(self):
        return [g[1] for g in self.got]


# ---------------------------------------------------------------- consume / cancel / get
def test_consume_no_ack(conn, channel, unique):
    channel.queue_declare(unique, auto_delete=True)
    c = Collector()
    tag = channel.basic_consume(unique, c, auto_ack=True)
    _publish(channel, unique, 3)
    _wait(conn, lambda: len(c.got) == 3)
    assert c.bodies == ["0", "1", "2"] and {g[3] for g in c.got} == {tag}
    assert _sync(conn, channel, unique).message_count == 0


def test_server_generated_consumer_tag(broker, unique):
    # pika makes its own tags; py-amqp sends an empty one and uses the server's
    import amqp
    conn = amqp.Connection(f"127.0.0.1:{broker.amqp_port}")
    conn.connect()
    ch = conn.channel()
    ch.queue_declare(unique, auto_delete=True)
    tag = ch.basic_consume(unique, callback=lambda m: None)
    assert tag.startswith("amq.ctag-") and len(tag) > 20
    conn.close()


def test_consumer_tag_reuse_is_530(broker, unique):
    from pamqp import commands
    from tests.amqp.raw_client import RawAmqp
    raw = RawAmqp(broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.send_frame(commands.Queue.Declare(queue=unique, auto_delete=True), 1)
    raw.expect(commands.Queue.DeclareOk)
    for _ in range(2):
        raw.send_frame(commands.Basic.Consume(queue=unique, consumer_tag="mine"), 1)
    raw.expect(commands.Basic.ConsumeOk)
    close = raw.expect_connection_close()
    assert (close.reply_code, close.reply_text) == (
        530, "NOT_ALLOWED - attempt to reuse consumer tag 'mine'")
    raw.wait_closed()


def test_exclusive_consumer(broker, conn, channel, unique):
    channel.queue_declare(unique)
    other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    och = other.channel()
    och.basic_consume(unique, lambda *a: None, exclusive=True)
    text = f"ACCESS_REFUSED - queue '{unique}' in vhost '/' in exclusive use"
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.basic_consume(unique, lambda *a: None)
    assert (e.value.reply_code, e.value.reply_text) == (403, text)
    other.close()
    ch2 = conn.channel()
    ch2.basic_consume(unique, lambda *a: None, consumer_tag="plain")
    ch3 = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch3.basic_consume(unique, lambda *a: None, exclusive=True)
    assert (e.value.reply_code, e.value.reply_text) == (403, text)
    conn.channel().queue_delete(unique)


def test_consume_missing_queue_is_404(channel, unique):
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.basic_consume(unique, lambda *a: None)
    assert (e.value.reply_code, e.value.reply_text) == (
        404, f"NOT_FOUND - no queue '{unique}' in vhost '/'")


def test_client_cancel_stops_deliveries(conn, channel, unique):
    channel.queue_declare(unique)
    c = Collector()
    tag = channel.basic_consume(unique, c, auto_ack=True)
    _publish(channel, unique, 1)
    _wait(conn, lambda: len(c.got) == 1)
    channel.basic_cancel(tag)
    _publish(channel, unique, 2)
    assert _sync(conn, channel, unique).message_count == 2
    assert len(c.got) == 1
    channel.queue_delete(unique)


def test_server_cancel_when_queue_deleted(conn, channel, unique):
    channel.queue_declare(unique)
    cancels = []
    channel.add_on_cancel_callback(lambda frame: cancels.append(frame.method.consumer_tag))
    tag = channel.basic_consume(unique, lambda *a: None)
    conn.channel().queue_delete(unique)
    _wait(conn, lambda: cancels == [tag])
    assert channel.is_open


def test_exclusive_refusal_sends_no_consume_ok(broker, unique):
    from pamqp import commands
    from tests.amqp.raw_client import RawAmqp
    raw = RawAmqp(broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.open_channel(2)
    raw.send_frame(commands.Queue.Declare(queue=unique, auto_delete=True), 1)
    raw.expect(commands.Queue.DeclareOk)
    raw.send_frame(commands.Basic.Consume(queue=unique, consumer_tag="x", exclusive=True), 1)
    raw.expect(commands.Basic.ConsumeOk)
    raw.send_frame(commands.Basic.Consume(queue=unique, consumer_tag="y"), 2)
    channel, close = raw.read_method()
    assert channel == 2 and isinstance(close, commands.Channel.Close), close
    assert close.reply_code == 403
    raw.close()


def test_get_and_get_empty(channel, unique):
    channel.queue_declare(unique)
    m, _, _ = channel.basic_get(unique)
    assert m is None
    _publish(channel, unique, 2)
    m, _, body = channel.basic_get(unique)
    assert (body, m.message_count, m.redelivered, m.exchange, m.routing_key) == (
        b"0", 1, False, "", unique)
    channel.basic_ack(m.delivery_tag)
    channel.queue_delete(unique)


# ---------------------------------------------------------------- settling
def test_ack_multiple(conn, channel, unique):
    channel.queue_declare(unique)
    _publish(channel, unique, 5)
    tags = [channel.basic_get(unique)[0].delivery_tag for _ in range(5)]
    assert tags == [1, 2, 3, 4, 5]
    channel.basic_ack(3, multiple=True)
    channel.close()
    ch = conn.channel()  # 4 and 5 were unacked: requeued on close
    ok = ch.queue_declare(unique, passive=True)
    assert ok.method.message_count == 2
    m, _, body = ch.basic_get(unique, auto_ack=True)
    assert (body, m.redelivered) == (b"3", True)
    ch.queue_delete(unique)


def test_nack_multiple_requeue_keeps_positions(channel, unique):
    channel.queue_declare(unique)
    _publish(channel, unique, 6)
    for _ in range(4):
        channel.basic_get(unique)
    channel.basic_nack(2, multiple=True, requeue=True)    # 0, 1 back to the head
    channel.basic_nack(4, multiple=False, requeue=True)   # 3 back between 2 and 4
    channel.basic_ack(3)                                    # 2 settled
    order = []
    while True:
        m, _, body = channel.basic_get(unique, auto_ack=True)
        if m is None:
            break
        order.append((body.decode(), m.redelivered))
    assert order == [("0", True), ("1", True), ("3", True), ("4", False), ("5", False)]
    channel.queue_delete(unique)


def test_nack_without_requeue_drops_and_reject(channel, unique):
    channel.queue_declare(unique)
    _publish(channel, unique, 3)
    t0 = channel.basic_get(unique)[0].delivery_tag
    t1 = channel.basic_get(unique)[0].delivery_tag
    t2 = channel.basic_get(unique)[0].delivery_tag
    channel.basic_nack(t0, requeue=False)
    channel.basic_reject(t1, requeue=True)
    channel.basic_reject(t2, requeue=False)
    m, _, body = channel.basic_get(unique, auto_ack=True)
    assert (body, m.redelivered, m.message_count) == (b"1", True, 0)
    channel.queue_delete(unique)


@pytest.mark.parametrize("settle", ["ack", "nack", "reject"])
def test_unknown_delivery_tag_is_406(channel, unique, settle):
    channel.queue_declare(unique, auto_delete=True)
    getattr(channel, f"basic_{settle}")(99)
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.queue_declare(unique, passive=True)
    assert (e.value.reply_code, e.value.reply_text) == (
        406, "PRECONDITION_FAILED - unknown delivery tag 99")


def test_double_ack_is_406(channel, unique):
    channel.queue_declare(unique, auto_delete=True)
    _publish(channel, unique, 1)
    m, _, _ = channel.basic_get(unique)
    channel.basic_ack(m.delivery_tag)
    channel.basic_ack(m.delivery_tag)
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.queue_declare(unique, passive=True)
    assert e.value.reply_code == 406


def test_recover_redelivers_unacked(conn, channel, unique):
    channel.queue_declare(unique)
    c = Collector()
    channel.basic_consume(unique, c)
    _publish(channel, unique, 2)
    _wait(conn, lambda: len(c.got) == 2)
    channel.basic_recover(requeue=True)
    _wait(conn, lambda: len(c.got) == 4)
    assert [(b, r) for _, b, r, _ in c.got[2:]] == [("0", True), ("1", True)]
    channel.basic_ack(0, multiple=True)
    assert _sync(conn, channel, unique).message_count == 0
    channel.queue_delete(unique)


def test_unacked_of_closed_connection_requeued_in_order(broker, channel, unique):
    channel.queue_declare(unique)
    _publish(channel, unique, 4)
    other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    och = other.channel()
    c = Collector()
    och.basic_consume(unique, c)
    _wait(other, lambda: len(c.got) == 4)
    och.basic_ack(2)  # "1" settled
    other.close()
    order = []
    while True:
        m, _, body = channel.basic_get(unique, auto_ack=True)
        if m is None:
            break
        order.append((body.decode(), m.redelivered))
    assert order == [("0", True), ("2", True), ("3", True)]
    channel.queue_delete(unique)


# ---------------------------------------------------------------- qos and round robin
def test_prefetch_per_consumer(conn, channel, unique):
    qa, qb = unique + ".a", unique + ".b"
    for q in (qa, qb):
        channel.queue_declare(q)
        _publish(channel, q, 5)
    channel.basic_qos(prefetch_count=2)  # global=false: each new consumer gets 2
    a, b = Collector(), Collector()
    channel.basic_consume(qa, a)
    channel.basic_consume(qb, b)
    _wait(conn, lambda: len(a.got) == 2 and len(b.got) == 2)
    assert _sync(conn, channel, qa).message_count == 3
    assert (len(a.got), len(b.got)) == (2, 2)
    channel.basic_ack(a.got[0][0])
    _wait(conn, lambda: len(a.got) == 3)
    assert _sync(conn, channel, qb).message_count == 3 and len(b.got) == 2
    for q in (qa, qb):
        channel.queue_delete(q)


def test_prefetch_global_is_shared_by_the_channel(conn, channel, unique):
    qa, qb = unique + ".a", unique + ".b"
    for q in (qa, qb):
        channel.queue_declare(q)
        _publish(channel, q, 5)
    channel.basic_qos(prefetch_count=3, global_qos=True)
    a, b = Collector(), Collector()
    channel.basic_consume(qa, a)
    channel.basic_consume(qb, b)
    _wait(conn, lambda: len(a.got) + len(b.got) == 3)
    _sync(conn, channel, qa)
    _sync(conn, channel, qb)
    assert len(a.got) + len(b.got) == 3
    tag = (a.got or b.got)[0][0]
    channel.basic_ack(tag)
    _wait(conn, lambda: len(a.got) + len(b.got) == 4)
    _sync(conn, channel, qa)
    assert len(a.got) + len(b.got) == 4
    for q in (qa, qb):
        channel.queue_delete(q)


def test_prefetch_global_and_per_consumer_together(conn, channel, unique):
    channel.queue_declare(unique)
    _publish(channel, unique, 10)
    channel.basic_qos(prefetch_count=5, global_qos=True)
    channel.basic_qos(prefetch_count=2, global_qos=False)
    a, b, c = Collector(), Collector(), Collector()
    for col in (a, b, c):
        channel.basic_consume(unique, col)
    _wait(conn, lambda: len(a.got) + len(b.got) + len(c.got) == 5)
    _sync(conn, channel, unique)
    counts = sorted((len(a.got), len(b.got), len(c.got)))
    assert counts == [1, 2, 2]
    channel.queue_delete(unique)


def test_round_robin_three_consumers(conn, channel, unique):
    channel.queue_declare(unique)
    cols = [Collector() for _ in range(3)]
    for col in cols:
        channel.basic_consume(unique, col, auto_ack=True)
    _publish(channel, unique, 9)
    _wait(conn, lambda: sum(len(c.got) for c in cols) == 9)
    assert sorted(len(c.got) for c in cols) == [3, 3, 3]
    assert [c.bodies for c in cols] == [["0", "3", "6"], ["1", "4", "7"], ["2", "5", "8"]]
    channel.queue_delete(unique)


def test_requeued_message_goes_to_next_consumer_redelivered(conn, channel, unique):
    channel.queue_declare(unique)
    channel.basic_qos(prefetch_count=1)
    a = Collector()
    channel.basic_consume(unique, a)
    _publish(channel, unique, 1)
    _wait(conn, lambda: len(a.got) == 1)
    channel.basic_reject(a.got[0][0], requeue=True)
    _wait(conn, lambda: len(a.got) == 2)
    assert a.got[1][1:3] == ("0", True)
    channel.basic_ack(a.got[1][0])
    channel.queue_delete(unique)


def test_select_connection_consumer_with_prefetch(broker, unique):
    """Async pika: a prefetch-1 consumer acks in its callback and gets every message."""
    setup = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    sch = setup.channel()
    sch.queue_declare(unique)
    _publish(sch, unique, 20)
    setup.close()
    got = []
    state = {}

    def on_open(conn):
        conn.channel(on_open_callback=on_channel)

    def on_channel(ch):
        state["ch"] = ch
        ch.basic_qos(prefetch_count=1, callback=lambda _: ch.basic_consume(unique, on_msg))

    def on_msg(ch, method, props, body):
        got.append(int(body))
        ch.basic_ack(method.delivery_tag)
        if len(got) == 20:
            ch.queue_delete(unique, callback=lambda _: state["conn"].close())

    conn = pika.SelectConnection(pika.URLParameters(broker.amqp_url), on_open_callback=on_open,
                                 on_close_callback=lambda c, r: c.ioloop.stop())
    state["conn"] = conn
    conn.ioloop.call_later(10, conn.ioloop.stop)
    conn.ioloop.start()
    assert got == list(range(20))


def test_consumer_priority_argument(conn, channel, unique):
    channel.queue_declare(unique)
    low, high = Collector(), Collector()
    channel.basic_consume(unique, low, auto_ack=True, arguments={"x-priority": 1})
    channel.basic_consume(unique, high, auto_ack=True, arguments={"x-priority": 10})
    _publish(channel, unique, 3)
    _wait(conn, lambda: len(low.got) + len(high.got) == 3)
    assert len(high.got) == 3
    channel.queue_delete(unique)


def test_aio_pika_consume_ack(broker, unique):
    async def main():
        conn = await aio_pika.connect(broker.amqp_url)
        async with conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=2)
            q = await ch.declare_queue(unique, auto_delete=True)
            for i in range(5):
                await ch.default_exchange.publish(aio_pika.Message(str(i).encode()), unique)
            got = []
            async with q.iterator() as it:
                async for msg in it:
                    async with msg.process():
                        got.append(msg.body)
                    if len(got) == 5:
                        break
            assert got == [b"0", b"1", b"2", b"3", b"4"]
    asyncio.run(main())
