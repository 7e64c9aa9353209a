"""A persistent MQTT session in the store: a head record and parts of subscription changes,
written a part per slice and made current by the head, so that saving 50,000 subscriptions
is not one long reactor turn and a crash mid-save leaves the set of before or after.

Layout (broker parameters, through ``broker.save_definition("parameter", ...)``):

* the head, ``mqtt-session``/vhost/client id: ``{"vhost", "client_id", "expiry", "parts",
  "next"}``; ``parts`` are the numbers of the session's parts in the order they apply,
  ``next`` the number the next part gets.
* a part, ``mqtt-session-part``/vhost/client id/number: ``{"subs": [entry, ...]}`` of
  ``PART_SIZE`` entries at most; an entry is ``[full filter, qos, no-local, retain as
  published, identifier]`` (subscribed, or subscribed again with other options) or
  ``[full filter]`` (unsubscribed).

A save writes what changed since the last one (``SessionState.unsaved``: each
``put_sub``/``pop_sub``, in order) as new parts, one part per step on the turn's budget
(``turn_slices.turn_deadline``), then the head naming them, in one step: the head is the
commit. Parts come before their head in the journal, and in an earlier or the same SQL
transaction, so a head read back after a crash always finds its parts; parts a crash left
without a head are deleted at start. Only changes of packets already handled whole are saved
(the session marks them, ``unsaved_upto``): a SUBSCRIBE still in its slices waits for the next
save, so what comes back is the set after some packet, never part of one.

A SUBACK or UNSUBACK is a promise that the session has the subscriptions it says: its session
asks for the save with :meth:`SessionRecords.save_durably` and answers when the Deferred
fires, once a head covering that packet's changes is written and the store has synced it
(``broker.sync``, as for a persistent message's PUBACK). Without it, a broker killed right
after the answer came back with the set of before: the parts and the head are written over
the following turns. The head that covers a packet is the first one begun after the packet
was marked; its waiters are taken when its writer takes the changes it writes.

When the parts hold much more than the subscriptions (twice as many entries, or many small
parts), a save writes the whole set as new parts instead and its head drops the old ones
(deleted after it): a session's record stays proportional to its subscriptions, and a small
change to a big session costs a small part, not a rewrite of every subscription (the single
record of before was 80-100 ms of one turn at 50,000).

A record of the layout before (``"subscriptions"`` in the head, written whole) is still read.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from warren.mqtt.session_state import SessionState, Sub
from warren.mqtt.topics import split_shared
from warren.store.interface import resource_key
from warren.turn_slices import turn_deadline

log = logging.getLogger("warren.mqtt")

__all__ = ["HEAD_PREFIX", "PART_PREFIX", "PART_SIZE", "SessionRecords"]

HEAD_PREFIX = resource_key("mqtt-session", "")
PART_PREFIX = resource_key("mqtt-session-part", "")
#: entries per part: some 8 KB of JSON, 0.3 ms to build and encode (1,000 were 1.3 ms on a
#: quiet machine and, with the collections their lists set off, 3-8 ms at a load of 7: the
#: longest steps of a 50,000-filter session's save; parts of before are read as they are)
PART_SIZE = 250
#: parts a session may have beyond two per PART_SIZE subscriptions before a save rewrites it
SPARE_PARTS = 32


def _entry(full: str, sub: Sub | None) -> list[Any]:
    if sub is None:
        return [full]
    return [full, sub.qos, int(sub.no_local), int(sub.retain_as_published), sub.identifier]


def _apply(state: SessionState, entry: list[Any]) -> None:
    full = entry[0]
    if len(entry) == 1:
        state.pop_sub(full)
        return
    group, filt = split_shared(full)
    state.put_sub(full, Sub(filt, group, int(entry[1]), bool(entry[2]), bool(entry[3]),
                            entry[4]))


class SessionRecords:
    """The records of every persistent session: read at start, written in slices."""

    def __init__(self, broker: Any, clock: Any) -> None:
        self.broker = broker
        self.clock = clock
        self._writers: dict[SessionState, Iterator[None]] = {}
        self._step_call: Any = None
        # Deferreds of save_durably: waiting for the next head begun, and those the head
        # being written covers (fired once it is synced)
        self._waiting: dict[SessionState, list[Deferred]] = {}
        self._covered: dict[SessionState, list[Deferred]] = {}

    # ------------------------------------------------------------------ keys
    @staticmethod
    def head_key(state: SessionState) -> str:
        return resource_key("mqtt-session", state.vhost, state.client_id)

    @staticmethod
    def part_key(state: SessionState, number: int) -> str:
        return resource_key("mqtt-session-part", state.vhost, state.client_id, str(number))

    # ------------------------------------------------------------------ start
    def restore(self) -> list[SessionState]:
        """Every session recorded in the store, as its last head says; parts that no head
        names (a save a crash cut short) are deleted."""
        params = self.broker.parameters
        states = []
        used: set[str] = set()
        for key, record in list(params.items()):
            if not key.startswith(HEAD_PREFIX) or not isinstance(record, dict):
                continue
            try:
                state = SessionState(record["vhost"], record["client_id"],
                                     int(record["expiry"]))
                if "subscriptions" in record:     # the layout of before: rewritten whole
                    state.record_rewrite = True
                for s in record.get("subscriptions", []):
                    _apply(state, [s["filter"], s["qos"], s.get("nl"), s.get("rap"),
                                   s.get("id")])
                for number in record.get("parts", []):
                    part_key = self.part_key(state, int(number))
                    for entry in params[part_key]["subs"]:
                        _apply(state, entry)
                    used.add(part_key)
                state.record_parts = [int(n) for n in record.get("parts", [])]
                state.record_next = int(record.get("next", 0))
                state.record_entries = sum(len(params[self.part_key(state, n)]["subs"])
                                           for n in state.record_parts)
            except (KeyError, TypeError, ValueError, IndexError):
                log.warning("ignoring unreadable MQTT session record %r", key)
                continue
            state.unsaved.clear()
            states.append(state)
        for key in [k for k in params if k.startswith(PART_PREFIX) and k not in used]:
            del params[key]
            self.broker.save_definition("parameter", key, None)
        for key in used:     # read: the store keeps them, the broker need not
            del params[key]
        return states

    # ------------------------------------------------------------------ saving
    def save(self, state: SessionState) -> None:
        """Save the session's changes so far (those of packets already answered: the caller
        marks them) in slices from the next reactor turn on; one writer per session, which
        goes on with what was marked while it wrote."""
        if state.expiry == 0 or state.ended:
            return
        state.unsaved_upto = len(state.unsaved)
        state.marked_count = len(state.subs)
        if state not in self._writers:
            self._writers[state] = self._write(state)
            self._schedule()

    def save_durably(self, state: SessionState) -> Deferred:
        """:meth:`save`, and a Deferred fired once the changes marked now are on disk: a head
        covering them written and synced (at once for a session that is not stored); failed
        when the store refused the write or its sync."""
        self.save(state)
        if state.expiry == 0 or state.ended:
            return succeed(None)
        d: Deferred = Deferred()
        if not state.unsaved_upto:
            # nothing marked beyond what the writer under way took: its head covers them
            self._covered.setdefault(state, []).append(d)
        else:
            self._waiting.setdefault(state, []).append(d)
        return d

    def write_now(self) -> None:
        """The step due at the next turn, now: a session's read that asked for durable saves
        (SUBACKs wait for them) has them written in the same turn, so the journal's flush at
        the end of this turn takes them, a turn earlier (within the turn's budget, as any
        step: a big save goes on at the next turns)."""
        call = self._step_call
        if call is not None and call.active():
            call.cancel()
            self._step()

    def _schedule(self) -> None:
        if self._step_call is None and self._writers:
            self._step_call = self.clock.callLater(0, self._step)

    def _step(self) -> None:
        """Parts until the turn's deadline (one at least), each writer in turn."""
        self._step_call = None
        end = turn_deadline()
        while self._writers:
            state, writer = next(iter(self._writers.items()))
            try:
                next(writer)
            except StopIteration:
                self._writers.pop(state, None)
            except Exception:
                # the store refused a write: the last head stands (the set of before), and
                # the session's next save writes its whole set (the changes this one took
                # are in no part); parts written meanwhile go at the next start
                log.exception("saving MQTT session %r of vhost %r failed", state.client_id,
                              state.vhost)
                self._writers.pop(state, None)
                state.record_rewrite, state.writing_parts = True, None
                failure = Failure()
                for d in self._covered.pop(state, []) + self._waiting.pop(state, []):
                    d.errback(failure)
            else:
                # round robin: a big save does not hold the small ones behind it
                if self._writers.pop(state, None) is not None:
                    self._writers[state] = writer
            if time.monotonic() >= end:
                break
        self._schedule()

    def flush(self) -> None:
        """Finish every save now (the broker is stopping: no later turn will)."""
        while self._writers:
            state, writer = next(iter(self._writers.items()))
            for _ in writer:
                pass
            self._writers.pop(state, None)

    def _write(self, state: SessionState) -> Iterator[None]:
        while True:
            upto, count = state.unsaved_upto, state.marked_count
            if state.record_rewrite and len(state.unsaved) > upto:
                # a record of the layout of before is rewritten from the set in memory, which
                # now holds part of a packet still in its slices: that packet's save does it
                return
            entries: list[tuple[str, Sub | None]] = state.unsaved[:upto]
            del state.unsaved[:upto]
            state.unsaved_upto = 0
            waiters = self._waiting.pop(state, None)
            if waiters:
                self._covered.setdefault(state, []).extend(waiters)
            live = len(state.subs)
            rewrite = not state.unsaved and (
                state.record_rewrite
                or state.record_entries + len(entries) > 2 * live + PART_SIZE
                or len(state.record_parts) > 2 * live // PART_SIZE + SPARE_PARTS)
            if rewrite:
                # the filters and their Subs as two lists, paired a part at a time: 50,000
                # (filter, Sub) tuples made at once were 3-8 ms of one step
                fulls, subs = list(state.subs), list(state.subs.values())
                total = len(fulls)
            else:
                total = len(entries)
            written = state.writing_parts = []
            for start in range(0, total, PART_SIZE):
                if rewrite:
                    part: Any = zip(fulls[start:start + PART_SIZE], subs[start:start + PART_SIZE])
                else:
                    # taken off the front: the changes are let go a part at a time, not
                    # 50,000 (filter, Sub) tuples freed together in the step that ends the
                    # save (2-3 ms)
                    part = entries[:PART_SIZE]
                    del entries[:PART_SIZE]
                number = state.record_next
                state.record_next += 1
                self.broker.save_definition(
                    "parameter", self.part_key(state, number),
                    {"subs": [_entry(full, sub) for full, sub in part]})
                written.append(number)
                yield
            old = state.record_parts
            if rewrite:
                state.record_parts, state.record_entries = written, total
                state.record_rewrite = False
            else:
                state.record_parts = old + written
                state.record_entries += total
            state.writing_parts = None
            record = {"vhost": state.vhost, "client_id": state.client_id,
                      "expiry": state.expiry, "parts": state.record_parts,
                      "next": state.record_next, "count": count}
            key = self.head_key(state)
            self.broker.parameters[key] = record
            self.broker.save_definition("parameter", key, record)
            if rewrite:
                for number in old:
                    self.broker.save_definition("parameter", self.part_key(state, number), None)
            covered = self._covered.pop(state, None)
            if covered:
                self._when_synced(covered)
            log.debug("MQTT session %r of vhost %r saved: %d subscriptions (%d changes in %d"
                      " new parts, %d parts in all%s)", state.client_id, state.vhost, count,
                      total, len(written), len(state.record_parts),
                      ", rewritten" if rewrite else "")
            if not state.unsaved_upto:
                return
            yield

    def _when_synced(self, waiters: list[Deferred]) -> None:
        """Fire *waiters* once the store has synced what was written so far."""
        def fire(result: Any) -> None:
            for d in waiters:
                d.callback(None)

        def fail(failure: Failure) -> None:
            for d in waiters:
                d.errback(failure)

        self.broker.sync().addCallbacks(fire, fail)

    def drop(self, state: SessionState) -> None:
        """The session ended: its head, its parts and those a save was writing go (and with
        them the answers waiting for them: their connection is gone)."""
        self._writers.pop(state, None)
        self._waiting.pop(state, None)
        self._covered.pop(state, None)
        parts = state.record_parts + (state.writing_parts or [])
        state.record_parts, state.writing_parts = [], None
        state.unsaved.clear()
        key = self.head_key(state)
        if key in self.broker.parameters:
            del self.broker.parameters[key]
            self.broker.save_definition("parameter", key, None)
        for number in parts:
            self.broker.save_definition("parameter", self.part_key(state, number), None)
