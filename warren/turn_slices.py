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
"""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.internet.task import Cooperator

__all__ = ["TURN_BUDGET", "sliced_cooperator"]

#: seconds of steps per reactor turn
TURN_BUDGET = 0.004


def sliced_cooperator(clock: Any) -> Cooperator:
    """A Cooperator on *clock* that runs steps for ``TURN_BUDGET`` per reactor turn."""
    def budget() -> Callable[[], bool]:
        end = time.monotonic() + TURN_BUDGET
        return lambda: time.monotonic() >= end
    return Cooperator(terminationPredicateFactory=budget,
                      scheduler=lambda step: clock.callLater(0, step))
