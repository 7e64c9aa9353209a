"""The publish path's sections (the usual lone body read without the general walk) and its
cached properties (``received_properties``, keyed by the bytes of the
sections before the body) are exactly what ``properties_from`` makes of a message decoded
whole, the first time and from the cache, for messages python-qpid-proton encodes with
varied headers, properties, annotations and bodies, and with a section repeated after the
body (which must not be answered from the cache of the same prefix)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from proton import Message, symbol, ubyte

from tests.amqp1.proton_raw import section
from warren.amqp1_message.codec import decode_message, decode_received
from warren.amqp1_message.mapping import properties_from, received_properties

_text = st.text(max_size=20)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**31, 2**31 - 1), _text)


@st.composite
def messages(draw) -> bytes:
    message = Message(body=draw(st.one_of(st.binary(max_size=300), st.text(max_size=300),
                                          st.dictionaries(_text, _scalar, max_size=2))))
    message.inferred = draw(st.booleans())   # a binary body in a data section
    message.durable = draw(st.booleans())
    message.priority = draw(st.integers(0, 9))
    message.ttl = draw(st.sampled_from([0, 1.5, 60]))
    message.id = draw(st.one_of(st.none(), _text, st.integers(0, 2**63)))
    message.correlation_id = draw(st.one_of(st.none(), _text, st.binary(max_size=8)))
    message.reply_to = draw(st.one_of(st.none(), st.just("/queues/r"), st.just("plain")))
    message.content_type = draw(st.one_of(st.none(), st.just("text/plain")))
    message.subject = draw(st.one_of(st.none(), _text))
    message.user_id = draw(st.one_of(st.just(b""), st.just(b"guest")))
    message.group_id = draw(st.one_of(st.none(), _text))
    message.creation_time = draw(st.one_of(st.just(0), st.just(1700000000.5)))
    message.properties = draw(st.dictionaries(_text, _scalar, max_size=3))
    annotations = draw(st.dictionaries(
        st.sampled_from(["x-opt-a", "x-basic-type", "x-basic-delivery-mode", "x-cc", "vendor"]),
        st.one_of(_scalar, st.lists(_text, max_size=2)), max_size=3))
    if "x-basic-delivery-mode" in annotations:
        annotations["x-basic-delivery-mode"] = ubyte(2)
    message.annotations = {symbol(k): v for k, v in annotations.items()}
    data = bytes(message.encode())
    if draw(st.booleans()):     # a section again after the body: a later one wins
        data += section(0x70, [draw(st.booleans()), ubyte(draw(st.integers(0, 9)))])
    return data


@settings(max_examples=200, deadline=None)
@given(messages())
def test_cached_properties_equal_those_of_a_whole_decode(data):
    expected = properties_from(decode_message(data))
    for _ in range(2):    # computed, then from the cache
        sections, prefix = decode_received(data)
        assert sections == decode_message(data)
        assert received_properties(sections, prefix) == expected
