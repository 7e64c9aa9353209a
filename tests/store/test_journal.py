"""Journal-specific behaviour: framing, torn tails, corruption, rollover, reclaim, group commit.

Most tests use the blocking path (``flush()``). The group-commit tests need a real reactor; they
run one script in a subprocess (``SYNC_SCRIPT``) so no reactor state leaks into other test
files, and assert on what it reports.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from warren.store.interface import StoreError, StoreUnavailable
from warren.store.journal.index import RecordType
from warren.store.journal.segment import (
    HEADER_SIZE,
    JournalSegment,
    encode_record,
    scan_buffer,
)
from warren.store.journal import store as journal_store
from warren.store.journal.store import JournalStore

REPO = Path(__file__).resolve().parents[2]
QA = "/\x00a"
QB = "/\x00b"


def open_store(directory: Path, segment_size: int = 32 * 1024 * 1024) -> tuple[JournalStore, object]:
    store = JournalStore(directory, segment_size=segment_size)
    store.open()
    return store, store.recover()


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


def directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in segment_files(directory))


# -- framing ----------------------------------------------------------------------------------


def test_record_frames_round_trip_and_stop_at_damage() -> None:
    frames = [encode_record(1, b"alpha"), encode_record(2, b""), encode_record(255, b"x" * 1000)]
    data = b"".join(frames)
    scan = scan_buffer(memoryview(data))
    assert [(t, bytes(p)) for _, t, p in scan.records] == [(1, b"alpha"), (2, b""), (255, b"x" * 1000)]
    assert scan.valid_end == len(data) and scan.dropped == 0
    for cut in range(1, len(frames[2])):
        scan = scan_buffer(memoryview(data[: len(data) - cut]))
        assert len(scan.records) == 2
        assert scan.valid_end == len(frames[0]) + len(frames[1])
    flipped = bytearray(data)
    flipped[len(frames[0]) + HEADER_SIZE - 1] ^= 0x01  # the type byte of the second record
    scan = scan_buffer(memoryview(bytes(flipped)))
    assert len(scan.records) == 1 and scan.problem == "checksum mismatch"
    assert scan_buffer(memoryview(bytes(64))).records == []  # zeros are never a record


# -- recovery from damage ---------------------------------------------------------------------


def test_torn_tail_is_cut_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, _ = open_store(tmp_path)
    for msg_id in range(1, 11):
        store.publish(msg_id, b"body-%d" % msg_id, [QA])
    store.close()
    (last,) = segment_files(tmp_path)
    size = last.stat().st_size
    with open(last, "r+b") as f:  # tear the last record in half, then garbage after it
        f.truncate(size - 5)
        f.seek(0, os.SEEK_END)
        f.write(b"\xde\xad\xbe\xef" * 8)
    damaged = last.stat().st_size

    with caplog.at_level(logging.WARNING, logger="warren.store.journal"):
        store, state = open_store(tmp_path)
    assert state.queues[QA].msg_ids == list(range(1, 10))
    assert state.records[9] == b"body-9"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and last.name in r.getMessage()]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    cut_at = last.stat().st_size
    assert f"offset {cut_at}" in message and f"dropping {damaged - cut_at} bytes" in message
    # appends continue after the cut and survive the next restart
    store.publish(11, b"body-11", [QA])
    store.close()
    _, state = open_store(tmp_path)
    assert state.queues[QA].msg_ids == list(range(1, 10)) + [11]


def test_corrupt_record_in_an_older_segment_is_skipped_with_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, _ = open_store(tmp_path, segment_size=4096)
    for msg_id in range(1, 121):
        store.publish(msg_id, b"%05d" % msg_id * 20, [QA])
    store.close()
    first, *rest = segment_files(tmp_path)
    assert len(rest) >= 2
    raw = bytearray(first.read_bytes())
    scan = JournalSegment(str(tmp_path), 1).scan()
    offsets = [offset for offset, record_type, _ in scan.records if record_type == RecordType.MESSAGE]
    victim = offsets[len(offsets) // 2]
    raw[victim + HEADER_SIZE + 20] ^= 0xFF
    first.write_bytes(bytes(raw))
    lost = len(offsets) - len(offsets) // 2

    with caplog.at_level(logging.WARNING, logger="warren.store.journal"):
        store, state = open_store(tmp_path, segment_size=4096)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(first.name in m and f"offset {victim}" in m and "skipped" in m for m in errors)
    ids = state.queues[QA].msg_ids
    assert ids == [i for i in range(1, 121) if not len(offsets) // 2 < i <= len(offsets)]
    assert len(ids) == 120 - lost
    assert store.read(120) == b"%05d" % 120 * 20
    assert first.stat().st_size == len(raw)  # older segments are left as found


# -- segments ---------------------------------------------------------------------------------


def test_segments_roll_over_at_segment_size(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path, segment_size=2000)
    for msg_id in range(1, 101):
        store.publish(msg_id, b"m" * 90, [QA])
    store.publish(101, b"big" * 1000, [QA])  # bigger than a segment: a segment of its own
    store.publish(102, b"after", [QA])
    store.flush()
    files = segment_files(tmp_path)
    assert len(files) >= 6
    assert [f.name for f in files] == [f"{n:08d}.log" for n in range(1, len(files) + 1)]
    big = [f for f in files if f.stat().st_size > 2000]
    assert len(big) == 1 and big[0].stat().st_size < 3200
    assert store.read(101) == b"big" * 1000
    store.close()
    _, state = open_store(tmp_path, segment_size=2000)
    assert state.queues[QA].msg_ids == list(range(1, 103))


def test_fully_acked_segments_are_deleted_and_disk_stays_bounded(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path, segment_size=64 * 1024)
    record = b"r" * 40
    biggest = 0
    for start in range(1, 50_001, 1000):
        ids = list(range(start, start + 1000))
        for msg_id in ids:
            store.publish(msg_id, record, [QA, QB])
        store.ack(QA, ids)
        store.ack(QB, ids)
        store.flush()
        biggest = max(biggest, directory_bytes(tmp_path))
    store.flush()
    assert biggest < 4 * 64 * 1024, biggest  # 50k * ~80 bytes went through a few segments
    assert store.stats()["journal_segments"] <= 2
    store.close()
    _, state = open_store(tmp_path, segment_size=64 * 1024)
    assert state.records == {} and state.max_msg_id == 50_000


def test_mostly_dead_segments_are_compacted(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path, segment_size=16 * 1024)
    store.put_definition("queue", QA, {"durable": True})
    keep = []
    for msg_id in range(1, 3001):
        store.publish(msg_id, b"%06d" % msg_id * 10, [QA])
        store.mark_delivered(QA, [msg_id]) if msg_id % 200 == 0 else None
        if msg_id % 300 == 0:   # a return: the record is rewritten with its count
            store.set_delivery_counts(QA, {msg_id: msg_id // 300})
        if msg_id % 100 != 0:
            store.ack(QA, [msg_id])
        else:
            keep.append(msg_id)
        if msg_id % 250 == 0:
            store.flush()
    for _ in range(20):  # each flush compacts one segment and deletes what the last one freed
        store.flush()
    assert store.compactions > 0
    live_bytes = 30 * (HEADER_SIZE + 30 + 60)
    assert directory_bytes(tmp_path) < 2 * 16 * 1024 + live_bytes
    assert [store.read(msg_id) for msg_id in keep] == [b"%06d" % i * 10 for i in keep]
    store.close()
    _, state = open_store(tmp_path, segment_size=16 * 1024)
    assert state.queues[QA].msg_ids == keep  # compaction moved records, order stays
    assert state.definitions == {("queue", QA): {"durable": True}}
    assert state.delivered == {(QA, i) for i in keep if i % 200 == 0 and i % 300 != 0}
    assert state.delivery_counts == {(QA, i): i // 300 for i in keep if i % 300 == 0}


def test_acks_outlive_the_messages_they_acked(tmp_path: Path) -> None:
    """Publish, ack, churn, restart: nothing acked or deleted comes back.

    Segment 1 stays alive (a large live message keeps it over the compaction threshold) while
    it also holds an acked message, a message acked from one of its queues and a definition
    deleted later. The ACK/delete records land in segment 2, which the churn leaves with
    nothing live; deleting it before segment 1 would resurrect them. Longer churn then makes
    the journal compact segment 1 so the chain of kept segments does not grow forever.
    """
    size = 8 * 1024
    store, _ = open_store(tmp_path, segment_size=size)
    store.publish(1, b"keeper" * 500, [QA])  # ~3 KB, stays live
    store.publish(2, b"acked", [QA])
    store.publish(3, b"half", [QA, QB])
    store.put_definition("exchange", "/\x00x", {"type": "direct"})
    filler = 1000
    while store.stats()["journal_segments"] < 2:
        store.publish(filler, b"f" * 100, [QB])
        store.ack(QB, [filler])
        filler += 1
    store.flush()
    store.ack(QA, [2, 3])
    store.put_definition("exchange", "/\x00x", None)

    def churn(rounds: int, start: int) -> int:
        for _ in range(rounds):
            ids = list(range(start, start + 20))
            for msg_id in ids:
                store.publish(msg_id, b"c" * 100, [QB])
            store.ack(QB, ids)
            store.flush()
            start += 20
        store.flush()
        return start

    def check_restart() -> JournalStore:
        store.close()
        reopened, state = open_store(tmp_path, segment_size=size)
        assert state.queues.get(QA).msg_ids == [1]
        assert state.queues.get(QB).msg_ids == [3]
        assert set(state.records) == {1, 3}
        assert state.definitions == {}
        return reopened

    next_id = churn(3, 100)
    assert (tmp_path / "00000001.log").exists()  # the keeper's segment
    assert (tmp_path / "00000002.log").exists()  # dead, but its acks guard segment 1
    store = check_restart()
    next_id = churn(60, next_id)
    assert directory_bytes(tmp_path) < 5 * size  # the chain was cut by compacting segment 1
    assert not (tmp_path / "00000001.log").exists()
    store = check_restart()
    store.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_durable_snapshot_recovers_the_model(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Random publish/ack/purge/definition churn on tiny segments; after every flush, a copy of
    the directory (what a kill -9 would leave) must recover exactly the model's state. Purged
    queues are let go of four messages per flush, so snapshots and compactions meet purges
    still being released."""
    monkeypatch.setattr(journal_store, "PURGE_SLICE", 4)
    rng = random.Random(seed)
    directory = tmp_path / "live"
    store, _ = open_store(directory, segment_size=1500)
    model: dict[str, list[int]] = {QA: [], QB: [], "/\x00c": []}
    records: dict[int, bytes] = {}
    definitions: dict[tuple[str, str], dict] = {}
    next_id = 1
    for step in range(1500):
        op = rng.random()
        if op < 0.45:
            keys = rng.sample(sorted(model), rng.randint(1, 3))
            record = bytes([next_id % 256]) * rng.randint(0, 120)
            store.publish(next_id, record, keys)
            records[next_id] = record
            for key in keys:
                model[key].append(next_id)
            next_id += 1
        elif op < 0.8:
            key = rng.choice(sorted(model))
            if model[key]:
                ids = rng.sample(model[key], min(len(model[key]), rng.randint(1, 4)))
                store.ack(key, ids)
                model[key] = [i for i in model[key] if i not in ids]
        elif op < 0.83:
            key = rng.choice(sorted(model))
            store.purge_queue(key)
            model[key] = []
        elif op < 0.93:
            name = ("queue", f"q{rng.randint(1, 6)}")
            value = None if rng.random() < 0.3 else {"step": step}
            store.put_definition(*name, value)
            if value is None:
                definitions.pop(name, None)
            else:
                definitions[name] = value
        else:
            store.flush()
            if rng.random() < 0.3:
                snapshot = tmp_path / f"snapshot-{step}"
                shutil.copytree(directory, snapshot)
                copy, state = open_store(snapshot, segment_size=1500)
                live = {key: ids for key, ids in model.items() if ids}
                assert {k: q.msg_ids for k, q in state.queues.items() if q.msg_ids} == live
                alive = {i for ids in live.values() for i in ids}
                assert state.records == {i: records[i] for i in alive}
                assert state.definitions == definitions
                copy.close()
                shutil.rmtree(snapshot)
    store.close()
    _, state = open_store(directory, segment_size=1500)
    assert {k: q.msg_ids for k, q in state.queues.items() if q.msg_ids} == {
        key: ids for key, ids in model.items() if ids
    }
    assert state.max_msg_id == next_id - 1


