"""The SQL store after a purge or a queue's delete (issue 22): the disk space comes back (a
PostgreSQL ``VACUUM``, an old SQLite file converted), other clients' writes go first meanwhile,
and a kill -9 in the middle of the vacuum loses nothing.

Sizes are awaited by polling the database (a short pause between looks), never by a fixed
sleep; nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.logger import globalLogPublisher

from warren.store.sql import reclaim
from warren.store.sql.store import SqlStore

REPO_ROOT = Path(__file__).resolve().parents[2]
Q1 = "/\x00deep"
Q2 = "/\x00other"
BODY = b"b" * 400


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warren.db'}"
    return request.getfixturevalue("fresh_pg_url")


def _opened(url: str) -> SqlStore:
    store = SqlStore(url)
    store.open()
    store.recover()
    return store


def _fill(store: SqlStore, first: int, count: int, queue: str) -> None:
    for msg_id in range(first, first + count):
        store.publish(msg_id, BODY + msg_id.to_bytes(4, "big"), [queue])
        if msg_id % 5000 == 0:
            store.flush()
    store.flush()


def _purge_to_the_end(store: SqlStore) -> None:
    """The purges under way done, a slice per flush (a bounded number of them)."""
    for _ in range(10_000):
        if not store.stats()["sql_purges_under_way"]:
            return
        store.flush()
    raise AssertionError("the purge's slices never ended")


def _await(value: Callable[[], int], done: Callable[[int], bool], what: str) -> int:
    deadline = time.monotonic() + 60
    while True:
        now = value()
        if done(now):
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {now}")
        time.sleep(0.05)


def _pg_bytes(url: str) -> int:
    import psycopg
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        row = conn.execute("SELECT pg_total_relation_size('warren_messages') + "
                           "pg_total_relation_size('warren_queue_messages')").fetchone()
    return int(row[0]) if row else 0


def _sqlite_pragma(path: Path, pragma: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"PRAGMA {pragma}").fetchone()[0])


def _kept(url: str, count: int) -> None:
    """Q2's ``count`` messages are all there with their bodies, Q1 is empty, and the store
    takes writes."""
    store = SqlStore(url)
    store.open()
    state = store.recover()
    assert Q1 not in state.queues
    ids = state.queues[Q2].msg_ids
    assert ids == list(range(1, count + 1))
    assert store.read_many(ids) == {i: BODY + i.to_bytes(4, "big") for i in ids}
    store.publish(900_000, b"after", [Q1])
    store.flush()
    store.close()


# ---------------------------------------------------------------------- PostgreSQL VACUUM


@pytest.mark.parametrize("op", ["purge", "delete"])
def test_postgres_gives_the_space_back_after_a_purge_or_a_delete(
        fresh_pg_url: str, op: str) -> None:
    """The purged queue's rows were the tables' last pages: the store's VACUUM after the
    slices cuts them off (autovacuum would not have run by then)."""
    store = _opened(fresh_pg_url)
    _fill(store, 1, 200, Q2)
    empty = _pg_bytes(fresh_pg_url)
    _fill(store, 201, 20_000, Q1)
    full = _pg_bytes(fresh_pg_url)
    store.purge_queue(Q1)
    if op == "delete":
        store.put_definition("queue", Q1, None)
    _purge_to_the_end(store)
    after = _await(lambda: _pg_bytes(fresh_pg_url),
                   lambda size: size < empty + (full - empty) // 2, "tables' size after purge")
    vacuum = store._purges.pg_vacuum
    assert vacuum is not None
    _await(lambda: vacuum.running, lambda running: not running, "the VACUUM")
    assert vacuum.runs >= 1, (empty, full, after)   # the store's, not autovacuum
    store.close()
    store = _opened(fresh_pg_url)   # the rest is kept
    state = store.recover()
    assert Q1 not in state.queues and len(state.queues[Q2].msg_ids) == 200
    store.close()


def test_a_small_purge_leaves_postgres_to_autovacuum(fresh_pg_url: str) -> None:
    store = _opened(fresh_pg_url)
    _fill(store, 1, 100, Q1)
    store.purge_queue(Q1)
    _purge_to_the_end(store)
    assert store.stats()["sql_vacuums_total"] == 0
    assert not store._purges.pg_vacuum.running   # type: ignore[union-attr]
    store.close()


# ---------------------------------------------------------------------- old SQLite files


def _old_sqlite_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store's file as made before auto_vacuum=INCREMENTAL: 5,000 messages of Q1 purged
    (their pages free in the file, which keeps its size), 200 of Q2 kept."""
    url = f"sqlite:///{path}"
    monkeypatch.setattr(reclaim, "CONVERT_LIVE_BYTES", 0)   # while it is made
    _opened(url).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA auto_vacuum=NONE")
        conn.execute("VACUUM")
    store = _opened(url)
    assert not store._purges.incremental
    _fill(store, 1, 200, Q2)
    _fill(store, 201, 5000, Q1)
    store.purge_queue(Q1)
    _purge_to_the_end(store)
    store.close()
    assert _sqlite_pragma(path, "auto_vacuum") == 0
    assert _sqlite_pragma(path, "freelist_count") > _sqlite_pragma(path, "page_count") // 2
    monkeypatch.undo()


