"""The journal's checkpoints (``JournalStore``, module doc): a running store saves its index as
of a journal position; a start after a crash loads it and replays only the records after it,
and anything doubtful (a covered segment changed, a damaged or half-written file) falls back
to the full replay. Each test compares the recovered state with a full replay of a copy.

In-process and small: the store runs on a Twisted ``Clock`` whose ``callFromThread`` queues
the checkpoint thread's results for the test to deliver, so a checkpoint is awaited, not
timed; ``checkpoint_bytes=1`` makes one due at every flush. The checkpoint is written by a
forked child (``forked_writer``), or, when the process cannot fork, from a copy by the thread.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
from array import array
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from tests.store.test_journal_saved_index import (  # noqa: F401  (an autouse fixture)
    QA, QB, RECORD, loaded_maps_as_arrays, replayed, summary)
from warren.model.message import Message
from warren.store.journal import saved_index
from warren.store.journal.store import JournalStore


class ThreadClock(Clock):
    """A Clock that also takes ``callFromThread``: the calls wait for :meth:`deliver`."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: queue.SimpleQueue = queue.SimpleQueue()

    def callFromThread(self, f, *args, **kwargs) -> None:  # noqa: N802 (Twisted's name)
        self.from_threads.put((f, args, kwargs))

    def deliver(self) -> None:
        """Run the next call a thread handed over (waits up to a minute for it)."""
        f, args, kwargs = self.from_threads.get(timeout=60)
        f(*args, **kwargs)


def running(directory: Path, **kwargs) -> tuple[JournalStore, ThreadClock, object]:
    clock = ThreadClock()
    store = JournalStore(directory, reactor=clock, checkpoint_bytes=1, **kwargs)
    store.open()
    return store, clock, store.recover(body_size=Message.record_body_size)


def checkpointed(store: JournalStore, clock: ThreadClock) -> None:
    """Flush (which makes a checkpoint due) and wait for the checkpoint to be written."""
    before = store.checkpoints
    clock.advance(3600)   # past the wait after the previous checkpoint
    store.flush()
    while store.checkpoints == before:   # the journal's own disk thread hands results too
        clock.deliver()
    assert store.checkpoints == before + 1


def build(directory: Path, **kwargs) -> tuple[JournalStore, ThreadClock]:
    """A checkpoint after the first part, then acks of messages it holds, a delivery count,
    a delivered flag and new messages after it; the store is left running (its
    ``checkpoint_position``: the checkpoint's), and returned with its clock."""
    store, clock, _ = running(directory, **kwargs)
    store.put_definition("queue", QA, {"durable": True})
    for msg_id in range(1, 13):
        store.publish(msg_id, RECORD + b"m" * msg_id, [QA, QB] if msg_id % 4 == 0 else [QA])
    store.ack(QA, [1, 2])
    checkpointed(store, clock)
    store.ack(QA, [3, 4])
    store.mark_delivered(QA, [5])
    store.set_delivery_counts(QA, {6: 2})
    store.put_definition("queue", QB, {"durable": True})
    for msg_id in range(13, 17):
        store.publish(msg_id, RECORD + b"n" * msg_id, [QA])
    store.ack(QA, [13])
    store.flush()   # durable, but no second checkpoint: the clock has not moved on
    return store, clock


def lazy(directory: Path) -> tuple[JournalStore, object]:
    store = JournalStore(directory, checkpoint_bytes=0)
    store.open()
    return store, store.recover(body_size=Message.record_body_size)


def starts_as_a_replay(journal: Path, tmp_path: Path, caplog) -> str:
    """The store left at ``journal`` starts (from its checkpoint, lazily) holding what a full
    replay of a copy gives; what the start logged, to look for how it started."""
    expected = replayed(journal, tmp_path)
    with caplog.at_level(logging.INFO, logger="warren.store.journal"):
        store, state = lazy(journal)
    assert summary(state) == expected
    store.close()
    return caplog.text


def no_fork() -> int:
    raise OSError(errno.ENOMEM, "Cannot allocate memory")


