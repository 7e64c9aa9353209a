"""Every length in an AMQP 0-9-1 method or property list, checked against its container.

pamqp decodes a string, byte array or table by slicing, so a length that runs past the end of
its table (or of the frame) is silently cut short, or reads into the fields after it, and a
property list whose flags promise more fields than there are bytes decodes as if the missing
ones were empty. RabbitMQ matches every field against the binary of its container and refuses
such a frame; this walk does the same before pamqp decodes anything. It builds no value, so it
is cheap enough for every content header, and it bounds the nesting of tables and arrays so a
hostile client cannot make the decoder recurse without end.

Trailing bytes after the last field are not refused: RabbitMQ's property parser ignores them
too, and pamqp never reads them.
"""

from __future__ import annotations

import struct

from pamqp import base, commands

from .wire_errors import SyntaxError_

#: how deep tables and arrays may nest in a client's frame; real clients use two or three
MAX_DEPTH = 64

_LONG = struct.Struct(">I")
#: field-value type octets of a fixed size (RabbitMQ's set, with pamqp's 0x00 void)
_FIXED_VALUE = {ord("t"): 1, ord("b"): 1, ord("B"): 1, ord("s"): 2, ord("u"): 2, ord("I"): 4,
                ord("i"): 4, ord("l"): 8, ord("L"): 8, ord("f"): 4, ord("d"): 8, ord("D"): 5,
                ord("T"): 8, ord("V"): 0, 0: 0}
_SIZED_VALUE = (ord("S"), ord("x"))
_TABLE, _ARRAY = ord("F"), ord("A")
#: method-field types of a fixed size, as pamqp names them
_FIXED_FIELD = {"octet": 1, "short": 2, "long": 4, "longlong": 8, "timestamp": 8}


class _Overrun(Exception):
    """A length that runs past its container (caught and reworded by the public checks)."""


def _length(buf: bytes, off: int, end: int, what: str) -> int:
    """The 32-bit length at ``off`` and the end of what it measures, both inside ``end``."""
    if off + 4 > end:
        raise _Overrun(f"{what} length runs past the end of its container")
    stop = off + 4 + _LONG.unpack_from(buf, off)[0]
    if stop > end:
        raise _Overrun(f"{what} runs past the end of its container")
    return stop


def _table(buf: bytes, off: int, end: int, depth: int) -> int:
    stop = _length(buf, off, end, "field table")
    off += 4
    while off < stop:
        off += 1 + buf[off]
        if off > stop:
            raise _Overrun("field table key runs past the end of its table")
        off = _value(buf, off, stop, depth)
    return stop


def _array(buf: bytes, off: int, end: int, depth: int) -> int:
    stop = _length(buf, off, end, "field array")
    off += 4
    while off < stop:
        off = _value(buf, off, stop, depth)
    return stop


def _value(buf: bytes, off: int, end: int, depth: int) -> int:
    if off >= end:
        raise _Overrun("field value missing at the end of its table")
    kind = buf[off]
    off += 1
    size = _FIXED_VALUE.get(kind)
    if size is not None:
        off += size
        if off > end:
            raise _Overrun(f"field value of type '{chr(kind)}' runs past the end of its table")
        return off
    if kind in _SIZED_VALUE:
        return _length(buf, off, end, "long string")
    if kind == _TABLE or kind == _ARRAY:
        if depth >= MAX_DEPTH:
            raise _Overrun("field table nested too deeply")
        walk = _table if kind == _TABLE else _array
        return walk(buf, off, end, depth + 1)
    raise _Overrun(f"unknown field value type {kind:#04x}")


def _field(kind: str, buf: bytes, off: int, end: int) -> int:
    size = _FIXED_FIELD.get(kind)
    if size is not None:
        off += size
    elif kind == "shortstr":
        if off >= end:
            raise _Overrun("short string missing")
        off += 1 + buf[off]
    elif kind == "longstr":
        return _length(buf, off, end, "long string")
    elif kind == "table":
        return _table(buf, off, end, 0)
    if off > end:
        raise _Overrun(f"{kind} runs past the end of the frame")
    return off


_METHOD_TYPES: dict[type[base.Frame], tuple[str, ...]] = {}


def check_method(cls: type[base.Frame], fields: bytes) -> None:
    """Raise SYNTAX_ERROR when a field of method ``cls`` (arguments after class and method ids)
    runs past the frame or a value past its table."""
    kinds = _METHOD_TYPES.get(cls)
    if kinds is None:
        kinds = _METHOD_TYPES[cls] = tuple(cls.amqp_type(a) for a in cls.__slots__)
    off, end, bits = 0, len(fields), 0
    try:
        for kind in kinds:
            if kind == "bit":
                if bits == 0:   # a run of bits shares octets, eight to each
                    off += 1
                bits = (bits + 1) % 8
                continue
            bits = 0
            off = _field(kind, fields, off, end)
        if off > end:
            raise _Overrun("bit field runs past the end of the frame")
    except _Overrun as e:
        raise SyntaxError_(f"malformed {cls.name}: {e}") from None


_PROPERTY_TYPES = tuple(getattr(commands.Basic.Properties, "_" + a)
                        for a in commands.Basic.Properties.__slots__)
#: property flags -> the types of the fields they promise (at most 2**16 keys; a publisher
#: sends the same few flag words again and again, so the walk starts from a tuple)
_KINDS_BY_FLAGS: dict[int, tuple[str, ...]] = {}


def _promised(flags: int) -> tuple[str, ...]:
    kinds = _KINDS_BY_FLAGS.get(flags)
    if kinds is None:
        kinds = _KINDS_BY_FLAGS[flags] = tuple(
            kind for i, kind in enumerate(_PROPERTY_TYPES) if flags & (0x8000 >> i))
    return kinds


def check_properties(raw: bytes) -> None:
    """Raise SYNTAX_ERROR when the property flags of a basic content header promise fields
    that are not there, or a header table's value runs past its table."""
    end = len(raw)
    try:
        if end < 2:
            raise _Overrun("property flags missing")
        flags = (raw[0] << 8) | raw[1]
        off, word = 2, flags
        while word & 1:   # continuation words carry no basic property; skipped like RabbitMQ
            if off + 2 > end:
                raise _Overrun("property flags continuation missing")
            word = (raw[off] << 8) | raw[off + 1]
            off += 2
        for kind in _promised(flags):
            if kind == "shortstr":      # most properties: checked here, without a call
                if off >= end:
                    raise _Overrun("short string missing")
                off += 1 + raw[off]
                if off > end:
                    raise _Overrun("shortstr runs past the end of the frame")
            else:
                off = _field(kind, raw, off, end)
    except _Overrun as e:
        raise SyntaxError_(f"malformed content header properties: {e}") from None
