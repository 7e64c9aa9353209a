"""Queues: declare (passive, durable, exclusive, auto-delete, server-named), bind, purge, delete.

Reply codes and texts are RabbitMQ's (``rabbit_amqqueue.erl``, ``rabbit_channel.erl``).
"""

from __future__ import annotations

import asyncio

import aio_pika
import kombu
import pika
import pytest
from pamqp import commands, frame as F
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pika.exceptions import ChannelClosedByBroker

from tests.amqp.raw_client import RawAmqp


def _fails(fn, *args, **kw):
    with pytest.raises(ChannelClosedByBroker) as e:
        fn(*args, **kw)
    return e.value.reply_code, e.value.reply_text


def test_declare_ok_counts(broker, conn, channel, unique):
    ok = channel.queue_declare(unique)
    assert (ok.method.queue, ok.method.message_count, ok.method.consumer_count) == (unique, 0, 0)
    for i in range(3):
        channel.basic_publish("", unique, b"m")
    other = conn.channel()
    other.basic_consume(unique, lambda *a: None)  # unacked: takes all 3 (no prefetch)
    channel.basic_publish("", unique, b"m")
    channel.basic_publish("", unique, b"m")
    # a consumer with no prefetch limit takes everything; use a passive declare to count
    ok = channel.queue_declare(unique, passive=True)
    assert ok.method.consumer_count == 1
    assert ok.method.message_count == 0
    other.close()
    ok = channel.queue_declare(unique, passive=True)
    assert (ok.method.message_count, ok.method.consumer_count) == (5, 0)
    channel.queue_delete(unique)


def test_server_named_queue(channel):
    ok = channel.queue_declare("", exclusive=True)
    name = ok.method.queue
    assert name.startswith("amq.gen-") and len(name) > len("amq.gen-") + 8
    # '' in later methods means the last declared queue of the channel
    channel.basic_publish("", name, b"x")
    ok = channel.queue_declare("", passive=True)
    assert ok.method.queue == name and ok.method.message_count == 1


def test_amq_prefix_reserved_for_queues(channel):
    code, text = _fails(channel.queue_declare, "amq.mine")
    assert (code, text) == (403, "ACCESS_REFUSED - queue name 'amq.mine' contains reserved "
                                 "prefix 'amq.*'")


def test_queue_names_with_any_characters(channel, unique):
    name = unique + " ünï/cødé #*"
    ok = channel.queue_declare(name, auto_delete=False)
    assert ok.method.queue == name
    channel.basic_publish("", name, b"x")
    m, _, body = channel.basic_get(name, auto_ack=True)
    assert body == b"x"
    channel.queue_delete(name)


def test_passive_declare_missing_is_404(channel, unique):
    code, text = _fails(channel.queue_declare, unique, passive=True)
    assert (code, text) == (404, f"NOT_FOUND - no queue '{unique}' in vhost '/'")


@pytest.mark.parametrize("field,first,second", [
    ("durable", {"durable": False}, {"durable": True}),
    ("auto_delete", {"auto_delete": False}, {"auto_delete": True}),
])
def test_inequivalent_queue_redeclare_is_406(conn, channel, unique, field, first, second):
    channel.queue_declare(unique, **first)
    code, text = _fails(channel.queue_declare, unique, **second)
    assert code == 406
    assert text == (f"PRECONDITION_FAILED - inequivalent arg '{field}' for queue '{unique}' in "
                    f"vhost '/': received 'true' but current is 'false'")
    conn.channel().queue_delete(unique)


def test_inequivalent_x_argument_is_406(conn, channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 10})
    code, text = _fails(channel.queue_declare, unique, arguments={"x-max-length": 20})
    assert code == 406
    assert text == (f"PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue "
                    f"'{unique}' in vhost '/': received the value '20' of type 'signedint' "
                    f"but current is the value '10' of type 'signedint'")
    conn.channel().queue_delete(unique)


def test_exclusive_queue_is_locked_for_other_connections(broker, channel, unique):
    channel.queue_declare(unique, exclusive=True)
    other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    text = (f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue "
            f"'{unique}' in vhost '/'. It could be originally declared on another "
            f"connection or the exclusive property value does not match that of the "
            f"original declaration.")
    # rabbit_binary_generator: texts over 255 bytes keep 252 and get "..."
    expected = (405, text if len(text) <= 255 else text[:252] + "...")
    for op in (lambda ch: ch.queue_declare(unique, passive=True),
               lambda ch: ch.queue_declare(unique),
               lambda ch: ch.basic_consume(unique, lambda *a: None),
               lambda ch: ch.basic_get(unique),
               lambda ch: ch.queue_purge(unique),
               lambda ch: ch.queue_delete(unique),
               lambda ch: ch.queue_bind(unique, "amq.fanout")):
        assert _fails(op, other.channel()) == expected
    other.close()


def test_exclusive_queue_deleted_with_its_connection(broker, channel, unique):
    other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    other.channel().queue_declare(unique, exclusive=True)
    other.close()
    code, _ = _fails(channel.queue_declare, unique, passive=True)
    assert code == 404


