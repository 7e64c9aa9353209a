"""Redelivery back-off on a fake clock: the delays, and a held entry staying out of the ready
list until its time (no broker process, no sleeps)."""

from __future__ import annotations

from twisted.internet.task import Clock

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.model.message import Message
from warren.broker.redelivery import MAX_DELAY_MS, BackOff
from tests.deferreds import fired


def test_back_off_delays_grow_by_the_multiplier_up_to_the_maximum():
    assert [BackOff(100).delay_ms(n) for n in (1, 2, 5)] == [100, 100, 100]
    assert [BackOff(100, 2).delay_ms(n) for n in (1, 2, 3, 4)] == [100, 200, 400, 800]
    assert [BackOff(100, 3, 500).delay_ms(n) for n in (1, 2, 3, 10)] == [100, 300, 500, 500]
    assert BackOff(1000, 10).delay_ms(10_000) == MAX_DELAY_MS   # no overflow, capped
    assert BackOff(100, 0.5).delay_ms(2) == 50


def _queue(**arguments):
    clock = Clock()
    broker = Broker(clock=clock, codec=CODEC)
    broker.ensure_defaults()
    vh = broker.vhost("/")
    q = vh.declare_queue("q", arguments=arguments)
    for body in (b"a", b"b", b"c"):
        vh.publish(vh.exchange(""), Message("", "q", body, codec=CODEC))
    return clock, q


def test_a_held_entry_is_ready_again_in_its_old_place_after_its_delay():
    clock, q = _queue(**{"x-redelivery-initial-delay": 1000, "x-redelivery-multiplier": 2})
    a = fired(q.get_later(no_ack=False))
    q.requeue([a])
    assert [e.message.body for e in q.ready] == [b"b", b"c"]
    assert q.message_count == 3 and len(q.held) == 1
    clock.advance(0.999)
    assert fired(q.get_later(no_ack=True)).message.body == b"b"
    clock.advance(0.001)
    assert [e.message.body for e in q.ready] == [b"a", b"c"] and not q.held
    a = fired(q.get_later(no_ack=False))
    assert a.delivery_count == 1 and a.redelivered
    q.requeue([a])                      # second return: 2 s
    clock.advance(1.5)
    assert len(q.held) == 1
    clock.advance(0.5)
    assert fired(q.get_later(no_ack=True)).delivery_count == 2


def test_purge_and_delete_take_held_entries_and_stop_the_timer():
    clock, q = _queue(**{"x-redelivery-initial-delay": 60000})
    q.requeue([fired(q.get_later(no_ack=False)), fired(q.get_later(no_ack=False))])
    assert q.purge() == 3 and q.message_count == 0
    assert not [c for c in clock.getDelayedCalls() if c.active() and c.func == q.held._due]
    q.vhost.publish(q.vhost.exchange(""), Message("", "q", b"d", codec=CODEC))
    q.requeue([fired(q.get_later(no_ack=False))])
    assert q.vhost.delete_queue("q") == 1
    clock.advance(120)
    assert q.message_count == 0
