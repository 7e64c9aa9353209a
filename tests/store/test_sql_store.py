"""SQL-store specifics: migrations, group commit, recovery order, the database going away.

What every store must do is in ``test_contract.py``; this file covers what only the SQL store
has. Scenarios that need a running reactor (``sync()`` through the worker thread, retry with
backoff) run in a subprocess under a real reactor, so no reactor is left running in the pytest
process for other modules. Each subprocess scenario reports one JSON line on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, inspect

from tests.store.conftest import start_test_cluster
from warren.store.interface import StoreUnavailable
from warren.store.sql import tables
from warren.store.sql.migrate import current_revision, head_revision, upgrade, upgrade_engine
from warren.store.sql.store import SqlStore, UnknownMessage

REPO_ROOT = Path(__file__).resolve().parents[2]
Q1 = "/\x00orders"
Q2 = "/\x00audit"


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warren.db'}"
    return request.getfixturevalue("fresh_pg_url")


def _python(script: str, *args: str, timeout: float = 60, **popen: object) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        **popen,  # type: ignore[arg-type]
    )


def _run_json(script: str, *args: str) -> dict:
    proc = _python(script, *args)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _opened(url: str) -> SqlStore:
    store = SqlStore(url)
    store.open()
    return store


# ---------------------------------------------------------------------- migrations


def test_upgrade_from_empty_creates_every_table(sql_url: str) -> None:
    upgrade(sql_url)
    engine = create_engine(sql_url)
    try:
        names = set(inspect(engine).get_table_names())
        assert set(tables.metadata.tables) | {tables.VERSION_TABLE} <= names
        with engine.connect() as connection:
            assert current_revision(connection) == head_revision()
    finally:
        engine.dispose()


def test_upgrade_again_is_a_no_op(sql_url: str) -> None:
    upgrade(sql_url)
    engine = create_engine(sql_url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda c, cur, stmt, *a: statements.append(stmt))
    try:
        upgrade_engine(engine)
    finally:
        engine.dispose()
    ddl = [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER", "DROP"))]
    assert ddl == []


CONCURRENT_UPGRADE = """
    import sys
    from warren.store.sql.migrate import upgrade
    print("ready", flush=True)
    sys.stdin.readline()  # all processes start upgrading at the same moment
    upgrade(sys.argv[1])
