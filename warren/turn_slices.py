"""Long work done a step at a time, for a bounded time per reactor turn.

The broker has one thread: work that one client asks for and that grows with what it asks (a
scrape of every queue's series, a SUBSCRIBE matching a million retained messages) would hold
every other client for as long as it runs. Such work is an iterator run by a
:class:`~twisted.internet.task.Cooperator` (a step per ``next``) for at most ``TURN_BUDGET``
seconds per reactor turn, after which the reactor serves everyone else and the work goes on at
the next turn (``callLater(0)``); tasks on one Cooperator share the budget round-robin. 4 ms,
the budget AMQP gives a read's non-Basic methods (``CONTROL_METHODS_BUDGET``), keeps other
clients' round trips within a few milliseconds while the work still runs near full speed.

A step that yields a Deferred pauses its task until the Deferred fires: that is how work
waits for a slow reader to drain, instead of piling its output up in memory.

The budget is the turn's, not each task's: the reactor ``warren run`` installs
(``poll_slices.py``) notes when each turn began (``begin_turn``), and every slice of long work
stops at ``turn_deadline()``, ``TURN_BUDGET`` after that, whatever ran before it in the turn.
Each kind of work counting 4 ms of its own made turns of 11-16 ms of CPU at 1M bindings (an
AMQP read's binds, then the binds it held back from the turn before, then the output) and
so a round trip of twice that for the client whose event came last. Work that finds the
budget spent still does one step (one method, one ``CHECK_EVERY`` items), so nothing waits
for ever. Under another reactor (tests' fake clocks) the budget counts from the slice's start.

Work that walks a list by index (a deleted queue's bindings) takes its slice as a
:class:`TurnRange`: the indexes that fit before the deadline, the clock read once per
``CHECK_EVERY`` items (a purge's releases do the same over a deque, a definitions import and
AMQP's methods read the clock per step). Work whose items cost tens of microseconds each (a
big SUBSCRIBE's or UNSUBSCRIBE's filters, a resumed session's subscriptions) goes through
``until_deadline``, which reads the clock after every item, so the turn ends right after the
item that passed the deadline. A slice of a fixed count was the rule before, and a
count that is a few milliseconds on a quiet machine for small items is tens of milliseconds
for big ones or on a loaded machine (2,000 MQTT filters: 40-60 ms); a budget in time is what
bounds the other clients' wait.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Callable

from twisted.internet.task import Cooperator

__all__ = ["CHECK_EVERY", "TURN_BUDGET", "TurnRange", "begin_turn", "sliced_cooperator",
           "turn_deadline", "until_deadline"]

#: seconds of steps per reactor turn
TURN_BUDGET = 0.004
#: items of a ``TurnRange`` between two reads of the clock (a read is some 50 ns; an item
#: of the cheapest work, a released message, about 1 µs)
CHECK_EVERY = 64

#: when the current reactor turn began (``time.monotonic``), if the reactor says
_turn_began: list[float | None] = [None]


def begin_turn(now: float | None) -> None:
    """The reactor's poll returned at ``now``: a new turn, a new budget (None: no reactor
    notes its turns any more, each slice counts from its own start)."""
    _turn_began[0] = now


def turn_deadline() -> float:
    """When slices of long work stop in this turn: ``TURN_BUDGET`` after it began, or after
    now under a reactor that does not call ``begin_turn``."""
    began = _turn_began[0]
    return (time.monotonic() if began is None else began) + TURN_BUDGET


def until_deadline(items: Iterator[Any], one: Callable[[Any], object]) -> bool:
    """``one`` for each next item of ``items`` until the turn's deadline, the clock read after
    every item (one item at least): True once ``items`` ran out, False when the rest waits
    for a later turn.

    For items of tens of microseconds or more (a filter subscribed or unsubscribed, a
    subscription bound again), beside which a read of the clock is nothing. Counted by
    ``CHECK_EVERY`` as ``TurnRange`` does, 64 MQTT filters (30-60 us each) ran 2-4 ms past
    the deadline, and an item that grew one of the session's 50,000-entry dicts (a resize
    of one to two milliseconds) was followed by up to 63 more in the same turn."""
    end = turn_deadline()
    clock = time.monotonic
    for item in items:
        one(item)
        if clock() >= end:
            return False
    return True


class TurnRange:
    """``range(start, stop)`` cut at the turn's deadline (``every`` items at least, the clock
    read after each ``every``): iterate it for this turn's slice, then ``next`` is where the
    next turn's slice starts (``stop`` when done)."""

    __slots__ = ("next", "stop", "every")

    def __init__(self, start: int, stop: int, every: int = CHECK_EVERY) -> None:
        self.next = start
        self.stop = stop
        self.every = every

    def __iter__(self) -> Iterator[int]:
        end = turn_deadline()
        i, stop, every = self.next, self.stop, self.every
        while i < stop:
            upto = min(i + every, stop)
            yield from range(i, upto)
            i = self.next = upto
            if time.monotonic() >= end:
                return

    @property
    def done(self) -> bool:
        return self.next >= self.stop


def sliced_cooperator(clock: Any) -> Cooperator:
    """A Cooperator on *clock* that runs steps until ``turn_deadline`` in each reactor turn
    (one step at least)."""
    def budget() -> Callable[[], bool]:
        end = turn_deadline()
        return lambda: time.monotonic() >= end
    return Cooperator(terminationPredicateFactory=budget,
                      scheduler=lambda step: clock.callLater(0, step))
