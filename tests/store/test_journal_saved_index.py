"""The journal's saved index (``store/journal/saved_index.py``): a clean close saves it, a lazy
recovery uses it instead of replaying, and anything doubtful falls back to the replay.

In-process and small: each test builds a journal of a few messages (two queues, one message
shared, an ack, a delivered flag, a delivery count) and compares recoveries.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from warren.amqp.properties import CODEC
from warren.model.message import Message, Properties, record_head
from warren.store.journal import index as journal_index
from warren.store.journal import saved_index
from warren.store.journal.store import JournalStore

QA = "/\x00a"
QB = "/\x00b"
RECORD = record_head("", "a", CODEC.encode(Properties(delivery_mode=2)))


@pytest.fixture(autouse=True)
def loaded_maps_as_arrays(monkeypatch):
    """The index a recovery leaves as arrays from the first message (``ARRAYS_FROM``): these
    small journals then run the code deep queues run (the broker-level tests keep dicts)."""
    monkeypatch.setattr(journal_index, "ARRAYS_FROM", 0)


def lazy(directory: Path) -> tuple[JournalStore, object]:
    store = JournalStore(directory)
    store.open()
    return store, store.recover(body_size=Message.record_body_size)


def build(directory: Path) -> None:
    """A journal closed cleanly (so with its index saved)."""
    store, _ = lazy(directory)
    store.put_definition("queue", QA, {"durable": True})
    for msg_id in range(1, 13):
        queues = [QA, QB] if msg_id % 4 == 0 else [QA]
        store.publish(msg_id, RECORD + b"m" * msg_id, queues)
    store.ack(QA, [1, 2, 4])
    store.mark_delivered(QA, [3])
    store.set_delivery_counts(QA, {5: 2})
    store.close()


def summary(state) -> tuple:
    return (
        {key: (list(q.msg_ids), list(q.sizes)) for key, q in state.queues.items()},
        state.records, state.delivered, state.delivery_counts, state.definitions,
        state.max_msg_id,
    )


def replayed(directory: Path, tmp_path: Path) -> tuple:
    """The state a full replay of a copy of ``directory`` (without the saved index and the
    checkpoint) gives."""
    copy = tmp_path / "replayed"
    shutil.copytree(directory, copy)
    (copy / saved_index.SAVED_INDEX).unlink(missing_ok=True)
    (copy / saved_index.CHECKPOINT).unlink(missing_ok=True)
    store, state = lazy(copy)
    store.abandon()
    return summary(state)


def test_a_clean_close_saves_the_index_and_the_next_start_uses_it(tmp_path, caplog):
    journal = tmp_path / "journal"
    build(journal)
    assert (journal / saved_index.SAVED_INDEX).exists()
    expected = replayed(journal, tmp_path)
    assert expected[0][QA][0] == [3, 5, 6, 7, 8, 9, 10, 11, 12]
    with caplog.at_level(logging.INFO, logger="warren.store.journal"):
        store, state = lazy(journal)
    assert "recovered 10 messages in 2 queues, 1 definitions from the saved index" in caplog.text
    assert summary(state) == expected
    assert not (journal / saved_index.SAVED_INDEX).exists()   # gone before any append
    store.close()


def test_a_crash_after_a_start_from_the_saved_index_replays_and_keeps_acks(tmp_path, caplog):
    journal = tmp_path / "journal"
    build(journal)
    store, _ = lazy(journal)
    store.ack(QA, [3, 5])
    store.publish(13, RECORD + b"new", [QA])
    store.flush()
    store.abandon()   # what kill -9 leaves: no close, no saved index
    assert not (journal / saved_index.SAVED_INDEX).exists()
    with caplog.at_level(logging.INFO, logger="warren.store.journal"):
        store, state = lazy(journal)
    assert "from the saved index" not in caplog.text
    assert list(state.queues[QA].msg_ids) == [6, 7, 8, 9, 10, 11, 12, 13]
    assert list(state.queues[QB].msg_ids) == [4, 8, 12]
    store.close()


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00" * 7)


def grow_the_journal(path: Path) -> None:
    """A segment that is not the size the saved index covers (as if written after it)."""
    segment = sorted(path.parent.glob("*.log"))[-1]
    with segment.open("ab") as file:
        file.write(b"\x00" * 16)


def write_a_segment_in_place(path: Path) -> None:
    """A segment of the same size written after the save (a disk fault, a hand): the bytes
    written back are the same here, so the replay's result is known; the file's time moves
    on a whole second, past any file system's timestamp granularity."""
    segment = sorted(path.parent.glob("*.log"))[0]
    stat = segment.stat()
    with segment.open("r+b") as file:
        head = file.read(64)
        file.seek(0)
        file.write(head)
    os.utime(segment, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("damage, reason", [
    (flip_a_byte, "checksum mismatch"),
    (truncate, "truncated"),
    (garbage, "truncated: 7 bytes"),
    (grow_the_journal, "the segments on disk are not the ones it covers"),
    (write_a_segment_in_place, "the segments on disk are not the ones it covers"),
])
def test_a_damaged_or_stale_saved_index_falls_back_to_the_replay(tmp_path, caplog, damage,
                                                                 reason):
    journal = tmp_path / "journal"
    build(journal)
    expected = replayed(journal, tmp_path)
    damage(journal / saved_index.SAVED_INDEX)
    if damage is grow_the_journal:   # the replay cuts the torn tail the bytes make
        expected = replayed(journal, tmp_path / "grown")
    with caplog.at_level(logging.INFO, logger="warren.store.journal"):
        store, state = lazy(journal)
    assert "saved index not used" in caplog.text and reason in caplog.text
    assert "from the saved index" not in caplog.text
    assert summary(state) == expected
    assert not (journal / saved_index.SAVED_INDEX).exists()
    store.close()


def test_a_full_recovery_discards_the_saved_index_it_cannot_use(tmp_path):
    journal = tmp_path / "journal"
    build(journal)
    store = JournalStore(journal)
    store.open()
    state = store.recover()   # not lazy: every record is returned, so the journal is read
    assert sorted(state.records) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert not (journal / saved_index.SAVED_INDEX).exists()
    store.publish(13, RECORD, [QA])
    store.close()   # and saves none (it has no measure of bodies)
    assert not (journal / saved_index.SAVED_INDEX).exists()


def test_the_saved_index_of_many_segments_after_compaction_matches_the_replay(tmp_path, caplog):
    journal = tmp_path / "journal"
    store = JournalStore(journal, segment_size=4096)
    store.open()
    store.recover(body_size=Message.record_body_size)
    for msg_id in range(1, 1501):
        queue = QB if msg_id % 7 == 0 else QA
        store.publish(msg_id, RECORD + b"b" * (msg_id % 50), [queue])
        if msg_id % 200 == 0:
            store.mark_delivered(QA, [msg_id])
        if queue == QA and msg_id % 50:
            store.ack(QA, [msg_id])
        if msg_id % 100 == 0:
            store.flush()
    for _ in range(20):   # each flush compacts a segment and deletes what the last one freed
        store.flush()
    assert store.compactions > 0
    store.close()
    expected = replayed(journal, tmp_path)
    with caplog.at_level(logging.INFO, logger="warren.store.journal"):
        store, state = lazy(journal)
    assert "from the saved index" in caplog.text
    assert summary(state) == expected
    store.close()
