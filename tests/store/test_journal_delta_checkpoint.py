"""Delta checkpoints (``JournalStore``, ``JournalIndex.export_delta``): after a full
checkpoint, the next ones write only what changed since the one before (``index.delta.N``),
until ``checkpoint_deltas`` of them or a share of the full one changed; a start applies the
full one and its deltas in order, while each follows the one before, then replays the rest.
Each test compares the recovered state with a full replay of a copy.

In-process and small, on the clock of :mod:`tests.store.test_journal_checkpoint`, with the
maps as arrays from the first message (what deep queues run).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.store.test_journal_checkpoint import (checkpointed, lazy, running,
                                                 starts_as_a_replay)
from tests.store.test_journal_saved_index import (  # noqa: F401  (an autouse fixture)
    QA, QB, RECORD, loaded_maps_as_arrays, replayed, summary)
from warren.store.journal import index as journal_index
from warren.store.journal import saved_index
from warren.store.journal.store import JournalStore

QC = "queue:/:c"


@pytest.fixture(autouse=True)
def folded_often(monkeypatch):
    """The running index folds into arrays every few changes, queues too (``fold``): the
    deltas then patch arrays, as at depth."""
    monkeypatch.setattr(journal_index, "FOLD_EVERY", 8)
    monkeypatch.setattr(journal_index, "QUEUE_ARRAYS_FROM", 1)


def traffic(store: JournalStore, step: int) -> None:
    """One round of mixed traffic on three queues: publishes (some to two queues), acks at
    the head and in the middle, delivered flags, returns (a count for one queue's message,
    a rewrite for a shared one), and every third round a purge of one queue."""
    base = 100 * step + 1
    for msg_id in range(base, base + 40):
        queues = [QA, QB] if msg_id % 5 == 0 else [QA] if msg_id % 3 else [QC]
        store.publish(msg_id, RECORD + bytes([msg_id % 251]) * (msg_id % 17 + 1), queues)
    older = base - 100
    if older > 0:
        store.ack(QA, [older + 1, older + 2, older + 11, base + 1])
        store.ack(QB, [older + 5 * k for k in range(0, 8, 3)])
        store.mark_delivered(QA, [older + 4, older + 7, base + 2])
        store.set_delivery_counts(QA, {older + 13: 2, older + 10: 1})   # 10: shared
        store.mark_delivered(QC, [older + 3 * k for k in range(1, 5)])
    if step % 3 == 2:
        store.purge_queue(QC)


def filled(journal: Path, rounds: int, **kwargs) -> JournalStore:
    """A store that took a checkpoint after each round of ``traffic`` (the first full, the
    next deltas), then one more round after the last: left running."""
    store, clock, _ = running(journal, **kwargs)
    for kind, key in (("queue", QA), ("queue", QB), ("queue", QC)):
        store.put_definition(kind, key, {"durable": True})
    for step in range(rounds):
        traffic(store, step)
        checkpointed(store, clock)
    traffic(store, rounds)
    store.flush()
    return store


def deltas_in(journal: Path) -> list[str]:
    return sorted(p.name for p in journal.glob(saved_index.DELTA_PREFIX + "*"))


def test_a_start_from_a_checkpoint_and_its_deltas_gives_what_the_replay_gives(tmp_path,
                                                                              caplog):
    journal = tmp_path / "journal"
    store = filled(journal, 7)
    assert store.checkpoint_deltas_written == 6
    assert deltas_in(journal) == [saved_index.delta_name(n) for n in range(1, 7)]
    store.abandon()   # kill -9
    expected = replayed(journal, tmp_path)
    with caplog.at_level(logging.INFO, logger="warren.store.journal"):
        store, state = lazy(journal)
    assert "the checkpoint and 6 deltas on it" in caplog.text
    assert "not used" not in caplog.text
    assert summary(state) == expected
    assert state.delivered and state.delivery_counts   # the flags and counts carried over
    modes = saved_index.read(str(journal), saved_index.delta_name(6))["queue_modes"]
    assert modes[QA] == "patch"   # QC, purged, is written whole
    store.close()


def test_after_checkpoint_deltas_of_them_the_next_checkpoint_is_full(tmp_path, caplog):
    journal = tmp_path / "journal"
    store = filled(journal, 10, checkpoint_deltas=3)
    # full, 3 deltas, full (the deltas deleted), 3 deltas, full, 1 delta
    assert store.checkpoint_deltas_written == 7
    assert deltas_in(journal) == [saved_index.delta_name(1)]
    store.abandon()
    log = starts_as_a_replay(journal, tmp_path, caplog)
    assert "the checkpoint and 1 deltas on it" in log


def test_a_damaged_or_half_written_delta_ends_the_chain_and_the_journal_says_the_rest(
        tmp_path, caplog):
    journal = tmp_path / "journal"
    store = filled(journal, 5)
    store.abandon()
    expected = replayed(journal, tmp_path)
    last = journal / saved_index.delta_name(4)
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF
    last.write_bytes(bytes(data))
    # what a writer killed mid-way leaves: a temporary file, never renamed
    (journal / (saved_index.delta_name(5) + ".tmp")).write_bytes(b"\0" * 100)
    with caplog.at_level(logging.INFO, logger="warren.store.journal"):
        store, state = lazy(journal)
    assert "delta 4 not used (checksum mismatch)" in caplog.text
    assert "the checkpoint and 3 deltas on it" in caplog.text
    assert summary(state) == expected
    store.close()


def test_a_delta_left_from_an_older_full_checkpoint_is_not_applied(tmp_path, caplog):
    journal = tmp_path / "journal"
    store = filled(journal, 3)   # full, deltas 1 and 2
    old = (journal / saved_index.delta_name(2)).read_bytes()
    store, clock = store, None
    store.abandon()
    # a crash between a full checkpoint's rename and the deletion of the deltas before it
    store, clock, _ = running(journal)   # its first checkpoint is full: the deltas go
    traffic(store, 10)
    checkpointed(store, clock)
    traffic(store, 11)
    checkpointed(store, clock)   # a delta 1 of the new chain
    store.flush()
    store.abandon()
    assert deltas_in(journal) == [saved_index.delta_name(1)]
    (journal / saved_index.delta_name(2)).write_bytes(old)
    log = starts_as_a_replay(journal, tmp_path, caplog)
    assert "the checkpoint and 1 deltas on it" in log


def test_a_delta_that_cannot_be_written_makes_the_next_checkpoint_full(tmp_path, caplog):
    journal = tmp_path / "journal"
    store, clock, _ = running(journal)
    store.put_definition("queue", QA, {"durable": True})
    traffic(store, 0)
    checkpointed(store, clock)
    traffic(store, 1)
    blocker = journal / (saved_index.delta_name(1) + ".tmp")
    blocker.mkdir()   # the writer cannot create its temporary file: as a disk fault would
    clock.advance(3600)
    with caplog.at_level(logging.WARNING, logger="warren.store.journal"):
        store.flush()
        while "checkpoint not written" not in caplog.text:
            clock.deliver()
    blocker.rmdir()
    traffic(store, 2)
    checkpointed(store, clock)
    assert store.checkpoint_deltas_written == 0 and store.checkpoints == 2
    traffic(store, 3)
    checkpointed(store, clock)
    assert store.checkpoint_deltas_written == 1
    store.flush()
    store.abandon()
    expected = replayed(journal, tmp_path)
    store, state = lazy(journal)
    assert summary(state) == expected
    store.close()


def test_messages_moved_by_compaction_are_moved_by_the_delta(tmp_path, caplog):
    journal = tmp_path / "journal"
    store, clock, _ = running(journal, segment_size=4096)
    for msg_id in range(1, 301):
        store.publish(msg_id, RECORD + b"b" * (msg_id % 50), [QB if msg_id % 7 == 0 else QA])
    checkpointed(store, clock)   # full
    for msg_id in range(1, 301):   # most die: compaction moves the rest
        if msg_id % 7 and msg_id % 50:
            store.ack(QA, [msg_id])
        if msg_id % 60 == 0:
            store.flush()
    for _ in range(20):   # each flush compacts a segment and deletes what the last one freed
        store.flush()
    assert store.compactions > 0
    checkpointed(store, clock)   # a delta: the moved messages' new locations
    assert store.checkpoint_deltas_written == 1
    for msg_id in range(301, 331):
        store.publish(msg_id, RECORD + b"c", [QA])
    store.ack(QB, [7, 14])
    store.flush()
    store.abandon()
    log = starts_as_a_replay(journal, tmp_path, caplog)
    assert "the checkpoint and 1 deltas on it" in log


def test_the_deltas_of_a_chain_are_not_applied_to_the_index_a_clean_stop_saved(tmp_path,
                                                                             caplog):
    journal = tmp_path / "journal"
    store = filled(journal, 3)   # full, deltas 1 and 2
    store.close()   # saves the index: the next start promotes it to the checkpoint
    store, clock, _ = running(journal)
    traffic(store, 10)
    store.flush()
    store.abandon()   # before its first checkpoint: the deltas of the old chain are still there
    assert deltas_in(journal) == [saved_index.delta_name(1), saved_index.delta_name(2)]
    log = starts_as_a_replay(journal, tmp_path, caplog)
    assert "from the checkpoint at segment" in log
    assert "deltas on it" not in log
