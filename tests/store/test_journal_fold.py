"""The journal index folds what a running store adds into its arrays (``JournalIndex.fold``):
a queue filled live ends up costing what a recovered one does, by the store's own accounting
(``stats``: bytes in arrays, entries still in dicts), and nothing is lost or doubled by a
fold, whatever start follows (kill -9 with a checkpoint, kill -9 without, a clean stop).

The thresholds are made small so a few thousand messages fold many times; the checkpoint
tests' ``ThreadClock`` runs the store in-process and lets the test await a checkpoint.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from tests.store.test_journal_checkpoint import ThreadClock
from tests.store.test_journal_saved_index import QA, QB, RECORD, summary
from warren.model.message import Message
from warren.store.journal import array_maps, saved_index
from warren.store.journal import index as journal_index
from warren.store.journal.array_maps import LocationMap, QueueIds
from warren.store.journal.store import JournalStore


@pytest.fixture(autouse=True)
def small_folds(monkeypatch):
    monkeypatch.setattr(journal_index, "FOLD_EVERY", 500)
    monkeypatch.setattr(journal_index, "ARRAYS_FROM", 1000)
    monkeypatch.setattr(journal_index, "QUEUE_ARRAYS_FROM", 1000)
    monkeypatch.setattr(array_maps, "TRIM_FROM", 100)


def running(directory: Path, checkpoint_bytes: int = 0) -> tuple[JournalStore, ThreadClock, object]:
    clock = ThreadClock()
    store = JournalStore(directory, reactor=clock, checkpoint_bytes=checkpoint_bytes,
                         segment_size=256 * 1024)
    store.open()
    return store, clock, store.recover(body_size=Message.record_body_size)


def lazy(directory: Path) -> tuple[JournalStore, object]:
    store = JournalStore(directory, checkpoint_bytes=0, segment_size=256 * 1024)
    store.open()
    return store, store.recover(body_size=Message.record_body_size)


def checkpointed(store: JournalStore, clock: ThreadClock) -> None:
    """Flush and await the checkpoint that makes due; the clock is moved on at each step, as
    the compaction a flush starts may append what the checkpoint's position waits for."""
    before = store.checkpoints
    clock.advance(3600)
    store.flush()
    while store.checkpoints == before:
        clock.advance(0)
        clock.deliver()


def body(msg_id: int) -> bytes:
    return RECORD + bytes([msg_id % 251]) * (msg_id % 97)


def test_a_queue_filled_live_is_folded_into_arrays_by_the_store_s_accounting(tmp_path):
    store, clock, _ = running(tmp_path / "journal")
    store.put_definition("queue", QA, {"durable": True})
    for msg_id in range(1, 10_001):
        store.publish(msg_id, body(msg_id), [QA])
    stats = store.stats()
    # two maps (locations, the queue's ids) of 10,000: without folds, 20,000 dict entries
    assert stats["journal_index_dict_entries"] < 2 * journal_index.FOLD_EVERY
    assert stats["journal_index_array_bytes"] >= 10_000 * (25 + 17) - 2 * 500 * (25 + 17)
    assert stats["journal_index_folds"] >= 10_000 // 500 - 1
    # about what the arrays a start loads cost: 42 bytes a message, not 2 x 130 of dicts
    assert stats["journal_index_bytes"] < 10_000 * 60
    assert isinstance(store._index.messages, LocationMap)
    assert isinstance(store._index.queues[QA], QueueIds)
    # acked from the head: the dead slots at the head of the arrays go too
    for first in range(1, 9_001, 100):
        store.ack(QA, list(range(first, first + 100)))
    stats = store.stats()
    assert stats["journal_index_array_bytes"] <= 2 * 1_000 * (25 + 17) + 500 * (25 + 17)
    store.flush()
    store.close()
    store, state = lazy(tmp_path / "journal")
    assert list(state.queues[QA].msg_ids) == list(range(9_001, 10_001))
    assert list(state.queues[QA].sizes) == [
        Message.record_body_size(body(msg_id)) for msg_id in range(9_001, 10_001)]
    store.close()


