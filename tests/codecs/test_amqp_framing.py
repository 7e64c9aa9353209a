"""The fast paths of warren/amqp/framing.py agree with pamqp, the codec of record.

Properties (Hypothesis): parse_publish/parse_ack decode what pamqp marshals; content_frames,
deliver_payload and basic_ack_frame produce bytes pamqp unmarshals to the same values;
FrameReader fed byte by byte yields the same frames as fed whole; random bytes raise only
the codec's own AmqpWireError subclasses (the codec knows nothing of the core).
"""

from __future__ import annotations

import struct

from hypothesis import given, settings, strategies as st
from pamqp import commands, frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from warren.amqp.framing import (FRAME_MIN_SIZE, FrameReader, basic_ack_frame,
                                 basic_nack_frame, content_frames, decode_method,
                                 deliver_payload, parse_ack, parse_content_header,
                                 parse_publish, shortstr, unvalidated)
from warren.amqp.wire_errors import AmqpWireError

SETTINGS = settings(max_examples=200, deadline=None)

# any UTF-8 shortstr (RabbitMQ accepts any name; pamqp's validate() would refuse most)
shortstrs = st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255)
channels = st.integers(1, 65535)
tags = st.integers(0, 2 ** 63 - 1)  # pamqp packs longlong signed


def _payload(method, channel=1):
    return pamqp_frame.marshal(method, channel)[7:-1]


def _frames(data: bytes):
    """Every frame pamqp finds in ``data``."""
    out = []
    while data:
        size = struct.unpack_from(">I", data, 3)[0]
        consumed, channel, frame = pamqp_frame.unmarshal(data[:size + 8])
        out.append((channel, frame))
        data = data[consumed:]
    return out


@SETTINGS
@given(shortstrs, shortstrs, st.booleans(), st.booleans())
def test_parse_publish_matches_pamqp(exchange, rk, mandatory, immediate):
    m = unvalidated(commands.Basic.Publish)(exchange=exchange, routing_key=rk,
                                            mandatory=mandatory, immediate=immediate)
    assert parse_publish(_payload(m)) == (exchange, rk, mandatory, immediate)


@SETTINGS
@given(tags, st.booleans())
def test_parse_ack_matches_pamqp(tag, multiple):
    assert parse_ack(_payload(commands.Basic.Ack(delivery_tag=tag, multiple=multiple))) == \
        (tag, multiple)


@SETTINGS
@given(channels, tags, st.booleans())
def test_ack_and_nack_frames_match_pamqp(channel, tag, multiple):
    assert basic_ack_frame(channel, tag, multiple) == pamqp_frame.marshal(
        commands.Basic.Ack(delivery_tag=tag, multiple=multiple), channel)
    assert basic_nack_frame(channel, tag, multiple) == pamqp_frame.marshal(
        commands.Basic.Nack(delivery_tag=tag, multiple=multiple, requeue=False), channel)


@SETTINGS
@given(shortstrs, tags, st.booleans(), shortstrs, shortstrs)
def test_deliver_payload_matches_pamqp(ctag, dtag, redelivered, exchange, rk):
    ours = deliver_payload(shortstr(ctag), dtag, redelivered, exchange, rk)
    theirs = _payload(unvalidated(commands.Basic.Deliver)(
        consumer_tag=ctag, delivery_tag=dtag, redelivered=redelivered, exchange=exchange,
        routing_key=rk))
    assert ours == theirs


props_strategy = st.builds(
    commands.Basic.Properties,
    content_type=st.none() | st.text(max_size=20),
    headers=st.none() | st.dictionaries(st.text(min_size=1, max_size=8),
                                        st.integers(-2 ** 31, 2 ** 31 - 1) | st.text(max_size=8)
                                        | st.booleans(), max_size=4),
    delivery_mode=st.none() | st.sampled_from([1, 2]),
    priority=st.none() | st.integers(0, 9),
    message_id=st.none() | st.text(max_size=20),
)


@SETTINGS
@given(channels, props_strategy, st.binary(max_size=20000),
       st.integers(FRAME_MIN_SIZE, 3 * FRAME_MIN_SIZE), tags)
