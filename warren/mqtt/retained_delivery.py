"""The retained messages a SUBSCRIBE matched, sent a slice at a time and as fast as the client
takes them.

A ``#`` SUBSCRIBE over a million retained messages was one block: the walk of the tree and a
million PUBLISH packets written in one reactor turn (seconds in which no other client was
served), all of them held in memory when the client read slowly, and at QoS 1/2 all of them in
flight at once, past the client's Receive Maximum. Here the walk is lazy (the tree gives one
node per item, :meth:`~warren.mqtt.retained.RetainedStore.matching_steps`) and a session's
:class:`RetainedDelivery` runs it, after the SUBACK, as a task on the registry's Cooperator
(``warren.turn_slices``: 4 ms of steps per reactor turn, shared by every session sending
retained messages).

It waits, without spinning, while the session may not send: while the transport's buffer is
full (``pauseProducing``) or, for QoS 1/2, the in-flight window is (Receive Maximum
[MQTT-3.3.4-7]); the session wakes it when the socket drains or an acknowledgement frees a
slot. The client's packets are read as usual meanwhile (its PUBACKs are what free the window).
The session's queue deliveries wait until the last retained message is out, so that a message
published after the SUBSCRIBE reaches the client after the retained message of its topic, as
when they were sent in one block [MQTT-4.6.0-5]; a later SUBSCRIBE's retained messages follow
the earlier ones'. A filter unsubscribed meanwhile gets no more [MQTT-3.10.4-2].

A SUBSCRIBE of 50,000 filters hands over 50,000 subscriptions: each one's walk is made when
the delivery reaches it (``RetainedSender.retained_walk``), and a step ends after
``NODES_PER_STEP`` nodes counted across filters (a filter's start counts as one), so a run of
filters matching nothing is sliced too. Making every walk up front was a 52-58 ms turn, and a
step that counted nodes per filter walked all 50,000 filters of two nodes each in one step.
"""

from __future__ import annotations

import logging
from collections import deque
from itertools import chain
from typing import Any, Iterator, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.task import Cooperator, TaskFinished, TaskStopped

from warren.mqtt.retained import RetainedMessage
from warren.mqtt.session_state import Sub

log = logging.getLogger("warren.mqtt")

__all__ = ["NODES_PER_STEP", "RetainedDelivery", "RetainedSender"]

_DONE = object()

#: tree nodes walked per step of the task (the Cooperator checks its budget between steps)
NODES_PER_STEP = 64


class RetainedSender(Protocol):
    """What a delivery asks of its session (``subscriptions.py``)."""

    def retained_blocked(self, qos: int) -> bool: ...           # may not send at this QoS now
    def current_sub(self, sub: Sub) -> Sub | None: ...          # None: unsubscribed since
    def send_retained(self, sub: Sub, message: RetainedMessage) -> None: ...
    def retained_walk(self, sub: Sub) -> Iterator[RetainedMessage | None]: ...  # lazy walk
    def retained_sent(self) -> None: ...                         # all out: deliver again


class RetainedDelivery:
    """One session's retained messages still to send, in SUBSCRIBE order."""

    def __init__(self, session: RetainedSender, cooperator: Cooperator) -> None:
        self._session = session
        self._cooperator = cooperator
        self._pending: deque[Sub] = deque()   # subscriptions whose walk is not begun
        self._task: Any = None
        self._wake: Deferred[None] | None = None

    def add(self, subs: list[Sub]) -> None:
        """Send each subscription the retained messages its filter matches, after what is
        pending. The first step is taken at once: a SUBSCRIBE matching a few retained
        messages has them sent with its SUBACK, and only longer work becomes a task."""
        self._pending.extend(subs)
        if self._task is not None:
            return
        steps = self._steps()
        first = next(steps, _DONE)
        if first is _DONE:
            self._session.retained_sent()
            return
        self._task = self._cooperator.cooperate(chain((first,), steps))
        self._task.whenDone().addCallbacks(self._finished, self._failed)

    def wake(self) -> None:
        """The session may send again (the socket drained, a slot of the window freed)."""
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.callback(None)

    def stop(self) -> None:
        """The connection is gone: what was not sent is not (a new SUBSCRIBE sends it)."""
        self._pending.clear()
        self._wake = None
        task, self._task = self._task, None
        if task is not None:
            try:
                task.stop()
            except TaskFinished:
                pass

    def _steps(self) -> Iterator[Deferred[None] | None]:
        session, pending = self._session, self._pending
        walked = 0
        while pending:
            sub = pending.popleft()
            walked += 1
            for message in session.retained_walk(sub):
                if message is not None:
                    current = session.current_sub(sub)
                    if current is None:
                        break
                    while session.retained_blocked(min(current.qos, message.qos)):
                        self._wake = Deferred()
                        yield self._wake          # the task pauses until it fires
                        current = session.current_sub(sub)
                        if current is None:
                            break
                    if current is None:
                        break
                    session.send_retained(current, message)
                walked += 1
                if walked >= NODES_PER_STEP:
                    walked = 0
                    yield None
            if walked >= NODES_PER_STEP:
                walked = 0
                yield None

    def _finished(self, _: Any) -> None:
        self._task = None
        self._session.retained_sent()

    def _failed(self, failure: Any) -> None:
        if failure.check(TaskStopped):
            return                                # stop(): the connection is gone
        self._task = None
        self._pending.clear()
        log.error("sending retained messages failed: %s", failure.getTraceback())
        self._session.retained_sent()
