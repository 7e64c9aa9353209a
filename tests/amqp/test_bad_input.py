"""Malformed input over raw sockets: each gets RabbitMQ's close, and nobody else suffers.

After every case the module's broker must still serve a new client and still hold the durable
persistent message stored when the module started (``stored``).
"""

from __future__ import annotations

import struct

import pika
import pytest
from pamqp import commands, frame as F
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from tests.amqp.raw_client import Closed, RawAmqp, frame_bytes

KEEP = "t.bad_input.keep"


@pytest.fixture(scope="module")
def stored(broker):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(KEEP, durable=True)
    ch.queue_purge(KEEP)
    ch.basic_publish("", KEEP, b"precious", pika.BasicProperties(delivery_mode=2))
    conn.close()
    return KEEP


@pytest.fixture
def raw(broker, stored):
    r = RawAmqp(broker.amqp_port)
    yield r
    r.close()
    # the broker still serves others, and the stored message is still there
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ok = conn.channel().queue_declare(stored, durable=True, passive=True)
    assert ok.method.message_count == 1
    conn.close()


def _opened(raw, channel=1):
    raw.handshake()
    raw.open_channel(channel)


def _closed_with(raw, code, text=None, prefix=None):
    close = raw.expect_connection_close()
    assert close.reply_code == code, close.reply_text
    if text is not None:
        assert close.reply_text == text
    if prefix is not None:
        assert close.reply_text.startswith(prefix), close.reply_text
    raw.wait_closed()
    return close


def test_garbage_before_handshake(raw):
    raw.send(b"\x00\xffgarbage garbage garbage")
    assert raw.read_exact(8) == b"AMQP\x00\x00\x09\x01"
    raw.wait_closed()


def test_garbage_after_handshake_is_frame_error(raw):
    raw.handshake()
    raw.send(b"\xff" * 64)
    _closed_with(raw, 501, prefix="FRAME_ERROR - ")


def test_unknown_frame_type_is_501(raw):
    _opened(raw)
    raw.send(frame_bytes(9, 1, b"abc"))
    _closed_with(raw, 501, text="FRAME_ERROR - type 9, all octets = [97, 98, 99]: "
                                "unknown_frame")


