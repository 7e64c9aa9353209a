"""In-process tests of the core pieces behind the API: definitions, move, message stats."""

from __future__ import annotations

import pytest
from twisted.internet import task

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.broker.definitions import export_definitions, import_definitions
from warren.model.errors import PreconditionFailed
from warren.model.message import Message, Properties
from warren.broker.move import move_messages
from warren.broker.stats import MessageStats
from tests.deferreds import fired


def new_broker(clock=None) -> Broker:
    b = Broker(clock=clock or task.Clock(), codec=CODEC)
    b.recover()
    return b


def publish(vh, rk: str, body: bytes, **props) -> None:
    vh.publish(vh.default_exchange, Message("", rk, body, codec=CODEC,
                                            props=Properties(**props)))


def test_definitions_round_trip_between_brokers():
    a = new_broker()
    a.add_vhost("v")
    a.add_user("alice", "pw", ["management"])
    a.set_permissions("alice", "v", "^a", ".*", "")
    vh = a.vhost("v")
    vh.declare_exchange("x", "topic", durable=True, arguments={"alternate-exchange": "ae"})
    vh.declare_queue("q", durable=True, arguments={"x-message-ttl": 1000})
    vh.declare_queue("transient", durable=False)
    vh.bind("x", vh.queue("q"), "k.*")
    a.set_policy("v", "p", "^q$", {"max-length": 3}, priority=2, apply_to="queues")
    defs = export_definitions(a)
    assert [q["name"] for q in defs["queues"] if q["vhost"] == "v"] == ["q"]   # durable only
    assert not any(e["name"].startswith("amq.") or e["name"] == "" for e in defs["exchanges"])

    b = new_broker()
    import_definitions(b, defs)
    assert export_definitions(b) == defs
    assert b.users["alice"].check("pw")
    assert b.vhost("v").queue("q").max_length == 3          # policy applied on import
    import_definitions(b, defs)                              # idempotent
    assert export_definitions(b) == defs


def test_per_vhost_definitions_and_rabbitmq_style_input():
    a = new_broker()
    a.vhost("/").declare_queue("q", durable=True)
    one = export_definitions(a, "/")
    assert "users" not in one and "vhost" not in one["queues"][0]
    b = new_broker()
    b.add_vhost("other")
    import_definitions(b, one, vhost="other")
    assert "q" in b.vhost("other").queues
    # RabbitMQ 3.8 wrote tags as a comma-separated string
    import_definitions(b, {"users": [{"name": "bob", "password_hash": "", "tags": "a,b"}]})
    assert b.users["bob"].tags == ["a", "b"]
    for bad in ([], {"queues": "x"}, {"queues": [{"durable": True}]},
                {"users": [{"name": 5}]}):
        with pytest.raises(PreconditionFailed):
            import_definitions(b, bad)


def test_move_keeps_order_and_properties_and_respects_reject_publish():
    b = new_broker()
    vh = b.vhost("/")
    src = vh.declare_queue("src")
    dst = vh.declare_queue("dst", arguments={"x-max-length": 3, "x-overflow": "reject-publish"})
    for i in range(5):
        publish(vh, "src", str(i).encode(), headers={"i": i})
    assert fired(move_messages(src, dst, 2)) == 2
    assert fired(move_messages(src, dst)) == 1                      # dst is full at 3
    assert (src.message_count, dst.message_count) == (2, 3)
    got = [fired(dst.get_later(no_ack=True)).message for _ in range(3)]
    assert [m.body for m in got] == [b"0", b"1", b"2"]
    assert [m.headers["i"] for m in got] == [0, 1, 2]
    with pytest.raises(PreconditionFailed):
        move_messages(src, src)


def test_message_stats_totals_survive_deletes_and_rates_follow_the_clock():
    clock = task.Clock()
    b = new_broker(clock)
    vh = b.vhost("/")
    q = vh.declare_queue("q")
    stats = MessageStats(b, interval=5.0)
    stats.start()                                            # the first sample
    publisher = b.publisher(vh, None)
    for _ in range(10):
        publisher.publish(vh.default_exchange, Message("", "q", b"x", codec=CODEC,
                                                      props=Properties()))
    for _ in range(10):
        fired(q.get_later(no_ack=True))
    assert stats.totals["publish"] == 10                     # counted as it happened
    clock.advance(5)
    rates = stats.rates()
    assert rates["get"] == 0.0 and rates["get_no_ack"] == 2.0   # 10 in 5 s, auto-ack
    assert rates["publish"] == 2.0
    assert stats.message_stats()["deliver_get"] == 10
    assert stats.queue_rates("/", "q")["publish"] == 2.0
    vh.delete_queue("q")
    clock.advance(5)
    assert stats.totals["get_no_ack"] == 10                 # totals never go down
    assert stats.rates()["get_no_ack"] == 0.0
    assert stats.queue_rates("/", "q") == {}                # gone: no rate
    stats.stop()


def test_queue_depth_rates_follow_the_samples():
    """messages_details and friends: the change of a queue's depth per second."""
    clock = task.Clock()
    b = new_broker(clock)
    vh = b.vhost("/")
    q = vh.declare_queue("q")
    stats = MessageStats(b, interval=5.0)
    stats.start()                                            # the first sample
    for _ in range(10):
        publish(vh, "q", b"x")
    clock.advance(5)
    rates = stats.queue_rates("/", "q")
    assert rates["messages"] == 2.0 and rates["messages_ready"] == 2.0
    assert rates["messages_unacknowledged"] == 0.0
    assert stats.depth_rates(["/"])["messages"] == 2.0
    assert stats.depth_rates(["other"])["messages"] == 0.0   # a user of another vhost
    for _ in range(5):
        fired(q.get_later(no_ack=False))
    clock.advance(5)
    rates = stats.queue_rates("/", "q")
    assert rates["messages"] == 0.0
    assert rates["messages_ready"] == -1.0 and rates["messages_unacknowledged"] == 1.0
    stats.stop()


def test_a_sweep_of_many_queues_is_done_a_slice_per_reactor_turn():
    """Sampling 12,000 queues does not hold the reactor for the whole sweep: the first turn
    reads SWEEP_SLICE objects and the rest follow in later turns; the rates come out right."""
    from warren.broker.stats import SWEEP_SLICE
    clock = task.Clock()
    b = new_broker(clock)
    vh = b.vhost("/")
    count = 2 * SWEEP_SLICE + 2000
    for i in range(count):
        vh.declare_queue(f"q{i}")
    stats = MessageStats(b, interval=5.0)
    stats.start()
    assert len(stats.history) == 0                 # the rest of the sweep waits for its turns
    clock.advance(0)
    assert len(stats.history) == 1
    last = f"q{count - 1}"
    for _ in range(10):
        publish(vh, last, b"x")
    clock.advance(5)                               # the second sweep, all its turns
    assert len(stats.history) == 2
    rates = stats.queue_rates("/", last)
    assert rates["messages"] == 2.0 and rates["publish"] == 2.0
    assert stats.depth_rates(["/"])["messages"] == 2.0
    stats.stop()
