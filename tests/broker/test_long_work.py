"""Long work for one client is done in slices of reactor turns (a purge or deletion of a big
queue releases its messages until each turn's budget is spent, ``turn_slices``), with the
semantics of doing it at once: the queue is empty when the call returns and the count is the
whole queue.

A real Broker on a fake clock (each ``advance(0)`` step below is one reactor turn); the
durations are in ``python -m bench.scale purge``, never asserted.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
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