def test_auto_delete_queue_goes_with_last_consumer(channel, unique):
    channel.queue_declare(unique, auto_delete=True)
    tag = channel.basic_consume(unique, lambda *a: None)
    channel.queue_declare(unique, passive=True, auto_delete=True)
    channel.basic_cancel(tag)
    code, _ = _fails(channel.queue_declare, unique, passive=True)
    assert code == 404


def test_bind_unbind_purge(channel, unique):
    channel.queue_declare(unique)
    channel.queue_bind(unique, "amq.direct", unique + ".k")
    channel.queue_bind(unique, "amq.direct", unique + ".k")  # idempotent
    channel.basic_publish("amq.direct", unique + ".k", b"1")
    channel.basic_publish("amq.direct", unique + ".k", b"2")
    ok = channel.queue_purge(unique)
    assert ok.method.message_count == 2
    channel.queue_unbind(unique, "amq.direct", unique + ".k")
    channel.queue_unbind(unique, "amq.direct", unique + ".k")  # missing binding: unbind-ok
    channel.basic_publish("amq.direct", unique + ".k", b"3")
    assert channel.queue_declare(unique, passive=True).method.message_count == 0
    channel.queue_delete(unique)


def test_delete_if_unused_and_if_empty(conn, channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"1")
    code, text = _fails(channel.queue_delete, unique, if_empty=True)
    assert (code, text) == (406, f"PRECONDITION_FAILED - queue '{unique}' in vhost '/' is not "
                                 f"empty")
    ch = conn.channel()
    ch.basic_consume(unique, lambda *a: None, auto_ack=True)
    ch2 = conn.channel()
    code, text = _fails(ch2.queue_delete, unique, if_unused=True)
    assert (code, text) == (406, f"PRECONDITION_FAILED - queue '{unique}' in vhost '/' in use")
    ch3 = conn.channel()
    ok = ch3.queue_delete(unique)
    assert ok.method.message_count == 0
    ok = ch3.queue_delete(unique)  # missing queue: delete-ok
    assert ok.method.message_count == 0


def test_delete_returns_message_count(channel, unique):
    channel.queue_declare(unique)
    for _ in range(4):
        channel.basic_publish("", unique, b"m")
    assert channel.queue_delete(unique).method.message_count == 4


def test_kombu_durable_queue_declare_and_consume(broker, unique):
    with kombu.Connection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}//") as conn:
        ex = kombu.Exchange(unique + ".x", "direct", durable=True)
        q = kombu.Queue(unique, ex, routing_key="rk", durable=True)
        with conn.Producer() as prod:
            prod.publish({"n": 1}, exchange=ex, routing_key="rk", declare=[q],
                         delivery_mode=2)
        got = []
        with conn.Consumer(q, callbacks=[lambda body, msg: (got.append(body), msg.ack())]):
            conn.drain_events(timeout=5)
        assert got == [{"n": 1}]
        q(conn.default_channel).delete()
        ex(conn.default_channel).delete()


def test_aio_pika_queue_declare_counts(broker, unique):
    async def main():
        conn = await aio_pika.connect(broker.amqp_url)
        async with conn:
            ch = await conn.channel()
            q = await ch.declare_queue(unique)
            for i in range(3):
                await ch.default_exchange.publish(aio_pika.Message(b"m"), unique)
            again = await ch.declare_queue(unique, passive=True)
            assert again.declaration_result.message_count == 3
            await q.purge()
            await q.delete()
    asyncio.run(main())


#: some 50 ms of binds or more: several slices
PIPELINED_BINDS = 1007


def test_a_pipelined_burst_of_binds_is_answered_in_order(broker, unique):
    """A client that pipelines many methods in one write: its methods are handled a slice
    per reactor turn (``CONTROL_METHODS_BUDGET`` seconds of non-Basic methods, then the rest
    of the read waits, with reading paused), so other clients are served between slices;
    this client still gets every reply in order, and what it sent after the burst acts on
    the burst's result."""
    raw = RawAmqp(broker.amqp_port)
    try:
        raw.handshake()
        raw.open_channel(1)
        raw.send_frame(commands.Queue.Declare(queue=unique, exclusive=True), 1)
        raw.expect(commands.Queue.DeclareOk)
        body = b"routed by the last bind"
        burst = b"".join(F.marshal(commands.Queue.Bind(queue=unique, exchange="amq.direct",
                                                       routing_key=f"{unique}.{i}"), 1)
                         for i in range(PIPELINED_BINDS))
        last = f"{unique}.{PIPELINED_BINDS - 1}"
        burst += (F.marshal(commands.Basic.Publish(exchange="amq.direct", routing_key=last), 1)
                  + F.marshal(ContentHeader(0, len(body), commands.Basic.Properties()), 1)
                  + F.marshal(ContentBody(body), 1)
                  + F.marshal(commands.Queue.Declare(queue=unique, passive=True), 1))
        raw.send(burst)
        # another client is served meanwhile (and whatever the order, nothing is lost)
        other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        other.channel().queue_declare(unique + "-other", exclusive=True)
        other.close()
        for _ in range(PIPELINED_BINDS):
            raw.expect(commands.Queue.BindOk, timeout=60)
        ok = raw.expect(commands.Queue.DeclareOk, timeout=60)
        assert ok.message_count == 1
    finally:
        raw.close()
    assert not [line for line in broker.lines if "Traceback" in line]