def test_truncated_frame_then_hang_up(raw):
    _opened(raw)
    whole = F.marshal(commands.Queue.Declare(queue="t.bad.trunc"), 1)
    raw.send(whole[:len(whole) // 2])
    raw.close()


def test_truncated_method_payload_is_syntax_error(raw):
    _opened(raw)
    payload = struct.pack(">HH", 50, 10) + b"\x00"  # queue.declare cut short
    raw.send(frame_bytes(1, 1, payload))
    close = raw.expect_connection_close()
    assert close.reply_code == 502 and close.reply_text.startswith("SYNTAX_ERROR - ")
    raw.wait_closed()


def test_oversized_frame_is_501(raw):
    raw.handshake(frame_max=4096)
    raw.open_channel(1)
    raw.send(frame_bytes(3, 1, b"x" * 5000))
    _closed_with(raw, 501, prefix="FRAME_ERROR - ")


def test_oversized_frame_header_alone_is_501(raw):
    """The size is checked from the 7-byte header, before the payload arrives."""
    raw.handshake(frame_max=4096)
    raw.send(struct.pack(">BHI", 1, 0, 1 << 30))
    _closed_with(raw, 501, prefix="FRAME_ERROR - ")


def test_bad_frame_end_byte_is_501(raw):
    _opened(raw)
    raw.send(frame_bytes(1, 1, F.marshal(commands.Basic.Qos(), 1)[7:-1], end=0x00))
    _closed_with(raw, 501, prefix="FRAME_ERROR - ")


def test_frame_on_unopened_channel_is_504(raw):
    raw.handshake()
    raw.send_frame(commands.Queue.Declare(queue="t.bad.x"), 5)
    _closed_with(raw, 504, text="CHANNEL_ERROR - expected 'channel.open' on channel 5, got "
                                "'Queue.Declare'")


def test_body_on_unopened_channel_is_504(raw):
    raw.handshake()
    raw.send_frame(ContentBody(b"x"), 3)
    _closed_with(raw, 504)


def test_second_channel_open_is_504(raw):
    _opened(raw)
    raw.send_frame(commands.Channel.Open(), 1)
    _closed_with(raw, 504, text="CHANNEL_ERROR - second 'channel.open' seen")


def test_content_body_without_header_is_505(raw):
    _opened(raw)
    raw.send(F.marshal(commands.Basic.Publish(exchange="", routing_key="x"), 1)
             + F.marshal(ContentBody(b"body"), 1))
    _closed_with(raw, 505, text="UNEXPECTED_FRAME - expected content header for class 60, "
                                "got non content header frame instead")


def test_content_body_without_publish_is_505(raw):
    _opened(raw)
    raw.send_frame(ContentBody(b"body"), 1)
    _closed_with(raw, 505, text="UNEXPECTED_FRAME - expected method frame, got non method "
                                "frame instead")


def test_content_header_without_publish_is_505(raw):
    _opened(raw)
    raw.send_frame(ContentHeader(0, 4, commands.Basic.Properties()), 1)
    _closed_with(raw, 505, text="UNEXPECTED_FRAME - expected method frame, got non method "
                                "frame instead")


def test_method_inside_content_is_505(raw):
    _opened(raw)
    raw.send(F.marshal(commands.Basic.Publish(exchange="", routing_key="x"), 1)
             + F.marshal(ContentHeader(0, 10, commands.Basic.Properties()), 1)
             + F.marshal(commands.Basic.Qos(), 1))
    _closed_with(raw, 505)


def test_body_longer_than_header_says_is_505(raw):
    _opened(raw)
    raw.send(F.marshal(commands.Basic.Publish(exchange="", routing_key="x"), 1)
             + F.marshal(ContentHeader(0, 2, commands.Basic.Properties()), 1)
             + F.marshal(ContentBody(b"four"), 1))
    _closed_with(raw, 505)


def test_non_connection_method_on_channel_0(raw):
    raw.handshake()
    raw.send_frame(commands.Queue.Declare(queue="t.bad.ch0"), 0)
    # rabbit_reader:handle_method0: channel_error
    _closed_with(raw, 504, text="CHANNEL_ERROR - unexpected method in connection state "
                                "running")


def test_body_frame_on_channel_0_is_505(raw):
    raw.handshake()
    raw.send_frame(ContentBody(b"x"), 0)
    _closed_with(raw, 505)


def test_unknown_class_and_method(raw):
    _opened(raw)
    raw.send(frame_bytes(1, 1, struct.pack(">HH", 99, 7)))
    close = raw.expect_connection_close()
    assert close.reply_code in (503, 540)
    assert close.reply_text.startswith(("COMMAND_INVALID - ", "NOT_IMPLEMENTED - "))
    raw.wait_closed()


def test_heartbeat_on_nonzero_channel_is_501(raw):
    _opened(raw)
    raw.send(frame_bytes(8, 1, b""))
    close = raw.expect_connection_close()
    assert close.reply_code in (501, 505)
    raw.wait_closed()


def test_handshake_method_out_of_order(raw):
    raw.send(b"AMQP\x00\x00\x09\x01")
    raw.expect(commands.Connection.Start)
    raw.send_frame(commands.Connection.Open(virtual_host="/"))
    with pytest.raises((Closed, ConnectionResetError)):
        while True:
            _, frame = raw.read_frame()
            if isinstance(frame, commands.Connection.Close):
                assert frame.reply_code in (503, 504)
                raw.send_frame(commands.Connection.CloseOk())


def test_immediate_publish_is_540(raw):
    _opened(raw)
    raw.send(F.marshal(commands.Basic.Publish(exchange="", routing_key="x", immediate=True),
                       1))
    _closed_with(raw, 540, text="NOT_IMPLEMENTED - immediate=true")


def test_channel_error_leaves_connection_usable(raw):
    _opened(raw)
    raw.open_channel(2)
    raw.send_frame(commands.Queue.Declare(queue="t.bad.missing", passive=True), 1)
    ch, close = raw.read_method()
    assert ch == 1 and isinstance(close, commands.Channel.Close) and close.reply_code == 404
    raw.send_frame(commands.Channel.CloseOk(), 1)
    raw.send_frame(commands.Queue.Declare(queue="", exclusive=True), 2)
    ch, ok = raw.read_method()
    assert ch == 2 and isinstance(ok, commands.Queue.DeclareOk)
    raw.open_channel(1)  # the number can be reused after close-ok


def _nested_table(depth: int) -> bytes:
    """A field table holding a table holding a table ... ``depth`` levels deep, by hand."""
    table = b""
    for _ in range(depth):
        entry = b"\x01k" + b"F" + struct.pack(">I", len(table)) + table
        table = entry
    return struct.pack(">I", len(table)) + table


def test_deeply_nested_client_properties_are_502_without_traceback(raw, broker):
    raw.send(b"AMQP\x00\x00\x09\x01")
    raw.expect(commands.Connection.Start)
    args = (_nested_table(560) + b"\x05PLAIN" + struct.pack(">I", 12) + b"\x00guest\x00guest"
            + b"\x05en_US")
    payload = struct.pack(">HH", 10, 11) + args
    raw.send(frame_bytes(1, 0, payload))
    _closed_with(raw, 502, prefix="SYNTAX_ERROR")
    assert not any("RecursionError" in line or "Traceback" in line for line in broker.lines)


def _no_traceback(broker):
    assert not any("Traceback" in line for line in broker.lines)


def _declare_with_arguments(table: bytes, queue: bytes = b"t.bad.args") -> bytes:
    """queue.declare (ticket 0, ``queue``, no flags) whose arguments are ``table`` as sent."""
    return (struct.pack(">HHH", 50, 10, 0) + bytes((len(queue),)) + queue + b"\x00" + table)


def _table(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack(">I", len(body)) + body


def test_table_string_longer_than_its_table_is_502(raw, broker):
    # the string claims 40 bytes; its table holds 3 of them, and 40 more follow the table
    bad = _table(b"\x01kS" + struct.pack(">I", 40) + b"abc") + b"z" * 40
    _opened(raw)
    raw.send(frame_bytes(1, 1, _declare_with_arguments(bad)))
    _closed_with(raw, 502, prefix="SYNTAX_ERROR - ")
    _no_traceback(broker)


def test_table_string_longer_than_the_frame_is_502(raw, broker):
    _opened(raw)
    bad = _table(b"\x01kS" + struct.pack(">I", 1 << 20) + b"abc")
    raw.send(frame_bytes(1, 1, _declare_with_arguments(bad)))
    _closed_with(raw, 502, prefix="SYNTAX_ERROR - ")
    _no_traceback(broker)


def test_nested_table_and_array_longer_than_their_table_are_502(raw, broker):
    inner = _table(b"\x01a" + b"I" + struct.pack(">i", 1))
    # the nested table's length says 200 bytes inside a table of a dozen
    bad_table = _table(b"\x01kF" + struct.pack(">I", 200) + inner[4:]) + b"y" * 200
    bad_array = _table(b"\x01kA" + struct.pack(">I", 200) + b"I\x00\x00\x00\x01") + b"y" * 200
    for bad in (bad_table, bad_array):
        r = RawAmqp(broker.amqp_port)
        try:
            _opened(r)
            r.send(frame_bytes(1, 1, _declare_with_arguments(bad)))
            _closed_with(r, 502, prefix="SYNTAX_ERROR - ")
        finally:
            r.close()
    _no_traceback(broker)


def test_client_properties_string_past_its_table_before_login_is_502(raw, broker):
    raw.send(b"AMQP\x00\x00\x09\x01")
    raw.expect(commands.Connection.Start)
    props = _table(b"\x07productS" + struct.pack(">I", 30) + b"pika")
    args = (props + b"\x05PLAIN" + struct.pack(">I", 12) + b"\x00guest\x00guest"
            + b"\x05en_US")
    raw.send(frame_bytes(1, 0, struct.pack(">HH", 10, 11) + args))
    _closed_with(raw, 502, prefix="SYNTAX_ERROR - ")
    _no_traceback(broker)


def _content_header(raw_props: bytes, body_size: int = 4) -> bytes:
    return struct.pack(">HHQ", 60, 0, body_size) + raw_props


@pytest.mark.parametrize("raw_props", [
    # content-type and headers promised, nothing there
    b"\xa0\x00",
    # content-type complete, the headers table promised but cut off inside its length
    b"\xa0\x00\x04text\x00\x00",
    # headers whose string runs past the header table (and past the frame)
    b"\x20\x00" + struct.pack(">I", 9) + b"\x01kS" + struct.pack(">I", 500) + b"ab",
    # a timestamp promised, four of its eight bytes there
    b"\x00\x40\x00\x00\x00\x01",
], ids=["flags-only", "table-length-cut", "header-string-past-table", "timestamp-cut"])
def test_content_header_promising_missing_bytes_is_502(raw, broker, raw_props):
    _opened(raw)
    raw.send(F.marshal(commands.Basic.Publish(exchange="", routing_key=KEEP), 1)
             + frame_bytes(2, 1, _content_header(raw_props))
             + F.marshal(ContentBody(b"lost"), 1))
    _closed_with(raw, 502, prefix="SYNTAX_ERROR - malformed content header properties")
    _no_traceback(broker)
    # nothing was enqueued: the raw fixture checks KEEP still holds its one message


def test_content_header_with_every_property_is_accepted(raw, broker):
    props = commands.Basic.Properties(
        content_type="text/plain", content_encoding="utf-8",
        headers={"s": "v", "n": 1, "a": [1, "x", {"t": True}], "f": {"d": 1.5}},
        delivery_mode=1, priority=3, correlation_id="c", reply_to="r", expiration="60000",
        message_id="m", timestamp=__import__("datetime").datetime(2024, 1, 1), message_type="t",
        user_id="guest", app_id="a")
    _opened(raw)
    raw.send_frame(commands.Queue.Declare(queue="", exclusive=True), 1)
    _, ok = raw.read_method()
    raw.send(F.marshal(commands.Basic.Publish(exchange="", routing_key=ok.queue), 1)
             + F.marshal(ContentHeader(0, 2, props), 1) + F.marshal(ContentBody(b"ok"), 1))
    raw.send_frame(commands.Basic.Get(queue=ok.queue, no_ack=True), 1)
    _, got = raw.read_method()
    assert isinstance(got, commands.Basic.GetOk)
