"""Regressions found by running client libraries' own suites (py-amqp, kombu, pika, aio-pika)
against warren; each test drives the behaviour through the client that tripped over it.
"""

from __future__ import annotations

import asyncio
import struct

import aiormq
import amqp
import amqpstorm
import kombu
import pika
import pytest
import requests
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from tests.amqp.raw_client import PROTOCOL_HEADER, RawAmqp, frame_bytes

BasicProperties = Basic.Properties


@pytest.fixture
def pyamqp(broker):
    conn = amqp.Connection(host=f"127.0.0.1:{broker.amqp_port}", userid="guest",
                           password="guest", virtual_host="/")
    conn.connect()
    yield conn
    if conn.connected:
        conn.close()


def test_immediate_publish_close_names_basic_publish(pyamqp, unique):
    """py-amqp test_rmq: immediate=true is a 540 connection error whose class/method ids are
    Basic.Publish, even when the previous method on the channel was something else."""
    ch = pyamqp.channel()
    ch.queue_declare(unique, exclusive=True)
    ch.basic_publish(amqp.Message("x"), routing_key=unique, immediate=True)
    with pytest.raises(amqp.exceptions.AMQPNotImplementedError) as e:
        ch.basic_consume(unique, callback=lambda m: None)
    assert e.value.reply_code == 540
    assert e.value.method_name == "Basic.publish"
    assert e.value.reply_text == "NOT_IMPLEMENTED - immediate=true"


def test_queue_delete_ok_comes_before_own_consumers_cancel(broker, unique):
    """kombu test_ack_from_another_thread: deleting a queue the same channel consumes from
    answers delete-ok before basic.cancel (RabbitMQ's channel handles the queue's exit after
    the method), so a client waiting for delete-ok is not handed an unexpected cancel."""
    with kombu.Connection(f"pyamqp://guest:guest@127.0.0.1:{broker.amqp_port}//") as conn:
        queue = kombu.Queue(unique, routing_key=unique)
        with conn.channel() as ch:
            kombu.Producer(ch).publish(b"m", routing_key=unique, declare=[queue])
        got = []
        consumer = kombu.Consumer(conn, [queue], callbacks=[lambda b, m: got.append(m)])
        with consumer:
            conn.drain_events(timeout=5)
            assert got
            # raised amqp.exceptions.ConsumerCancelled while waiting for delete-ok before
            queue(consumer.channel).delete()


def test_pika_consumer_still_told_of_delete_by_own_channel(conn, unique):
    """The deferred basic.cancel still arrives (pika's start_consuming returns on it)."""
    ch = conn.channel()
    ch.queue_declare(unique, exclusive=True)
    tag = ch.basic_consume(unique, lambda *a: None)
    cancelled = []
    ch.add_on_cancel_callback(cancelled.append)
    ch.queue_delete(unique)
    ch.start_consuming()
    assert [f.method.consumer_tag for f in cancelled] == [tag]



# ---------------------------------------------------------------- issue 19 (client suites)
def _raw_start(broker, header: bytes) -> RawAmqp:
    raw = RawAmqp(broker.amqp_port)
    raw.send(header)
    return raw


def test_amqpstorm_body_frames_of_frame_max_bytes_are_accepted(broker, conn, unique):
    """amqpstorm (and rabbitpy) cut a body into chunks of frame_max bytes, so each body frame
    is frame_max + 8 bytes; RabbitMQ's reader allows that overhead and so does warren."""
    ch = conn.channel()
    ch.queue_declare(unique, auto_delete=True)
    body = bytes(range(256)) * 1200                     # 307200 bytes: 3 chunks of 131072
    with amqpstorm.Connection("127.0.0.1", "guest", "guest", port=broker.amqp_port) as storm:
        assert storm.max_frame_size == 131072
        with storm.channel() as sch:
            sch.confirm_deliveries()
            assert sch.basic.publish(body, unique)      # confirmed, the connection still open
    _, _, got = ch.basic_get(unique, auto_ack=True)
    assert got == body


def test_payload_of_frame_max_is_accepted_and_one_more_byte_is_501(broker):
    raw = RawAmqp(broker.amqp_port)
    raw.handshake(frame_max=4096)
    raw.open_channel(1)
    raw.send_frame(commands.Queue.Declare(queue="", exclusive=True), 1)
    queue = raw.expect(commands.Queue.DeclareOk).queue
    publish = pamqp_frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
    header = pamqp_frame.marshal(ContentHeader(0, 4096, BasicProperties()), 1)
    raw.send(publish + header + frame_bytes(3, 1, b"a" * 4096))   # a 4104-byte frame
    raw.send_frame(commands.Basic.Get(queue=queue, no_ack=True), 1)
    raw.expect(commands.Basic.GetOk)
    raw.send(frame_bytes(3, 1, b"b" * 4097))
    close = raw.expect_connection_close()
    assert (close.reply_code, close.reply_text) == (
        501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}")
    raw.wait_closed()


