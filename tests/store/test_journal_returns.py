"""Returns in the journal (``RecordType.RETURNED``): a message one queue holds that comes back
(nack/reject with requeue, consumer gone) costs a few bytes in one record per queue and turn,
not a rewrite of its whole record; its count and cleared delivered flag survive a crash, a
start from the index saved at a clean stop, and the compaction of the segment holding the
record, which rewrites the message with its count before the segment goes."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.store.test_journal_saved_index import (  # noqa: F401  (an autouse fixture)
    QA, QB, RECORD, loaded_maps_as_arrays)
from warren.model.message import Message
from warren.store.journal import saved_index
from warren.store.journal.index import RecordType
from warren.store.journal.store import JournalStore


def opened(directory: Path, segment_size: int = 32 * 1024 * 1024, lazy: bool = True):
    store = JournalStore(directory, segment_size=segment_size)
    store.open()
    return store, store.recover(body_size=Message.record_body_size if lazy else None)


def records_of(store: JournalStore) -> list[tuple[int, bytes]]:
    log = store._log
    return [(record_type, bytes(payload)) for number in log.segment_numbers()
            for _, record_type, payload in log.records(number)]


def crashed_copy(directory: Path, tmp_path: Path, name: str) -> Path:
    """The journal as a kill -9 leaves it, with neither saved index nor checkpoint: what a
    full replay recovers."""
    copy = tmp_path / name
    shutil.copytree(directory, copy)
    (copy / saved_index.SAVED_INDEX).unlink(missing_ok=True)
    (copy / saved_index.CHECKPOINT).unlink(missing_ok=True)
    return copy


def test_returns_are_one_small_record_and_survive_a_crash_in_queue_order(tmp_path):
    journal = tmp_path / "journal"
    store, _ = opened(journal)
    for msg_id in range(1, 7):
        store.publish(msg_id, RECORD + b"body-%d" % msg_id * 20, [QA])
    store.publish(7, RECORD + b"shared" * 20, [QA, QB])
    store.mark_delivered(QA, list(range(1, 8)))
    store.flush()
    before = records_of(store)
    store.set_delivery_counts(QA, {2: 1, 4: 3, 7: 1})
    store.set_delivery_counts(QA, {2: 2})     # again: the later record wins
    store.set_delivery_counts(QA, {99: 1})    # not in the queue: nothing written
    store.flush()
    written = records_of(store)[len(before):]
    kinds = [kind for kind, _ in written]
    # the two messages only a holds: RETURNED records, no body; the shared one: rewritten
    assert kinds.count(RecordType.RETURNED) == 2 and kinds.count(RecordType.MESSAGE) == 1
    assert all(len(payload) < 40 for kind, payload in written if kind == RecordType.RETURNED)
    store.abandon()   # kill -9

    for lazy in (True, False):
        _, state = opened(crashed_copy(journal, tmp_path, f"replayed-{lazy}"), lazy=lazy)
        assert list(state.queues[QA].msg_ids) == [1, 2, 3, 4, 5, 6, 7]
        assert state.delivery_counts == {(QA, 2): 2, (QA, 4): 3, (QA, 7): 1}
        assert state.delivered == {(QA, 1), (QA, 3), (QA, 5), (QA, 6)}
    # and a clean stop's saved index carries the same
    store, state = opened(journal)
    store.ack(QA, [4])
    store.mark_delivered(QA, [2])
    store.close()
    _, state = opened(journal)
    assert list(state.queues[QA].msg_ids) == [1, 2, 3, 5, 6, 7]
    assert state.delivery_counts == {(QA, 2): 2, (QA, 7): 1}
    assert state.delivered == {(QA, 1), (QA, 2), (QA, 3), (QA, 5), (QA, 6)}


def test_compacting_a_segment_with_live_returns_rewrites_their_messages_with_the_count(
        tmp_path):
    # small segments: the returns land in a segment the churn after them leaves mostly dead;
    # its compaction must carry the counts (rewriting the messages) before it is deleted, so
    # a crash afterwards replays them (the RETURNED record itself is gone)
    journal = tmp_path / "journal"
    size = 8 * 1024
    store, _ = opened(journal, segment_size=size)
    for msg_id in range(1, 4):
        store.publish(msg_id, RECORD + b"k" * 50, [QA])
    store.set_delivery_counts(QA, {1: 2, 3: 5})
    store.flush()
    returned_segment = store._log.head
    msg_id = 3
    for _ in range(40):   # publish and ack: dead weight after the returns
        for _ in range(20):
            msg_id += 1
            store.publish(msg_id, RECORD + b"x" * 100, [QA])
            store.ack(QA, [msg_id])
        store.flush()
        if returned_segment not in store._log.segment_numbers():
            break
    for _ in range(10):
        store.flush()
    assert returned_segment not in store._log.segment_numbers()
    assert store.compactions > 0
    store.abandon()
    _, state = opened(crashed_copy(journal, tmp_path, "replayed"))
    assert list(state.queues[QA].msg_ids) == [1, 2, 3]
    assert state.delivery_counts == {(QA, 1): 2, (QA, 3): 5}
    assert state.delivered == set()
