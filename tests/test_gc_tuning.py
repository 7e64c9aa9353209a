"""warren.gc_tuning against CPython's real collector: survivors are frozen out of later scans,
cycles that die while frozen are freed after a thaw, and a wrong ``gc_tuning`` value is refused.

The policy is tried in this process (it is the interpreter's collector that is under test, not
a broker component); every test uninstalls it and unfreezes what it froze.
"""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from tests.operator.test_startup_errors import Ports, assert_refused, run_warren
from warren.gc_tuning import (BARREN_YOUNG, MIDDLE_THRESHOLD, THAW_GROWTH_MAX,
                               YOUNG_THRESHOLD, CollectorTuning)


class Node:
    """A cycle (it refers to itself) that only the cyclic collector can free."""

    def __init__(self) -> None:
        self.me = self


def young_cycles() -> None:
    """Cycles that die young, freed by the next young collection: some 4% of the blocks in
    objects (each Node and its __dict__), what a workload that makes cycles shows. They are
    made with the collector off: in a big process (a test worker that ran other files first)
    there are more of them than the young threshold, and an automatic young collection while
    they are all alive would find them live and freeze them (``BARREN_YOUNG``)."""
    gc.disable()
    try:
        nodes = [Node() for _ in range(sys.getallocatedblocks() // 50)]
        del nodes
    finally:
        gc.enable()


@pytest.fixture
def tuning():
    tuning = CollectorTuning(thaw_growth=1e9)   # no thaw unless a test asks for one
    with tuning.recovering():
        pass
    tuning.install()
    yield tuning
    tuning.uninstall()
    gc.unfreeze()
    gc.collect()


def test_recovery_runs_with_the_collector_off_and_is_frozen():
    tuning = CollectorTuning()
    before = gc.get_freeze_count()
    with tuning.recovering():
        assert not gc.isenabled()
        recovered = [Node() for _ in range(1000)]
    try:
        assert gc.isenabled()
        assert gc.get_freeze_count() >= before + len(recovered)
    finally:
        gc.unfreeze()


def test_survivors_of_a_collection_are_frozen_out_of_later_scans(tuning):
    before = gc.get_freeze_count()
    kept = [Node() for _ in range(1000)]
    gc.collect(1)
    assert gc.get_freeze_count() >= before + len(kept)
    # a later full collection does not see them: nothing of theirs is examined or freed
    assert all(not any(node is obj for obj in gc.get_objects(2)) for node in kept[:3])


def test_survivors_of_a_young_collection_that_freed_nothing_are_frozen_at_once(tuning):
    """Long-lived state being made (no cycle died young): frozen by the young collection
    itself, so generation 1 does not walk it again."""
    gc.collect(0)
    before = gc.get_freeze_count()
    kept = [[Node.__name__] for _ in range(1000)]     # live, no cycle
    gc.collect(0)
    assert gc.get_freeze_count() >= before + len(kept)
    assert not any(obj is kept[0] for obj in gc.get_objects(1))


def test_survivors_of_a_young_collection_that_freed_cycles_go_to_generation_1(tuning):
    """Cycles die young: the survivors are left to generation 1, which may find those that
    die a little later."""
    gc.collect(0)
    before = gc.get_freeze_count()
    kept = [[Node.__name__] for _ in range(1000)]
    dead = [Node() for _ in range(int(BARREN_YOUNG * gc.get_threshold()[0]) + 1)]
    del dead
    gc.collect(0)
    assert gc.get_freeze_count() == before
    assert any(obj is kept[0] for obj in gc.get_objects(1))


def test_a_cycle_that_dies_while_frozen_is_freed_after_the_thaw(tuning):
    nodes = [Node() for _ in range(100)]
    gc.collect(1)                        # frozen
    refs = [weakref.ref(node) for node in nodes]
    del nodes
    gc.collect()
    assert all(ref() is not None for ref in refs)    # frozen: not freed (the bounded leak)
    assert not tuning.thawed
    # "grown" past the bound: as if the heap had been tiny at the last thaw (comparing with the
    # real blocks of this process would depend on what earlier tests left allocated)
    tuning.thaw_growth, tuning.growth, tuning.thaw_min_blocks, tuning.base = 2.0, 2.0, 0, 1
    young_cycles()
    gc.collect(1)
    assert tuning.thawed and tuning.thaws == 1
    gc.collect()                         # the full collection after a thaw scans everything
    assert all(ref() is None for ref in refs)
    assert not tuning.thawed


def test_a_thaw_that_frees_nothing_spaces_the_next_one_out(tuning):
    """While the heap grows with live data a thaw frees nothing: the growth asked for before
    the next one is multiplied, up to THAW_GROWTH_MAX; a thaw that frees cycles (here 2
    objects for each of blocks/50 nodes: some 4% of the blocks) puts it back."""
    tuning.thaw_growth, tuning.growth, tuning.thaw_min_blocks = 2.0, 2.0, 0
    for expected in (4.0, THAW_GROWTH_MAX):
        tuning.base = 1                      # as if the heap had been tiny at the last thaw
        young_cycles()
        gc.collect(1)
        assert tuning.thawed
        gc.collect()                         # the thaw's full collection: nothing to free
        assert not tuning.thawed and tuning.growth == expected
    nodes = [Node() for _ in range(sys.getallocatedblocks() // 50)]
    gc.collect(1)                            # frozen (no thaw: the heap has not grown 4x)
    assert not tuning.thawed
    del nodes                                # cycles that die frozen
    tuning.base = 1
    young_cycles()
    gc.collect(1)
    assert tuning.thawed
    gc.collect()
    assert tuning.growth == 2.0


def test_growth_without_cycles_dying_young_is_no_reason_to_thaw(tuning):
    """The heap grows with live data (a million bindings being made): the young collections
    free no cycles, so no thaw and no full scan of the heap, however much it grew; once
    cycles die young again the thaw comes."""
    tuning.thaw_growth, tuning.growth, tuning.thaw_min_blocks = 2.0, 2.0, 0
    gc.collect(1)
    tuning.cycles_freed = 0
    tuning.base = 1                          # "grown" far past the bound
    kept = [[Node.__name__] for _ in range(10_000)]   # live, no cycle
    gc.collect(1)
    assert not tuning.thawed and tuning.thaws == 0
    assert not any(obj is kept[0] for obj in gc.get_objects(2))   # frozen
    young_cycles()
    gc.collect(1)
    assert tuning.thawed and tuning.thaws == 1
    gc.collect()


def test_after_uninstall_survivors_are_no_longer_frozen(tuning):
    tuning.uninstall()
    assert tuning._collected not in gc.callbacks
    gc.unfreeze()
    kept = [Node() for _ in range(100)]
    gc.collect(1)
    assert gc.get_freeze_count() == 0
    assert any(kept[0] is obj for obj in gc.get_objects(2))


def test_young_collections_are_spaced_out_while_installed_and_restored_after():
    before = gc.get_threshold()
    tuning = CollectorTuning()
    tuning.install()
    try:
        assert gc.get_threshold() == (YOUNG_THRESHOLD, MIDDLE_THRESHOLD, before[2])
        tuning.install()                  # a second install changes nothing
        assert gc.get_threshold() == (YOUNG_THRESHOLD, MIDDLE_THRESHOLD, before[2])
    finally:
        tuning.uninstall()
    assert gc.get_threshold() == before


def test_wrong_gc_tuning_value_is_refused_by_name(tmp_path):
    ports = Ports()
    result = run_warren(["--data-dir", str(tmp_path / "d"), *ports.args()],
                        env={"WARREN_GC_TUNING": "sometimes"})
    assert_refused(result, ports.all(), "WARREN_GC_TUNING=sometimes", "true or false")
