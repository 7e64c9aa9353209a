"""Stream filtering (RabbitMQ 3.13): a filter value per message, readers asking for some.

A publisher gives a message a filter value (AMQP 0-9-1: the ``x-stream-filter-value``
header; the Stream protocol: publish version 2). A reader names the values it wants (AMQP:
the consume arguments ``x-stream-filter`` and ``x-stream-match-unfiltered``; the Stream
protocol: the subscription properties ``filter.N`` and ``match-unfiltered``), and the stream
skips what cannot hold them without reading it from disk.

As osiris keeps a Bloom filter per chunk, the log keeps one per block of :data:`BLOCK`
consecutive offsets (``x-stream-filter-size-bytes`` big, 16 by default, 16 to 255 allowed),
in memory only (rebuilt from the records on recovery: a few bits per message), plus one bit
saying the block has messages without a value. A block whose filter cannot match is skipped
whole. What is read is then checked exactly for an AMQP 0-9-1 reader, which takes messages one
by one; a Stream protocol reader takes the block's records as one chunk, as RabbitMQ sends a
chunk whose filter matches, and filters the rest itself (rstream's ``post_filter``).
"""

from __future__ import annotations

import zlib
from typing import Any

#: offsets summarised by one Bloom filter (and the most records of a filtered chunk)
BLOCK = 256
#: RabbitMQ's default ``x-stream-filter-size-bytes`` and its bounds
DEFAULT_FILTER_BYTES = 16
MIN_FILTER_BYTES, MAX_FILTER_BYTES = 16, 255


class FilterSpec:
    """The filter values a reader asks for, and whether it takes messages without one."""

    __slots__ = ("values", "match_unfiltered")

    def __init__(self, values: list[str], match_unfiltered: bool) -> None:
        self.values = frozenset(values)
        self.match_unfiltered = match_unfiltered

    def matches(self, value: str | None) -> bool:
        return self.match_unfiltered if value is None else value in self.values


def amqp_filter(arguments: dict[str, Any]) -> FilterSpec | None:
    """``rabbit_stream_queue:filter_spec``: ``x-stream-filter`` a string or an array (its
    strings count, other items are passed over); ``x-stream-match-unfiltered`` a boolean."""
    raw = arguments.get("x-stream-filter")
    if isinstance(raw, (str, bytes)):
        values = [_text(raw)]
    elif isinstance(raw, list):
        values = [_text(v) for v in raw if isinstance(v, (str, bytes))]
    else:
        return None
    match = arguments.get("x-stream-match-unfiltered")
    return FilterSpec(values, match if isinstance(match, bool) else False)


def subscription_filter(properties: dict[str, str]) -> FilterSpec | None:
    """``rabbit_stream_utils:filter_spec``: every ``filter.*`` property is a value;
    ``match-unfiltered`` is true only as ``"true"``."""
    values = [v for k, v in properties.items() if k.startswith("filter.")]
    if not values:
        return None
    return FilterSpec(values, properties.get("match-unfiltered") == "true")


def message_filter_value(headers: dict[str, Any] | None) -> str | None:
    """An AMQP message's ``x-stream-filter-value`` header, when it is a string (RabbitMQ
    takes only a ``utf8`` value)."""
    value = (headers or {}).get("x-stream-filter-value")
    return _text(value) if isinstance(value, (str, bytes)) else None


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class BlockFilters:
    """A Bloom filter per block of offsets that holds any filtered message.

    A block never given a value has no entry (a stream that is never filtered costs
    nothing): it holds only unfiltered messages. Each entry is an int of ``bits`` filter bits
    and, above them, the bit saying the block has unfiltered messages too."""

    def __init__(self, size_bytes: int = DEFAULT_FILTER_BYTES) -> None:
        self.bits = size_bytes * 8
        self.unfiltered_bit = 1 << self.bits
        self.blocks: dict[int, int] = {}

    def _mask(self, value: str) -> int:
        raw = value.encode()
        return (1 << (zlib.crc32(raw) % self.bits)) | (1 << (zlib.adler32(raw) % self.bits))

    def add(self, offset: int, value: str | None) -> None:
        block = offset // BLOCK
        entry = self.blocks.get(block)
        if value is None:
            if entry is not None:
                self.blocks[block] = entry | self.unfiltered_bit
            return
        if entry is None:
            # messages before this one in the block had no value
            entry = self.unfiltered_bit if offset % BLOCK else 0
        self.blocks[block] = entry | self._mask(value)

    def may_match(self, block: int, spec: FilterSpec) -> bool:
        """Whether ``block`` may hold a message ``spec`` takes (a false yes now and then, as
        any Bloom filter; never a false no)."""
        entry = self.blocks.get(block)
        if entry is None:
            return spec.match_unfiltered
        if spec.match_unfiltered and entry & self.unfiltered_bit:
            return True
        for value in spec.values:
            mask = self._mask(value)
            if entry & mask == mask:
                return True
        return False

    def forget_before(self, offset: int) -> None:
        """Retention took the offsets before ``offset``."""
        first = offset // BLOCK
        for block in [b for b in self.blocks if b < first]:
            del self.blocks[block]
