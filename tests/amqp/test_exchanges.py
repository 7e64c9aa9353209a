"""Exchanges: declare/delete rules and texts as RabbitMQ, e2e bindings, routing of every type.

Reply texts are RabbitMQ's (``rabbit_exchange.erl``, ``rabbit_channel.erl``,
``rabbit_misc:assert_args_equivalence``), so code matching on them keeps working.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pika
import pytest
from pika.exceptions import ChannelClosedByBroker


def _closed_by(conn, fn, *args, **kw):
    """Run a channel operation that must fail; return (code, text) of the channel.close."""
    with pytest.raises(ChannelClosedByBroker) as e:
        fn(*args, **kw)
    return e.value.reply_code, e.value.reply_text


def _queue(ch, name):
    ch.queue_declare(name, auto_delete=False)
    return name


def _drain(ch, queue):
    out = []
    while True:
        m, _, body = ch.basic_get(queue, auto_ack=True)
        if m is None:
            return out
        out.append(body.decode())


# ---------------------------------------------------------------- standard exchanges
@pytest.mark.parametrize("name,type_", [("amq.direct", "direct"), ("amq.fanout", "fanout"),
                                        ("amq.topic", "topic"), ("amq.headers", "headers"),
                                        ("amq.match", "headers")])
def test_standard_exchanges_exist(channel, name, type_):
    channel.exchange_declare(name, passive=True)
    channel.exchange_declare(name, type_, durable=True)  # an equivalent redeclare is fine


def test_default_exchange_routes_by_queue_name(channel, unique):
    _queue(channel, unique)
    channel.basic_publish("", unique, b"m")
    assert _drain(channel, unique) == ["m"]
    channel.queue_delete(unique)


def test_default_exchange_cannot_be_bound(conn, channel, unique):
    _queue(channel, unique)
    code, text = _closed_by(conn, channel.queue_bind, unique, "", "k")
    assert (code, text) == (403, "ACCESS_REFUSED - operation not permitted on the default "
                                 "exchange")
    conn.channel().queue_delete(unique)


def test_amq_prefix_is_reserved(conn, channel):
    code, text = _closed_by(conn, channel.exchange_declare, "amq.mine", "direct")
    assert (code, text) == (403, "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved "
                                 "prefix 'amq.*'")


def test_standard_exchange_cannot_be_deleted(conn, channel):
    code, _ = _closed_by(conn, channel.exchange_delete, "amq.direct")
    assert code == 403


# ---------------------------------------------------------------- declare
def test_passive_declare_of_missing_exchange_is_404(conn, channel, unique):
    code, text = _closed_by(conn, channel.exchange_declare, unique, passive=True)
    assert (code, text) == (404, f"NOT_FOUND - no exchange '{unique}' in vhost '/'")


@pytest.mark.parametrize("field,first,second,old,new", [
    ("type", {"exchange_type": "direct"}, {"exchange_type": "fanout"}, "direct", "fanout"),
    ("durable", {"durable": False}, {"durable": True}, "false", "true"),
    ("auto_delete", {"auto_delete": False}, {"auto_delete": True}, "false", "true"),
    ("internal", {"internal": False}, {"internal": True}, "false", "true"),
])
def test_inequivalent_redeclare_is_406(conn, channel, unique, field, first, second, old, new):
    channel.exchange_declare(unique, **{"exchange_type": "direct", **first})
    code, text = _closed_by(conn, channel.exchange_declare, unique,
                            **{"exchange_type": "direct", **second})
    assert code == 406
    assert text == (f"PRECONDITION_FAILED - inequivalent arg '{field}' for exchange "
                    f"'{unique}' in vhost '/': received '{new}' but current is '{old}'")
    conn.channel().exchange_delete(unique)


def test_alternate_exchange_argument_must_match_others_are_ignored(conn, channel, unique):
    channel.exchange_declare(unique, "direct", arguments={"alternate-exchange": "ae1",
                                                          "x-other": 1})
    # RabbitMQ compares only alternate-exchange among exchange arguments
    channel.exchange_declare(unique, "direct", arguments={"alternate-exchange": "ae1"})
    code, text = _closed_by(conn, channel.exchange_declare, unique, "direct",
                            arguments={"alternate-exchange": "ae2"})
    assert code == 406
    assert text == (f"PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for "
                    f"exchange '{unique}' in vhost '/': received the value 'ae2' of type "
                    f"'longstr' but current is the value 'ae1' of type 'longstr'")
    conn.channel().exchange_delete(unique)


def test_unknown_exchange_type_is_406(conn, channel, unique):
    # rabbit_exchange:check_type (RabbitMQ 3.13+/4.x): precondition_failed
    code, text = _closed_by(conn, channel.exchange_declare, unique, "no-such-type")
    assert (code, text) == (406, "PRECONDITION_FAILED - unknown exchange type 'no-such-type'")
    assert conn.is_open


def test_internal_exchange_refuses_publish_but_routes_e2e(conn, channel, unique):
    q = _queue(channel, unique + ".q")
    channel.exchange_declare(unique + ".int", "fanout", internal=True)
    channel.exchange_declare(unique + ".front", "fanout")
    channel.exchange_bind(unique + ".int", unique + ".front")
    channel.queue_bind(q, unique + ".int")
    channel.basic_publish(unique + ".front", "", b"via-e2e")
    assert _drain(channel, q) == ["via-e2e"]
    channel.basic_publish(unique + ".int", "", b"direct")
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.basic_get(q)
    assert (e.value.reply_code, e.value.reply_text) == (
        403, f"ACCESS_REFUSED - cannot publish to internal exchange '{unique}.int' in "
             f"vhost '/'")
    ch = conn.channel()
    for x in (".int", ".front"):
        ch.exchange_delete(unique + x)
    ch.queue_delete(q)


def test_publish_to_missing_exchange_is_404(conn, channel, unique):
    channel.basic_publish(unique, "k", b"x")
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.queue_declare("", exclusive=True)
    assert (e.value.reply_code, e.value.reply_text) == (
        404, f"NOT_FOUND - no exchange '{unique}' in vhost '/'")


def test_auto_delete_exchange_goes_with_its_last_binding(channel, unique):
    q = _queue(channel, unique)
    channel.exchange_declare(unique + ".ad", "fanout", auto_delete=True)
    channel.queue_bind(q, unique + ".ad")
    channel.exchange_declare(unique + ".ad", passive=True)
    channel.queue_unbind(q, unique + ".ad")
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.exchange_declare(unique + ".ad", passive=True)
    assert e.value.reply_code == 404


# ---------------------------------------------------------------- delete
def test_delete_if_unused(conn, channel, unique):
    q = _queue(channel, unique)
    channel.exchange_declare(unique + ".x", "fanout")
    channel.queue_bind(q, unique + ".x")
    code, text = _closed_by(conn, channel.exchange_delete, unique + ".x", if_unused=True)
    assert (code, text) == (406, f"PRECONDITION_FAILED - exchange '{unique}.x' in vhost '/' "
                                 f"in use")
    ch = conn.channel()
    ch.exchange_delete(unique + ".x")
    ch.exchange_delete(unique + ".x")  # deleting a missing exchange is delete-ok
    ch.exchange_declare(unique + ".y", "fanout")
    ch.exchange_delete(unique + ".y", if_unused=True)
    ch.queue_delete(q)


# ---------------------------------------------------------------- e2e bindings
def test_exchange_to_exchange_bind_and_unbind(channel, unique):
    q = _queue(channel, unique)
    src, dst = unique + ".src", unique + ".dst"
    channel.exchange_declare(src, "topic")
    channel.exchange_declare(dst, "direct")
    channel.exchange_bind(dst, src, "a.*")
    channel.queue_bind(q, dst, "a.b")
    channel.basic_publish(src, "a.b", b"1")
    channel.basic_publish(src, "a.c", b"2")   # reaches dst, no queue binding there
    channel.basic_publish(src, "b.b", b"3")
    assert _drain(channel, q) == ["1"]
    channel.exchange_unbind(dst, src, "a.*")
    channel.basic_publish(src, "a.b", b"4")
    assert _drain(channel, q) == []
    channel.exchange_delete(src)
    channel.exchange_delete(dst)
    channel.queue_delete(q)


def test_e2e_cycle_delivers_once(channel, unique):
    q = _queue(channel, unique)
    a, b = unique + ".a", unique + ".b"
    channel.exchange_declare(a, "fanout")
    channel.exchange_declare(b, "fanout")
    channel.exchange_bind(b, a)
    channel.exchange_bind(a, b)
    channel.queue_bind(q, a)
    channel.queue_bind(q, b)
    channel.basic_publish(a, "", b"once")
    assert _drain(channel, q) == ["once"]
    channel.exchange_delete(a)
    channel.exchange_delete(b)
    channel.queue_delete(q)


def test_bind_to_missing_exchange_is_404(conn, channel, unique):
    q = _queue(channel, unique)
    code, text = _closed_by(conn, channel.queue_bind, q, unique + ".nope", "k")
    assert (code, text) == (404, f"NOT_FOUND - no exchange '{unique}.nope' in vhost '/'")
    conn.channel().queue_delete(q)


def test_bind_missing_queue_is_404(conn, channel, unique):
    code, text = _closed_by(conn, channel.queue_bind, unique, "amq.direct", "k")
    assert (code, text) == (404, f"NOT_FOUND - no queue '{unique}' in vhost '/'")


# ---------------------------------------------------------------- routing by type
def test_direct_and_fanout_routing(channel, unique):
    q1, q2 = _queue(channel, unique + ".1"), _queue(channel, unique + ".2")
    channel.exchange_declare(unique + ".d", "direct")
    channel.exchange_declare(unique + ".f", "fanout")
    channel.queue_bind(q1, unique + ".d", "k1")
    channel.queue_bind(q2, unique + ".d", "k2")
    channel.queue_bind(q2, unique + ".d", "k1")
    channel.queue_bind(q1, unique + ".f", "ignored")
    channel.queue_bind(q2, unique + ".f")
    channel.basic_publish(unique + ".d", "k1", b"a")
    channel.basic_publish(unique + ".d", "k2", b"b")
    channel.basic_publish(unique + ".d", "k3", b"c")
    channel.basic_publish(unique + ".f", "whatever", b"d")
    assert _drain(channel, q1) == ["a", "d"]
    assert _drain(channel, q2) == ["a", "b", "d"]
    for x in (".d", ".f"):
        channel.exchange_delete(unique + x)
    channel.queue_delete(q1)
    channel.queue_delete(q2)


TOPIC_CASES = [
    ("#", ["", "a", "a.b", "a.b.c.d.e"], []),
    ("a.#.b", ["a.b", "a.x.b", "a.x.y.z.b"], ["a", "b", "a.b.c", "x.a.b"]),
    # the empty key has no words in RabbitMQ: "*" and "*.#" miss it, "#", "#.#" and "" take it
    ("*", ["a"], ["a.b", ""]),
    ("*.#", ["a", "a.b"], [""]),
    ("", [""], ["a", "."]),
    ("a.*", ["a.b", "a."], ["a", "a.b.c"]),
    ("*.*", ["a.b", ".", "a."], ["a", "a.b.c"]),
    ("a..b", ["a..b"], ["a.b", "a.x.b"]),
    ("#.a", ["a", "x.a", "x.y.a"], ["a.x"]),
    ("a.#", ["a", "a.b", "a.b.c"], ["b.a"]),
    ("#.#", ["", "a", "a.b.c"], []),
    ("*.#.*", ["a.b", "a.b.c.d"], ["a"]),
    ("w1.w2.w3.w4.w5.w6.w7.w8.w9.w10.w11.w12", ["w1.w2.w3.w4.w5.w6.w7.w8.w9.w10.w11.w12"],
     ["w1.w2.w3.w4.w5.w6.w7.w8.w9.w10.w11"]),
    ("a.*.#.c", ["a.b.c", "a.b.x.y.c"], ["a.c"]),
]


@pytest.mark.parametrize("pattern,hits,misses", TOPIC_CASES)
def test_topic_matching(channel, unique, pattern, hits, misses):
    q = _queue(channel, unique)
    ex = unique + ".t"
    channel.exchange_declare(ex, "topic")
    channel.queue_bind(q, ex, pattern)
    for key in hits + misses:
        channel.basic_publish(ex, key, key.encode() or b"<empty>")
    got = [b if b != "<empty>" else "" for b in _drain(channel, q)]
    assert got == hits
    channel.exchange_delete(ex)
    channel.queue_delete(q)


def test_topic_many_bindings_unbind(channel, unique):
    q1, q2 = _queue(channel, unique + ".1"), _queue(channel, unique + ".2")
    ex = unique + ".t"
    channel.exchange_declare(ex, "topic")
    channel.queue_bind(q1, ex, "stock.#")
    channel.queue_bind(q1, ex, "*.usd.*")
    channel.queue_bind(q2, ex, "stock.usd.*")
    channel.basic_publish(ex, "stock.usd.ibm", b"1")  # once per queue, though two patterns
    channel.queue_unbind(q1, ex, "stock.#")
    channel.basic_publish(ex, "stock.eur.ibm", b"2")
    channel.basic_publish(ex, "bond.usd.x", b"3")
    assert _drain(channel, q1) == ["1", "3"]
    assert _drain(channel, q2) == ["1"]
    channel.exchange_delete(ex)
    channel.queue_delete(q1)
    channel.queue_delete(q2)


HEADERS_CASES = [
    # (binding arguments, message headers, routed?)
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 3}, True),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 2, "b": "x"}, False),
    ({"a": 1}, {"a": 1}, True),                       # all is the default
    ({"x-match": "any", "a": 1, "b": "x"}, {"b": "x"}, True),
    ({"x-match": "any", "a": 1, "b": "x"}, {"a": 2, "b": "y"}, False),
    ({"x-match": "any", "a": 1}, {}, False),
    ({"x-match": "all"}, {"anything": 1}, True),      # no conditions: all matches
    ({"x-match": "any"}, {"anything": 1}, False),     # no conditions: any does not
    ({"x-match": "all", "x-k": "v", "a": 1}, {"a": 1}, True),        # x- ignored
    ({"x-match": "all-with-x", "x-k": "v", "a": 1}, {"a": 1}, False),
    ({"x-match": "all-with-x", "x-k": "v", "a": 1}, {"a": 1, "x-k": "v"}, True),
    ({"x-match": "any", "x-k": "v"}, {"x-k": "v"}, False),
    ({"x-match": "any-with-x", "x-k": "v"}, {"x-k": "v"}, True),
]


@pytest.mark.parametrize("args,headers,routed", HEADERS_CASES)
def test_headers_matching(channel, unique, args, headers, routed):
    q = _queue(channel, unique)
    ex = unique + ".h"
    channel.exchange_declare(ex, "headers")
    channel.queue_bind(q, ex, "", arguments=args)
    channel.basic_publish(ex, "", b"m", pika.BasicProperties(headers=headers))
    assert _drain(channel, q) == (["m"] if routed else [])
    channel.exchange_delete(ex)
    channel.queue_delete(q)


def test_headers_invalid_x_match_is_406(conn, channel, unique):
    q = _queue(channel, unique)
    code, _ = _closed_by(conn, channel.queue_bind, q, "amq.headers", "",
                         arguments={"x-match": "some"})
    assert code == 406
    conn.channel().queue_delete(q)


def test_alternate_exchange_gets_unroutable(channel, unique):
    q = _queue(channel, unique)
    channel.exchange_declare(unique + ".ae", "fanout")
    channel.queue_bind(q, unique + ".ae")
    channel.exchange_declare(unique + ".main", "direct",
                             arguments={"alternate-exchange": unique + ".ae"})
    channel.basic_publish(unique + ".main", "nowhere", b"to-ae")
    assert _drain(channel, q) == ["to-ae"]
    channel.exchange_delete(unique + ".main")
    channel.exchange_delete(unique + ".ae")
    channel.queue_delete(q)


def test_aio_pika_e2e_topic(broker, unique):
    async def main():
        conn = await aio_pika.connect(broker.amqp_url)
        async with conn:
            ch = await conn.channel()
            src = await ch.declare_exchange(unique + ".src", aio_pika.ExchangeType.TOPIC)
            dst = await ch.declare_exchange(unique + ".dst", aio_pika.ExchangeType.FANOUT)
            await dst.bind(src, "logs.#")
            q = await ch.declare_queue(unique, auto_delete=True)
            await q.bind(dst)
            await src.publish(aio_pika.Message(b"hit"), "logs.a.b")
            await src.publish(aio_pika.Message(b"miss"), "metrics.a")
            got = await q.get(timeout=5)
            await got.ack()
            assert got.body == b"hit"
            assert await q.get(fail=False) is None
            await dst.unbind(src, "logs.#")
            await src.delete()
            await dst.delete()
    asyncio.run(main())
