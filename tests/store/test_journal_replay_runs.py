"""What a start after kill -9 replays, and how: runs of new messages applied at once
(``new_message_runs``) give exactly what the record-by-record replay gives, from the start of
the journal or after a checkpoint; and a fill that outruns its checkpoints leaves a bounded
tail (``CHECKPOINT_TAIL_*``), which is all a start replays (the store's own count).

In-process, on a Twisted ``Clock`` that does not advance after the start: the wait after a
checkpoint (``CHECKPOINT_IDLE_RATIO`` times its duration) never ends by the clock, as when a
deep queue's checkpoints take seconds and a fill runs faster; only the tail bound makes the
next.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from tests.store.test_journal_checkpoint import ThreadClock
from tests.store.test_journal_saved_index import (  # noqa: F401  (an autouse fixture)
    QA, QB, RECORD, loaded_maps_as_arrays, summary)
from warren.model.message import Message
from warren.store.journal import saved_index
from warren.store.journal.store import CHECKPOINT_AFTER_RECOVERY, JournalStore

#: Another record head (another routing key): a run's head changes within one queue.
OTHER = RECORD.replace(b"a", b"z")


def lazy(directory: Path) -> tuple[JournalStore, object]:
    store = JournalStore(directory, checkpoint_bytes=0)
    store.open()
    return store, store.recover(body_size=Message.record_body_size)


def record_by_record(directory: Path, tmp_path: Path) -> tuple:
    """What the replay of every record one by one gives (a recovery that returns the
    records: no runs), with the body sizes measured from the records, on a copy without
    the checkpoint."""
    copy = tmp_path / "by-record"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(directory, copy)
    (copy / saved_index.CHECKPOINT).unlink(missing_ok=True)
    store = JournalStore(copy, checkpoint_bytes=0)
    store.open()
    state = store.recover()
    store.abandon()
    queues = {key: (list(q.msg_ids), [Message.record_body_size(state.records[i])
                                      for i in q.msg_ids])
              for key, q in state.queues.items()}
    shared = {i: r for i, r in state.records.items()
              if sum(i in q for q, _ in queues.values()) > 1}
    return (queues, shared, state.delivered, state.delivery_counts, state.definitions,
            state.max_msg_id)


def mixed_traffic(store: JournalStore, rng: random.Random, first: int, count: int) -> int:
    """``count`` messages to two queues in runs of random length, some to both, some with
    another head, with acks, delivered flags and returns between; the next id."""
    msg_id = first
    while msg_id < first + count:
        keys = rng.choice([[QA], [QA], [QB], [QA, QB]])
        head = rng.choice([RECORD, RECORD, OTHER])
        for _ in range(rng.randrange(1, 40)):
            store.publish(msg_id, head + b"b" * rng.randrange(0, 300), keys)
            msg_id += 1
        step = rng.random()
        queue = rng.choice([QA, QB])
        held = [i for i in range(max(first - 200, 1), msg_id) if i % 3 == 0]
        if step < 0.2:
            store.ack(queue, held[:5])
        elif step < 0.35:
            store.mark_delivered(queue, held[-4:])
        elif step < 0.45:
            store.set_delivery_counts(queue, {i: 2 for i in held[-2:]})
        if rng.random() < 0.3:
            store.flush()
    store.flush()
    return msg_id


def test_runs_of_new_messages_give_what_the_record_by_record_replay_gives(tmp_path):
    journal = tmp_path / "journal"
    rng = random.Random(22)
    store, _ = lazy(journal)
    store.put_definition("queue", QA, {"durable": True})
    next_id = mixed_traffic(store, rng, 1, 3000)
    store.close()   # the saved index: the next start takes it as the checkpoint
    store, _ = lazy(journal)
    mixed_traffic(store, rng, next_id, 3000)
    store.abandon()   # kill -9: the second part is the tail after the checkpoint
    expected = record_by_record(journal, tmp_path)
    assert len(expected[0][QA][0]) > 1000 and len(expected[0][QB][0]) > 1000

    store, state = lazy(journal)   # from the checkpoint, the tail in runs
    assert 0 < store.replayed_in_runs < store.replayed_records <= 6000
    got = summary(state)
    assert (got[0], got[1], *got[2:]) == expected
    store.abandon()

    (journal / saved_index.CHECKPOINT).unlink()
    store, state = lazy(journal)   # the whole journal, in runs
    assert store.replayed_in_runs > 3000
    got = summary(state)
    assert (got[0], got[1], *got[2:]) == expected
    store.abandon()


def test_a_fill_that_outruns_its_checkpoints_leaves_a_bounded_tail_and_only_it_is_replayed(
        tmp_path):
    journal = tmp_path / "journal"
    clock = ThreadClock()
    store = JournalStore(journal, reactor=clock, checkpoint_bytes=1 << 40,
                         checkpoint_changes=1000, checkpoint_tail=(1 << 40, 2000))
    store.open()
    store.recover(body_size=Message.record_body_size)
    clock.advance(CHECKPOINT_AFTER_RECOVERY)   # (the broker's start goes first)
    for msg_id in range(1, 9951):
        store.publish(msg_id, RECORD + b"f" * 100, [QA])
        if msg_id % 50 == 0:
            store.flush()   # a checkpoint taken then is awaited before more comes
            while store.checkpoint_in_progress:
                clock.deliver()
    # the first at 1,000 changes; the clock never moved since, so the wait after each never
    # ended: each next was taken at the bound (2,000 changes since), the last at 9,000
    assert store.checkpoints == 5
    store.abandon()   # kill -9

    store, state = lazy(journal)
    assert store.stats()["journal_replayed_records"] == 950
    assert list(state.queues[QA].msg_ids) == list(range(1, 9951))
    assert set(state.queues[QA].sizes) == {100}
    store.close()