@pytest.mark.parametrize("start", ["kill-9-checkpoint", "kill-9-replay", "clean-stop"])
@pytest.mark.parametrize("seed", [1, 2])
def test_folds_lose_and_double_nothing_whatever_start_follows(tmp_path, start, seed):
    """Random publishes (some to both queues), acks mostly from the head, deliveries,
    returns and a purge, with folds throughout; the start that follows gives exactly the
    model, as a full replay of a copy does."""
    rng = random.Random(seed)
    journal = tmp_path / "journal"
    store, clock, _ = running(journal, checkpoint_bytes=1 if start == "kill-9-checkpoint" else 0)
    model: dict[str, list[int]] = {QA: [], QB: []}
    next_id = 1
    for step in range(60):
        for _ in range(rng.randint(100, 200)):
            keys = [QA, QB] if rng.random() < 0.1 else [rng.choice((QA, QB))]
            store.publish(next_id, body(next_id), keys)
            for key in keys:
                model[key].append(next_id)
            next_id += 1
        for key in (QA, QB):
            ids = model[key]
            if not ids:
                continue
            acked = ids[:rng.randint(0, 100)] + rng.sample(ids, min(len(ids), rng.randint(0, 3)))
            acked = list(dict.fromkeys(acked))
            if acked:
                store.ack(key, acked)
                model[key] = [i for i in ids if i not in set(acked)]
            if model[key] and rng.random() < 0.3:
                store.set_delivery_counts(key, {rng.choice(model[key]): 1})
        if step == 30:
            store.purge_queue(QB)
            model[QB] = []
        if start == "kill-9-checkpoint" and step in (20, 45):
            checkpointed(store, clock)
    assert store.stats()["journal_index_folds"] > 5
    store.flush()
    if start == "clean-stop":
        store.close()
        assert (journal / saved_index.SAVED_INDEX).exists()
    else:
        store.abandon()   # what kill -9 leaves
        assert (journal / saved_index.CHECKPOINT).exists() == (start == "kill-9-checkpoint")
    expected = {key: ids for key, ids in model.items() if ids}
    store, state = lazy(journal)
    got = {key: list(q.msg_ids) for key, q in state.queues.items() if len(q.msg_ids)}
    assert got == expected
    for key, queue in state.queues.items():
        assert list(queue.sizes) == [Message.record_body_size(body(i)) for i in queue.msg_ids]
    assert state.max_msg_id == next_id - 1
    store.abandon()
    copy = tmp_path / "replayed"
    shutil.copytree(journal, copy)
    (copy / saved_index.SAVED_INDEX).unlink(missing_ok=True)
    (copy / saved_index.CHECKPOINT).unlink(missing_ok=True)
    replay, replayed = lazy(copy)
    assert summary(replayed) == summary(state)
    replay.abandon()


# -- a purge gives the space back at once --------------------------------------------------


def settled(store: JournalStore, clock: ThreadClock, done, what: str) -> None:
    """Run the store's reactor calls and its threads' results until ``done()`` holds: each
    step runs what is due, then waits for the next result a thread hands over (a write, a
    compaction's read); fails when none comes within 10 s while ``done()`` does not hold."""
    while not done():
        clock.advance(0)
        if done():
            return
        try:
            f, args, kwargs = clock.from_threads.get(timeout=10)
        except Exception:
            raise AssertionError(f"never: {what}") from None
        f(*args, **kwargs)


@pytest.mark.parametrize("depth", [400, 6_000], ids=["within-the-head", "many-segments"])
def test_a_purge_deletes_the_segments_it_emptied_without_waiting_for_another_write(
        tmp_path, monkeypatch, depth):
    """Even the head, rolled over; the queue (declared in the first segment) survives, and a
    start after kill -9 gives it empty with nothing else resurrected."""
    from warren.store.journal import store as journal_store

    monkeypatch.setattr(journal_store, "PURGE_SLICE", 500)   # released over several turns
    journal = tmp_path / "journal"
    store, clock, _ = running(journal)
    store.put_definition("queue", QA, {"durable": True})
    store.put_definition("queue", QB, {"durable": True})
    for msg_id in range(1, depth + 1):
        store.publish(msg_id, body(msg_id) + b"x" * 200, [QA])
    store.publish(depth + 1, body(1), [QB])   # another queue's message, in the head
    store.flush()
    filled = sorted(journal.glob("*.log"))
    store.purge_queue(QA)
    # the old head too: rolled over, its few live records (QB's message, the definitions)
    # compacted into the new head
    settled(store, clock, lambda: not set(journal.glob("*.log")) & set(filled),
            "every segment the fill wrote deleted")
    left = sum(path.stat().st_size for path in journal.glob("*.log"))
    assert left < 4096, sorted((p.name, p.stat().st_size) for p in journal.glob("*.log"))
    store.abandon()   # kill -9
    store, state = lazy(journal)
    assert {key: list(q.msg_ids) for key, q in state.queues.items() if len(q.msg_ids)} == {
        QB: [depth + 1]}
    assert set(state.definitions) == {("queue", QA), ("queue", QB)}
    assert state.max_msg_id == depth + 1
    store.close()
