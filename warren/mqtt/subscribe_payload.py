"""The payload of a SUBSCRIBE or UNSUBSCRIBE: its topic filters (with their options), decoded as
they are read.

A SUBSCRIBE may carry tens of thousands of filters in one packet. Decoded whole by the parser,
50,000 of them were one reactor turn of 87 ms (a string and a ``Subscription`` each), however
the session then sliced their subscription. So the parser decodes the first ``EAGER_FILTERS``
(a small SUBSCRIBE is whole, and checked whole, when parsed) and leaves the rest to
:class:`LazySubscriptions`, which decodes each filter when the session's sliced SUBSCRIBE
(``subscriptions.py``, a turn's budget at a time) comes to it. An UNSUBSCRIBE's filters are
the same: :class:`LazyTopicFilters`, read by the sliced UNSUBSCRIBE.

A fault in a filter not yet decoded (a reserved option bit, QoS 3, truncated or invalid
UTF-8) is then found when the session reaches it: the same ``MqttError`` and the same
DISCONNECT, after the filters before it were subscribed (unsubscribed). Mosquitto's
``handle__subscribe`` also adds each filter as it reads it and stops at the first malformed
one; no SUBACK goes out either way. Like the codec, no sockets, no Twisted, no broker imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Iterator

from warren.mqtt.packets import MALFORMED_PACKET, PROTOCOL_ERROR, MqttError, Subscription
from warren.mqtt.properties import WireReader

__all__ = ["EAGER_FILTERS", "LazySubscriptions", "LazyTopicFilters", "one_pass",
           "read_subscription"]

#: filters a SUBSCRIBE's parse decodes at once (about 0.1 ms of them)
EAGER_FILTERS = 64


def read_subscription(reader: WireReader, level: int) -> Subscription:
    """One topic filter and its options byte [MQTT 5.0 3.8.3], checked as the parser does:
    QoS 3 and reserved bits are malformed [MQTT-3.8.3-4], retain handling 3 a protocol
    error [MQTT 5.0 3.8.3.1]. The filter's syntax is the session's (a SUBACK code)."""
    topic_filter = reader.utf8()
    options = reader.u8()
    qos = options & 0x03
    if qos == 3:
        raise MqttError(MALFORMED_PACKET, "subscription QoS 3")  # [MQTT-3.8.3-4]
    if level == 5:
        if options & 0xC0:
            raise MqttError(MALFORMED_PACKET, "subscription options reserved bits set")
        retain_handling = (options >> 4) & 0x03
        if retain_handling == 3:
            raise MqttError(PROTOCOL_ERROR, "retain handling 3")
        return Subscription(topic_filter, qos, bool(options & 0x04), bool(options & 0x08),
                            retain_handling)
    if options & 0xFC:  # [MQTT-3.8.3-4]
        raise MqttError(MALFORMED_PACKET, "subscription reserved bits set")
    return Subscription(topic_filter, qos)


class _LazyPayload(Sequence[Any]):
    """A packet's items, those decoded when it was parsed first, the rest decoded as iteration
    reaches them (once: what is decoded is kept). Iterating is the session's way in; ``len``,
    indexing and ``==`` (a tuple of the same items is equal) decode the rest."""

    __slots__ = ("_decoded", "_reader", "_level")

    def __init__(self, decoded: list[Any], reader: WireReader, level: int) -> None:
        self._decoded = decoded
        self._reader = reader      # at the first item not decoded yet
        self._level = level

    def _read(self, reader: WireReader) -> Any:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        decoded, reader = self._decoded, self._reader
        i = 0
        while True:
            if i < len(decoded):
                yield decoded[i]
                i += 1
            elif reader.at_end():
                return
            else:
                decoded.append(self._read(reader))

    def taken(self) -> Iterator[Any]:
        """The items once, in order, none kept: each is let go once the next is asked for.
        The payload is spent then (what it had not decoded before is gone from it)."""
        decoded, self._decoded = self._decoded, []
        reader = self._reader
        while decoded:
            yield decoded.pop(0)        # the few decoded at the parse (``EAGER_FILTERS``)
        while not reader.at_end():
            yield self._read(reader)

    def _all(self) -> list[Any]:
        for _ in self:
            pass
        return self._decoded

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, list, _LazyPayload)):
            return tuple(self._all()) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._all()))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self._decoded)} decoded,"
                f" more: {not self._reader.at_end()})")


class LazySubscriptions(_LazyPayload):
    """A SUBSCRIBE's filters and their options (``Subscription``), checked as the parser
    checks them (``read_subscription``)."""

    __slots__ = ()

    def _read(self, reader: WireReader) -> Subscription:
        return read_subscription(reader, self._level)


class LazyTopicFilters(_LazyPayload):
    """An UNSUBSCRIBE's topic filters (strings: valid UTF-8 without U+0000)."""

    __slots__ = ()

    def _read(self, reader: WireReader) -> str:
        return reader.utf8()


def one_pass(items: Sequence[Any]) -> Iterator[Any]:
    """An iterator over a SUBSCRIBE's or UNSUBSCRIBE's items for the session's one pass over
    them, which keeps none of a lazy payload's (``taken``): kept, a 50,000-filter SUBSCRIBE's
    decoded ``Subscription`` objects were all freed in the step that ended it (3.5 ms of
    CPU on a quiet machine), an UNSUBSCRIBE's filter strings 1 ms; let go as they are done,
    each goes in its own slice."""
    return items.taken() if isinstance(items, _LazyPayload) else iter(items)
