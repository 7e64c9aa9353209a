"""``with_int_header``: one integer header spliced into encoded AMQP properties gives what
decoding, adding the header and re-encoding gives, for every shape of property list."""

from __future__ import annotations

import pytest

from warren.amqp.properties import CODEC, with_int_header
from warren.model.message import Properties

CASES = [
    Properties(),
    Properties(delivery_mode=2),
    Properties(content_type="text/plain"),
    Properties(content_type="a", content_encoding="gzip", delivery_mode=1, priority=5),
    Properties(headers={}),
    Properties(headers={"k": "v", "n": 7, "nested": {"x": [1, "two"]}}, content_type="j",
               correlation_id="c", reply_to="r", expiration="100", message_id="m",
               timestamp=1700000000, type="t", user_id="guest", app_id="app"),
    Properties(content_encoding="e", headers={"x-delivery-count": 9}),
]


@pytest.mark.parametrize("props", CASES)
@pytest.mark.parametrize("count", [0, 1, 2 ** 40])
def test_splice_matches_decode_and_reencode(props, count):
    raw = CODEC.encode(props)
    spliced = with_int_header(raw, "x-delivery-count", count)
    assert spliced is not None
    got = CODEC.decode(spliced)
    want = props.copy()
    want.headers = {**(props.headers or {}), "x-delivery-count": count}
    assert got == want


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x00\x01\x00\x00", b"\x20\x00\x00\x00\x10",
                                 b"\x80\x00\x05ab"])
def test_bytes_it_cannot_splice_are_left_to_the_caller(raw):
    assert with_int_header(raw, "x-delivery-count", 1) is None
