"""Publishing: mandatory returns, publisher confirms, transactions, properties and bodies.

Properties must come back byte-exact: a raw client publishes a content header built by pamqp
with every property set (nested tables, arrays, decimals, timestamps, byte arrays) and checks
the header frame it is delivered is the same bytes.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import struct

import aio_pika
import pika
import pytest
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pika.exceptions import ChannelClosedByBroker, UnroutableError

from tests.amqp.raw_client import RawAmqp
from tests.broker_process import BrokerProcess


# ---------------------------------------------------------------- mandatory / confirms
def test_mandatory_unroutable_is_returned(conn, channel, unique):
    returned = []
    channel.add_on_return_callback(lambda ch, m, p, b: returned.append((m, p, b)))
    channel.basic_publish("amq.direct", unique, b"lost", pika.BasicProperties(
        message_id="m1"), mandatory=True)
    channel.queue_declare(unique + ".sync", auto_delete=True)  # round trip
    conn.process_data_events(time_limit=0)
    assert len(returned) == 1
    m, p, b = returned[0]
    assert (m.reply_code, m.reply_text, m.exchange, m.routing_key) == (
        312, "NO_ROUTE", "amq.direct", unique)
    assert (p.message_id, b) == ("m1", b"lost")


def test_confirms_ack_routed_and_unroutable(channel, unique):
    channel.confirm_delivery()
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"1")                   # acked
    channel.basic_publish("amq.direct", unique + ".none", b"2")  # unroutable: acked too
    with pytest.raises(UnroutableError):
        channel.basic_publish("amq.direct", unique + ".none", b"3", mandatory=True)
    channel.basic_publish("", unique, b"4", pika.BasicProperties(delivery_mode=2))
    assert channel.queue_declare(unique, passive=True).method.message_count == 2
    channel.queue_delete(unique)


def test_confirms_multiple_acks_raw(broker, unique):
    raw = RawAmqp(broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.send_frame(commands.Confirm.Select(), 1)
    raw.expect(commands.Confirm.SelectOk)
    raw.send_frame(commands.Queue.Declare(queue=unique, auto_delete=True), 1)
    raw.expect(commands.Queue.DeclareOk)
    frames = b""
    from pamqp import frame as F
    for i in range(50):
        frames += F.marshal(commands.Basic.Publish(exchange="", routing_key=unique), 1)
        frames += F.marshal(ContentHeader(0, 1, commands.Basic.Properties()), 1)
        frames += F.marshal(ContentBody(b"x"), 1)
    raw.send(frames)   # one write: the broker coalesces confirms into multiple=true
    acked = 0
    seen_multiple = False
    while acked < 50:
        ack = raw.expect(commands.Basic.Ack)
        assert ack.delivery_tag > acked
        seen_multiple |= ack.multiple
        acked = ack.delivery_tag
    assert acked == 50 and seen_multiple
    raw.close()


def test_confirm_then_tx_is_406(channel):
    channel.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.tx_select()
    assert (e.value.reply_code, e.value.reply_text) == (
        406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")


def test_aio_pika_confirms(broker, unique):
    async def main():
        conn = await aio_pika.connect(broker.amqp_url)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            q = await ch.declare_queue(unique, auto_delete=True)
            results = await asyncio.gather(*(
                ch.default_exchange.publish(aio_pika.Message(b"%d" % i, delivery_mode=2),
                                            unique) for i in range(100)))
            assert all(isinstance(r, commands.Basic.Ack) for r in results)
            assert (await ch.declare_queue(unique, passive=True)
                    ).declaration_result.message_count == 100
            await q.purge()
    asyncio.run(main())


# ---------------------------------------------------------------- transactions
def test_tx_commit_and_rollback_of_publishes(conn, channel, unique):
    channel.queue_declare(unique)
    channel.tx_select()
    channel.basic_publish("", unique, b"rolled back")
    channel.tx_rollback()
    assert channel.queue_declare(unique, passive=True).method.message_count == 0
    channel.basic_publish("", unique, b"a")
    channel.basic_publish("", unique, b"b")
    assert channel.queue_declare(unique, passive=True).method.message_count == 0
    channel.tx_commit()
    assert channel.queue_declare(unique, passive=True).method.message_count == 2
    channel.queue_delete(unique)


def test_tx_commit_and_rollback_of_acks(conn, channel, unique):
    channel.queue_declare(unique)
    _ = [channel.basic_publish("", unique, b"%d" % i) for i in range(3)]
    channel.tx_select()
    channel.tx_commit()
    tags = [channel.basic_get(unique)[0].delivery_tag for _ in range(3)]
    channel.basic_ack(tags[0])
    channel.tx_rollback()    # the ack is forgotten, the delivery stays unacked
    channel.basic_ack(tags[1], multiple=True)
    channel.tx_commit()
    channel.close()
    ch = conn.channel()
    m, _, body = ch.basic_get(unique, auto_ack=True)
    assert (body, m.redelivered, m.message_count) == (b"2", True, 0)
    ch.queue_delete(unique)


def test_tx_commit_without_select_is_406(channel):
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.tx_commit()
    assert (e.value.reply_code, e.value.reply_text) == (
        406, "PRECONDITION_FAILED - channel is not transactional")


# ---------------------------------------------------------------- properties
FULL_PROPS = commands.Basic.Properties(
    content_type="application/json", content_encoding="gzip",
    headers={
        "str": "text", "int": 42, "neg": -7, "big": 2 ** 40, "float": 1.5, "bool": True,
        "none": None, "dec": decimal.Decimal("3.14"),
        "ts": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "bytes": bytearray(b"\x00\x01\xff"),
        "list": [1, "two", [3, {"four": 4}], bytearray(b"x")],
        "nested": {"a": {"b": {"c": [1, 2, 3]}}, "empty": {}},
    },
    delivery_mode=2, priority=5, correlation_id="corr", reply_to="reply.q",
    expiration="60000", message_id="mid",
    timestamp=datetime.datetime(2023, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
    message_type="type", user_id="guest", app_id="app")


def test_properties_round_trip_byte_exact(broker, unique):
    raw = RawAmqp(broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.send_frame(commands.Queue.Declare(queue=unique, auto_delete=True), 1)
    raw.expect(commands.Queue.DeclareOk)
    header = ContentHeader(0, 5, FULL_PROPS)
    from pamqp import frame as F
    sent_header = F.marshal(header, 1)
    raw.send(F.marshal(commands.Basic.Publish(exchange="", routing_key=unique), 1)
             + sent_header + F.marshal(ContentBody(b"hello"), 1))
    raw.send_frame(commands.Basic.Get(queue=unique, no_ack=True), 1)
    raw.expect(commands.Basic.GetOk)
    got_header = raw.read_exact(len(sent_header))
    assert got_header == sent_header
    _, body = raw.read_frame()
    assert body.value == b"hello"
    raw.close()


def test_properties_round_trip_pika(channel, unique):
    channel.queue_declare(unique, auto_delete=True)
    headers = {"s": "x", "i": 1, "l": [1, "a", {"n": True}], "t": {"deep": {"er": "y"}},
               "d": decimal.Decimal("1.25")}
    props = pika.BasicProperties(content_type="text/plain", content_encoding="utf-8",
                                 headers=headers, delivery_mode=2, priority=9,
                                 correlation_id="c", reply_to="r", expiration="100000",
                                 message_id="m", timestamp=1700000000, type="t",
                                 user_id="guest", app_id="a")
    channel.basic_publish("", unique, b"b", props)
    _, got, _ = channel.basic_get(unique, auto_ack=True)
    for f in ("content_type", "content_encoding", "delivery_mode", "priority",
              "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
              "user_id", "app_id"):
        assert getattr(got, f) == getattr(props, f), f
    assert got.headers == {**headers, "s": b"x"} or got.headers == headers


def test_user_id_must_match_login(channel, unique):
    channel.queue_declare(unique, auto_delete=True)
    channel.basic_publish("", unique, b"x", pika.BasicProperties(user_id="mallory"))
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.queue_declare(unique, passive=True)
    assert (e.value.reply_code, e.value.reply_text) == (
        406, "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user "
             "was 'guest'")


# ---------------------------------------------------------------- bodies
@pytest.mark.parametrize("size", [0, 1, 4087, 4088, 4089, 131063, 131064, 131065, 300000,
                                  1 << 20])
def test_body_sizes(channel, unique, size):
    channel.queue_declare(unique, auto_delete=True)
    body = (bytes(range(251)) * (size // 251 + 1))[:size]
    channel.basic_publish("", unique, body)
    m, _, got = channel.basic_get(unique, auto_ack=True)
    assert got == body


def test_big_body_20_mib(broker, unique):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(unique, auto_delete=True)
    body = struct.pack(">Q", 12345) * (20 * 1024 * 1024 // 8)
    ch.basic_publish("", unique, body)
    _, _, got = ch.basic_get(unique, auto_ack=True)
    assert got == body
    conn.close()


def test_body_of_many_frames_raw(broker, unique):
    """A body sent in many small frames (not split by frame_max) reassembles exactly."""
    from pamqp import frame as F
    raw = RawAmqp(broker.amqp_port)
    raw.handshake()
    raw.open_channel(1)
    raw.send_frame(commands.Queue.Declare(queue=unique, auto_delete=True), 1)
    raw.expect(commands.Queue.DeclareOk)
    body = bytes(range(256)) * 4
    out = F.marshal(commands.Basic.Publish(exchange="", routing_key=unique), 1)
    out += F.marshal(ContentHeader(0, len(body), commands.Basic.Properties()), 1)
    for i in range(0, len(body), 7):
        out += F.marshal(ContentBody(body[i:i + 7]), 1)
    raw.send(out)
    raw.send_frame(commands.Basic.Get(queue=unique, no_ack=True), 1)
    raw.expect(commands.Basic.GetOk)
    _, header = raw.read_frame()
    assert header.body_size == len(body)
    _, got = raw.read_frame()
    assert got.value == body
    raw.close()


def test_over_limit_body_is_406(tmp_path, unique):
    with BrokerProcess(tmp_path, extra_args=["--max-message-size", "10000"]) as b:
        conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
        ch = conn.channel()
        ch.queue_declare(unique)
        ch.basic_publish("", unique, b"x" * 10000)   # at the limit: fine
        ch.basic_publish("", unique, b"x" * 10001)
        with pytest.raises(ChannelClosedByBroker) as e:
            ch.queue_declare(unique, passive=True)
        assert (e.value.reply_code, e.value.reply_text) == (
            406, "PRECONDITION_FAILED - message size 10001 is larger than configured max "
                 "size 10000")
        ch = conn.channel()
        assert ch.queue_declare(unique, passive=True).method.message_count == 1
        conn.close()
