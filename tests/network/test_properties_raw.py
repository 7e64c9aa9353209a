"""What a shovel passes on keeps the bytes it received (RawProperties, with_forward_headers).

A decoded dict cannot hold header field order, integer widths or doubles (pamqp sorts tables and
writes every float as a 32-bit ``f``); RabbitMQ's shovel passes those on exactly. Property lists
here are written byte by byte, with the types RabbitMQ and its clients use.
"""

from __future__ import annotations

import copy
import struct

import pytest

from warren.network.properties import (
    MalformedProperties,
    RawProperties,
    decode_properties,
    encode_properties,
    table_fields,
    with_forward_headers,
)


def field(name: str, tag: bytes, value: bytes) -> bytes:
    return bytes((len(name),)) + name.encode() + tag + value


def table(*fields: bytes) -> bytes:
    body = b"".join(fields)
    return struct.pack(">I", len(body)) + body


NESTED = table(field("b", b"I", struct.pack(">i", 2)), field("a", b"I", struct.pack(">i", 1)))
HEADERS = table(field("zeta", b"I", struct.pack(">i", 1)),            # 32-bit, not 'b'
                field("price", b"d", struct.pack(">d", 0.1)),          # a double
                field("nested", b"F", NESTED))
#: content_type "a/b", headers, delivery_mode 2
RAW = struct.pack(">H", 0x8000 | 0x2000 | 0x1000) + b"\x03a/b" + HEADERS + b"\x02"


def test_decoded_properties_encode_back_to_the_same_bytes():
    props = decode_properties(RAW)
    assert props["headers"]["price"] == 0.1 and props["delivery_mode"] == 2
    assert encode_properties(props) == RAW
    assert encode_properties(copy.copy(props)) == RAW
    assert encode_properties(dict(props)) != RAW      # what re-encoding would have sent


def test_any_change_forgets_the_bytes():
    for change in (lambda p: p.__setitem__("priority", 1), lambda p: p.pop("delivery_mode"),
                   lambda p: p.update(priority=1), lambda p: p.setdefault("priority", 1),
                   lambda p: p.clear(), lambda p: p["headers"].__setitem__("zeta", True),
                   lambda p: p["headers"]["nested"].pop("a"),
                   lambda p: p["headers"].__setitem__("x", [1])):
        props = decode_properties(RAW)
        change(props)
        assert props.raw is None
        assert decode_properties(encode_properties(props)) == props


def test_forward_headers_spliced_into_the_received_bytes():
    out = with_forward_headers(RAW, {"shovel-name": "s", "dest-queue": "q"}, 1700000000)
    props = decode_properties(out)
    assert props["content_type"] == "a/b" and props["delivery_mode"] == 2
    size = struct.unpack_from(">I", out, 6)[0]   # after the flags and "\x03a/b"
    fields = dict(table_fields(out[10:10 + size]))
    assert list(fields) == ["nested", "price", "x-shovelled", "x-shovelled-timestamp", "zeta"]
    assert fields["zeta"] == b"I" + struct.pack(">i", 1)           # width kept
    assert fields["price"] == b"d" + struct.pack(">d", 0.1)        # double kept
    assert fields["nested"] == b"F" + NESTED                       # nested order kept
    assert list(props["headers"]["x-shovelled"][0]) == ["shovel-name", "dest-queue"]
    again = decode_properties(with_forward_headers(out, {"shovel-name": "t"}, None))
    assert [e["shovel-name"] for e in again["headers"]["x-shovelled"]] == ["t", "s"]


def test_forward_headers_added_where_there_were_none():
    out = with_forward_headers(b"\x10\x00\x02", {"shovel-name": "s"}, None)
    assert decode_properties(out) == {"headers": {"x-shovelled": [{"shovel-name": "s"}]},
                                      "delivery_mode": 2}
    assert decode_properties(with_forward_headers(b"\x00\x00", None, 5)) == {
        "headers": {"x-shovelled-timestamp": 5}}


@pytest.mark.parametrize("raw", [b"", b"\x20\x00", b"\x20\x00\x00\x00\x00\x09\x01aZ1234567",
                                 b"\x20\x00\x00\x00\x00\x10\x01aS\x00\x00\x00\xff"])
def test_malformed_property_lists_are_refused_cleanly(raw):
    with pytest.raises(MalformedProperties):
        with_forward_headers(raw, {"shovel-name": "s"}, None)


def test_plain_dicts_still_encode():
    assert encode_properties({"delivery_mode": 2}) == b"\x10\x00\x02"
    assert isinstance(decode_properties(b"\x00\x00"), RawProperties)
