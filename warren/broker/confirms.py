"""Answers to publishers in publish order, each only once the store has it (rabbit_confirms).

A publisher that asked to be told (AMQP confirms, STOMP receipts, MQTT PUBACK/PUBREC, a bridge
acking its source) must not hear "ok" for a persistent message before ``broker.sync()`` says it
is on disk, and must hear its answers in the order it published. Each answer is an entry:

- :meth:`ConfirmTracker.insert` adds one, already settled (a transient message: ok; a message a
  full queue refused: failed) or waiting for the next store sync (``wait=True``);
- :meth:`ConfirmTracker.sync`, once per read (so one fsync covers a burst), asks the store for
  one sync covering every entry inserted so far; its outcome confirms
  (:meth:`~ConfirmTracker.confirm`) or rejects (:meth:`~ConfirmTracker.reject`) the entries
  that waited;
- :meth:`ConfirmTracker.hold` adds one that waits for something else the front end knows of
  (an MQTT SUBACK for its session's record to be on disk, which takes turns of its own), and
  :meth:`~ConfirmTracker.settle_held` settles it; store syncs pass it by;
- :meth:`ConfirmTracker.release` pops the settled prefix: an answer settled early stays behind
  an earlier one still waiting, so answers never overtake each other.

The tracker knows no protocol and does no I/O: each front end turns released entries into its
frames (AMQP coalesces runs into ``multiple=true`` acks; STOMP and MQTT write encoded bytes
stored as the entry's value) and decides what a failed sync means to its client.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred

#: state of an entry that waits for a store sync
WAITING = None
#: state of an entry that waits for ``settle_held`` (no store sync settles it)
HELD = "held"

_NOTHING: tuple = ()


class ConfirmTracker:
    """Entries ``[seq, value, state]`` in insertion order; state WAITING, HELD, True (ok),
    False."""

    __slots__ = ("entries", "_last", "_wanted", "_waiting")

    def __init__(self) -> None:
        # [seq, value, state], seq increasing; never replaced, so a publish path may ask
        # ``tracker.entries`` whether answers are pending: a C-level truth test, where
        # ``bool(tracker)`` is a Python-level __len__ call per publish
        self.entries: deque[list] = deque()
        self._last = 0                          # seq of the last entry inserted
        self._wanted = False                    # some entry waits for a sync not yet asked
        self._waiting = 0                       # entries in state WAITING or HELD

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def last(self) -> int:
        """Sequence number of the last entry inserted (0 before any)."""
        return self._last

    def insert(self, seq: int, value: Any = None, wait: bool = False, ok: bool = True) -> None:
        """Add the answer for publish *seq* (greater than every earlier one): waiting for the
        next store sync when *wait*, else settled now as *ok*."""
        self._last = seq
        if wait:
            self.entries.append([seq, value, WAITING])
            self._waiting += 1
            self._wanted = True
        else:
            self.entries.append([seq, value, ok])

    def hold(self, value: Any) -> int:
        """Add an answer that waits for :meth:`settle_held` (not for a store sync), numbered
        by the tracker as :meth:`add` does; returns the number given."""
        seq = self._last = self._last + 1
        self.entries.append([seq, value, HELD])
        self._waiting += 1
        return seq

    def settle_held(self, seq: int, ok: bool = True) -> None:
        """The held answer *seq* may go (after those before it), as *ok*; nothing when it is
        no longer here (``clear``)."""
        for entry in self.entries:
            if entry[0] == seq:
                if entry[2] is HELD:
                    entry[2] = ok
                    self._waiting -= 1
                return
            if entry[0] > seq:
                return

    def add(self, value: Any, wait: bool = False, ok: bool = True) -> int:
        """:meth:`insert` numbered by the tracker, for publishers with no sequence of their
        own (STOMP receipts, MQTT acks); returns the number given."""
        seq = self._last + 1
        self.insert(seq, value, wait, ok)
        return seq

    def confirm(self, upto: int) -> None:
        """The store synced everything published up to *upto*: those waiting are ok."""
        self._settle(upto, True)

    def reject(self, upto: int) -> None:
        """The store failed to sync what was published up to *upto*: those waiting failed."""
        self._settle(upto, False)

    def _settle(self, upto: int, ok: bool) -> None:
        settled = 0
        for entry in self.entries:
            if entry[0] > upto:
                break
            if entry[2] is WAITING:
                entry[2] = ok
                settled += 1
        self._waiting -= settled

    def release(self) -> list[list] | tuple:
        """Pop and return the settled prefix (``[seq, value, ok]`` entries, in order)."""
        entries = self.entries
        if not entries or entries[0][2] is WAITING or entries[0][2] is HELD:
            return _NOTHING
        if not self._waiting:
            # all settled (the usual case once a sync is back): one copy, no per-entry pops
            out = list(entries)
            entries.clear()
            return out
        out = []
        while entries and entries[0][2] is not WAITING and entries[0][2] is not HELD:
            out.append(entries.popleft())
        return out

    def sync(self, store_sync: Callable[[], Deferred]) -> Deferred | None:
        """End of a read: when entries wait, one ``store_sync()`` covering all inserted so far.

        Its success confirms them and its failure rejects them before the caller's own
        callbacks run (the failure is passed on); None when nothing waits."""
        if not self._wanted:
            return None
        self._wanted = False
        upto = self._last
        d = store_sync()
        d.addCallbacks(self._synced, self._sync_failed, callbackArgs=(upto,),
                       errbackArgs=(upto,))
        return d

    def _synced(self, result: Any, upto: int) -> Any:
        self.confirm(upto)
        return result

    def _sync_failed(self, failure: Any, upto: int) -> Any:
        self.reject(upto)
        return failure

    def clear(self) -> None:
        """Forget every entry (the publisher is gone; nobody is left to answer)."""
        self.entries.clear()
        self._wanted = False
        self._waiting = 0
