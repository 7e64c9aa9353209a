"""turn_slices: one budget per reactor turn, shared by every slice of long work in it.

The turn's start is what the reactor notes (``begin_turn``, called by ``poll_slices``); the
clock here is the real monotonic one, but nothing is timed: a turn that began an hour ago has
its budget spent, one that begins now has not.
"""

from __future__ import annotations

import time

import pytest

from warren.turn_slices import (CHECK_EVERY, TURN_BUDGET, TurnRange, begin_turn, turn_deadline,
                                until_deadline)


@pytest.fixture(autouse=True)
def no_turn_after():
    yield
    begin_turn(None)


def test_the_deadline_counts_from_the_turns_start_not_the_slices():
    began = time.monotonic() - 3600.0
    begin_turn(began)
    assert turn_deadline() == began + TURN_BUDGET


def test_without_a_reactor_noting_turns_a_slice_counts_from_its_own_start():
    begin_turn(None)
    before = time.monotonic()
    assert turn_deadline() >= before + TURN_BUDGET


def test_a_spent_turn_still_advances_a_range_by_one_check():
    begin_turn(time.monotonic() - 3600.0)      # earlier work took the whole budget
    part = TurnRange(0, 10 * CHECK_EVERY)
    assert list(part) == list(range(CHECK_EVERY)) and part.next == CHECK_EVERY
    assert not part.done


def test_a_range_covers_every_index_once_over_turns():
    seen: list[int] = []
    part = TurnRange(0, 5 * CHECK_EVERY + 3)
    turns = 0
    while not part.done:
        begin_turn(time.monotonic() - 3600.0)  # each turn spent: one check's worth each
        seen.extend(part)
        turns += 1
    assert seen == list(range(5 * CHECK_EVERY + 3)) and turns == 6


def test_items_until_the_deadline_stop_right_after_the_item_that_passed_it():
    """The clock is read after every item, not every ``CHECK_EVERY``: an item that ran
    until past the deadline (here it works until the clock says so) is the turn's last,
    and the items left are done at the next turns, each once, in order."""
    begin_turn(time.monotonic())
    deadline = turn_deadline()
    done: list[int] = []
    ended_past: list[bool] = []

    def one(i: int) -> None:
        done.append(i)
        if i == 2:
            while time.monotonic() < deadline:
                pass
        ended_past.append(time.monotonic() >= deadline)

    items = iter(range(3 * CHECK_EVERY))
    assert not until_deadline(items, one)
    # item 2 at the latest (sooner if the process was off the CPU for the whole budget)
    assert 1 <= len(done) <= 3 and ended_past[-1] and not any(ended_past[:-1])
    begin_turn(time.monotonic() - 3600.0)       # every later turn is spent: one item each
    left, calls = 3 * CHECK_EVERY - len(done), 1
    while not until_deadline(items, done.append):
        calls += 1
    assert done == list(range(3 * CHECK_EVERY)) and calls == left + 1


def test_a_range_of_costly_items_reads_the_clock_more_often():
    """``every``: a spent turn advances such a range by that many items, not
    ``CHECK_EVERY`` (a deleted queue's bindings, 15-30 us each, read it every 8)."""
    begin_turn(time.monotonic() - 3600.0)
    part = TurnRange(0, 100, every=8)
    assert list(part) == list(range(8)) and part.next == 8
