"""Long work for one client is done in slices of reactor turns (a purge or deletion of a big
queue releases its messages until each turn's budget is spent, ``turn_slices``), with the
semantics of doing it at once: the queue is empty when the call returns and the count is the
whole queue.

A deleted queue's bindings go the same way. A real Broker on a fake clock (each call run
below is one reactor turn); the durations are in ``python -m bench.scale purge``, never
asserted.
"""

from __future__ import annotations

import sys

import pytest
from twisted.internet.task import Clock

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.broker.definitions import export_definitions
from warren.model.message import Message, Properties

N = 60_007     # some 60 ms of releases: many turns' budgets


@pytest.fixture
def broker() -> Broker:
    b = Broker(clock=Clock(), codec=CODEC)
    b.ensure_defaults()
    return b


def _fill(broker: Broker, name: str) -> None:
    pub = broker.publisher("/", None)
    ex = pub.exchange("")
    for _ in range(N):
        pub.publish(ex, Message("", name, b"x", codec=CODEC, props=Properties()))


def _turns(broker: Broker) -> int:
    """Run the pending reactor turns one call at a time; how many there were."""
    clock = broker.clock
    n = 0
    while clock.calls:
        call = clock.calls.pop(0)
        call.called = 1
        call.func(*call.args, **call.kw)
        n += 1
    return n


@pytest.mark.parametrize("op", ["purge", "delete"])
def test_a_big_queue_is_emptied_at_once_and_released_over_several_turns(broker, op):
    vh = broker.vhost("/")
    q = vh.declare_queue("big")
    _fill(broker, "big")
    _turns(broker)
    held = broker.memory_used
    assert q.message_count == N and held > 0
    count = q.purge() if op == "purge" else vh.delete_queue("big")
    assert count == N
    assert q.message_count == 0
    assert 0 < broker.memory_used < held          # one slice released, the rest to come
    assert _turns(broker) >= 2                    # more than one turn's budget of work
    assert broker.memory_used == 0


def test_a_deleted_queues_bindings_go_over_several_turns_and_route_nowhere_meanwhile(broker):
    """The queue is gone at once; its 20,000 bindings are removed a turn's budget at a time.
    Meanwhile its keys route nowhere, the listing leaves them out, a queue of the same name
    binding the same key gets the binding, and an exchange with only those bindings is
    unused."""
    vh = broker.vhost("/")
    vh.declare_exchange("x", "direct", durable=True)
    vh.declare_exchange("lonely", "direct")
    q = vh.declare_queue("q", durable=True)
    n = 20_000
    for i in range(n):
        vh.bind("x", q, f"k{i}")
    vh.bind("lonely", q, "only")
    _turns(broker)
    vh.delete_queue("q")
    assert len(q.bindings) > 0 and vh.stale_queues == 1    # not all in the deleting call
    pub = broker.publisher("/", None)
    routed = pub.publish(pub.exchange("x"), Message("x", f"k{n - 1}", b"m", codec=CODEC,
                                                    props=Properties()))
    assert routed.queues == [] and q.message_count == 0
    assert [b for b in vh.bindings() if b.destination is q] == []
    again = vh.declare_queue("q", durable=True)
    vh.bind("x", again, f"k{n - 1}")
    exported = export_definitions(broker)["bindings"]
    assert [(b["destination"], b["routing_key"]) for b in exported
            if b["source"] == "x"] == [("q", f"k{n - 1}")]
    routed = pub.publish(pub.exchange("x"), Message("x", f"k{n - 1}", b"m", codec=CODEC,
                                                    props=Properties()))
    assert routed.queues == [again]
    vh.delete_exchange("lonely", if_unused=True)      # its one binding is the deleted queue's
    assert _turns(broker) >= 2
    assert len(q.bindings) == 0 and vh.stale_queues == 0
    assert [b.destination for b in vh.exchange("x").bindings] == [again]


def test_a_deleted_queues_bindings_are_let_go_as_their_slices_remove_them(broker):
    """The slices that remove a deleted queue's bindings hold none they have removed: each
    binding is freed with its own slice, not all together after the last one."""
    vh = broker.vhost("/")
    q = vh.declare_queue("q")
    for i in range(20_000):
        vh.bind("amq.direct", q, f"k{i}")
    ours = list(q.bindings)      # the order the deletion walks them in
    vh.delete_queue("q")
    assert vh.stale_queues == 1                         # the rest in later turns
    first, last = ours[0], ours[-1]
    assert first not in q.bindings and last in q.bindings
    # ``ours``, ``first`` and the call's argument: no pending slice holds the removed one
    assert sys.getrefcount(first) == 3
    assert sys.getrefcount(last) > 3                    # in the queue's set still
    del first, last
    assert _turns(broker) >= 1
    assert all(sys.getrefcount(b) == 3 for b in ours)   # ``ours``, ``b``, the argument
