"""ConfirmTracker (warren/broker/confirms.py): order, sync coverage, failure; no broker needed.

A store sync is a plain Deferred fired by the test, the way the store fires it when its fsync
is done.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from warren.broker.confirms import ConfirmTracker


def released(tracker: ConfirmTracker) -> list[tuple[int, object, bool]]:
    return [tuple(entry) for entry in tracker.release()]


def test_settled_answers_release_at_once_in_order():
    t = ConfirmTracker()
    t.insert(1, "a")
    t.insert(2, "b", ok=False)
    assert released(t) == [(1, "a", True), (2, "b", False)]
    assert not t and released(t) == []


def test_a_waiting_answer_holds_back_later_settled_ones():
    t = ConfirmTracker()
    t.insert(1, "stored", wait=True)
    t.insert(2, "transient")
    assert released(t) == []
    syncs: list[Deferred] = []
    d = t.sync(lambda: syncs.append(Deferred()) or syncs[-1])
    assert d is syncs[0]
    syncs[0].callback(None)
    assert released(t) == [(1, "stored", True), (2, "transient", True)]


def test_one_sync_per_read_covers_only_what_was_inserted_before_it():
    t = ConfirmTracker()
    syncs: list[Deferred] = []

    def store_sync() -> Deferred:
        syncs.append(Deferred())
        return syncs[-1]

    t.insert(1, wait=True)
    t.insert(2, wait=True)
    t.sync(store_sync)
    t.insert(3, wait=True)            # the next read
    assert t.sync(store_sync) is syncs[1]
    syncs[0].callback(None)
    assert [e[0] for e in t.release()] == [1, 2]
    assert released(t) == []          # 3 waits for the second sync
    syncs[1].callback(None)
    assert [e[0] for e in t.release()] == [3]


def test_no_sync_is_asked_when_nothing_waits():
    t = ConfirmTracker()
    t.insert(1)
    assert t.sync(lambda: Deferred()) is None


def test_a_failed_sync_rejects_what_it_covered_and_passes_the_failure_on():
    t = ConfirmTracker()
    d = Deferred()
    t.insert(1, wait=True)
    t.insert(2, ok=False)
    t.sync(lambda: d)
    t.insert(3, wait=True)
    seen = []
    d.addErrback(seen.append)
    d.errback(Failure(OSError("disk gone")))
    assert seen and seen[0].check(OSError)
    assert released(t) == [(1, None, False), (2, None, False)]
    assert len(t) == 1                # 3 still waits for its own sync


def test_confirm_and_reject_by_sequence_number():
    t = ConfirmTracker()
    for seq in (5, 6, 7):
        t.insert(seq, wait=True)
    t.reject(5)
    t.confirm(7)
    assert released(t) == [(5, None, False), (6, None, True), (7, None, True)]


def test_add_numbers_entries_after_the_last_one():
    t = ConfirmTracker()
    assert t.add("x") == 1
    t.insert(10, "y")
    assert t.add("z", wait=True) == 11 and t.last == 11


def test_clear_forgets_entries_and_the_wanted_sync():
    t = ConfirmTracker()
    t.insert(1, wait=True)
    t.clear()
    assert not t and t.sync(lambda: Deferred()) is None


def test_a_held_answer_waits_for_its_own_settling_not_a_store_sync():
    """An MQTT SUBACK held for its session's record: store syncs settle the answers around
    it, not it, and none after it goes before it."""
    t = ConfirmTracker()
    t.add("puback 1", wait=True)
    held = t.hold("suback")
    t.add("puback 2", wait=True)
    t.add("pingresp")
    syncs: list[Deferred] = []
    t.sync(lambda: syncs.append(Deferred()) or syncs[-1])
    syncs[0].callback(None)
    assert released(t) == [(1, "puback 1", True)]
    assert released(t) == []
    t.settle_held(held)
    assert released(t) == [(2, "suback", True), (3, "puback 2", True), (4, "pingresp", True)]
    assert not t
    t.settle_held(held)     # gone already: nothing
    assert released(t) == []
