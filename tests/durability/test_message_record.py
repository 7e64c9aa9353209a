"""A message's store record (``Message.to_record``) reads back as the message it was, whether
its header came from the per-address cache or was made afresh (long properties, a full
cache)."""

from __future__ import annotations

from warren.amqp.properties import CODEC
from warren.model import message as message_module
from warren.model.message import Message, Properties


def _roundtrip(msg: Message) -> Message:
    return Message.from_record(msg.to_record(), CODEC, msg_id=7)


def test_records_read_back_through_the_header_cache():
    long_headers = {"h": "v" * 400}      # encoded properties past the cached size
    cases = [("", "q", Properties(delivery_mode=2)),
             ("ex", "q", Properties(delivery_mode=2)),          # same key, other exchange
             ("ex", "r", Properties(delivery_mode=2)),          # other routing key
             ("ex", "r", Properties(delivery_mode=1)),          # other properties
             ("ex", "r", Properties(headers=long_headers))]
    for round_ in range(2):                                   # made, then from the cache
        for exchange, key, props in cases:
            body = f"{exchange}/{key}/{round_}".encode()
            back = _roundtrip(Message(exchange, key, body, codec=CODEC, props=props))
            assert (back.exchange, back.routing_key, back.body) == (exchange, key, body)
            assert back.properties == props


def test_full_header_cache_starts_afresh_and_stays_right():
    for i in range(message_module._HEAD_CACHE_LIMIT + 10):
        key = f"k{i}"
        back = _roundtrip(Message("", key, b"b", codec=CODEC, props=Properties()))
        assert back.routing_key == key
    assert len(message_module._HEADS) <= message_module._HEAD_CACHE_LIMIT


def test_amqp1_sections_read_back_and_leave_the_body_measured_right():
    # an AMQP 1.0 publisher's footer and annotations with no 0-9-1 form (``amqp1_sections``)
    # are kept in the record; a record without them is as before (no flag, no field)
    msg = Message("ex", "k", b"body", codec=CODEC, props=Properties(delivery_mode=2))
    plain = msg.to_record()
    msg.amqp1_sections = b"\x00Sx\xc1\x01\x00"
    record = msg.to_record()
    back = Message.from_record(record, CODEC, msg_id=7)
    assert (back.body, back.amqp1_sections, back.properties) == (
        b"body", b"\x00Sx\xc1\x01\x00", Properties(delivery_mode=2))
    assert Message.record_body_size(record) == Message.record_body_size(plain) == 4
    assert Message.from_record(plain, CODEC, msg_id=8).amqp1_sections is None
    assert plain[1] == 0 and record[1] == 1                  # the flags byte
