"""The AMQP 1.0 codec alone: the type system round-trips, performatives decode as proton
encodes them, frames split and join, and malformed bytes are a DecodeError (never another
exception, which would be a traceback in the broker)."""

from __future__ import annotations

import struct
import uuid

import proton
import pytest
from hypothesis import given, settings, strategies as st

from warren.amqp1_message.codec import (Array, Composite, Described, DecodeError, FrameReader,
                                        FrameTooLarge, Symbol, Timestamp, UByte, UInt, ULong,
                                        decode, decode_message, encode, encode_data_section,
                                        encode_frame, encode_message)

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-2**63, 2**63 - 1),
    st.integers(0, 2**32 - 1).map(UInt),
    st.integers(0, 2**64 - 1).map(ULong),
    st.integers(0, 255).map(UByte),
    st.integers(-2**63, 2**63 - 1).map(Timestamp),
    st.floats(allow_nan=False),
    st.text(max_size=300),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=20).map(Symbol),
    st.binary(max_size=300),
    st.uuids(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers(-5, 5)), inner, max_size=5),
        st.builds(Described, st.integers(0x1000, 0x2000).map(ULong), inner)),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(values)
def test_values_round_trip(value):
    back = decode(encode(value))
    assert back == value
    assert encode(back) == encode(value)     # the same AMQP types (a plain int is a long)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_decode_error(data):
    try:
        decode(data)
    except DecodeError:
        pass


def test_symbol_array_round_trips():
    value = Array(0xa3, [Symbol("a"), Symbol("bb")])
    back = decode(encode(value))
    assert back == value and back.code == 0xa3


def test_an_array_of_maps_or_lists_shares_the_32_bit_constructor():
    # an element that fits the compact form is widened: proton reads every element
    value = Array(0xd1, [{Symbol("a"): 1}, {Symbol("b"): "x" * 300}, {}])
    data = encode(value)
    back = decode(data)
    assert back == value and back.code == 0xd1
    got = proton.Data()
    got.decode(data)
    got.next()
    assert list(got.get_py_array().elements) == [{"a": 1}, {"b": "x" * 300}, {}]
    assert decode(encode(Array(0xd0, [[], [1, "two"]]))) == [[], [1, "two"]]


def test_open_as_proton_encodes_it():
    data = proton.Data()
    data.put_described()
    data.enter()
    data.put_ulong(0x10)
    data.put_list()
    data.enter()
    data.put_string("container")
    data.put_string("host")
    data.put_uint(65536)
    data.exit()
    data.exit()
    value = decode(data.encode())
    assert value == Composite("open", container_id="container", hostname="host",
                              max_frame_size=UInt(65536))


def test_our_attach_is_what_proton_reads():
    attach = Composite("attach", name="link", handle=0, role=True, source=Composite(
        "source", address="/queues/q"), initial_delivery_count=0)
    data = proton.Data()
    data.decode(encode(attach))
    obj = data.get_object()
    assert obj.descriptor == 0x12
    assert obj.value[:3] == ["link", 0, True]
    assert type(obj.value[1]) is proton.uint


def test_frames_split_anywhere():
    frames = encode_frame(Composite("begin", next_outgoing_id=1, incoming_window=10,
                                    outgoing_window=10), channel=3) + \
        encode_frame(None) + encode_frame(Composite("transfer", handle=0), 3, b"payload")
    reader = FrameReader(1024)
    got = []
    for i in range(len(frames)):
        got += list(reader.feed(frames[i:i + 1]))
    assert [(f.channel, f.performative and f.performative.kind, f.payload) for f in got] == [
        (3, "begin", b""), (0, None, b""), (3, "transfer", b"payload")]


def test_frame_over_max_frame_size():
    with pytest.raises(FrameTooLarge):
        list(FrameReader(512).feed(struct.pack(">IBBH", 513, 2, 0, 0)))