def test_passive_declare_of_default_exchange_is_403(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare("", passive=True)
    assert (e.value.reply_code, e.value.reply_text) == (
        403, "ACCESS_REFUSED - operation not permitted on the default exchange")
    assert conn.is_open


def test_redeclare_exclusive_queue_non_exclusive_on_owner_is_405(conn, unique):
    unique = "x." + unique[-8:]      # the whole reply text fits a shortstr
    conn.channel().queue_declare(unique, exclusive=True)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(unique, exclusive=False)
    assert (e.value.reply_code, e.value.reply_text) == (
        405, f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{unique}' in "
             "vhost '/'. It could be originally declared on another connection or the "
             "exclusive property value does not match that of the original declaration.")
    # and the other way round: a shared queue redeclared exclusive (strict, as RabbitMQ)
    shared = conn.channel()
    shared.queue_declare(unique + ".shared", auto_delete=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        conn.channel().queue_declare(unique + ".shared", exclusive=True, auto_delete=True)
    assert e.value.reply_code == 405


def test_aiormq_opens_channel_65535(broker, unique):
    """aiormq numbers channels as it likes; RabbitMQ limits how many are open, not their
    numbers (channel_max is 2047 here)."""
    async def main():
        conn = await aiormq.connect(broker.amqp_url)
        try:
            ch = await conn.channel(channel_number=65535)
            ok = await ch.queue_declare(unique, auto_delete=True)
            assert ok.queue == unique
            await ch.close()
        finally:
            await conn.close()
    asyncio.run(main())


def test_channel_number_above_channel_max_counts_as_one_channel(broker):
    raw = RawAmqp(broker.amqp_port)
    raw.handshake(channel_max=2)
    raw.open_channel(65535)
    raw.open_channel(3)
    raw.send_frame(commands.Channel.Open(), 7)
    close = raw.expect_connection_close()
    assert (close.reply_code, close.reply_text) == (
        530, "NOT_ALLOWED - number of channels opened (2) has reached the negotiated "
             "channel_max (2)")
    raw.wait_closed()


def test_amqp_0_9_header_is_spoken_to_as_0_9_1(broker, unique):
    raw = _raw_start(broker, b"AMQP\x01\x01\x00\x09")
    start = raw.expect(commands.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    raw.send_frame(commands.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response="\0guest\0guest", locale="en_US"))
    raw.expect(commands.Connection.Tune)
    raw.send_frame(commands.Connection.TuneOk(channel_max=0, frame_max=131072, heartbeat=0))
    raw.send_frame(commands.Connection.Open(virtual_host="/"))
    raw.expect(commands.Connection.OpenOk)
    raw.open_channel(1)
    raw.send_frame(commands.Queue.Declare(queue=unique, auto_delete=True), 1)
    assert raw.expect(commands.Queue.DeclareOk).queue == unique
    raw.close()


def test_unspoken_header_is_refused_with_ours_and_a_log_line(broker):
    # AMQP 1.0 over its own TLS layer (1.0 with SASL is served: tests/amqp1)
    raw = _raw_start(broker, b"AMQP\x02\x01\x00\x00")
    assert raw.read_exact(8) == PROTOCOL_HEADER
    raw.wait_closed()
    line = broker.wait_for_line("unsupported protocol header AMQP 1.0 (TLS) (2,1,0,0)")
    assert "refused" in line


def _method(raw: RawAmqp) -> tuple[int, bytes]:
    """The next frame's (channel, method payload), read as bytes (0-8 is not pamqp's)."""
    ftype, channel, size = struct.unpack(">BHI", raw.read_exact(7))
    payload = raw.read_exact(size + 1)[:-1]
    assert ftype == 1, ftype
    return channel, payload


def test_amqp_0_8_is_spoken_as_rabbitmq_3_speaks_it(broker, unique):
    """RabbitMQ 3.x speaks 0-8 (Qpid's 0-8 conformance tests reach it that way): start says
    8-0, channel.open-ok has no field, access.request is granted with ticket 1, and
    basic.consume comes without an arguments table."""
    raw = _raw_start(broker, b"AMQP\x01\x01\x08\x00")
    start = raw.expect(commands.Connection.Start)
    assert (start.version_major, start.version_minor) == (8, 0)
    assert start.server_properties["capabilities"] == {}
    raw.send_frame(commands.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response="\0guest\0guest", locale="en_US"))
    raw.expect(commands.Connection.Tune)
    raw.send_frame(commands.Connection.TuneOk(channel_max=0, frame_max=131072, heartbeat=0))
    raw.send_frame(commands.Connection.Open(virtual_host="/"))
    raw.expect(commands.Connection.OpenOk)
    raw.send_frame(commands.Channel.Open(), 1)
    assert _method(raw) == (1, b"\x00\x14\x00\x0b")                # channel.open-ok
    # access.request: realm "/data", exclusive 0, passive 1, active 1, write 1, read 1
    raw.send(frame_bytes(1, 1, b"\x00\x1e\x00\x0a\x05/data\x1e"))
    assert _method(raw) == (1, b"\x00\x1e\x00\x0b\x00\x01")        # request-ok, ticket 1
    raw.send_frame(commands.Queue.Declare(queue=unique, auto_delete=True), 1)
    assert raw.expect(commands.Queue.DeclareOk).queue == unique
    raw.send(pamqp_frame.marshal(commands.Basic.Publish(exchange="", routing_key=unique), 1)
             + pamqp_frame.marshal(ContentHeader(0, 5, BasicProperties()), 1)
             + frame_bytes(3, 1, b"hello"))
    # basic.consume, 0-8: ticket, queue, consumer tag, bits (no-ack) and no arguments
    q = unique.encode()
    raw.send(frame_bytes(1, 1, b"\x00\x3c\x00\x14\x00\x00" + bytes((len(q),)) + q
                         + b"\x03c08\x02"))
    assert raw.expect(commands.Basic.ConsumeOk).consumer_tag == "c08"
    deliver = raw.expect(commands.Basic.Deliver)
    assert (deliver.consumer_tag, deliver.routing_key) == ("c08", unique)
    raw.read_frame()                                                   # content header
    _, body = raw.read_frame()
    assert body.value == b"hello"
    conns = requests.get(f"{broker.http_url}/api/connections", auth=("guest", "guest"),
                         timeout=30).json()
    assert "AMQP 0-8" in {c["protocol"] for c in conns}
    raw.close()
