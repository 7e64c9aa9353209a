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
