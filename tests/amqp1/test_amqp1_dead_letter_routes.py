"""The keys a dead letter is routed by, as RabbitMQ 4's ``rabbit_dead_letter`` takes them:
with no dead-letter routing key, every key the message was published with (its routing key,
its CC and BCC keys, a 1.0 sender's ``x-cc``), kept with the message across a restart as
RabbitMQ keeps its annotations; its death records the routing key and the CC keys, never
the BCC ones. The history the broker records survives the restart too."""

from __future__ import annotations

import pika
from proton import Message, symbol

from tests.broker_process import BrokerProcess
from tests.polling import eventually


def _routes(ch, unique, durable=False):
    """``{unique}`` (bound with ``k`` on ``{unique}-in``) dead-letters through
    ``{unique}-dlx``, which binds queue ``{unique}-<key>`` for each of k, c, b."""
    ch.exchange_declare(f"{unique}-in", "direct", durable=durable)
    ch.exchange_declare(f"{unique}-dlx", "direct", durable=durable)
    ch.queue_declare(unique, durable=durable,
                     arguments={"x-dead-letter-exchange": f"{unique}-dlx"})
    ch.queue_bind(unique, f"{unique}-in", "k")
    for key in ("k", "c", "b"):
        ch.queue_declare(f"{unique}-{key}", durable=durable)
        ch.queue_bind(f"{unique}-{key}", f"{unique}-dlx", key)


def _reject(ch, queue):
    method = eventually(lambda: ch.basic_get(queue)[0], f"a message in {queue}")
    ch.basic_reject(method.delivery_tag, requeue=False)


def _dead_letters(ch, unique):
    """The dead letter each of the three queues got (None: none)."""
    got = {}
    for key in ("k", "c", "b"):
        depth = ch.queue_declare(f"{unique}-{key}", passive=True).method.message_count
        got[key] = ch.basic_get(f"{unique}-{key}", auto_ack=True)[1] if depth else None
    return got


def test_a_dead_letter_goes_where_its_cc_and_bcc_keys_lead(broker, channel, unique):
    _routes(channel, unique)
    channel.basic_publish(f"{unique}-in", "k", b"m", pika.BasicProperties(
        headers={"CC": ["c"], "BCC": ["b"]}))
    _reject(channel, unique)
    got = eventually(lambda: (lambda g: g if all(g.values()) else None)(
        _dead_letters(channel, unique)), "a dead letter in each queue")
    for props in got.values():
        (death, ) = props.headers["x-death"]
        assert death["routing-keys"] == ["k", "c"]      # no BCC key
        assert "BCC" not in props.headers


def test_a_10_dead_letter_goes_where_its_x_cc_leads(broker, amqp1, channel, unique):
    _routes(channel, unique)
    message = Message(body=b"m", inferred=True)
    message.annotations = {symbol("x-cc"): ["c"]}
    amqp1.create_sender(f"/exchanges/{unique}-in/k").send(message)
    _reject(channel, unique)
    got = eventually(lambda: (lambda g: g if g["k"] and g["c"] else None)(
        _dead_letters(channel, unique)), "a dead letter in k and c")
    assert got["b"] is None
    assert got["c"].headers["x-death"][0]["routing-keys"] == ["k", "c"]


def test_the_keys_and_the_history_survive_a_restart(tmp_path):
    unique = "restart"
    with BrokerProcess(tmp_path) as broker:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        ch = conn.channel()
        _routes(ch, unique, durable=True)
        # the k queue sends what it rejects back to the first queue
        ch.queue_delete(f"{unique}-k")
        ch.queue_declare(f"{unique}-k", durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": unique})
        ch.queue_bind(f"{unique}-k", f"{unique}-dlx", "k")
        ch.queue_bind(f"{unique}-k", f"{unique}-dlx", unique)   # its own dead letters' key
        ch.confirm_delivery()
        ch.basic_publish(f"{unique}-in", "k", b"m", pika.BasicProperties(
            delivery_mode=2, headers={"BCC": ["b"]}))
        conn.close()
        broker.restart()                # a clean stop: the rejects are kept
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        ch = conn.channel()
        _reject(ch, unique)             # routed by k and, after the restart, its BCC b
        assert eventually(lambda: ch.basic_get(f"{unique}-b", auto_ack=True)[1],
                          "the BCC dead letter").headers["x-death"][0]["routing-keys"] \
            == ["k"]
        conn.close()
        broker.restart()                # a clean stop: the rejects are kept
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        ch = conn.channel()
        _reject(ch, f"{unique}-k")      # back to the first queue, then dead again
        _reject(ch, unique)
        props = eventually(lambda: ch.basic_get(f"{unique}-k", auto_ack=True)[1],
                           "the dead letter again")
        conn.close()
        assert [(d["queue"], d["count"]) for d in props.headers["x-death"]] == \
            [(unique, 2), (f"{unique}-k", 1)]
