"""Queue TTL bookkeeping on a fake clock (no broker process, no sleeps)."""

from __future__ import annotations

from twisted.internet.task import Clock

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.model.message import Message, Properties


def _vhost():
    clock = Clock()
    broker = Broker(clock=clock, codec=CODEC)
    broker.ensure_defaults()
    return clock, broker.vhost("/")


def _publish(vh, queue, body, expiration=None):
    msg = Message("", queue, body, codec=CODEC, props=Properties(expiration=expiration))
    vh.publish(vh.exchange(""), msg)


def test_queue_ttl_expires_in_order_and_rearms():
    clock, vh = _vhost()
    q = vh.declare_queue("q", arguments={"x-message-ttl": 100})
    for i in range(1000):
        _publish(vh, "q", b"x")
        clock.advance(0.001)
        # only the last 100 ms of messages are alive at any time
        assert q.message_count <= 101
    assert q.message_count >= 99
    clock.advance(0.05)
    assert 40 <= q.message_count <= 51
    clock.advance(1.0)
    assert q.message_count == 0
    assert not clock.getDelayedCalls() or all(not c.active() for c in clock.getDelayedCalls()
                                              if c.func == q._expire_due)


def test_mixed_message_ttls_expire_off_the_head():
    clock, vh = _vhost()
    q = vh.declare_queue("q")
    _publish(vh, "q", b"long", expiration="100000")
    _publish(vh, "q", b"short", expiration="50")
    _publish(vh, "q", b"none")
    clock.advance(0.06)
    assert [e.message.body for e in q.ready] == [b"long", b"none"]


def test_priority_queue_ttl_expires_across_levels():
    clock, vh = _vhost()
    q = vh.declare_queue("q", arguments={"x-max-priority": 5, "x-message-ttl": 50})
    for p in (1, 5, 3):
        vh.publish(vh.exchange(""), Message("", "q", b"m", codec=CODEC,
                                            props=Properties(priority=p)))
    clock.advance(0.051)
    assert q.message_count == 0


def test_entries_and_routing_answers_made_bare_have_every_field():
    """``Queue.enqueue`` and ``VirtualHost.publish`` build their QueueEntry and Routed without
    ``__init__`` (a call less per message): a field added to either class must be set there
    too, or reading it fails here."""
    import dataclasses

    from warren.broker.vhost import Routed
    from warren.model.message import QueueEntry

    clock, vh = _vhost()
    q = vh.declare_queue("q", arguments={"x-message-ttl": 1000})
    msg = Message("", "q", b"m", codec=CODEC, props=Properties())
    routed = vh.publish(vh.exchange(""), msg)
    assert {f.name: getattr(routed, f.name) for f in dataclasses.fields(Routed)} == {
        "queues": [q], "rejected": (), "stored": False}
    entry = q.ready.popleft()
    assert {f.name: getattr(entry, f.name) for f in dataclasses.fields(QueueEntry)} == {
        "message": msg, "seq": 1, "expires_at": clock.seconds() + 1.0,
        "redelivered": False, "delivery_count": 0}
