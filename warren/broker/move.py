"""Moving messages from one queue to another (the console's "move messages", ``warren ctl
move_messages``), as RabbitMQ's shovel-based move does it: republish, then forget the original.

Each ready message is enqueued on the destination *first* (written to the store when it is
persistent and the destination durable) and only then settled on the source, so a crash in
between can duplicate a message but never lose it. The copy is a new message with the same
body and properties (a new store id), keeping its exchange and routing key. Unacked messages
stay where they are. Moving stops early when the destination would refuse a message
(``x-overflow: reject-publish``), so nothing is dropped.
"""

from __future__ import annotations

from ..model.errors import PreconditionFailed
from .paging import PageIn
from .queue import Queue


def move_messages(source: Queue, destination: Queue, count: int | None = None) -> int:
    """Move up to ``count`` (all when None) ready messages; returns how many moved.

    The caller waits for ``broker.sync()`` before telling anyone the move is durable.
    """
    if source is destination:
        raise PreconditionFailed("source and destination are the same queue")
    if source.deleted or destination.deleted:
        raise PreconditionFailed("queue deleted")
    moved = 0
    vhost = destination.vhost
    while count is None or moved < count:
        entry = source.ready.peek()
        if entry is None:
            break
        if entry.message.paged:
            if vhost.broker.pager.page_in(entry.message, source, entry) is not PageIn.LOADED:
                break  # the store cannot give the body back now: move what we could
        copy = entry.message.with_changes()
        if destination.would_overflow(copy):
            break
        source.ready.popleft()
        vhost._enqueue(copy, [destination])
        source._settle(entry)
        moved += 1
    if moved:
        source.vhost.broker.after_settle(source)
    return moved
