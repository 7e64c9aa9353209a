"""The consumers of one queue: round-robin among those with credit, by consumer priority.

As ``rabbit_queue_consumers``: consumers with a higher ``x-priority`` get messages first while
they have credit (prefetch room); equal priorities share round-robin. With single active
consumer only the first live consumer receives; when it goes, the next takes over.

Selective consumers (ActiveMQ's JMS selectors and message groups, used by the STOMP front end)
also implement ``accepts(queue, entry) -> bool``. While a queue has any of them it dispatches
entry by entry (:meth:`ConsumerSet.next_accepting`): an entry no consumer with credit accepts
stays in the queue, in place, for a later consumer, and the entries behind it still flow.
Consumers without ``accepts`` take anything, so plain AMQP consumers cost nothing extra.

A consumer whose ``accepts`` only arbitrates between consumers (STOMP's message groups without
a selector: a group belongs to one consumer of the queue) says so with ``arbitrates = True``.
Alone on its queue, or while no group of the queue is owned (``groups.py`` tells
:meth:`ConsumerSet.set_groups_owned`), it would accept every entry, so the queue then
dispatches the plain way and never calls it: STOMP subscriptions without a selector cost what
AMQP consumers do until a message of a group is delivered to one of several.
"""

from __future__ import annotations

from typing import Any, Protocol


class Consumer(Protocol):
    """What a front end implements to receive from a queue."""

    tag: str
    no_ack: bool
    exclusive: bool
    priority: int
    arguments: dict[str, Any]

    def has_credit(self) -> bool:
        """Room for one more delivery (prefetch, socket back-pressure)."""

    def deliver(self, queue: Any, entry: Any) -> None:
        """Hand over one entry; for ``no_ack`` consumers the queue forgets it right after."""

    def cancelled(self, queue: Any) -> None:
        """The broker ended this consumer (queue deleted): tell the client if it can hear it."""

    # Optional: ``accepts(queue, entry) -> bool``. Present (not None) makes the consumer
    # selective: the queue offers it only entries it accepts (see the module docstring).
    # Optional: ``arbitrates = True``: ``accepts`` refuses an entry only because another
    # consumer of the queue has a claim on it, so it is not asked while it is alone.


class ConsumerSet:
    """Ordered consumers of a queue with a round-robin cursor per priority level."""

    __slots__ = ("_levels", "_cursor", "members", "single_active", "selective", "sole",
                 "_filters", "_arbiters", "_groups_owned")

    def __init__(self, single_active: bool = False) -> None:
        self._levels: list[tuple[int, list[Consumer]]] = []  # highest priority first
        self._cursor: dict[int, int] = {}
        # in subscription order; read, never changed, by the queue's per-message path, which
        # tests it for emptiness without a call (``len`` of this object is a Python call)
        self.members: list[Consumer] = []
        self.single_active = single_active
        # how many consumers the queue must ask (``accepts``): read by the queue per
        # message, set by _recount from the two kinds below
        self.selective = 0
        self._filters: dict[int, Consumer] = {}      # id -> a consumer that selects
        self._arbiters: dict[int, Consumer] = {}     # id -> one that only arbitrates
        self._groups_owned = False                   # some message group is owned (groups.py)
        # the one consumer that gets everything when there is only one: the usual queue
        # asks it alone, without walking the levels (read by the queue; set here only)
        self.sole: Consumer | None = None

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self):
        return iter(list(self.members))

    @property
    def active(self) -> Consumer | None:
        """The single active consumer (first subscribed), when that mode is on."""
        return self.members[0] if self.members else None

    def add(self, consumer: Consumer) -> None:
        self.members.append(consumer)
        if getattr(consumer, "accepts", None) is not None:
            kind = self._arbiters if getattr(consumer, "arbitrates", False) else self._filters
            kind[id(consumer)] = consumer
        self._recount()
        for prio, members in self._levels:
            if prio == consumer.priority:
                members.append(consumer)
                return
        self._levels.append((consumer.priority, [consumer]))
        self._levels.sort(key=lambda level: -level[0])

    def remove(self, consumer: Consumer) -> bool:
        if consumer not in self.members:
            return False
        self.members.remove(consumer)
        # by what add recorded: a consumer's accepts may have changed since
        self._filters.pop(id(consumer), None)
        self._arbiters.pop(id(consumer), None)
        for i, (prio, members) in enumerate(self._levels):
            if consumer in members:
                members.remove(consumer)
                if not members:
                    del self._levels[i]
                    self._cursor.pop(prio, None)
                break
        self._recount()
        return True

    def set_groups_owned(self, owned: bool) -> None:
        """Some message group of the queue is owned (True) or none is any more (False)."""
        self._groups_owned = owned
        self._recount()

    def _recount(self) -> None:
        """``sole`` and ``selective`` after a change: arbiters count only beside another
        consumer and while some group is owned (else an arbiter accepts everything)."""
        members = self.members
        self.sole = members[0] if len(members) == 1 else None
        arbitrating = self._arbiters if self._groups_owned and len(members) > 1 else ()
        self.selective = len(self._filters) + len(arbitrating)

    def next_with_credit(self) -> Consumer | None:
        """The consumer that should get the next message, or None when nobody has room."""
        sole = self.sole
        if sole is not None:
            return sole if sole.has_credit() else None
        if self.single_active:
            first = self.members[0] if self.members else None
            return first if first is not None and first.has_credit() else None
        for prio, members in self._levels:
            n = len(members)
            if n == 1:
                if members[0].has_credit():
                    return members[0]
                continue
            start = self._cursor.get(prio, 0) % n
            for k in range(n):
                c = members[(start + k) % n]
                if c.has_credit():
                    self._cursor[prio] = (start + k + 1) % n
                    return c
        return None

    def any_credit(self) -> bool:
        """Whether some consumer could take a delivery now (no cursor moves)."""
        if self.single_active:
            return bool(self.members) and self.members[0].has_credit()
        for c in self.members:
            if c.has_credit():
                return True
        return False

    def next_accepting(self, queue: Any, entry: Any) -> tuple[Consumer | None, bool]:
        """(consumer for *entry*, whether any consumer has credit at all).

        The same priority and round-robin order as :meth:`next_with_credit`, skipping
        consumers whose ``accepts`` refuses the entry. ``(None, True)`` means the entry must
        wait for another consumer while later entries may still go out; ``(None, False)``
        means nobody has room and dispatch can stop.
        """
        if self.single_active or self.sole is not None:
            first = self.members[0] if self.members else None
            if first is None or not first.has_credit():
                return None, False
            accepts = getattr(first, "accepts", None)
            return (first if accepts is None or accepts(queue, entry) else None), True
        any_credit = False
        for prio, members in self._levels:
            n = len(members)
            start = self._cursor.get(prio, 0) % n
            for k in range(n):
                c = members[(start + k) % n]
                if not c.has_credit():
                    continue
                any_credit = True
                accepts = getattr(c, "accepts", None)
                if accepts is None or accepts(queue, entry):
                    self._cursor[prio] = (start + k + 1) % n
                    return c, True
        return None, any_credit