@pytest.mark.parametrize("data", [
    b"\xa1\x05ab",                       # string cut short
    b"\xc0\x03\x02\x41",                 # list count beyond its size
    b"\xc1\x03\x01\x41\x41",             # map of an odd count
    b"\x00\x53\x10\xa1\x01x",            # open that is not a list
    b"\xa1\x02\xff\xfe",                 # not UTF-8
    b"\x56\x07",                         # boolean 7
    b"\xff",                             # unknown constructor
    b"\x00\x53\x12\xc0\x06\x02\xa1\x01l\xa1\x01h",   # attach whose handle is a string
    b"\x00\x53\x10\xc0\x06\x03\xa1\x01c\x40\x41",    # open whose max-frame-size is true
    b"\x00\x53\x15\xc0\x02\x01\x41",               # disposition without its first
    b"\x00\x53\x16\x45",                             # detach without its handle
])
def test_malformed_values(data):
    with pytest.raises(DecodeError):
        decode(data)


@pytest.mark.parametrize("data", [
    b"\x00\x53\x74\x45",                  # application-properties that are a list
    b"\x00\x53\x75\xa1\x01x",              # a data section that is a string
    b"\x00\x53\x99\x40",                  # a section of no known kind
    b"\x00\x53\x73\xc0\x0d\x0a" + b"\x40" * 9 + b"\xa1\x01x",   # creation-time a string
    b"\x00\x53\x75\xa0\x01x\x00\x53\x77\x40",   # a body of two kinds (data, amqp-value)
    b"\x00\x53\x77\x40\x00\x53\x77\x40",           # two amqp-values
])
def test_malformed_sections(data):
    with pytest.raises(DecodeError):
        decode_message(data)


def test_message_sections_round_trip():
    sections = {
        "header": Composite("header", durable=True, priority=UByte(4)),
        "message_annotations": {Symbol("x-opt-a"): "b"},
        "properties": Composite("properties", message_id="m1", subject="s",
                                content_type=Symbol("text/plain")),
        "application_properties": {"k": "v", "n": 3},
        "data": [b"one", b"two"],
        "footer": {Symbol("f"): 1},
    }
    assert decode_message(encode_message(sections)) == sections


def test_an_amqp_value_or_sequence_body_is_kept_as_sent():
    body = encode_message({"amqp_sequence": [1, "a"]}) + encode_message({"amqp_sequence": []})
    head = encode_message({"properties": Composite("properties", subject="s")})
    footer = encode_message({"footer": {Symbol("f"): 1}})
    sections = decode_message(head + body + footer)
    assert sections["encoded_body"] == body
    assert encode_message(sections) == head + body + footer


def test_message_as_proton_encodes_it():
    msg = proton.Message(body=b"hi", inferred=True, durable=True, properties={"k": "v"},
                         subject="s", id=uuid.UUID(int=7))
    sections = decode_message(msg.encode())
    assert sections["header"].durable is True
    assert sections["properties"].message_id == uuid.UUID(int=7)
    assert sections["application_properties"] == {"k": "v"}
    assert sections["data"] == [b"hi"]


def test_a_data_section_alone_is_what_encode_message_writes():
    for size in (0, 1, 255, 256, 70_000):
        body = bytes(i % 251 for i in range(size))
        assert encode_data_section(body) == encode_message({"data": [body]})
        assert decode_message(encode_data_section(body)) == {"data": [body]}


@given(st.lists(st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127),
                                        max_size=8).map(Symbol), scalars, max_size=3),
                min_size=1, max_size=6), st.booleans())
def test_repeated_headers_and_annotations_encode_as_their_first_time(maps, durable):
    """encode_message keeps a header's and an annotations map's encoding by their typed
    values: a later message whose values are equal but of another type (UInt 1 and ULong 1,
    True and 1, 0.0 and -0.0) still gets its own, the general encoder's."""
    for annotations in maps + maps:
        header = Composite("header", durable=durable, priority=UByte(len(annotations)))
        sections = {"header": header, "message_annotations": annotations, "data": [b"x"]}
        assert encode_message(sections) == encode(header) + encode(
            Described(ULong(0x72), annotations)) + encode_data_section(b"x")
