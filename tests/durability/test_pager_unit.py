"""The paging policy on a fake clock and an in-memory store (no broker process, no sleeps).

What ``warren/broker/paging.py`` promises: only stored bodies held by one durable queue go, the
head of each queue keeps its bodies, the accounts follow, bodies come back intact on delivery,
a store that cannot answer leaves the entry in place, and a pass that cannot get under the
budget is not repeated for every publish.
"""

from __future__ import annotations

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.model.message import OVERHEAD, Message, Properties
from warren.broker.paging import PagedBody
from warren.store.interface import MessageStore, RecoveredState, StoreUnavailable

SIZE = 1000


class MemoryStore(MessageStore):
    """Just enough of a store: records by id, reads counted, a switch to make it unreachable."""

    def __init__(self) -> None:
        self.records: dict[int, bytes] = {}
        self.reads = 0
        self.down = False

    def open(self) -> None: ...
    def recover(self) -> RecoveredState: return RecoveredState()
    def put_definition(self, kind, key, value) -> None: ...
    def publish(self, msg_id, record, queue_keys) -> None: self.records[msg_id] = record
    def ack(self, queue_key, msg_ids) -> None:
        for msg_id in msg_ids:
            self.records.pop(msg_id, None)
    def purge_queue(self, queue_key) -> None: ...
    def sync(self): return succeed(None)
    def close(self) -> None: ...
    def abandon(self) -> None: ...

    def read(self, msg_id: int) -> bytes:
        if self.down:
            raise StoreUnavailable("down")
        self.reads += 1
        return self.records[msg_id]


class Collector:
    """A consumer taking everything (no_ack), keeping the bodies it was handed."""

    tag, no_ack, exclusive, priority, arguments = "c", True, False, 0, {}

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def has_credit(self) -> bool:
        return True

    def deliver(self, queue, entry) -> None:
        self.bodies.append(bytes(entry.message.body))

    def cancelled(self, queue) -> None: ...


def setup(budget: int = 20 * SIZE):
    clock = Clock()
    store = MemoryStore()
    broker = Broker(clock=clock, codec=CODEC, store=store, paging_budget=budget)
    broker.ensure_defaults()
    broker.pager.head_keep = 10
    return clock, store, broker, broker.vhost("/")


def body(i: int) -> bytes:
    return f"{i:06d}".encode().ljust(SIZE, b"-")


def publish(vh, queue: str, i: int, persistent: bool = True) -> None:
    props = Properties(delivery_mode=2 if persistent else 1)
    vh.publish(vh.exchange(""), Message("", queue, body(i), codec=CODEC, props=props))


def test_only_stored_bodies_of_durable_queues_past_the_head_are_paged():
    clock, store, broker, vh = setup()
    q = vh.declare_queue("lazy", durable=True)
    t = vh.declare_queue("transient-queue")
    for i in range(100):
        publish(vh, "lazy", i)
        publish(vh, "transient-queue", i)
        publish(vh, "lazy", 1000 + i, persistent=False)
    clock.advance(0)
    entries = list(q.ready)
    assert not any(e.message.paged for e in entries[:10]), "the head keeps its bodies"
    assert not any(e.message.paged for e in t.ready), "non-durable queue"
    assert not any(e.message.paged for e in entries if not e.message.persistent)
    paged = [e for e in entries if e.message.paged]
    assert paged and all(isinstance(e.message.body, PagedBody) for e in paged)
    # the accounts: logical sizes unchanged, memory down by exactly the paged bodies
    assert q.ready.bytes == 200 * SIZE
    assert broker.memory_used == 300 * (SIZE + OVERHEAD) - len(paged) * SIZE
    assert broker.body_bytes == 300 * SIZE - len(paged) * SIZE


def test_paged_bodies_come_back_in_order_with_read_ahead():
    clock, store, broker, vh = setup()
    q = vh.declare_queue("lazy", durable=True)
    for i in range(500):
        publish(vh, "lazy", i)
    clock.advance(0)
    assert broker.body_bytes <= broker.pager.budget
    consumer = Collector()
    q.add_consumer(consumer)
    assert consumer.bodies == [body(i) for i in range(500)]
    clock.advance(0)  # the turn ends: its acks reach the store
    assert store.reads >= 400 and store.records == {}
    assert broker.memory_used == 0 and broker.body_bytes == 0


def test_store_down_leaves_the_entry_and_delivery_resumes():
    clock, store, broker, vh = setup()
    q = vh.declare_queue("lazy", durable=True)
    for i in range(100):
        publish(vh, "lazy", i)
    clock.advance(0)
    first_paged = next(i for i, e in enumerate(q.ready) if e.message.paged)
    assert first_paged >= 10
    consumer = Collector()
    store.down = True
    q.add_consumer(consumer)
    assert consumer.bodies == [body(i) for i in range(first_paged)]  # resident ones only
    assert q.message_count == 100 - first_paged
    assert q.get(no_ack=True) is None  # basic.get: nothing deliverable right now
    store.down = False
    clock.advance(1.0)  # the queue's retry
    assert consumer.bodies == [body(i) for i in range(100)]


def test_futile_pass_is_not_repeated_per_publish():
    clock, store, broker, vh = setup(budget=5 * SIZE)
    vh.declare_queue("lazy", durable=True)
    vh.declare_queue("plain")
    for i in range(50):
        publish(vh, "plain", i)  # non-durable: nothing can be paged
    clock.advance(0)
    assert broker.pager._futile_at > 0
    before = len(clock.getDelayedCalls())
    publish(vh, "plain", 99)
    assert len(clock.getDelayedCalls()) == before, "no new pass for a small growth"
