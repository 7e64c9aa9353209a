"""The consumers of one queue: round-robin among those with credit, by consumer priority.

As ``rabbit_queue_consumers``: consumers with a higher ``x-priority`` get messages first while
they have credit (prefetch room); equal priorities share round-robin. With single active
consumer only the first live consumer receives; when it goes, the next takes over.
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


class ConsumerSet:
    """Ordered consumers of a queue with a round-robin cursor per priority level."""

    __slots__ = ("_levels", "_cursor", "_all", "single_active")

    def __init__(self, single_active: bool = False) -> None:
        self._levels: list[tuple[int, list[Consumer]]] = []  # highest priority first
        self._cursor: dict[int, int] = {}
        self._all: list[Consumer] = []                       # in subscription order
        self.single_active = single_active

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self):
        return iter(list(self._all))

    @property
    def active(self) -> Consumer | None:
        """The single active consumer (first subscribed), when that mode is on."""
        return self._all[0] if self._all else None

    def add(self, consumer: Consumer) -> None:
        self._all.append(consumer)
        for prio, members in self._levels:
            if prio == consumer.priority:
                members.append(consumer)
                return
        self._levels.append((consumer.priority, [consumer]))
        self._levels.sort(key=lambda level: -level[0])

    def remove(self, consumer: Consumer) -> bool:
        if consumer not in self._all:
            return False
        self._all.remove(consumer)
        for i, (prio, members) in enumerate(self._levels):
            if consumer in members:
                members.remove(consumer)
                if not members:
                    del self._levels[i]
                    self._cursor.pop(prio, None)
                break
        return True

    def next_with_credit(self) -> Consumer | None:
        """The consumer that should get the next message, or None when nobody has room."""
        if self.single_active:
            first = self._all[0] if self._all else None
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
