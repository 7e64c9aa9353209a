"""The MessageStore contract: every store (journal, SQLite, PostgreSQL) passes these.

Each test drives a store through the blocking path (``flush()`` where the store has it, else
``close()``) and simulates a restart by closing the store and opening a fresh instance on the
same location, which must recover exactly the live state.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from warren.store.interface import MessageStore, RecoveredState, StoreError
from warren.store.journal.store import JournalStore

StoreFactory = Callable[[], MessageStore]

Q_A = "/\x00orders"
Q_B = "/\x00audit"
Q_C = "other-vhost\x00orders"


@pytest.fixture(params=["journal", "sqlite", "postgresql"])
def store_factory(request: pytest.FixtureRequest, tmp_path) -> StoreFactory:
    """A callable making a fresh store instance on one location (same location every call)."""
    if request.param == "journal":
        directory = tmp_path / "journal"
        return lambda: JournalStore(directory)
    sql_store = pytest.importorskip("warren.store.sql.store")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/warren.db"
    else:
        try:
            url = request.getfixturevalue("fresh_pg_url")
        except pytest.FixtureLookupError:
            url = request.getfixturevalue("pg_url")
    return lambda: sql_store.SqlStore(url)


@pytest.fixture
def opened(store_factory: StoreFactory):
    """Open a store, hand it out with its recovered state, close whatever is left open."""
    stores: list[MessageStore] = []

    def open_store() -> tuple[MessageStore, RecoveredState]:
        store = store_factory()
        store.open()
        stores.append(store)
        return store, store.recover()

    open_store.stores = stores  # type: ignore[attr-defined]
    yield open_store
    for store in stores:
        store.close()


def restart(store: MessageStore, open_store) -> tuple[MessageStore, RecoveredState]:
    """Close ``store`` (after a blocking flush where there is one) and open a new instance."""
    open_store.stores.remove(store)
    make_durable(store)
    store.close()
    return open_store()


def make_durable(store: MessageStore) -> None:
    flush = getattr(store, "flush", None)
    if flush is not None:
        flush()


def queue_ids(state: RecoveredState, key: str) -> list[int]:
    queue = state.queues.get(key)
    return list(queue.msg_ids) if queue is not None else []


def test_a_new_store_recovers_nothing(opened) -> None:
    _, state = opened()
    assert state.definitions == {}
    assert state.records == {}
    assert {key: q.msg_ids for key, q in state.queues.items() if q.msg_ids} == {}
    assert state.max_msg_id == 0


def test_definitions_round_trip_upsert_and_delete(opened) -> None:
    store, _ = opened()
    store.put_definition("vhost", "/", {"name": "/"})
    store.put_definition("queue", Q_A, {"durable": True, "arguments": {"x-max-length": 10}})
    store.put_definition("exchange", "/\x00logs", {"type": "topic"})
    store.put_definition("queue", Q_A, {"durable": True, "arguments": {}})  # upsert
    store.put_definition("exchange", "/\x00logs", None)  # delete
    store.put_definition("user", "nobody", None)  # deleting what is not there is fine
    store, state = restart(store, opened)
    assert state.definitions == {
        ("vhost", "/"): {"name": "/"},
        ("queue", Q_A): {"durable": True, "arguments": {}},
    }
    store.put_definition("vhost", "/", None)
    store.put_definition("exchange", "/\x00logs", {"type": "fanout"})
    _, state = restart(store, opened)
    assert state.definitions == {
        ("queue", Q_A): {"durable": True, "arguments": {}},
        ("exchange", "/\x00logs"): {"type": "fanout"},
    }


def test_message_in_many_queues_survives_an_ack_from_one(opened) -> None:
    store, _ = opened()
    store.publish(1, b"record-1", [Q_A, Q_B, Q_C])
    store.ack(Q_A, [1])
    store, state = restart(store, opened)
    assert queue_ids(state, Q_A) == []
    assert queue_ids(state, Q_B) == [1]
    assert queue_ids(state, Q_C) == [1]
    assert state.records == {1: b"record-1"}
    assert store.read(1) == b"record-1"


def test_delivery_counts_survive_a_restart_and_clear_the_delivered_flag(opened) -> None:
    """A count is per queue; setting it means "came back" (not out with a consumer), a later
    delivery flags it again; the count survives acks from other queues and later restarts."""
    store, _ = opened()
    store.publish(1, b"one", [Q_A, Q_B])
    store.publish(2, b"two", [Q_A])
    store.mark_delivered(Q_A, [1, 2])
    store.set_delivery_counts(Q_A, {1: 3})
    store.mark_delivered(Q_B, [1])
    store, state = restart(store, opened)
    assert state.delivery_counts == {(Q_A, 1): 3}
    assert state.delivered == {(Q_A, 2), (Q_B, 1)}
    store.mark_delivered(Q_A, [1])
    store.set_delivery_counts(Q_A, {1: 4, 2: 1})
    store.mark_delivered(Q_A, [2])
    store.ack(Q_B, [1])
    store, state = restart(store, opened)
    assert state.delivery_counts == {(Q_A, 1): 4, (Q_A, 2): 1}
    assert state.delivered == {(Q_A, 2)}
    assert state.records == {1: b"one", 2: b"two"}
    assert queue_ids(state, Q_A) == [1, 2] and queue_ids(state, Q_B) == []
    store.set_delivery_counts(Q_B, {1: 9})       # a queue that no longer holds it: ignored
    store.ack(Q_A, [1])
    _, state = restart(store, opened)
    assert state.delivery_counts == {(Q_A, 2): 1}
    assert state.records == {2: b"two"}


def test_acked_everywhere_is_gone_after_restart(opened) -> None:
    store, _ = opened()
    store.publish(1, b"one", [Q_A, Q_B])
    store.publish(2, b"two", [Q_A])
    store.ack(Q_A, [1, 2])
    store.ack(Q_B, [1])
    _, state = restart(store, opened)
    assert state.records == {}
    assert queue_ids(state, Q_A) == []
    assert queue_ids(state, Q_B) == []


def test_ack_of_unknown_ids_is_harmless(opened) -> None:
    store, _ = opened()
    store.publish(1, b"one", [Q_A])
    store.ack(Q_B, [1])
    store.ack(Q_A, [99])
    _, state = restart(store, opened)
    assert queue_ids(state, Q_A) == [1]


def test_purge_drops_one_queue_only(opened) -> None:
    store, _ = opened()
    for msg_id in range(1, 6):
        store.publish(msg_id, b"m%d" % msg_id, [Q_A, Q_B] if msg_id % 2 else [Q_A])
    store.purge_queue(Q_A)
    store.publish(6, b"m6", [Q_A])
    store, state = restart(store, opened)
    assert queue_ids(state, Q_A) == [6]
    assert queue_ids(state, Q_B) == [1, 3, 5]
    assert state.records == {1: b"m1", 3: b"m3", 5: b"m5", 6: b"m6"}


def test_queue_order_is_preserved(opened) -> None:
    store, _ = opened()
    for msg_id in range(1, 41):
        store.publish(msg_id, b"%d" % msg_id, [Q_A, Q_B])
    store.ack(Q_A, list(range(2, 41, 3)))
    store.ack(Q_B, [1, 40])
    store, state = restart(store, opened)
    assert queue_ids(state, Q_A) == [i for i in range(1, 41) if (i - 2) % 3 != 0]
    assert queue_ids(state, Q_B) == list(range(2, 40))
    for msg_id in range(41, 46):
        store.publish(msg_id, b"%d" % msg_id, [Q_B])
    _, state = restart(store, opened)
    assert queue_ids(state, Q_B) == list(range(2, 40)) + list(range(41, 46))


def test_max_msg_id_is_recovered(opened) -> None:
    store, _ = opened()
    store.publish(7, b"seven", [Q_A])
    store.publish(12, b"twelve", [Q_B])
    store.ack(Q_A, [7])
    _, state = restart(store, opened)
    assert state.max_msg_id >= 12


def test_read_returns_the_record_before_and_after_restart(opened) -> None:
    body = bytes(range(256)) * 400  # 100 KiB, every byte value
    store, _ = opened()
    store.publish(1, body, [Q_A])
    store.publish(2, b"", [Q_A])
    assert store.read(1) == body
    assert store.read(2) == b""
    make_durable(store)
    assert store.read(1) == body
    store, state = restart(store, opened)
    assert state.records == {1: body, 2: b""}
    assert store.read(1) == body


def test_reopened_store_recovers_exactly_the_live_state(opened) -> None:
    """A mixed history, with a reference model of what must come back."""
    store, _ = opened()
    live: dict[str, list[int]] = {Q_A: [], Q_B: [], Q_C: []}
    records: dict[int, bytes] = {}
    definitions = {}
    for msg_id in range(1, 121):
        keys = [Q_A, Q_B, Q_C][: 1 + msg_id % 3]
        record = b"r%d" % msg_id * (1 + msg_id % 7)
        store.publish(msg_id, record, keys)
        records[msg_id] = record
        for key in keys:
            live[key].append(msg_id)
        if msg_id % 10 == 0:
            definitions[("queue", f"/\x00q{msg_id}")] = {"n": msg_id}
            store.put_definition("queue", f"/\x00q{msg_id}", {"n": msg_id})
        if msg_id % 4 == 0:
            victims = live[Q_A][:3]
            store.ack(Q_A, victims)
            live[Q_A] = live[Q_A][3:]
    store.ack(Q_B, live[Q_B][::2])
    live[Q_B] = live[Q_B][1::2]
    store.purge_queue(Q_C)
    live[Q_C] = []
    store.put_definition("queue", "/\x00q50", None)
    del definitions[("queue", "/\x00q50")]

    store, state = restart(store, opened)
    expected_ids = set(live[Q_A]) | set(live[Q_B])
    assert {key: q.msg_ids for key, q in state.queues.items() if q.msg_ids} == {
        key: ids for key, ids in live.items() if ids
    }
    assert state.records == {msg_id: records[msg_id] for msg_id in expected_ids}
    assert state.definitions == definitions
    assert state.max_msg_id >= 120
    # and once more, with nothing written in between
    _, again = restart(store, opened)
    assert again.records == state.records
    assert again.definitions == state.definitions


def test_abandon_writes_nothing_more(opened) -> None:
    """HA fencing (``MessageStore.abandon``): what was durable stays, what was pending and
    everything written afterwards is gone, sync fails, close does nothing."""
    store, _ = opened()
    store.put_definition("queue", Q_A, {"durable": True})
    store.publish(1, b"durable", [Q_A])
    make_durable(store)
    store.publish(2, b"pending", [Q_A])   # not flushed: no reactor runs in these tests
    store.abandon()
    store.publish(3, b"late", [Q_A, Q_B])
    store.ack(Q_A, [1])
    store.put_definition("queue", Q_B, {"durable": True})
    store.purge_queue(Q_A)
    failures: list = []
    store.sync().addErrback(failures.append)
    assert len(failures) == 1 and failures[0].check(StoreError)
    store.close()
    opened.stores.remove(store)
    _, state = opened()
    assert queue_ids(state, Q_A) == [1]
    assert queue_ids(state, Q_B) == []
    assert ("queue", Q_B) not in state.definitions
    assert state.records.get(1) == b"durable" and 2 not in state.records


def test_lazy_recovery_measures_records_and_returns_only_shared_ones(store_factory,
                                                                    opened) -> None:
    """``recover(body_size=f)`` (the broker's deep-queue recovery): per queue the ids in order
    with ``f(record)`` of each, the records only of messages held by more than one queue, and
    the same delivered flags as a full recovery."""
    store, _ = opened()
    store.publish(1, b"one", [Q_A])
    store.publish(2, b"shared", [Q_A, Q_B])
    store.publish(3, b"three!", [Q_A])
    store.publish(4, b"gone", [Q_A])
    store.ack(Q_A, [4])
    store.mark_delivered(Q_A, [3])
    make_durable(store)
    opened.stores.remove(store)
    store.close()
    again = store_factory()
    again.open()
    opened.stores.append(again)
    lazy = again.recover(body_size=len)
    assert list(lazy.queues[Q_A].msg_ids) == [1, 2, 3]
    assert list(lazy.queues[Q_A].sizes) == [len(b"one"), len(b"shared"), len(b"three!")]
    assert list(lazy.queues[Q_B].msg_ids) == [2] and list(lazy.queues[Q_B].sizes) == [len(b"shared")]
    assert lazy.records == {2: b"shared"}
    assert (Q_A, 3) in lazy.delivered and (Q_A, 1) not in lazy.delivered
    assert again.read(1) == b"one" and again.read(3) == b"three!"