def test_content_frames_match_pamqp(channel, props, body, frame_max, dtag):
    method = commands.Basic.GetOk(delivery_tag=dtag, redelivered=False, exchange="x",
                                  routing_key="k", message_count=0)
    header_payload = pamqp_frame.marshal(ContentHeader(0, len(body), props), channel)[7:-1]
    raw_props = header_payload[12:]
    data = b"".join(bytes(p) for p in content_frames(channel, _payload(method, channel),
                                                     raw_props, body, frame_max))
    frames = _frames(data)
    assert all(ch == channel for ch, _ in frames)
    assert isinstance(frames[0][1], commands.Basic.GetOk)
    assert frames[0][1].delivery_tag == dtag
    header = frames[1][1]
    assert isinstance(header, ContentHeader) and header.body_size == len(body)
    # byte-exact: our header frame is the one pamqp builds for the same properties
    want_header = pamqp_frame.marshal(ContentHeader(0, len(body), props), channel)
    first_len = 8 + struct.unpack_from(">I", data, 3)[0]
    assert data[first_len:first_len + len(want_header)] == want_header
    bodies = [f.value for _, f in frames[2:]]
    assert all(isinstance(f, ContentBody) for _, f in frames[2:])
    assert all(len(b) <= frame_max - 8 for b in bodies)
    assert b"".join(bodies) == body
    assert len(bodies) == (0 if not body else -(-len(body) // (frame_max - 8)))
    class_id, size, got_props = parse_content_header(header_payload)
    assert (class_id, size, got_props) == (60, len(body), raw_props)


def _stream(draw_methods):
    return b"".join(pamqp_frame.marshal(m, ch) for ch, m in draw_methods)


methods = st.lists(st.tuples(
    st.integers(0, 10),
    st.sampled_from([commands.Basic.Qos(prefetch_count=3), commands.Channel.Open(),
                     commands.Basic.Ack(delivery_tag=7), commands.Queue.Declare(queue="q"),
                     ContentBody(b"body bytes"), commands.Basic.Publish(routing_key="rk")])),
    max_size=12)


@SETTINGS
@given(methods, st.integers(1, 50))
def test_frame_reader_byte_by_byte_equals_whole(frames, chunk):
    data = _stream(frames)
    whole = FrameReader(131072).feed(data)
    reader = FrameReader(131072)
    pieces = []
    for i in range(0, len(data), chunk):
        pieces += reader.feed(data[i:i + chunk])
    assert pieces == whole
    assert len(whole) == len(frames) and reader.pending == 0
    for (ftype, ch, payload), (want_ch, m) in zip(whole, frames):
        assert ch == want_ch
        if ftype == 1:
            assert type(decode_method(payload)) is type(m)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_wire_errors(data):
    reader = FrameReader(FRAME_MIN_SIZE)
    try:
        for ftype, _ch, payload in reader.feed(data):
            if ftype == 1:
                decode_method(payload)
            elif ftype == 2:
                parse_content_header(payload)
    except AmqpWireError:
        pass


@SETTINGS
@given(st.binary(max_size=64))
def test_random_method_payloads_raise_only_wire_errors(tail):
    for index in (b"\x00\x3c\x00\x28", b"\x00\x3c\x00\x50", b"\x00\x32\x00\x0a",
                  b"\x00\x28\x00\x0a", b"\x00\x0a\x00\x0b"):
        for fn in (decode_method, parse_publish, parse_ack):
            try:
                fn(index + tail)
            except AmqpWireError:
                pass


def test_oversized_frame_is_frame_error():
    """A payload of frame_max bytes (frame_max + 8 on the wire) is allowed, as RabbitMQ's
    reader allows; one byte more is a frame error, found from the header alone."""
    reader = FrameReader(FRAME_MIN_SIZE)
    whole = struct.pack(">BHI", 3, 1, FRAME_MIN_SIZE) + b"x" * FRAME_MIN_SIZE + b"\xce"
    assert reader.feed(whole) == [(3, 1, b"x" * FRAME_MIN_SIZE)]
    try:
        reader.feed(struct.pack(">BHI", 3, 1, FRAME_MIN_SIZE + 1))
    except AmqpWireError as e:
        assert e.code == 501
        assert str(e.reply_text).endswith("{frame_too_large,4097,4088}")
    else:
        raise AssertionError("no error")


def test_bad_frame_end_is_frame_error():
    data = bytearray(pamqp_frame.marshal(commands.Basic.Qos(), 1))
    data[-1] = 0
    try:
        FrameReader(FRAME_MIN_SIZE).feed(bytes(data))
    except AmqpWireError as e:
        assert e.code == 501
    else:
        raise AssertionError("no error")


# ------------------------------------------------------------------ every length checked
# What pamqp marshals passes the length walk (field_lengths.py); every proper prefix of it
# promises a field, or bytes of one, that are not there, so each is SYNTAX_ERROR.
table_values = st.recursive(
    st.one_of(st.booleans(), st.integers(-2 ** 31, 2 ** 31 - 1), shortstrs, st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
tables = st.dictionaries(st.text(min_size=1, max_size=8), table_values, max_size=4)


@SETTINGS
@given(content_type=st.one_of(st.none(), shortstrs), headers=st.one_of(st.none(), tables),
       priority=st.one_of(st.none(), st.integers(0, 9)),
       message_id=st.one_of(st.none(), shortstrs), app_id=st.one_of(st.none(), shortstrs))
def test_property_lists_pass_and_their_prefixes_fail(content_type, headers, priority,
                                                     message_id, app_id):
    from warren.amqp.field_lengths import check_properties
    from warren.amqp.wire_errors import SyntaxError_
    props = commands.Basic.Properties(content_type=content_type, headers=headers,
                                      delivery_mode=2, priority=priority,
                                      message_id=message_id, app_id=app_id)
    raw = ContentHeader(0, 1, props).marshal()[12:]
    check_properties(raw)
    for cut in range(len(raw)):
        try:
            check_properties(raw[:cut])
        except SyntaxError_:
            continue
        raise AssertionError(f"prefix {raw[:cut]!r} of {raw!r} passed")


@SETTINGS
@given(queue=shortstrs, arguments=tables)
def test_method_tables_pass_and_their_prefixes_fail(queue, arguments):
    from warren.amqp.field_lengths import check_method
    from warren.amqp.wire_errors import SyntaxError_
    cls = commands.Queue.Declare
    method = unvalidated(cls)()
    method.queue, method.arguments = queue, arguments
    fields = pamqp_frame.marshal(method, 1)[7 + 4:-1]
    check_method(cls, fields)
    assert decode_method(pamqp_frame.marshal(method, 1)[7:-1]).arguments == arguments
    for cut in range(len(fields)):
        try:
            check_method(cls, fields[:cut])
        except SyntaxError_:
            continue
        raise AssertionError(f"prefix {fields[:cut]!r} passed")
