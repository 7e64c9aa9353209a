"""The reactor: epoll, with the teardown of lost connections done a slice per reactor turn.

Why: Twisted's epoll reactor handles every event one ``epoll_wait`` returns before it runs
anything else, and a connection found closed is torn down on the spot. When 10,000 clients
drop their connections at once (a load balancer, a network failure) one poll returns 10,000
hang-ups, and each teardown costs some 35 µs: Twisted's (the connection-lost Failure, the
socket's shutdown and close) and the protocol's ``connectionLost`` (its channels' unacked
messages requeued, its consumers cancelled, its exclusive queues deleted, the counts). That
is one block of 0.35-1.1 s in which an unrelated client's message waits for work that is
none of its business. Deferring the protocol's part alone would leave most of it in the
block, so the slices are cut here, where the events are handed out.

What: a connection found closed (its read finds the end, or a write fails) is torn down at
once (``_disconnectSelectable``, which calls the protocol's ``connectionLost``), as Twisted
does, until the turn's teardowns have taken ``TURN_BUDGET`` (``turn_slices.py``). Past that, a
connection found closed is only taken out of the poll set (a cheap ``epoll_ctl``, so the poll
stops returning it) and its teardown waits in a queue that each turn works through after the
turn's events until the turn's deadline (``turn_slices.turn_deadline``: the budget counts
from the poll's return, the events included), in the order the connections were found
closed, and at least ``MIN_TEARDOWNS`` of it whatever the time, so a busy broker cannot
starve it. So a connection that closes alone is gone before the events after it in the same
poll (a client's request to list connections, say), as before; only a burst is spread over
turns. This reactor is also what tells ``turn_slices`` when each turn began (``begin_turn``),
so every kind of long work shares one budget per turn.
The poll does not block while teardowns wait. Every event a poll returns is still handled in
its turn, as Twisted does: leaving some for the next poll was tried, and the other client's
readiness, once left among thousands of hang-ups, waited for many turns (a worst round trip
of 726 ms against 56-68 ms this way). With 10,000 connections dropped at once the broker's
longest turn went from 137-170 ms of CPU (500-570 ms on the loaded machine) to 14-16 ms.

What a client sees: the cleanup of a connection that is simply dropped now ends some turns
later when thousands drop together (RabbitMQ's is asynchronous too: a channel process and
the queues notice the owner's exit); each connection's cleanup is still one step. A
connection closed with ``connection.close`` releases its channels and exclusive queues
before its ``close-ok`` (``amqp/connection.py``), so a client that saw ``close-ok`` finds
them gone. When the reactor stops, the teardowns still waiting run first.

Only ``warren run`` installs it (``install``), before anything imports the reactor; where
epoll is missing Twisted's default reactor stays.
"""

from __future__ import annotations

import errno
import time
from collections import deque
from typing import Any

from twisted.python import log

from .turn_slices import TURN_BUDGET, begin_turn, turn_deadline

__all__ = ["MIN_TEARDOWNS", "install"]

#: teardowns done in each turn even past the budget
MIN_TEARDOWNS = 16


def _reactor_class() -> Any:
    from twisted.internet.epollreactor import EPollReactor

    class SlicedPollReactor(EPollReactor):
        """EPollReactor whose turn handles its events, then teardowns for ``TURN_BUDGET``."""

        def __init__(self) -> None:
            super().__init__()
            # (selectable, why, isRead) in the order found closed, and the selectables
            self.teardowns: deque[tuple[Any, Any, bool]] = deque()
            self.tearing: set[int] = set()
            self.tear_spent = 0.0   # seconds of teardowns done at once in this turn
            self.addSystemEventTrigger("before", "shutdown", self._tear_all)

        def doPoll(self, timeout: float | None) -> None:
            if self.teardowns:
                timeout = 0
            try:
                events = self._poller.poll(-1 if timeout is None else timeout,
                                           len(self._selectables))
            except OSError as err:
                if err.errno == errno.EINTR:
                    return
                raise
            begin_turn(time.monotonic())
            self.tear_spent = 0.0
            selectables = self._selectables
            handle = self._doReadOrWrite
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is not None:
                    try:
                        handle(selectable, fd, event)
                    except KeyboardInterrupt:
                        raise
                    except BaseException:
                        _logged_failure(selectable)
            self._tear(turn_deadline())

        doIteration = doPoll    # what the run loop calls (Twisted aliases it the same way)

        def _disconnectSelectable(self, selectable: Any, why: Any, isRead: Any,
                                  faildict: Any = None) -> None:
            """Torn down at once while this turn's teardowns took less than the budget and
            none waits (a connection closing alone is torn down as Twisted does it, in the
            order of the poll's events); else out of the poll set now and torn down by
            ``_tear`` after the events (Twisted's own, with its ``faildict``)."""
            if not self.teardowns and self.tear_spent < TURN_BUDGET:
                began = time.monotonic()
                super()._disconnectSelectable(selectable, why, isRead)
                self.tear_spent += time.monotonic() - began
                return
            self.removeReader(selectable)
            self.removeWriter(selectable)
            if id(selectable) not in self.tearing:
                self.tearing.add(id(selectable))
                self.teardowns.append((selectable, why, isRead))

        def _tear(self, end: float) -> None:
            teardowns = self.teardowns
            done = 0
            while teardowns and (done < MIN_TEARDOWNS or time.monotonic() < end):
                selectable, why, is_read = teardowns.popleft()
                self.tearing.discard(id(selectable))
                done += 1
                if getattr(selectable, "disconnected", False):
                    continue    # torn down meanwhile (abortConnection calls connectionLost)
                try:
                    super()._disconnectSelectable(selectable, why, is_read)
                except KeyboardInterrupt:
                    raise
                except BaseException:
                    _logged_failure(selectable)

        def _tear_all(self) -> None:
            while self.teardowns:
                self._tear(0.0)

    return SlicedPollReactor


def _logged_failure(selectable: Any) -> None:
    """What escaped an event's handling, logged with the selectable's prefix as Twisted's
    ``log.callWithLogger`` logs it. The handling is not wrapped in ``callWithLogger`` as
    Twisted's reactor wraps it: that puts the prefix in a logging context around each call
    (3 µs an event on the loaded machine, 30 ms of a poll that returns 10,000 hang-ups), for
    Twisted's own log messages only, which warren's log does not show (it is the standard
    library's ``logging``)."""
    try:
        prefix = selectable.logPrefix()
    except BaseException:
        prefix = "(buggy logPrefix method)"
    log.err(system=prefix)


def install() -> bool:
    """Make the sliced reactor Twisted's global one; False when epoll is not there (the
    default reactor stays). Call before ``twisted.internet.reactor`` is imported."""
    try:
        reactor_class = _reactor_class()
    except ImportError:
        return False
    from twisted.internet.main import installReactor
    installReactor(reactor_class())
    return True
