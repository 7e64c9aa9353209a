"""The journal's batch paths for a drained deep queue (issue 22) answer as the one-by-one ones:
``LocationMap.get_many`` as ``get`` of each id, ``QueueIds.deliver`` as the dict's flags,
and a read-ahead read in runs of adjacent records (``read_many_later`` on the reader thread)
returns each record, the one the index names now, even when records were rewritten elsewhere
or interleaved with other queues' messages; and a lazy record (an ack) waits for the next
flush instead of making one due."""

from __future__ import annotations

import queue
import random
from array import array

import pytest
from twisted.internet import task

from warren.store.journal.array_maps import LocationMap, QueueIds, location_arrays
from warren.store.journal.index import RecordType
from warren.store.journal.log import LAZY_FLUSH_DELAY, JournalLog, _runs
from warren.store.journal.store import JournalStore

QA = "/\x00a"
QB = "/\x00b"


class ThreadedClock(task.Clock):
    """Twisted's Clock, with the calls other threads make to the reactor kept for the test
    to run (the journal's reader thread answers through ``callFromThread``)."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: queue.SimpleQueue = queue.SimpleQueue()

    def callFromThread(self, call, *args, **kwargs) -> None:
        self.from_threads.put((call, args, kwargs))


@pytest.mark.parametrize("seed", range(4))
def test_get_many_answers_as_get_of_each_id(seed):
    rng = random.Random(seed)
    model = {msg_id: rng.randrange(1, 1 << 100) for msg_id in range(1, 3000)
             if rng.random() < 0.8}
    loaded = LocationMap(*location_arrays(model))
    for msg_id in rng.sample(sorted(model), 500):   # gone from the base, some rewritten
        if rng.random() < 0.5:
            del loaded[msg_id]
        else:
            loaded[msg_id] = rng.randrange(1, 1 << 100)
    for msg_id in range(3000, 3100):   # new since
        loaded[msg_id] = rng.randrange(1, 1 << 100)
    for _ in range(200):
        start = rng.randrange(1, 3100)
        batch = list(range(start, start + rng.randrange(1, 300)))   # a read-ahead: in order
        if rng.random() < 0.3:
            rng.shuffle(batch)
        assert loaded.get_many(batch) == [loaded.get(msg_id) for msg_id in batch]


@pytest.mark.parametrize("seed", range(4))
def test_deliver_flags_as_the_dict_does_and_names_the_fresh_ones(seed):
    rng = random.Random(seed)
    model = {msg_id: rng.random() < 0.2 for msg_id in range(1, 2000) if rng.random() < 0.8}
    ids = array("q", sorted(model))
    loaded = QueueIds(ids, bytearray(model[i] for i in ids))
    for msg_id in rng.sample(sorted(model), 300):
        del model[msg_id]
        loaded.pop(msg_id)
    for msg_id in range(2000, 2100):
        model[msg_id] = loaded[msg_id] = False
    for _ in range(100):
        start = rng.randrange(1, 2100)
        batch = list(range(start, start + rng.randrange(1, 200)))
        fresh = [msg_id for msg_id in batch if model.get(msg_id) is False]
        for msg_id in fresh:
            model[msg_id] = True
        assert loaded.deliver(batch) == fresh
        assert {msg_id: loaded.get(msg_id) for msg_id in loaded} == model


def test_runs_group_adjacent_records_and_split_at_gaps_and_segments():
    wanted = [(5, 2, 0, 50), (1, 1, 100, 10), (2, 1, 110, 20), (3, 1, 130 + 10_000, 5),
              (4, 2, 50, 50)]
    assert _runs(wanted) == [
        (1, 100, 130, [(1, 100, 10), (2, 110, 20)]),
        (1, 10_130, 10_135, [(3, 10_130, 5)]),
        (2, 0, 100, [(5, 0, 50), (4, 50, 50)]),
    ]


def test_a_batch_read_returns_each_record_where_the_index_has_it_now(tmp_path):
    """Messages of two queues interleaved over small segments, some rewritten at the head
    (new delivery counts of a message two queues hold), some acked: one batch read of the
    lot, its reads in runs on the reader thread, gives every live one its own body."""
    clock = ThreadedClock()
    store = JournalStore(tmp_path, segment_size=4096, reactor=clock)
    store.open()
    store.recover()
    bodies = {}
    for msg_id in range(1, 301):
        bodies[msg_id] = f"body-{msg_id}-".encode().ljust(40 + msg_id % 7, b"x")
        store.publish(msg_id, bodies[msg_id], [QA, QB] if msg_id % 5 == 0 else [QA])
    store.flush()
    store.set_delivery_counts(QA, {msg_id: 2 for msg_id in range(5, 301, 25)})  # rewrites
    store.ack(QA, [msg_id for msg_id in range(1, 301) if msg_id % 7 == 0 and msg_id % 5])
    store.flush()
    assert len(store._log.segment_numbers()) > 3
    results: list[dict[int, bytes]] = []
    store.read_many_later(list(range(1, 301))).addCallback(results.append)
    while not results:   # the reader thread's answer, run as the reactor thread would
        call, args, kwargs = clock.from_threads.get(timeout=30)
        call(*args, **kwargs)
    live = {m: b for m, b in bodies.items() if not (m % 7 == 0 and m % 5)}
    assert {m: bytes(b) for m, b in results[0].items()} == live
    store.close()


def run_thread_calls_until(clock: ThreadedClock, done) -> None:
    """Run the calls the journal's threads hand the reactor until ``done()``."""
    while not done():
        call, args, kwargs = clock.from_threads.get(timeout=30)
        call(*args, **kwargs)


def test_a_lazy_record_waits_for_the_next_flush_and_an_urgent_one_does_not(tmp_path):
    """An ack (lazy) makes no flush due at the end of its turn, only ``LAZY_FLUSH_DELAY``
    later; a publish (urgent) after it makes one due at once, and it takes the ack along."""
    clock = ThreadedClock()
    log = JournalLog(str(tmp_path), segment_size=1 << 20, reactor=clock)
    log.open()
    list(log.replay())
    log.flush()
    fsyncs = log.fsyncs
    log.append(RecordType.ACK, b"ack", lazy=True)
    clock.advance(0)   # the end of the turn: no flush ran, the lazy one is still to come
    assert [call.getTime() for call in clock.getDelayedCalls()] == [LAZY_FLUSH_DELAY]
    assert log.durable_end < log.end
    clock.advance(LAZY_FLUSH_DELAY)
    run_thread_calls_until(clock, lambda: log.durable_end == log.end)
    assert log.fsyncs == fsyncs + 1
    log.append(RecordType.ACK, b"ack", lazy=True)
    log.append(RecordType.MESSAGE, b"message")
    durable = []
    log.sync().addCallback(durable.append)
    clock.advance(0)   # urgent: flushed at the end of this turn, the ack with it
    run_thread_calls_until(clock, lambda: durable)
    assert log.fsyncs == fsyncs + 2 and log.durable_end == log.end
    log.close()