@pytest.mark.parametrize("forks", [True, False], ids=["forked-writer", "fork-fails-copy"])
def test_a_start_after_a_crash_loads_the_checkpoint_and_replays_what_follows(tmp_path, caplog,
                                                                             monkeypatch, forks):
    if not forks:   # the index is copied on the reactor thread and written by the thread
        monkeypatch.setattr(os, "fork", no_fork)
    journal = tmp_path / "journal"
    store, _ = build(journal)
    segment, offset = store.checkpoint_position
    store.abandon()   # what kill -9 leaves: no close, no saved index
    assert not (journal / saved_index.SAVED_INDEX).exists()
    assert (journal / saved_index.CHECKPOINT).exists()
    expected = replayed(journal, tmp_path)
    assert expected[0][QA][0] == [5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16]
    with caplog.at_level(logging.INFO, logger="warren.store.journal"):
        store, state = lazy(journal)
    assert (f"recovered 12 messages in 2 queues, 2 definitions from the checkpoint at segment "
            f"{segment} offset {offset} and 9 records after it") in caplog.text
    assert summary(state) == expected
    assert state.delivered == {(QA, 5)} and state.delivery_counts == {(QA, 6): 2}
    store.close()


@pytest.mark.parametrize("segment_size", [512, 32 * 1024 * 1024],
                         ids=["a-sealed-segment", "the-checkpoint-segment-before-it"])
def test_a_covered_segment_written_since_falls_back_to_the_replay(tmp_path, caplog,
                                                                   segment_size):
    journal = tmp_path / "journal"
    store, _ = build(journal, segment_size=segment_size)
    segment, offset = store.checkpoint_position
    store.abandon()
    assert (segment > 1) == (segment_size == 512)
    path = sorted(journal.glob("*.log"))[0]   # wholly covered, or covered up to ``offset``
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF   # inside the first MESSAGE record: the replay skips the rest of it
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    log = starts_as_a_replay(journal, tmp_path, caplog)
    assert "checkpoint not used (the segments it covers changed since)" in log
    assert "from the checkpoint" not in log


def test_a_torn_or_half_written_checkpoint_is_never_used(tmp_path, caplog):
    journal = tmp_path / "journal"
    build(journal)[0].abandon()
    expected = replayed(journal, tmp_path)
    path = journal / saved_index.CHECKPOINT
    whole = path.read_bytes()
    # a kill during the next write: the temporary file is partial, the last one whole
    (journal / (saved_index.CHECKPOINT + ".tmp")).write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.INFO, logger="warren.store.journal"):
        store, state = lazy(journal)
    assert "from the checkpoint at segment 1" in caplog.text
    assert summary(state) == expected
    store.abandon()
    caplog.clear()
    path.write_bytes(whole[:-5])   # a file cut short (no rename makes one: a disk fault)
    with caplog.at_level(logging.INFO, logger="warren.store.journal"):
        store, state = lazy(journal)
    assert "checkpoint not used (truncated" in caplog.text
    assert summary(state) == expected
    store.close()


def test_a_checkpoint_stays_valid_across_compaction_and_segment_deletion(tmp_path, caplog,
                                                                         monkeypatch):
    journal = tmp_path / "journal"
    store, clock, _ = running(journal, segment_size=4096)
    for msg_id in range(1, 301):
        store.publish(msg_id, RECORD + b"b" * (msg_id % 50), [QB if msg_id % 7 == 0 else QA])
    checkpointed(store, clock)
    numbers = sorted(p.name for p in journal.glob("*.log"))
    for msg_id in range(1, 301):   # most die after the checkpoint: compaction moves the rest
        if msg_id % 7 and msg_id % 50:
            store.ack(QA, [msg_id])
        if msg_id % 60 == 0:
            store.flush()
    for _ in range(20):   # each flush compacts a segment and deletes what the last one freed
        store.flush()
    assert store.compactions > 0
    assert set(numbers) - {p.name for p in journal.glob("*.log")}   # covered segments gone
    store.abandon()
    log = starts_as_a_replay(journal, tmp_path, caplog)
    assert "from the checkpoint at segment" in log


def test_the_saved_index_of_a_clean_stop_goes_on_as_the_checkpoint(tmp_path, caplog):
    journal = tmp_path / "journal"
    store, _ = build(journal)
    store.close()
    store, clock, _ = running(journal)   # from the saved index, which becomes the checkpoint
    assert not (journal / saved_index.SAVED_INDEX).exists()
    assert (journal / saved_index.CHECKPOINT).exists()
    store.ack(QA, [5, 6])
    store.publish(17, RECORD + b"after", [QB])
    store.flush()
    assert store.checkpoints == 0   # none was due: the saved index covered the journal
    store.abandon()
    expected = replayed(journal, tmp_path)
    with caplog.at_level(logging.INFO, logger="warren.store.journal"):
        store, state = lazy(journal)
    assert "from the checkpoint at segment 1" in caplog.text
    assert "and 2 records after it" in caplog.text   # one ACK (of two), one MESSAGE
    assert summary(state) == expected
    assert list(state.queues[QB].msg_ids) == [4, 8, 12, 17]
    store.close()