"""


def test_concurrent_upgrades_from_two_processes_are_safe(sql_url: str) -> None:
    procs = [_python(CONCURRENT_UPGRADE, sql_url, stdin=subprocess.PIPE) for _ in range(3)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    engine = create_engine(sql_url)
    try:
        with engine.connect() as connection:
            assert current_revision(connection) == head_revision()
    finally:
        engine.dispose()
    store = _opened(sql_url)  # and the schema works
    store.publish(1, b"x", [Q1])
    store.flush()
    store.close()


def test_two_stores_open_the_same_database(sql_url: str) -> None:
    first, second = _opened(sql_url), _opened(sql_url)
    first.put_definition("vhost", "/", {"name": "/"})
    first.flush()
    assert second.recover().definitions == {("vhost", "/"): {"name": "/"}}
    first.close()
    second.close()


# ---------------------------------------------------------------------- batching


def test_many_calls_then_flush_make_one_transaction(sql_url: str) -> None:
    store = _opened(sql_url)
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda connection: commits.append(1))
    for msg_id in range(1, 1001):
        store.publish(msg_id, b"r%d" % msg_id, [Q1, Q2])
    store.ack(Q2, list(range(1, 1001)))  # cancelled in memory: never written
    store.put_definition("queue", Q1, {"durable": True})
    store.flush()
    assert len(commits) == 1
    store.ack(Q1, list(range(1, 501)))
    store.mark_delivered(Q1, [501, 502])
    store.flush()
    assert len(commits) == 2
    store.flush()  # nothing pending: no transaction
    assert len(commits) == 2
    store.close()
    recovered = _opened(sql_url).recover()
    assert recovered.queues[Q1].msg_ids == list(range(501, 1001))
    assert Q2 not in recovered.queues
    assert recovered.delivered == {(Q1, 501), (Q1, 502)}
    assert sorted(recovered.records) == list(range(501, 1001))



def test_a_drains_acks_take_their_delivery_flags_along_and_flags_go_a_list_per_statement(
        sql_url: str) -> None:
    """A consumer draining a deep queue: its deliveries (flags) and acks mostly meet in one
    batch. An acked reference's flag is not written (its row goes in the same transaction),
    and the rest go as one statement per queue and chunk of ids, not one per row: per-row
    UPDATEs made a drain's transactions about 1 s long on SQLite, and a publisher's confirms
    waited behind them (bench.deep: 0.4-0.6k confirmed msg/s against a 10-30k drain)."""
    store = _opened(sql_url)
    for msg_id in range(1, 2001):
        store.publish(msg_id, b"r%d" % msg_id, [Q1])
    store.flush()
    flag_updates: list[int] = []

    def count(_conn, _cursor, statement, parameters, _context, executemany) -> None:
        if statement.startswith("UPDATE warren_queue_messages"):
            flag_updates.append(len(parameters) if executemany else 1)
    event.listen(store.engine, "before_cursor_execute", count)
    store.mark_delivered(Q1, list(range(1, 1501)))   # a turn's deliveries
    store.ack(Q1, list(range(1, 1001)))             # a later turn's acks, same batch
    store.flush()
    assert sum(flag_updates) == 1   # 500 flags left, one chunk (SQLite: 500 ids a statement)
    store.close()
    recovered = _opened(sql_url).recover()
    assert recovered.queues[Q1].msg_ids == list(range(1001, 2001))
    assert recovered.delivered == {(Q1, m) for m in range(1001, 1501)}


REACTOR_BATCHING = """
    import json, sys
    from sqlalchemy import event
    from twisted.internet import reactor, defer
    from warren.store.sql.store import SqlStore

    store = SqlStore(sys.argv[1], reactor=reactor)
    store.open()
    store.recover()
    commits = []
    event.listen(store.engine, "commit", lambda connection: commits.append(1))
    threads = set()
    event.listen(store.engine, "begin",
                 lambda connection: threads.add(__import__("threading").get_ident()))
    result = {}

    @defer.inlineCallbacks
    def scenario():
        # One reactor turn: 2000 writes and 20 sync() calls -> one transaction.
        waits = []
        for msg_id in range(1, 2001):
            store.publish(msg_id, b"x" * 100, ["q"])
            if msg_id % 100 == 0:
                waits.append(store.sync())
        yield defer.gatherResults(waits)
        result["commits_one_turn"] = len(commits)
        # Writes made while a transaction is in flight go in the next one, in order.
        store.ack("q", list(range(1, 1001)))
        first = store.sync()
        store.ack("q", list(range(1001, 1501)))  # same turn: same transaction
        yield first
        store.publish(3000, b"late", ["q"])
        yield store.sync()
        result["commits_total"] = len(commits)
        result["worker_threads"] = len(threads)
        result["reactor_thread_used"] = __import__("threading").get_ident() in threads
        # paging's read-ahead: committed records are selected on the reader thread, the
        # one not committed yet comes from memory, an unknown id is left out
        readers = set()
        event.listen(store.engine, "before_cursor_execute",
                     lambda *args: readers.add(__import__("threading").get_ident()))
        store.publish(3001, b"unwritten", ["q"])
        records = yield store.read_many_later([1501, 1502, 3001, 99999])
        result["read_later"] = {str(k): v.decode() for k, v in sorted(records.items())}
        result["reader_on_reactor"] = __import__("threading").get_ident() in readers
        store.ack("q", [3001])
        store.close()
        recovered = SqlStore(sys.argv[1]); recovered.open()
        state = recovered.recover(); recovered.close()
        result["ids"] = state.queues["q"].msg_ids

    def done(outcome):
        print(json.dumps(result)) if outcome is None else print(outcome, file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(lambda: scenario().addBoth(done))
    reactor.run()
"""


def test_sync_group_commits_a_reactor_turn_on_the_worker_thread(sql_url: str) -> None:
    result = _run_json(REACTOR_BATCHING, sql_url)
    assert result["commits_one_turn"] == 1
    assert result["commits_total"] == 3
    assert result["reactor_thread_used"] is False
    assert result["ids"] == list(range(1501, 2001)) + [3000]
    assert result["read_later"] == {"1501": "x" * 100, "1502": "x" * 100, "3001": "unwritten"}
    assert result["reader_on_reactor"] is False



LAZY_WRITES_WAIT_FOR_A_SYNC = """
    import json, sys
    from sqlalchemy import event
    from twisted.internet import reactor, defer
    from warren.store.sql import store as sql_store
    from warren.store.sql.store import SqlStore

    # long enough that no stall of this process lets the lazy delay pass first: the reaction
    # below comes two reactor turns after the commit, and then nothing waits for the delay
    sql_store.LAZY_COMMIT_DELAY = 30.0
    store = SqlStore(sys.argv[1], reactor=reactor)
    store.open()
    store.recover()
    commits = []
    acked_during = []

    def on_commit(connection):   # the writer thread: a drain's acks come while it commits
        commits.append(1)
        if len(commits) == 2 and not acked_during:
            acked_during.append(1)
            reactor.callFromThread(store.ack, "q", list(range(1, 51)))
    event.listen(store.engine, "commit", on_commit)
    result = {}

    @defer.inlineCallbacks
    def scenario():
        for msg_id in range(1, 101):
            store.publish(msg_id, b"x", ["q"])
        yield store.sync()                      # commit 1
        store.publish(101, b"window 1", ["q"])
        reacted = defer.Deferred()

        def publisher_reacts():                 # the confirm came: the next window
            store.publish(102, b"window 2", ["q"])
            store.sync().chainDeferred(reacted)
        first = store.sync()                    # commit 2, the acks arrive during it
        first.addCallback(lambda _: reactor.callLater(
            0, reactor.callLater, 0, publisher_reacts))
        yield first
        yield reacted
        result["commits"] = len(commits)
        store.close()
        recovered = SqlStore(sys.argv[1]); recovered.open()
        result["ids"] = recovered.recover().queues["q"].msg_ids
        recovered.close()

    def done(outcome):
        print(json.dumps(result)) if outcome is None else print(outcome, file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(lambda: scenario().addBoth(done))
    reactor.run()
"""


def test_acks_after_a_commit_wait_for_the_publisher_it_confirmed(sql_url: str) -> None:
    """A draining consumer's acks, arriving while a publisher's window commits, do not start
    a transaction of their own at once: the publisher's next window (sent when the confirms
    came) goes in the same transaction, so its confirms wait for one commit, not two (on
    SQLite, bench.deep's publisher beside a drain got about half its rate back)."""
    result = _run_json(LAZY_WRITES_WAIT_FOR_A_SYNC, sql_url)
    assert result["commits"] == 3       # not 4: the acks and window 2 in one transaction
    assert result["ids"] == list(range(51, 103))


# ---------------------------------------------------------------------- recovery


def test_recovery_keeps_queue_order_definitions_and_id_high_water_mark(sql_url: str) -> None:
    store = _opened(sql_url)
    assert store.recover().max_msg_id == 0
    store.put_definition("exchange", "/\x00logs", {"type": "topic"})
    store.put_definition("queue", Q1, {"durable": True})
    store.put_definition("queue", "/\x00gone", {"durable": True})
    # Interleave two queues across several transactions.
    for msg_id in range(1, 31):
        store.publish(msg_id, bytes([msg_id]) * 3, [Q1] if msg_id % 3 else [Q1, Q2])
        if msg_id % 7 == 0:
            store.flush()
    store.put_definition("queue", "/\x00gone", None)
    store.ack(Q1, [2, 4, 6])
    store.flush()
    store.mark_delivered(Q1, [1, 5])
    store.purge_queue(Q2)
    store.publish(31, b"after purge", [Q2])
    assert store.read(31) == b"after purge"  # pending, not yet committed
    store.flush()
    assert store.read(5) == bytes([5]) * 3
    store.close()

    store = _opened(sql_url)
    state = store.recover()
    assert state.definitions == {
        ("exchange", "/\x00logs"): {"type": "topic"},
        ("queue", Q1): {"durable": True},
    }
    assert state.queues[Q1].msg_ids == [m for m in range(1, 31) if m not in (2, 4, 6)]
    assert state.queues[Q2].msg_ids == [31]
    assert state.delivered == {(Q1, 1), (Q1, 5)}
    assert set(state.records) == set(state.queues[Q1].msg_ids) | {31}
    assert state.max_msg_id == 31
    # Ack everything: records are reclaimed, the id high-water mark stays.
    store.ack(Q1, state.queues[Q1].msg_ids)
    store.ack(Q2, [31])
    store.flush()
    with pytest.raises(UnknownMessage):
        store.read(1)
    store.close()
    state = _opened(sql_url).recover()
    assert state.records == {} and state.queues == {}
    assert state.max_msg_id == 31


def test_sync_without_a_running_reactor_commits_at_once(sql_url: str) -> None:
    store = _opened(sql_url)
    store.publish(1, b"a", [Q1])
    fired: list[object] = []
    store.sync().addCallback(fired.append)
    assert fired == [None]
    store.close()
    assert _opened(sql_url).recover().queues[Q1].msg_ids == [1]


# ---------------------------------------------------------------------- database gone


def test_flush_while_database_is_down_keeps_writes(tmp_path: Path) -> None:
    cluster = start_test_cluster(tmp_path)
    try:
        store = _opened(cluster.url)
        store.publish(1, b"before", [Q1])
        store.flush()
        cluster.stop("fast")
        store.publish(2, b"during", [Q1])
        with pytest.raises(StoreUnavailable):
            store.flush()
        assert store.healthy is False
        failures: list[object] = []
        store.sync().addErrback(lambda f: failures.append(f.type))
        assert failures == [StoreUnavailable]
        cluster.start()
        store.publish(3, b"after", [Q1])
        store.flush()
        assert store.healthy is True
        store.close()
        state = _opened(cluster.url).recover()
        assert state.queues[Q1].msg_ids == [1, 2, 3]
    finally:
        cluster.destroy()


REACTOR_DATABASE_GONE = """
    import json, sys
    from twisted.internet import reactor, defer, task, threads
    from warren.store.interface import StoreUnavailable
    from warren.store.sql.store import SqlStore

    store = SqlStore(sys.argv[1], reactor=reactor)
    store.open()
    store.recover()
    result = {}

    def say(line):
        print(line, flush=True)

    def wait_line():
        return threads.deferToThread(sys.stdin.readline)

    @defer.inlineCallbacks
    def wait_until(predicate):
        while not predicate():
            yield task.deferLater(reactor, 0.05, lambda: None)

    @defer.inlineCallbacks
    def scenario():
        for msg_id in range(1, 101):
            store.publish(msg_id, b"before", ["q"])
        yield store.sync()
        say("stop-now")
        yield wait_line()  # the test stopped PostgreSQL
        for msg_id in range(101, 201):
            store.publish(msg_id, b"during", ["q"])
        store.ack("q", list(range(1, 51)))
        try:
            yield store.sync()
            result["sync_while_down"] = "succeeded"
        except StoreUnavailable:
            result["sync_while_down"] = "StoreUnavailable"
        result["healthy_while_down"] = store.healthy
        # A sync asked while unhealthy fails at once; writes keep being queued.
        store.publish(201, b"queued", ["q"])
        try:
            yield store.sync()
        except StoreUnavailable:
            result["second_sync_while_down"] = "StoreUnavailable"
        say("start-now")
        yield wait_line()  # the test started PostgreSQL again
        yield wait_until(lambda: store.healthy)  # the backoff retry commits by itself
        store.publish(202, b"after", ["q"])
        yield store.sync()
        result["healthy_after"] = store.healthy
        store.close()
        again = SqlStore(sys.argv[1]); again.open()
        result["ids"] = again.recover().queues["q"].msg_ids
        again.close()

    def done(outcome):
        say(json.dumps(result)) if outcome is None else print(outcome, file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(lambda: scenario().addBoth(done))
    reactor.run()
"""


def test_database_gone_flips_healthy_errbacks_and_recovers(tmp_path: Path) -> None:
    cluster = start_test_cluster(tmp_path)
    proc = None
    try:
        proc = _python(REACTOR_DATABASE_GONE, cluster.url, stdin=subprocess.PIPE)
        assert proc.stdout.readline().strip() == "stop-now", proc.stderr.read()
        cluster.stop("fast")
        proc.stdin.write("stopped\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "start-now", proc.stderr.read()
        cluster.start()
        proc.stdin.write("started\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        cluster.destroy()
    assert result == {
        "sync_while_down": "StoreUnavailable",
        "healthy_while_down": False,
        "second_sync_while_down": "StoreUnavailable",
        "healthy_after": True,
        "ids": list(range(51, 203)),
    }


# ---------------------------------------------------------------------- purges in slices


def test_a_purge_commits_at_once_and_its_rows_go_in_slices_with_the_space_back(
        sql_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A purge is one marker in the transaction that holds it: from then on (a restart
    included) the queue's old messages are gone, while its rows are deleted a slice per
    transaction; a message another queue holds stays, messages published after the purge
    stay, and SQLite's file gives the freed pages back."""
    from warren.store.sql import purges
    monkeypatch.setattr(purges, "MIN_ROWS", 400)   # a few slices of a small queue
    monkeypatch.setattr(purges, "MAX_ROWS", 400)
    store = _opened(sql_url)
    store.recover()
    for msg_id in range(1, 2001):
        store.publish(msg_id, bytes([msg_id % 256]) * 500, [Q1, Q2] if msg_id == 7 else [Q1])
    store.flush()
    pages = _sqlite_pages(store)
    store.purge_queue(Q1)
    store.publish(2001, b"after", [Q1])
    store.flush()   # the marker and a first slice
    assert store.stats()["sql_purges_under_way"] == 1
    other = _opened(sql_url)   # as a restart in the middle of the slices sees it
    state = other.recover()
    assert state.queues[Q1].msg_ids == [2001] and state.queues[Q2].msg_ids == [7]
    other.publish(2002, b"later", [Q1])   # numbered past the purge: not taken by it
    other.flush()
    other.close()
    for _ in range(10):
        if not store.stats()["sql_purges_under_way"]:
            break
        store.flush()   # one slice each
    assert store.stats()["sql_purges_under_way"] == 0
    store.close()
    store = _opened(sql_url)
    state = store.recover()
    assert state.queues[Q1].msg_ids == [2001, 2002] and state.queues[Q2].msg_ids == [7]
    with store.engine.connect() as connection:
        ids = sorted(connection.execute(tables.messages.select()).scalars())
        assert ids == [7, 2001, 2002]
        assert not list(connection.execute(tables.definitions.select().where(
            tables.definitions.c.kind == purges.KIND)))
    if pages is not None:
        after = _sqlite_pages(store)
        assert after is not None and after < pages // 4, (pages, after)
    store.close()


def _sqlite_pages(store: SqlStore) -> int | None:
    """The pages of an SQLite database in use (its file's size once checkpointed)."""
    if store.engine.dialect.name != "sqlite":
        return None
    with store.engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA page_count").scalar() or 0)
