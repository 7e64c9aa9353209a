"""Which class a queue is, by its ``x-queue-type``: the one place the core picks a queue type.

Classic and quorum queues are :class:`~warren.broker.queue.Queue` (warren's quorum queue is a
classic queue that counts deliveries); streams are ``warren.stream``'s queue type, imported
only when a stream is declared or recovered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .queue import Queue

if TYPE_CHECKING:
    from .vhost import VirtualHost


def is_stream(arguments: dict[str, Any] | None) -> bool:
    kind = (arguments or {}).get("x-queue-type")
    return kind == "stream" or kind == b"stream"


def new_queue(vhost: "VirtualHost", name: str, *, recovered: bool = False,
              **options: Any) -> Queue:
    """A queue of the type its arguments name; ``recovered``: rebuilt from the store."""
    if is_stream(options.get("arguments")):
        from ..stream.queue import StreamQueue
        return StreamQueue(vhost, name, recovered=recovered, **options)
    return Queue(vhost, name, **options)