# -- reads ------------------------------------------------------------------------------------


def test_read_serves_unflushed_and_flushed_records(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    store.publish(1, b"in memory", [QA])
    assert store.read(1) == b"in memory"
    store.flush()
    assert store.read(1) == b"in memory"
    store.ack(QA, [1])
    with pytest.raises(StoreError):
        store.read(1)
    store.close()


# -- failures ---------------------------------------------------------------------------------


def test_disk_full_fails_the_sync_keeps_the_data_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = open_store(tmp_path)
    store.publish(1, b"before", [QA])
    store.flush()
    real_pwrite = os.pwrite
    calls = {"n": 0}

    def pwrite_then_full(fd: int, data, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] == 1:  # a partial write, then the disk is full
            return real_pwrite(fd, bytes(data)[:7], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", pwrite_then_full)
    store.publish(2, b"during" * 50, [QA])
    waiter = store.sync()
    outcome = []
    waiter.addCallbacks(outcome.append, lambda failure: outcome.append(failure.value))
    with pytest.raises(StoreUnavailable):
        store.flush()
    assert store.healthy is False
    assert len(outcome) == 1 and isinstance(outcome[0], StoreUnavailable)
    assert store.read(2) == b"during" * 50  # still served from memory

    monkeypatch.setattr(os, "pwrite", real_pwrite)  # space is back
    store.publish(3, b"after", [QA])
    retried = store.sync()
    store.flush()
    assert store.healthy is True
    assert retried.called
    store.close()
    _, state = open_store(tmp_path)
    assert state.queues[QA].msg_ids == [1, 2, 3]
    assert state.records == {1: b"before", 2: b"during" * 50, 3: b"after"}


def test_max_msg_id_survives_when_everything_is_reclaimed(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path, segment_size=1024)
    for msg_id in range(1, 301):
        store.publish(msg_id, b"x" * 30, [QA])
        store.ack(QA, [msg_id])
    store.flush()
    store.flush()
    store.close()
    assert len(segment_files(tmp_path)) == 1
    _, state = open_store(tmp_path, segment_size=1024)
    assert state.max_msg_id == 300 and state.records == {}


def test_an_empty_head_left_by_a_crash_gets_its_checkpoint(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    for msg_id in range(1, 11):
        store.publish(msg_id, b"x", [QA])
    store.ack(QA, list(range(1, 11)))
    store.close()
    (tmp_path / "00000002.log").touch()  # rolled, then killed before the first write
    store, state = open_store(tmp_path)
    assert state.max_msg_id == 10
    store.close()
    records = JournalSegment(str(tmp_path), 2).scan().records
    assert [record_type for _, record_type, _ in records] == [RecordType.CHECKPOINT]
    assert not (tmp_path / "00000001.log").exists()  # and the dead one went
    _, state = open_store(tmp_path)
    assert state.max_msg_id == 10


# -- group commit under a real reactor (subprocess) ---------------------------------------------

SYNC_SCRIPT = r"""
import errno, json, os, sys, threading
from twisted.internet import defer, task

directory = sys.argv[1]
events = []
gate = threading.Event()
gate.set()
fail_next = []
real_fdatasync = os.fdatasync

def traced_fdatasync(fd):
    events.append(("fsync", threading.current_thread().name))
    gate.wait(30)
    if fail_next:
        fail_next.pop()
        raise OSError(errno.ENOSPC, "No space left on device")
    real_fdatasync(fd)
    events.append(("fsync-done",))

os.fdatasync = traced_fdatasync

from warren.store.interface import StoreUnavailable
from warren.store.journal import log as journal_log
from warren.store.journal.segment import JournalSegment
from warren.store.journal import store as journal_store
from warren.store.journal.store import JournalStore

journal_log.RETRY_FIRST = 0.01  # keep the retry timer's wait short

def ids_on_disk():
    found = []
    for name in sorted(os.listdir(directory)):
        segment = JournalSegment(directory, int(name[:8]))
        for _, record_type, payload in segment.scan().records:
            if record_type == 1:
                found.append(int.from_bytes(payload[:8], "little"))
        segment.close()
    return found

def fsyncs():
    return sum(1 for e in events if e[0] == "fsync")

def turn(reactor):
    return task.deferLater(reactor, 0, lambda: None)

@defer.inlineCallbacks
def main(reactor):
    out = {}
    store = JournalStore(directory)
    store.open()
    store.recover()
    before = fsyncs()
    for msg_id in range(1, 101):
        store.publish(msg_id, b"m%d" % msg_id, ["q"])
    waiters = [store.sync() for _ in range(100)]
    seen = {}
    def on_first(_):
        seen["done_before_callback"] = events[-1] == ("fsync-done",)
        seen["on_disk"] = ids_on_disk()
    waiters[0].addCallback(on_first)
    yield defer.gatherResults(waiters)
    out["group_fsyncs"] = fsyncs() - before
    out["group_thread"] = [e[1] for e in events if e[0] == "fsync"][-1]
    out["group_durable_first"] = seen["done_before_callback"]
    out["group_on_disk"] = seen["on_disk"] == list(range(1, 101))

    # one flush in flight, later writes gather for the next one, order kept
    gate.clear()
    before = fsyncs()
    store.publish(101, b"m101", ["q"])
    first = store.sync()
    turns = 0
    while fsyncs() == before:
        yield turn(reactor)
    fired = []
    first.addCallback(lambda _: fired.append("first"))
    store.publish(102, b"m102", ["q"])
    yield turn(reactor)
    yield turn(reactor)
    store.publish(103, b"m103", ["q"])
    second = store.sync()
    second.addCallback(lambda _: fired.append("second"))
    out["reactor_free_while_fsync"] = not first.called
    gate.set()
    yield defer.gatherResults([first, second])
    out["pipelined_fsyncs"] = fsyncs() - before
    out["pipelined_order"] = fired

    # disk full once: the sync errbacks, the next one goes through
    fail_next.append(1)
    store.publish(104, b"m104", ["q"])
    try:
        yield store.sync()
        out["enospc_errback"] = "no error"
    except StoreUnavailable as error:
        out["enospc_errback"] = "StoreUnavailable"
    out["healthy_after_failure"] = store.healthy
    yield store.sync()
    out["healthy_after_retry"] = store.healthy

    # disk full with nobody writing afterwards: the retry timer gets it through
    fail_next.append(1)
    store.publish(105, b"m105", ["q"])
    failed = []
    store.sync().addErrback(lambda failure: failed.append(failure.check(StoreUnavailable)))
    while not failed:
        yield turn(reactor)
    out["timer_failed_first"] = failed[0] is not None and not store.healthy
    for _ in range(500):
        if store.healthy:
            break
        yield task.deferLater(reactor, 0.01, lambda: None)
    out["timer_healed"] = store.healthy
    out["final_on_disk"] = ids_on_disk()

    # paging's read-ahead: records on disk are read by the reader thread, the unwritten
    # one from memory, an unknown id left out
    for msg_id in range(200, 210):
        store.publish(msg_id, b"r%d" % msg_id, ["q"])
    yield store.sync()
    store.publish(210, b"r210", ["q"])
    threads = []
    read_on_disk = store._log.read_on_disk
    def traced(wanted):
        threads.append(threading.current_thread().name)
        return read_on_disk(wanted)
    store._log.read_on_disk = traced
    records = yield store.read_many_later(list(range(200, 211)) + [9999])
    out["read_later"] = {str(k): bytes(v).decode() for k, v in sorted(records.items())}
    out["read_later_threads"] = threads
    store.ack("q", list(range(200, 211)))
    store.close()
    again = JournalStore(directory)
    again.open()
    out["recovered"] = again.recover().queues["q"].msg_ids
    again.close()
    print(json.dumps(out))

task.react(main)
"""


@pytest.fixture(scope="module")
def sync_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("sync-journal")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", SYNC_SCRIPT, str(directory)],
        capture_output=True, text=True, timeout=60, env=env, cwd=str(REPO),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_read_ahead_reads_records_on_disk_off_the_reactor_thread(sync_report: dict) -> None:
    assert sync_report["read_later"] == {str(i): f"r{i}" for i in range(200, 211)}
    assert sync_report["read_later_threads"] == ["warren-journal-reader"]


def test_sync_fires_after_the_fsync_with_data_on_disk(sync_report: dict) -> None:
    assert sync_report["group_durable_first"] is True
    assert sync_report["group_on_disk"] is True


def test_one_fsync_covers_a_reactor_turn_and_runs_off_the_reactor_thread(sync_report: dict) -> None:
    assert sync_report["group_fsyncs"] == 1
    assert sync_report["group_thread"] == "warren-journal"


def test_writes_during_a_flush_gather_for_the_next_one(sync_report: dict) -> None:
    assert sync_report["reactor_free_while_fsync"] is True
    assert sync_report["pipelined_fsyncs"] == 2
    assert sync_report["pipelined_order"] == ["first", "second"]


def test_failed_fsync_errbacks_then_recovers(sync_report: dict) -> None:
    assert sync_report["enospc_errback"] == "StoreUnavailable"
    assert sync_report["healthy_after_failure"] is False
    assert sync_report["healthy_after_retry"] is True
    assert sync_report["final_on_disk"] == list(range(1, 106))
    assert sync_report["recovered"] == list(range(1, 106))


def test_failed_flush_is_retried_by_a_timer_without_new_writes(sync_report: dict) -> None:
    assert sync_report["timer_failed_first"] is True
    assert sync_report["timer_healed"] is True


def test_abandon_fails_the_waiters_of_dropped_writes(tmp_path: Path) -> None:
    """A publisher waiting on a sync when the node is fenced hears a failure (a nack), never
    a success for bytes that were dropped."""
    store, _ = open_store(tmp_path)
    store.publish(1, b"pending", ["q"])
    waiting = store.sync()              # no reactor turn runs here: the batch stays pending
    store.abandon()
    failures: list = []
    waiting.addErrback(failures.append)
    assert len(failures) == 1 and failures[0].check(StoreUnavailable)