def test_a_checkpoint_that_cannot_be_written_keeps_the_last_and_is_tried_again(tmp_path,
                                                                               caplog):
    journal = tmp_path / "journal"
    store, clock = build(journal, checkpoint_deltas=0)   # full ones: their file blocked
    first = (journal / saved_index.CHECKPOINT).read_bytes()
    blocker = journal / (saved_index.CHECKPOINT + ".tmp")
    blocker.mkdir()   # the writer cannot create its temporary file: as a disk fault would
    store.publish(17, RECORD + b"x", [QA])
    clock.advance(3600)
    with caplog.at_level(logging.WARNING, logger="warren.store.journal"):
        store.flush()
        while "checkpoint not written" not in caplog.text:
            clock.deliver()
    assert store.checkpoints == 1
    assert (journal / saved_index.CHECKPOINT).read_bytes() == first
    blocker.rmdir()
    clock.advance(10)   # the retry, with nothing appended since
    while store.checkpoints == 1:
        clock.deliver()
    assert (journal / saved_index.CHECKPOINT).read_bytes() != first
    store.abandon()
    expected = replayed(journal, tmp_path)
    store, state = lazy(journal)
    assert summary(state) == expected
    assert 17 in state.queues[QA].msg_ids
    store.close()


def test_no_checkpoint_is_taken_when_they_are_off(tmp_path):
    journal = tmp_path / "journal"
    store = JournalStore(journal, checkpoint_bytes=0, reactor=ThreadClock())
    store.open()
    store.recover(body_size=Message.record_body_size)
    store.publish(1, RECORD, [QA])
    store.flush()
    store.abandon()
    assert not os.path.exists(journal / saved_index.CHECKPOINT)


def test_a_forked_checkpoint_carries_the_queues_a_start_takes_when_unchanged_since(tmp_path):
    # the forked writer saves each queue's ids and body sizes in queue order (as a clean
    # close does), so a start takes them for a queue no record after the checkpoint changed
    # (b) and reads the others from the index (a: acked and published to since)
    journal = tmp_path / "journal"
    store, _ = build(journal)
    store.abandon()
    content = saved_index.read(str(journal), saved_index.CHECKPOINT)
    assert content is not None
    ids, sizes = array("Q", content["order"][QB]), array("Q", content["sizes"][QB])
    assert ids.tolist() == [4, 8, 12]
    assert sizes.tolist() == [len(b"m" * msg_id) for msg_id in (4, 8, 12)]
    expected = replayed(journal, tmp_path)
    _, state = lazy(journal)
    assert summary(state) == expected
    assert state.queues[QB].sizes.tolist() == sizes.tolist()
    assert list(state.queues[QA].sizes) == [len(b"m" * msg_id) for msg_id in range(5, 13)] + [
        len(b"n" * msg_id) for msg_id in (14, 15, 16)]


def test_saved_queue_arrays_that_are_not_the_queues_are_not_used(tmp_path):
    # a checkpoint whose saved ids for b are not b's (whole and CRC-checked) and whose sizes
    # for a are short: the start reads both queues from the index instead
    journal = tmp_path / "journal"
    store, _ = build(journal)
    store.abandon()
    content = saved_index.read(str(journal), saved_index.CHECKPOINT)
    assert content is not None
    content["order"][QB] = array("Q", [100, 101, 102]).tobytes()
    content["sizes"][QB] = array("Q", [1, 1, 1]).tobytes()
    content["sizes"][QA] = content["sizes"][QA][:8]
    saved_index.write(str(journal), content, saved_index.CHECKPOINT)
    expected = replayed(journal, tmp_path)
    _, state = lazy(journal)
    assert summary(state) == expected


@pytest.mark.parametrize("acked", [[9], [5, 12]], ids=["middle", "head-and-last"])
def test_a_queue_acked_past_its_head_after_the_checkpoint_is_measured_from_the_index(
        tmp_path, acked):
    # after the checkpoint, a's head was acked and messages appended (``build``): the saved
    # sizes of what is left of it stand; an ack elsewhere in what it saved means the index
    journal = tmp_path / "journal"
    store, clock = build(journal)
    store.ack(QA, acked)
    store.flush()
    store.abandon()
    expected = replayed(journal, tmp_path)
    kept = [m for m in range(5, 13) if m not in acked]
    assert expected[0][QA] == (kept + [14, 15, 16], [len(b"m" * m) for m in kept] + [
        len(b"n" * m) for m in (14, 15, 16)])
    _, state = lazy(journal)
    assert summary(state) == expected
