"""Moving messages from one queue to another (the console's "move messages", ``warren ctl
move_messages``), as RabbitMQ's shovel-based move does it: republish, then forget the original.

Each ready message is enqueued on the destination *first* (written to the store when it is
persistent and the destination durable) and only then settled on the source, so a crash in
between can duplicate a message but never lose it. The copy is a new message with the same
body and properties (a new store id), keeping its exchange and routing key. Unacked messages
stay where they are. Moving stops early when the destination would refuse a message
(``x-overflow: reject-publish``), so nothing is dropped.

A move of a deep queue is long work: it goes ``SLICE`` messages per reactor turn, and a
paged-out body is read off the reactor thread (``Pager.page_in``), the move going on once it
is in (a store that cannot be read now ends the move with what was moved).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from ..model.errors import PreconditionFailed
from .paging import PageIn
from .queue import Queue

#: Messages moved per reactor turn.
SLICE = 1000


def move_messages(source: Queue, destination: Queue, count: int | None = None) -> Deferred:
    """Move up to ``count`` (all when None) ready messages: a Deferred of how many moved.

    The caller waits for ``broker.sync()`` before telling anyone the move is durable.
    """
    if source is destination:
        raise PreconditionFailed("source and destination are the same queue")
    if source.deleted or destination.deleted:
        raise PreconditionFailed("queue deleted")
    return _Move(source, destination, count).done


class _Move:
    """One move under way: its count so far, resumed a slice or a read at a time."""

    def __init__(self, source: Queue, destination: Queue, count: int | None) -> None:
        self.source = source
        self.destination = destination
        self.left = count
        self.moved = 0
        self.done: Deferred = Deferred()
        self.step()

    def step(self, _: object = None) -> None:
        source, destination = self.source, self.destination
        vhost = destination.vhost
        pager = vhost.broker.pager
        moved = 0
        waiting = False
        while not source.deleted and not destination.deleted and self.left != 0:
            if moved >= SLICE:
                vhost.broker.clock.callLater(0, self.step)
                waiting = True
                break
            entry = source.ready.peek()
            if entry is None:
                break
            if entry.message.paged:
                read = pager.page_in(entry.message, source, entry)
                if read is PageIn.PENDING:
                    pager.when_read(entry.message).addCallback(self.step)
                    waiting = True
                    break
                if read is PageIn.LOST:   # logged; dropped from the source, as delivery does
                    source._settle(source.ready.popleft())
                    continue
                if read is not PageIn.LOADED:
                    break  # the store cannot give the body back now: move what we could
            copy = entry.message.with_changes()
            if destination.would_overflow(copy):
                break
            source.ready.popleft()
            vhost._enqueue(copy, [destination])
            source._settle(entry)
            moved += 1
            if self.left is not None:
                self.left -= 1
        if moved:
            self.moved += moved
            source.vhost.broker.after_settle(source)
        if not waiting:
            self.done.callback(self.moved)