def test_an_old_sqlite_file_is_converted_at_open_and_shrinks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "warren.db"
    _old_sqlite_file(path, monkeypatch)
    pages = _sqlite_pragma(path, "page_count")
    _kept(f"sqlite:///{path}", 200)
    assert _sqlite_pragma(path, "auto_vacuum") == 2
    assert _sqlite_pragma(path, "page_count") < pages // 4


def test_a_large_old_sqlite_file_is_left_with_the_manual_step_in_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "warren.db"
    _old_sqlite_file(path, monkeypatch)
    monkeypatch.setattr(reclaim, "CONVERT_LIVE_BYTES", 0)
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        _kept(f"sqlite:///{path}", 200)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert _sqlite_pragma(path, "auto_vacuum") == 0
    warnings = [e for e in events if "auto_vacuum=INCREMENTAL; VACUUM;" in e.get("log_format", "")]
    assert len(warnings) == 1 and not any(e.get("log_failure") for e in events)


def test_an_old_sqlite_file_kept_busy_by_another_process_is_left_and_the_start_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer holds the file's write lock through the conversion: a warning in one
    line, the file unconverted, nothing lost, the store writable once the lock is gone."""
    from warren.store.sql import store as store_module
    path = tmp_path / "warren.db"
    _old_sqlite_file(path, monkeypatch)
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 100)
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")   # the write lock, as another broker's transaction
        store = SqlStore(f"sqlite:///{path}")
        store.open()
        state = store.recover()
        other.execute("ROLLBACK")
    finally:
        other.close()
        globalLogPublisher.removeObserver(events.append)
    assert len(state.queues[Q2].msg_ids) == 200 and Q1 not in state.queues
    store.publish(900_000, b"after", [Q1])
    store.flush()
    store.close()
    assert _sqlite_pragma(path, "auto_vacuum") == 0
    warned = [e for e in events if "could not convert" in e.get("log_format", "")]
    assert len(warned) == 1 and not any(e.get("log_failure") for e in events)


# ---------------------------------------------------------------------- others first


OTHERS_FIRST = """
    import json, sqlite3, sys
    from twisted.internet import reactor, task
    from warren.store.sql import purges
    from warren.store.sql.store import SqlStore
    purges.MIN_ROWS = purges.MAX_ROWS = purges.SLICE_ROWS = 400   # a slice is 400 rows
    url, q1, q2 = sys.argv[1], "/\\x00deep", "/\\x00other"
    if url.startswith("sqlite"):
        reader = sqlite3.connect(url.removeprefix("sqlite:///"))
        def left():
            return reader.execute("SELECT count(*) FROM warren_queue_messages "
                                  "WHERE queue_key = ?", (q1.encode(),)).fetchone()[0]
    else:
        import psycopg
        reader = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"),
                                 autocommit=True)
        def left():
            return reader.execute("SELECT count(*) FROM warren_queue_messages "
                                  "WHERE queue_key = %s", (q1.encode(),)).fetchone()[0]
    store = SqlStore(url)
    store.open()
    store.recover()
    for msg_id in range(1, 6_001):
        store.publish(msg_id, b"d" * 100, [q1])
    store.flush()
    out = {"confirmed": 0, "published": 0, "deleted_while_waiting": [], "errors": []}
    next_id = [100_000]

    def publish():
        if not store.stats()["sql_purges_under_way"]:
            loop.stop()
            store.close()
            reactor.stop()
            return
        msg_id = next_id[0] = next_id[0] + 1
        store.publish(msg_id, b"o%d" % msg_id, [q2])
        out["published"] += 1
        before = left()
        def confirmed(_):
            out["confirmed"] += 1
            out["deleted_while_waiting"].append(before - left())
        store.sync().addCallbacks(confirmed, lambda f: out["errors"].append(str(f.value)))

    def start():
        store.purge_queue(q1)
        global loop
        loop = task.LoopingCall(publish)
        loop.start(0.003)
    reactor.callWhenRunning(start)
    reactor.run()
    waits = out.pop("deleted_while_waiting")
    out["most_deleted_while_waiting"] = max(waits)
    print(json.dumps(out))
