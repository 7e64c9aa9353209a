"""Where a stream consumer starts: the ``x-stream-offset`` argument, as RabbitMQ reads it.

``rabbit_stream_queue:parse_offset_arg``: absent means ``next``; the strings ``first``,
``last`` and ``next``; any other string is an age as ``x-max-age`` writes it (``30m``: what was
appended in the last 30 minutes); an AMQP timestamp is a point in time (seconds); an integer is
an offset. Anything else is refused, and the consume fails with 406 "failed consuming from
stream ..." naming the reason as Erlang prints it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from ..broker.arguments import field_type_name, max_age_ms


@dataclass(frozen=True, slots=True)
class OffsetSpec:
    """``kind`` is first, last, next, offset or timestamp; ``value`` the offset or ms."""

    kind: str
    value: int = 0


NEXT = OffsetSpec("next")


def parse_offset(value: Any, now_ms: int) -> OffsetSpec:
    """The start named by ``value``; ValueError carries RabbitMQ's reason text."""
    if value is None:
        return NEXT
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        if value in ("first", "last", "next"):
            return OffsetSpec(value)
        return OffsetSpec("timestamp", now_ms - max_age_ms(value))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return OffsetSpec("timestamp", int(value.timestamp()) * 1000)
    if isinstance(value, int) and not isinstance(value, bool):
        # RabbitMQ takes any integer; one before the log's start reads from the start
        return OffsetSpec("offset", value)
    raise ValueError(f"{{invalid_offset_arg,{field_type_name(value)}}}")
