"""The paging policy on a fake clock and an in-memory store (no broker process, no sleeps).

What ``warren/broker/paging.py`` promises: messages held by one queue go (to rows of
``compact.py``; stored ones stay in the store, transient ones go to the queue's paging file),
messages shared by queues stay in memory at their places, the head of each queue stays, the accounts follow, messages come
back intact and in order on delivery (priorities, TTL and requeue included), a store that
cannot answer leaves the entry in place, a purge acks every row, and a pass that cannot get
under the budget is not repeated for every publish.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.broker.compact import ENTRY_BYTES
from warren.broker.move import move_messages
from warren.broker.ready import WINDOW
from warren.model.message import OVERHEAD, Message, Properties
from tests.memory_store import MemoryStore
from warren.store.interface import (
    RecoveredQueue,
    RecoveredState,
    StoreUnavailable,
    resource_key,
)
from tests.deferreds import fired

SIZE = 1000


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


def test_past_the_head_stored_messages_become_rows_and_transient_ones_go_to_the_paging_file():
    clock, store, broker, vh = setup()
    q = vh.declare_queue("lazy", durable=True)
    t = vh.declare_queue("transient-queue")
    for i in range(100):
        publish(vh, "lazy", i)
        publish(vh, "transient-queue", 2000 + i)
        publish(vh, "lazy", 1000 + i, persistent=False)
    clock.advance(0)
    # each queue keeps its head (10 entries); past it every entry became a row: the stored
    # ones point into the store, the transient ones (durable queue or not) into the queue's
    # paging file
    assert len(list(q.ready)) == 10 and len(list(t.ready)) == 10
    assert q.ready.paged == 190 and q.ready.paged_bytes == 190 * SIZE
    assert t.ready.paged == 90
    assert q.page_file.live == 95 and t.page_file.live == 90
    assert len(store.records) == 100, "transient messages never reach the store"
    # the accounts: logical sizes unchanged, each paged message down to its row
    assert len(q.ready) == 200 and q.ready.bytes == 200 * SIZE
    assert broker.index_bytes == 280 * ENTRY_BYTES
    assert broker.memory_used == 20 * (SIZE + OVERHEAD) + 280 * ENTRY_BYTES
    assert broker.body_bytes == 20 * SIZE
    # all back, in order; the paging files are emptied once nothing in them is referenced
    lazy, plain = Collector(), Collector()
    q.add_consumer(lazy)
    t.add_consumer(plain)
    assert lazy.bodies == [body(n) for i in range(100) for n in (i, 1000 + i)]
    assert plain.bodies == [body(2000 + i) for i in range(100)]
    assert q.page_file.size == 0 and t.page_file.size == 0
    clock.advance(0)
    assert broker.memory_used == 0 and broker.index_bytes == 0 and store.records == {}


def test_messages_shared_by_queues_stay_in_memory_at_their_places():
    clock, store, broker, vh = setup()
    a = vh.declare_queue("a", durable=True)
    b = vh.declare_queue("b", durable=True)
    vh.bind("amq.fanout", a, "", {})
    vh.bind("amq.fanout", b, "", {})
    for i in range(100):
        publish(vh, "a", i)
        if i % 10 == 5:
            vh.publish(vh.exchange("amq.fanout"), Message(
                "amq.fanout", "", body(5000 + i), codec=CODEC,
                props=Properties(delivery_mode=2)))
    clock.advance(0)
    assert a.ready.paged == 100 - 10 + 1 and len(a.ready) == 110
    consumer = Collector()
    a.add_consumer(consumer)
    expected = []
    for i in range(100):
        expected.append(body(i))
        if i % 10 == 5:
            expected.append(body(5000 + i))
    assert consumer.bodies == expected
    assert len(b.ready) == 10


def test_paged_messages_come_back_in_order_with_read_ahead():
    clock, store, broker, vh = setup()
    q = vh.declare_queue("lazy", durable=True)
    for i in range(500):
        publish(vh, "lazy", i)
    clock.advance(0)
    assert broker.pager.resident <= broker.pager.budget
    consumer = Collector()
    q.add_consumer(consumer)
    assert consumer.bodies == [body(i) for i in range(500)]
    clock.advance(0)  # the turn ends: its acks reach the store
    assert 490 <= store.reads < 500 + 10 and store.records == {}
    assert broker.memory_used == 0 and broker.body_bytes == 0 and broker.index_bytes == 0


class HeldReadStore(MemoryStore):
    """A store whose reads off the reactor thread wait until the test lets them finish (the
    journal's reader thread, made deterministic)."""

    def __init__(self) -> None:
        super().__init__()
        self.later: list[tuple[Deferred, list[int]]] = []

    def read_many_later(self, msg_ids):
        done: Deferred = Deferred()
        self.later.append((done, msg_ids))
        return done

    def finish_reads(self) -> int:
        """Let the reads asked so far finish (failing while ``down``); how many there were."""
        later, self.later = self.later, []
        for done, msg_ids in later:
            try:
                records = self.read_many(msg_ids)
            except StoreUnavailable as error:
                done.errback(error)
            else:
                done.callback(records)
        return len(later)


def test_dispatch_reads_paged_bodies_off_the_reactor_and_resumes_when_they_are_in():
    """A consumer reaching the paged part of a queue does not wait for the store: the read
    goes off the reactor thread, the entry keeps its place, and the queue is dispatched once
    the records are in; a record lost meanwhile is dropped (logged), the rest delivered."""
    clock = Clock()
    store = HeldReadStore()
    broker = Broker(clock=clock, codec=CODEC, store=store, paging_budget=20 * SIZE)
    broker.ensure_defaults()
    broker.pager.head_keep = 10
    vh = broker.vhost("/")
    q = vh.declare_queue("lazy", durable=True)
    for i in range(600):
        publish(vh, "lazy", i)
    clock.advance(0)
    consumer = Collector()
    q.add_consumer(consumer)
    assert consumer.bodies == [body(i) for i in range(10)]   # the head, in memory
    assert store.reads == 0 and len(store.later) == 1        # nothing read on the reactor
    assert q.message_count == 590                             # the entry kept its place
    q.dispatch()                                              # no second read of the same
    assert len(store.later) == 1
    lost = sorted(store.records)[300]
    del store.records[lost]
    while store.finish_reads():
        clock.advance(0)
    clock.advance(0)
    assert consumer.bodies == [body(i) for i in range(600) if i != 300]
    assert q.message_count == 0 and store.reads >= 590


def test_store_down_leaves_the_entry_and_delivery_resumes():
    """The store cannot be read: the paged entries keep their places, a basic.get waits for
    its message instead of answering get-empty, and both resume when the store is back."""
    clock, store, broker, vh = setup()
    q = vh.declare_queue("lazy", durable=True)
    for i in range(100):
        publish(vh, "lazy", i)
    clock.advance(0)
    first_paged = 100 - q.ready.paged
    assert first_paged == 10
    consumer = Collector()
    store.down = True
    q.add_consumer(consumer)
    assert consumer.bodies == [body(i) for i in range(first_paged)]  # resident ones only
    assert q.message_count == 100 - first_paged
    q.remove_consumer(consumer)
    waiting = q.get_later(no_ack=True)
    assert not waiting.called, "a get waits for its message, never answers get-empty"
    clock.advance(1.0)   # retried: the store is still down
    assert not waiting.called and q.message_count == 100 - first_paged
    store.down = False
    clock.advance(1.0)   # the get's retry
    assert bytes(fired(waiting).message.body) == body(first_paged)
    q.add_consumer(consumer)
    clock.advance(0)
    assert consumer.bodies == [body(i) for i in range(100) if i != first_paged]


def test_deep_queue_stays_within_the_budget_and_drains_in_order():
    """100k messages under a 64 KiB budget: what is in memory stays under it (the head and
    the tail being written), each paged message costs its row only."""
    count = 100_000
    clock, store, broker, vh = setup(budget=64 * SIZE)
    q = vh.declare_queue("deep", durable=True)
    peak = 0
    for i in range(count):
        publish(vh, "deep", i)
        if i % 1000 == 999:
            clock.advance(0)
            peak = max(peak, broker.pager.resident)
    assert peak <= broker.pager.budget
    assert broker.index_bytes == q.ready.paged * ENTRY_BYTES
    assert q.ready.paged >= count - 1000 and len(q.ready) == count
    consumer = Collector()
    q.add_consumer(consumer)
    assert consumer.bodies == [body(i) for i in range(count)]
    clock.advance(0)
    assert broker.memory_used == 0 and broker.index_bytes == 0 and store.records == {}


def test_priorities_ttl_and_requeue_work_on_paged_entries():
    clock, store, broker, vh = setup()
    q = vh.declare_queue("prio", durable=True, arguments={"x-max-priority": 5})
    for i in range(200):
        props = Properties(delivery_mode=2, priority=i % 3,
                           expiration="1000" if i % 50 == 7 else None)
        vh.publish(vh.exchange(""), Message("", "prio", body(i), codec=CODEC, props=props))
    clock.advance(0)
    assert q.ready.paged > 100
    clock.advance(1.5)   # the per-message TTLs of paged entries expire (4 of them)
    assert len(q.ready) == 196
    expected = [body(i) for p in (2, 1, 0) for i in range(200) if i % 3 == p and i % 50 != 7]
    first = fired(q.get_later(no_ack=False))
    assert bytes(first.message.body) == expected[0]
    q.requeue([first])   # back to its place, ahead of everything
    consumer = Collector()
    q.add_consumer(consumer)
    assert consumer.bodies == expected
    clock.advance(0)
    assert broker.memory_used == 0 and broker.index_bytes == 0 and store.records == {}


def test_purge_of_a_paged_queue_acks_every_row():
    clock, store, broker, vh = setup()
    q = vh.declare_queue("lazy", durable=True)
    for i in range(300):
        publish(vh, "lazy", i)
    clock.advance(0)
    assert q.ready.paged == 290
    assert q.purge() == 300
    clock.advance(0)
    clock.advance(0)
    assert store.records == {} and len(q.ready) == 0
    assert broker.memory_used == 0 and broker.index_bytes == 0 and broker.body_bytes == 0


class Holder(Collector):
    """A consumer that acks nothing: what it was handed stays unacked."""

    no_ack = False

    def __init__(self, credit: int) -> None:
        super().__init__()
        self.credit = credit
        self.entries: list = []

    def has_credit(self) -> bool:
        return len(self.bodies) < self.credit

    def deliver(self, queue, entry) -> None:
        super().deliver(queue, entry)
        self.entries.append(entry)


def test_purge_with_messages_out_acks_the_rows_and_keeps_the_unacked_in_the_store():
    """A purge drops the ready messages only: with one out with a consumer the store cannot
    drop the whole queue, so the paged rows are acked one by one (in slices) and the unacked
    message stays stored; a purge with nothing out drops the queue in the store at once."""
    clock, store, broker, vh = setup()
    q = vh.declare_queue("lazy", durable=True)
    holder = Holder(credit=1)
    q.add_consumer(holder)
    for i in range(300):
        publish(vh, "lazy", i)
    clock.advance(0)
    assert q.ready.paged > 0 and q.unacked == 1
    assert q.purge() == 299
    for _ in range(3):
        clock.advance(0)
    assert [r.endswith(body(0)) for r in store.records.values()] == [True], \
        "only the unacked message stays"
    q.remove_consumer(holder)   # it comes back to the queue, and a purge now takes it too
    q.requeue(holder.entries)
    clock.advance(0)
    assert q.message_count == 1 and q.unacked == 0
    assert q.purge() == 1
    clock.advance(0)
    assert store.records == {}
    assert broker.memory_used == 0 and broker.index_bytes == 0 and broker.body_bytes == 0


def test_futile_pass_is_not_repeated_per_publish():
    clock, store, broker, vh = setup(budget=5 * SIZE)
    a = vh.declare_queue("a")
    b = vh.declare_queue("b")
    vh.bind("amq.fanout", a, "", {})
    vh.bind("amq.fanout", b, "", {})
    fanout = vh.exchange("amq.fanout")
    for i in range(50):  # held by two queues: nothing can be paged
        vh.publish(fanout, Message("amq.fanout", "", body(i), codec=CODEC, props=Properties()))
    clock.advance(0)
    assert broker.pager._futile_at > 0
    before = len(clock.getDelayedCalls())
    vh.publish(fanout, Message("amq.fanout", "", body(99), codec=CODEC, props=Properties()))
    assert len(clock.getDelayedCalls()) == before, "no new pass for a small growth"


def test_delete_of_a_queue_with_a_paging_file_releases_everything_in_slices():
    clock, store, broker, vh = setup()
    q = vh.declare_queue("plain")
    for i in range(25_000):   # more than one release slice
        publish(vh, "plain", i, persistent=False)
    clock.advance(0)
    path = q.page_file.path
    assert q.ready.paged == 25_000 - 10 and os.path.exists(path)
    vh.delete_queue("plain")
    for _ in range(3):
        clock.advance(0)   # the later slices run after the file is gone
    assert not os.path.exists(path)
    assert broker.memory_used == 0 and broker.index_bytes == 0 and broker.body_bytes == 0


def test_recovered_rows_learn_their_own_ttl_when_read_back():
    """Lazy recovery reads no record past each queue's first window, so a message's own
    ``expiration`` is applied when it is read back, counted from the broker's start as a
    recovery that read it would have: it expires, the others come back in order."""
    clock, store = Clock(), MemoryStore()
    key = resource_key("/", "q")
    ids, sizes = list(range(1, 601)), []
    for i in ids:
        props = Properties(delivery_mode=2, expiration="1000" if i % 100 == 50 else None)
        store.records[i] = Message("", "q", body(i), codec=CODEC, props=props).to_record()
        sizes.append(SIZE)
    store.state = RecoveredState(
        definitions={("vhost", "/"): {"name": "/"},
                     ("queue", key): {"name": "q", "vhost": "/", "durable": True,
                                      "auto_delete": False, "arguments": {}}},
        queues={key: RecoveredQueue(key, ids, sizes)}, max_msg_id=600)
    broker = Broker(clock=clock, codec=CODEC, store=store, paging_budget=20 * SIZE)
    broker.recover()
    q = broker.vhost("/").queues["q"]
    assert store.reads == WINDOW   # the first window is read, the rest stays rows
    assert q.ready.paged == 600 - broker.pager.head_keep   # paged down to the head again
    clock.advance(2.0)   # past the 1 s TTL of every hundredth message
    consumer = Collector()
    q.add_consumer(consumer)
    assert consumer.bodies == [body(i) for i in ids if i % 100 != 50]
    clock.advance(0)
    assert broker.memory_used == 0 and broker.index_bytes == 0


def test_a_paging_file_that_cannot_be_written_keeps_the_messages_in_memory(tmp_path):
    """The paging directory cannot be made (a file stands in its way, as a full or broken
    disk would refuse the writes): transient messages stay in memory at their places, none
    is lost, and the one warning is all the log says."""
    clock, store, broker, vh = setup()
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    broker.pager.directory = str(blocker / "paging")
    q = vh.declare_queue("plain")
    for i in range(100):
        publish(vh, "plain", i, persistent=False)
    clock.advance(0)
    assert q.ready.paged == 0 and len(q.ready) == 100 and q.page_file is None
    consumer = Collector()
    q.add_consumer(consumer)
    assert consumer.bodies == [body(i) for i in range(100)]


def held_setup():
    """A broker whose store reads off the reactor thread only when the test says so."""
    clock = Clock()
    store = HeldReadStore()
    broker = Broker(clock=clock, codec=CODEC, store=store, paging_budget=20 * SIZE)
    broker.ensure_defaults()
    broker.pager.head_keep = 10
    return clock, store, broker, broker.vhost("/")


def test_gets_of_a_paged_head_wait_for_the_read_in_order_and_a_consumer_waits_behind():
    """basic.get of a paged-out head reads nothing on the reactor thread: it waits for the
    read (the entry keeps its place and its count), two gets in a row are answered in
    order, and a consumer attaching meanwhile gets what follows; a get withdrawn (its
    channel closed) takes nothing."""
    clock, store, broker, vh = held_setup()
    q = vh.declare_queue("lazy", durable=True)
    for i in range(100):
        publish(vh, "lazy", i)
    clock.advance(0)
    head = [fired(q.get_later(no_ack=True)) for _ in range(10)]   # the head, in memory
    assert [bytes(e.message.body) for e in head] == [body(i) for i in range(10)]
    first, second = q.get_later(no_ack=False), q.get_later(no_ack=True)
    withdrawn = q.get_later(no_ack=True)
    assert not first.called and not second.called and store.reads == 0
    assert len(store.later) == 1 and q.message_count == 90
    withdrawn.cancel()
    consumer = Collector()
    q.add_consumer(consumer)
    assert consumer.bodies == [] and len(store.later) == 1, "one read, nothing delivered yet"
    while store.finish_reads():
        clock.advance(0)
    clock.advance(0)
    assert bytes(fired(first).message.body) == body(10) and q.unacked == 1
    assert bytes(fired(second).message.body) == body(11)
    assert consumer.bodies == [body(i) for i in range(12, 100)]
    assert q.message_count == 0


def test_paged_messages_dead_lettered_wait_for_their_bodies_and_keep_their_order():
    """A length limit dropping paged-out messages of a queue with a dead-letter exchange:
    their bodies are read off the reactor thread (in batches), they stay counted meanwhile,
    and reach the dead-letter queue whole, in order; a store that fails meanwhile only
    delays them."""
    clock, store, broker, vh = held_setup()
    dead = vh.declare_queue("dead", durable=True)
    q = vh.declare_queue("lazy", durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
    for i in range(600):
        publish(vh, "lazy", i)
    clock.advance(0)
    q.policy = {"max-length": 0}
    q.apply_settings()
    # the head (in memory) goes at once, the paged rest waits for its bodies
    assert q.message_count == 590 and dead.message_count == 10 and store.reads == 0
    store.down = True
    assert store.finish_reads() >= 1   # the first batches fail: nothing is dropped
    assert q.message_count == 590 and dead.message_count == 10
    store.down = False
    clock.advance(1.0)                  # retried
    while store.finish_reads():
        clock.advance(0)
    assert q.message_count == 0 and len(dead.ready) == 600
    consumer = Collector()
    dead.add_consumer(consumer)
    while store.finish_reads():
        clock.advance(0)
    assert consumer.bodies == [body(i) for i in range(600)]


def test_move_reads_paged_bodies_off_the_reactor_and_moves_them_in_order():
    clock, store, broker, vh = held_setup()
    src = vh.declare_queue("src", durable=True)
    dst = vh.declare_queue("dst", durable=True)
    for i in range(600):
        publish(vh, "src", i)
    clock.advance(0)
    moving = move_messages(src, dst, 550)
    assert not moving.called and store.reads == 0
    while store.finish_reads():
        clock.advance(0)
    assert fired(moving) == 550
    assert src.message_count == 50 and dst.message_count == 550
    for q in (dst, src):
        consumer = Collector()
        q.add_consumer(consumer)
        while store.finish_reads():
            clock.advance(0)
        clock.advance(0)
        expected = range(550) if q is dst else range(550, 600)
        assert consumer.bodies == [body(i) for i in expected]


class Prefetching:
    """A consumer acking by hand with a prefetch window (credit), as a drain's is: after a
    dispatch it is out of credit until it acks."""

    tag, no_ack, exclusive, priority, arguments = "p", False, False, 0, {}

    def __init__(self, prefetch: int) -> None:
        self.prefetch = prefetch
        self.unacked: list = []
        self.bodies: list[bytes] = []

    def has_credit(self) -> bool:
        return len(self.unacked) < self.prefetch

    def deliver(self, queue, entry) -> None:
        self.unacked.append(entry)
        self.bodies.append(bytes(entry.message.body))

    def cancelled(self, queue) -> None: ...


def test_a_drain_reads_the_next_batch_before_the_consumer_reaches_it():
    """Double buffering (``Pager.read_ahead``): once the first batch is in, the next one is
    asked while the consumer takes this one, whatever its credit at that moment, so the
    consumer never finds an unread body at the head again. Here the store answers a read
    only at the next step (one round of the consumer's acks later): each step the consumer
    acks what it holds and must get a full window again, and the whole queue comes in order.
    (Before: the next batch waited for credit, which a drain's consumer has none of after a
    dispatch, so a step came up short and waited for the disk.)"""
    clock = Clock()
    store = HeldReadStore()
    broker = Broker(clock=clock, codec=CODEC, store=store, paging_budget=20 * SIZE)
    broker.ensure_defaults()
    broker.pager.head_keep = 10
    vh = broker.vhost("/")
    q = vh.declare_queue("lazy", durable=True)
    count, prefetch = 6000, 100
    for i in range(count):
        publish(vh, "lazy", i)
    clock.advance(0)
    assert q.ready.paged == count - 10
    consumer = Prefetching(prefetch)
    q.add_consumer(consumer)
    store.finish_reads()   # the first batch: nothing was read ahead of it
    clock.advance(0)
    short = []
    while len(consumer.bodies) < count:
        store.finish_reads()   # what the last step asked is in now
        got = len(consumer.bodies)
        q.ack(consumer.unacked)   # what a channel does with a consumer's acks
        consumer.unacked = []
        q.dispatch()
        clock.advance(0)
        if len(consumer.bodies) - got < min(prefetch, count - got):
            short.append(got)
            assert len(short) < 50, "the drain makes no progress"
    assert short == [], f"the consumer waited for the disk at {short}"
    assert consumer.bodies == [body(i) for i in range(count)]
