"""Which class a queue is, by its ``x-queue-type``: the one place the core picks a queue type.

Classic and quorum queues are :class:`~warren.broker.queue.Queue` (warren's quorum queue is a
classic queue that counts deliveries). Other types register themselves here: streams are
``warren.stream``'s queue type, which sits above the core (it builds on ``Queue``), so the
core never imports it; the wiring (``server.py``) imports it, and with it its registration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .queue import Queue

if TYPE_CHECKING:
    from .vhost import VirtualHost


#: x-queue-type -> the class of such queues, for the types that are not the core's own
QUEUE_TYPES: dict[str, Any] = {}


def register(kind: str, queue_class: Any) -> None:
    """Make ``x-queue-type: kind`` queues instances of *queue_class* (a Queue subclass)."""
    QUEUE_TYPES[kind] = queue_class


def is_stream(arguments: dict[str, Any] | None) -> bool:
    kind = (arguments or {}).get("x-queue-type")
    return kind == "stream" or kind == b"stream"


def new_queue(vhost: "VirtualHost", name: str, *, recovered: bool = False,
              **options: Any) -> Queue:
    """A queue of the type its arguments name; ``recovered``: rebuilt from the store."""
    if is_stream(options.get("arguments")):
        stream = QUEUE_TYPES.get("stream")
        if stream is None:
            raise RuntimeError("stream queues are not available: warren.stream is not loaded")
        return stream(vhost, name, recovered=recovered, **options)
    return Queue(vhost, name, **options)
