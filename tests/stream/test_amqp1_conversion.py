"""The conversion of other protocols' stream messages to AMQP 1.0, without a broker: the
encoding made of a cached prefix and the body's data section is the one the general mapping
makes, for every kind of properties, the first time and from the cache."""

from __future__ import annotations

import pytest

from warren.amqp.properties import CODEC
from warren.amqp1_message.codec import encode_message
from warren.amqp1_message.mapping import sections_for
from warren.model.message import Message, Properties
from warren.stream.amqp1_conversion import as_amqp1

PROPERTIES = [
    Properties(),
    Properties(delivery_mode=2),
    Properties(delivery_mode=2, message_id="m-1", correlation_id="c-1",
               content_type="text/plain", priority=3, expiration="5000", type="kind",
               timestamp=1_700_000_000, headers={"colour": "blue", "n": 1, "x-tag": "t"}),
    Properties(type="amqp-1.0"),   # a body that may hold AMQP 1.0 body sections
]


@pytest.mark.parametrize("props", PROPERTIES)
@pytest.mark.parametrize("body", [b"", b"x" * 100, b"y" * 1000,
                                  b"\x00\x53\x77\xa1\x02hi"])   # an amqp-value section
def test_as_amqp1_is_the_mapping_encoded(props, body):
    record = Message("ex", "rk", body, codec=CODEC, props=props).to_record()
    expected = encode_message(sections_for(props, body, False, "ex", "rk", None))
    assert as_amqp1(record, CODEC) == expected
    assert as_amqp1(record, CODEC) == expected   # again, from the prefix cache


def test_kept_amqp1_sections_are_encoded_in_full():
    kept = encode_message({"message_annotations": {"custom": 1}, "footer": {"f": 2}})
    message = Message("ex", "rk", b"body", codec=CODEC, props=Properties(delivery_mode=2))
    message.amqp1_sections = kept
    expected = encode_message(sections_for(message.properties, b"body", False, "ex", "rk",
                                           kept))
    assert as_amqp1(message.to_record(), CODEC) == expected
