"""Message properties as a plain ``dict`` for bridges, to and from AMQP content headers.

Keys are the AMQP 0-9-1 names (``content_type``, ``content_encoding``, ``headers``,
``delivery_mode``, ``priority``, ``correlation_id``, ``reply_to``, ``expiration``,
``message_id``, ``timestamp`` as integer seconds, ``type``, ``user_id``, ``app_id``,
``cluster_id``); an absent property is an absent key. A shovel passes a delivery's dict on
untouched or adds a header to it (``x-shovelled``). pamqp's ``Basic.Properties`` is not the
public form because its constructor refuses values RabbitMQ carries (delivery_mode 3, a
cluster_id) and it cannot re-encode the byte arrays it decodes.
"""

from __future__ import annotations

import copy
import struct
from datetime import UTC, datetime
from typing import Any, Callable

from pamqp import commands
from pamqp import exceptions as pamqp_exceptions
from pamqp.encode import encode_table_value
from pamqp.header import ContentHeader

from ..amqp_table import encodable

PROPERTY_NAMES = ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
                  "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                  "type", "user_id", "app_id", "cluster_id")


class MalformedProperties(ValueError):
    """A content header's property list that does not decode."""


class RawProperties(dict):
    """Decoded properties that remember the bytes they came from (``raw``).

    Decoding loses what a dict cannot hold: the order of header table fields (pamqp sorts
    them when encoding), the width of integers (``b``/``s``/``I``/``l``) and doubles (pamqp
    encodes every float as a 32-bit ``f``). A shovel that passes a message on unchanged must
    publish exactly what it received, as RabbitMQ's shovel does: :func:`encode_properties`
    returns ``raw`` as it is. Any change forgets ``raw``: through the dict's own methods at
    once, and a change inside the header table when ``raw`` is next read (the headers are
    compared, types included, with a copy taken when ``raw`` was set). ``dict(...)`` of it is
    a plain dict.
    """

    __slots__ = ("_headers", "_raw")
    _raw: bytes | None
    _headers: Any   # a deep copy of the "headers" table when raw was set (any AMQP values)

    def __init__(self, *args: Any, raw: bytes | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw = raw

    @property
    def raw(self) -> bytes | None:
        if self._raw is not None and not _same(self.get("headers"), self._headers):
            self._raw = self._headers = None
        return self._raw

    @raw.setter
    def raw(self, value: bytes | None) -> None:
        self._raw = value
        self._headers = copy.deepcopy(self.get("headers")) if value is not None else None

    @staticmethod
    def _changed(name: str) -> Callable[..., Any]:  # builds the mutating methods below
        def method(self: RawProperties, *args: Any, **kwargs: Any) -> Any:
            self._raw = self._headers = None
            return getattr(dict, name)(self, *args, **kwargs)
        method.__name__ = name
        return method

    __setitem__ = _changed("__setitem__")
    __delitem__ = _changed("__delitem__")
    __ior__ = _changed("__ior__")
    update = _changed("update")
    pop = _changed("pop")
    popitem = _changed("popitem")
    setdefault = _changed("setdefault")
    clear = _changed("clear")
    del _changed

    def copy(self) -> RawProperties:
        return RawProperties(self, raw=self.raw)

    def __reduce__(self):
        return (RawProperties, (dict(self),), {"raw": self.raw})

    def __setstate__(self, state: dict) -> None:
        self.raw = state.get("raw")


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types (``1``, ``1.0`` and ``True`` differ), dicts in order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def decode_properties(raw: bytes) -> RawProperties:
    """Content-header property list -> dict with AMQP names (and the bytes, see RawProperties)."""
    try:
        offset, flags = ContentHeader._get_flags(raw)
        p = commands.Basic.Properties()
        p.unmarshal(flags, raw[offset:])
    except (struct.error, ValueError, UnicodeDecodeError, TypeError, IndexError, KeyError,
            pamqp_exceptions.PAMQPException) as e:
        raise MalformedProperties(f"malformed content header properties: {e}") from None
    out = {}
    for name in PROPERTY_NAMES:
        value = getattr(p, "message_type" if name == "type" else name)
        if value is None or (value == "" and name == "cluster_id"):
            continue
        if name == "timestamp" and isinstance(value, datetime):
            value = int(value.replace(tzinfo=value.tzinfo or UTC).timestamp())
        out[name] = value
    return RawProperties(out, raw=bytes(raw))


def encode_properties(props: dict | None) -> bytes:
    """dict with AMQP names -> content-header property list (unknown keys are an error)."""
    if isinstance(props, RawProperties) and props.raw is not None:
        return props.raw
    if not props:
        return b"\x00\x00"
    unknown = set(props) - set(PROPERTY_NAMES)
    if unknown:
        raise ValueError(f"unknown message properties: {sorted(unknown)}")
    # attributes are set one by one: the constructor runs pamqp's client-side validate(),
    # which refuses values RabbitMQ carries (delivery_mode 0 or 3, a cluster_id)
    p = commands.Basic.Properties()
    headers = None
    for name, value in props.items():
        if value is None:
            continue
        if name == "timestamp" and isinstance(value, (int, float)):
            value = datetime.fromtimestamp(value, tz=UTC)
        elif name == "headers":
            headers = value
            continue
        setattr(p, "message_type" if name == "type" else name, value)
    raw = p.marshal()
    if headers is None:
        return raw
    # the header table is ours, not pamqp's: pamqp sorts tables and writes floats as 32 bits
    return _set_headers(raw, _table(headers))


def _table(value: dict) -> bytes:
    """A field table in the dict's order, floats as doubles (``d``), as RabbitMQ does."""
    return _ordered_table([(str(k), _value(v)) for k, v in value.items()])


def _value(value: Any) -> bytes:
    if isinstance(value, dict):
        return b"F" + _table(value)
    if isinstance(value, (list, tuple)):
        items = b"".join(_value(v) for v in value)
        return b"A" + struct.pack(">I", len(items)) + items
    if isinstance(value, float):
        return b"d" + struct.pack(">d", value)
    try:
        return encode_table_value(encodable(value))
    except (TypeError, ValueError) as e:
        raise ValueError(f"header value {value!r} cannot be encoded: {e}") from None


def _set_headers(raw: bytes, table: bytes) -> bytes:
    """Property list ``raw`` (no headers in it) with the encoded header ``table`` put in."""
    flags = struct.unpack_from(">H", raw, 0)[0]
    i = 2
    for flag in _BEFORE_HEADERS:
        if flags & flag:
            i += 1 + raw[i]
    return struct.pack(">H", flags | _HEADERS_FLAG) + raw[2:i] + table + raw[i:]



# ------------------------------------------------------------------ header splicing
#: field value types of AMQP 0-9-1 tables as RabbitMQ writes them: fixed sizes, and the four
#: that carry a 32-bit length (long string, byte array, table, array)
_FIXED_SIZE = {b"t": 1, b"b": 1, b"B": 1, b"s": 2, b"u": 2, b"I": 4, b"i": 4, b"l": 8,
               b"L": 8, b"f": 4, b"d": 8, b"D": 5, b"T": 8, b"V": 0}
_LENGTH_PREFIXED = (b"S", b"x", b"F", b"A")
_HEADERS_FLAG = 0x2000
_BEFORE_HEADERS = (0x8000, 0x4000)   # content_type, content_encoding: short strings


def table_fields(table: bytes) -> list[tuple[str, bytes]]:
    """A field table's content (without its length) -> [(name, type tag + value bytes)],
    in wire order; values stay as they were encoded."""
    out = []
    i = 0
    try:
        while i < len(table):
            n = table[i]
            name = table[i + 1:i + 1 + n].decode()
            i += 1 + n
            start, kind = i, table[i:i + 1]
            i += 1
            if kind in _FIXED_SIZE:
                i += _FIXED_SIZE[kind]
            elif kind in _LENGTH_PREFIXED:
                i += 4 + struct.unpack_from(">I", table, i)[0]
            else:
                raise MalformedProperties(f"unknown field type {kind!r} in a table")
            if i > len(table):
                raise MalformedProperties("table field runs past the table's end")
            out.append((name, table[start:i]))
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise MalformedProperties(f"malformed table: {e}") from None
    return out


def _ordered_table(fields: list[tuple[str, bytes]]) -> bytes:
    body = b"".join(bytes((len(k.encode()),)) + k.encode() + v for k, v in fields)
    return struct.pack(">I", len(body)) + body


def with_forward_headers(raw: bytes, entry: dict[str, str] | None,
                         timestamp: int | None) -> bytes:
    """``raw`` (a property list) with an ``x-shovelled`` entry put first in that header's array
    and/or ``x-shovelled-timestamp`` set, the way RabbitMQ's shovel writes them: the top-level
    header table sorted by name, every other field's bytes (order of nested tables, integer
    widths, doubles) and every other property as they were."""
    try:
        return _with_forward_headers(raw, entry, timestamp)
    except (IndexError, struct.error) as e:
        raise MalformedProperties(f"malformed properties: {e}") from None


def _with_forward_headers(raw: bytes, entry: dict[str, str] | None,
                          timestamp: int | None) -> bytes:
    flags = struct.unpack_from(">H", raw, 0)[0]
    if flags & 1:
        raise MalformedProperties("more than one property flags word")
    i = 2
    for flag in _BEFORE_HEADERS:
        if flags & flag:
            i += 1 + raw[i]
    if flags & _HEADERS_FLAG:
        size = struct.unpack_from(">I", raw, i)[0]
        fields = table_fields(raw[i + 4:i + 4 + size])
        end = i + 4 + size
    else:
        fields, end = [], i
    current = dict(fields)
    if entry is not None:
        ours = b"F" + _ordered_table([(k, b"S" + struct.pack(">I", len(v.encode())) + v.encode())
                                      for k, v in entry.items()])
        previous = current.get("x-shovelled", b"")
        items = ours + (previous[5:] if previous[:1] == b"A" else b"")
        current["x-shovelled"] = b"A" + struct.pack(">I", len(items)) + items
    if timestamp is not None:
        current["x-shovelled-timestamp"] = b"l" + struct.pack(">q", timestamp)
    table = _ordered_table(sorted(current.items(), key=lambda kv: kv[0].encode()))
    return struct.pack(">H", flags | _HEADERS_FLAG) + raw[2:i] + table + raw[end:]
