"""Redelivery back-off: a returned message waits before it is deliverable again.

ActiveMQ's redelivery policy (``initialRedeliveryDelay``, ``backOffMultiplier``,
``maximumRedeliveryDelay``) as queue settings: the n-th return of a message holds it back for
``initial * multiplier ** (n - 1)`` ms, at most ``max`` ms. The delay is the broker's, not the
client's, so it protects every consumer of the queue from a message that keeps failing.

A held message is out of the ready list, so the messages behind it keep flowing; when its time
comes it goes back to the place its ``seq`` gives it (the head, usually) and is deliverable.
The hold is in memory only: after a restart a held message is simply ready again (its delivery
count, which is stored, still says how often it came back).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Callable

from ..model.message import QueueEntry

#: the longest hold, in ms (the ceiling RabbitMQ puts on TTLs, about 49 days)
MAX_DELAY_MS = 4294967295


@dataclass(frozen=True, slots=True)
class BackOff:
    """The delays of one queue's settings; ``initial_ms`` 0 means no back-off."""

    initial_ms: int
    multiplier: float = 1.0
    max_ms: int | None = None

    def delay_ms(self, returns: int) -> float:
        """The hold after the ``returns``-th return (1 for the first)."""
        delay = float(self.initial_ms)
        ceiling = float(MAX_DELAY_MS if self.max_ms is None else min(self.max_ms, MAX_DELAY_MS))
        for _ in range(returns - 1):
            if delay >= ceiling:
                break
            delay *= self.multiplier
        return min(delay, ceiling)


def _queue_deleted(entries: list[QueueEntry]) -> None:
    """Where entries held after their queue's deletion go: nowhere, as the queue's others."""


class HeldForRedelivery:
    """A queue's returned entries waiting out their back-off, earliest first, on one timer."""

    __slots__ = ("_clock", "_release", "_heap", "_call", "bytes")

    def __init__(self, clock: Any, release: Callable[[list[QueueEntry]], None]) -> None:
        self._clock = clock
        self._release = release            # the queue puts due entries back among the ready
        self._heap: list[tuple[float, int, QueueEntry]] = []
        self._call: Any = None
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def __iter__(self):
        return (entry for _, _, entry in self._heap)

    def hold(self, entry: QueueEntry, delay_s: float) -> None:
        due = self._clock.seconds() + delay_s
        heapq.heappush(self._heap, (due, entry.seq, entry))
        self.bytes += len(entry.message.body)
        self._arm()

    def _arm(self) -> None:
        if not self._heap:
            return
        due = self._heap[0][0]
        call = self._call
        if call is not None and call.active():
            if call.getTime() <= due:
                return
            call.cancel()
        self._call = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._due)

    def _due(self) -> None:
        self._call = None
        now = self._clock.seconds()
        released = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)[2]
            self.bytes -= len(entry.message.body)
            released.append(entry)
        self._arm()
        if released:
            self._release(released)

    def close(self) -> list[QueueEntry]:
        """The queue is deleted: every held entry, now, and its callback let go (the queue
        and this referred to each other, a cycle left to the collector per deleted queue:
        an MQTT clean session's queue at every disconnect)."""
        gone = self.clear()
        self._release = _queue_deleted
        return gone

    def clear(self) -> list[QueueEntry]:
        """Every held entry, now (purge, delete); the timer is stopped."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        gone = [entry for _, _, entry in self._heap]
        self._heap = []
        self.bytes = 0
        return gone