"""


def test_other_clients_writes_wait_for_one_slice_at_most_during_a_purge(sql_url: str) -> None:
    """Publishes to another queue while a purge of 6,000 rows goes in slices of 400: each is
    confirmed, with at most one slice's rows deleted between its call and its confirm (it
    waits for the slice in flight, not for another riding with it), and none is lost."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(OTHERS_FIRST), sql_url],
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"] == [] and out["confirmed"] == out["published"] > 0, out
    assert out["most_deleted_while_waiting"] <= 400, out
    store = _opened(sql_url)
    state = store.recover()
    assert Q1 not in state.queues
    assert len(state.queues[Q2].msg_ids) == out["published"]
    store.close()


# ---------------------------------------------------------------------- kill -9


KILLED_IN_VACUUM = """
    import sys, threading
    from warren.store.sql import purges
    from warren.store.sql.store import SqlStore
    purges.VACUUM_PAGES = 4   # SQLite: a long vacuum, a few pages a transaction
    url, q1, q2, body = sys.argv[1], "/\\x00deep", "/\\x00other", b"b" * 400
    store = SqlStore(url)
    store.open()
    store.recover()
    for msg_id in range(1, 201):
        store.publish(msg_id, body + msg_id.to_bytes(4, "big"), [q2])
    store.flush()
    for msg_id in range(201, 12_201):   # past reclaim.VACUUM_AFTER_ROWS
        store.publish(msg_id, body, [q1])
    store.flush()
    store.purge_queue(q1)
    while store.stats()["sql_purges_under_way"]:
        store.flush()
    vacuum = store._purges.pg_vacuum
    if vacuum is not None:   # PostgreSQL: its VACUUM runs on a thread of its own
        assert vacuum.running
        print("vacuuming", flush=True)
        threading.Event().wait()
    assert store._purges.busy   # SQLite: pages left to give back
    print("vacuuming", flush=True)
    while True:
        store.flush()   # a vacuum step each
"""


def test_kill_9_during_the_vacuum_loses_nothing(sql_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_IN_VACUUM), sql_url],
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), cwd=REPO_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "vacuuming", proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    if sql_url.startswith("sqlite"):   # the vacuum goes on after the start
        path = Path(sql_url.removeprefix("sqlite:///"))
        assert _sqlite_pragma(path, "freelist_count") > 0
        store = _opened(sql_url)
        assert store._purges.busy
        while store._purges.busy:
            store.flush()
        store.close()
        assert _sqlite_pragma(path, "freelist_count") == 0
    _kept(sql_url, 200)
