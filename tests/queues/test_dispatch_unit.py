"""The queue's per-message path on a fake clock (no broker process): an entry arriving at an
empty queue goes straight to a consumer with room, one arriving behind others waits its turn,
and a priority queue's counts follow every change."""

from __future__ import annotations

from twisted.internet.task import Clock

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.broker.ready import ReadyByPriority
from warren.model.message import Message, Properties, QueueEntry


class Taker:
    """A consumer with a prefetch window, keeping what it was handed (acks are the test's)."""

    tag, no_ack, exclusive, priority, arguments = "t", False, False, 0, {}

    def __init__(self, window: int) -> None:
        self.window = window
        self.held: list[QueueEntry] = []

    def has_credit(self) -> bool:
        return len(self.held) < self.window

    def deliver(self, queue, entry) -> None:
        self.held.append(entry)

    def cancelled(self, queue) -> None: ...


class Picky(Taker):
    """A selective consumer (``accepts``): bodies starting with its letter only."""

    def __init__(self, window: int, letter: bytes) -> None:
        super().__init__(window)
        self.letter = letter

    def accepts(self, queue, entry) -> bool:
        return entry.message.body.startswith(self.letter)


def _vhost():
    broker = Broker(clock=Clock(), codec=CODEC)
    broker.ensure_defaults()
    return broker.vhost("/")


def _publish(vh, queue: str, body: bytes, priority: int | None = None) -> None:
    vh.publish(vh.exchange(""), Message("", queue, body, codec=CODEC,
                                        props=Properties(priority=priority)))


def _bodies(entries) -> list[bytes]:
    return [e.message.body for e in entries]


def test_arrivals_keep_queue_order_across_credit():
    vh = _vhost()
    q = vh.declare_queue("q")
    taker = Taker(window=2)
    demand: list[int] = []
    q.demand_watchers.append(lambda queue: demand.append(len(queue.ready)))
    q.add_consumer(taker)
    for body in (b"1", b"2", b"3", b"4"):
        _publish(vh, "q", body)
    # two went straight out, two wait; the watcher heard of every arrival
    assert _bodies(taker.held) == [b"1", b"2"]
    assert _bodies(q.ready) == [b"3", b"4"]
    assert demand[-4:] == [0, 0, 1, 2]
    assert (q.unacked, q.stats["deliver"]) == (2, 2)
    q.ack(taker.held)
    taker.held = []
    _publish(vh, "q", b"5")   # behind the two waiting: it must not overtake them
    q.dispatch()
    assert _bodies(taker.held) == [b"3", b"4"]
    q.ack(taker.held)
    taker.held = []
    q.dispatch()
    _publish(vh, "q", b"6")
    assert _bodies(taker.held) == [b"5", b"6"]
    assert q.message_count == 0 and q.stats["deliver"] == 6
    assert q.ready.bytes == 0


def test_arrival_refused_by_every_selective_consumer_waits_for_one_that_wants_it():
    vh = _vhost()
    q = vh.declare_queue("q")
    a = Picky(window=10, letter=b"a")
    q.add_consumer(a)
    _publish(vh, "q", b"b1")
    _publish(vh, "q", b"a1")
    assert _bodies(a.held) == [b"a1"]
    assert _bodies(q.ready) == [b"b1"]
    b = Picky(window=10, letter=b"b")
    q.add_consumer(b)
    assert _bodies(b.held) == [b"b1"]
    _publish(vh, "q", b"b2")
    _publish(vh, "q", b"a2")
    assert _bodies(a.held) == [b"a1", b"a2"] and _bodies(b.held) == [b"b1", b"b2"]


def test_round_robin_between_two_consumers_on_arrival():
    vh = _vhost()
    q = vh.declare_queue("q")
    first, second = Taker(window=10), Taker(window=10)
    q.add_consumer(first)
    q.add_consumer(second)
    for body in (b"1", b"2", b"3", b"4"):
        _publish(vh, "q", body)
    assert _bodies(first.held) == [b"1", b"3"] and _bodies(second.held) == [b"2", b"4"]
    q.remove_consumer(first)
    _publish(vh, "q", b"5")
    assert _bodies(second.held) == [b"2", b"4", b"5"]


def test_priority_levels_count_and_serve_highest_first():
    ready = ReadyByPriority(9, restore=lambda row: None)   # no paging in this test
    assert not ready and len(ready) == 0 and ready.peek() is None
    seq = 0
    for priority in (4, 4, 7, 0, None, 9):
        seq += 1
        ready.append(QueueEntry(Message("", "q", str(priority).encode(), codec=CODEC,
                                        props=Properties(priority=priority)), seq))
    assert len(ready) == 6 and ready
    assert ready.peek().message.body == b"9"
    first = [ready.popleft(), ready.popleft()]
    assert _bodies(first) == [b"9", b"7"] and len(ready) == 4
    ready.requeue(first)            # back at the top: served first again
    assert len(ready) == 6 and ready.peek().message.body == b"9"
    gone = ready.remove_where(lambda e: e.message.body == b"4")
    assert len(gone) == 2 and len(ready) == 4
    assert _bodies(ready.popleft() for _ in range(4)) == [b"9", b"7", b"0", b"None"]
    assert not ready and len(ready) == 0
    try:
        ready.popleft()
    except IndexError:
        pass
    else:
        raise AssertionError("popleft of an empty ReadyByPriority must raise")
    ready.append(QueueEntry(Message("", "q", b"x", codec=CODEC, props=Properties(priority=2)),
                            seq + 1))
    assert len(ready.clear()) == 1 and not ready


def test_priority_queue_delivers_by_priority_once_credit_returns():
    vh = _vhost()
    q = vh.declare_queue("q", arguments={"x-max-priority": 5})
    taker = Taker(window=1)
    q.add_consumer(taker)
    for body, priority in ((b"low", 1), (b"mid", 3), (b"high", 5), (b"none", None)):
        _publish(vh, "q", body, priority)
    assert _bodies(taker.held) == [b"low"]   # arrived at an empty queue
    assert q.message_count == 3
    order = []
    while q.message_count:
        q.ack(taker.held)
        order += _bodies(taker.held)
        taker.held = []
        q.dispatch()
    order += _bodies(taker.held)
    assert order == [b"low", b"high", b"mid", b"none"]
