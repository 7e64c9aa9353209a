"""A dead-lettered message's history as RabbitMQ 4 gives it: an AMQP 1.0 receiver gets the
``x-opt-deaths`` annotation (an array of maps, most recent first) and the
``x-first-death-*`` / ``x-last-death-*`` annotations, and no ``x-death``; an AMQP 0-9-1
consumer gets the ``x-death`` header, whichever protocol published the message. An
``x-opt-deaths`` a 1.0 sender gives is ``x-death`` to 0-9-1 consumers when it has RabbitMQ
4's shape, and nothing to them when it has not (a 1.0 receiver gets it as sent). No history
a 1.0 sender gives is trusted: the first death starts a fresh one (RabbitMQ 4's
``mc:record_death``), and a repeated death moves its last-time on. A 0-9-1 publisher's
``x-death`` header is the history the broker goes on from, as RabbitMQ 3.x reads it."""

from __future__ import annotations

from datetime import datetime, timezone

import pika
from proton import UNDESCRIBED, Array, Data, Message, symbol, timestamp, ulong

from tests.polling import eventually


def got_one(result):
    return result if result[0] is not None else None


def dead_letter_queues(channel, unique, **arguments):
    """``unique`` dead-letters to ``{unique}-dlq`` through the default exchange."""
    channel.queue_declare(f"{unique}-dlq")
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": f"{unique}-dlq",
                                             **arguments})


def receive(amqp1, address):
    receiver = amqp1.create_receiver(address)
    got = receiver.receive(timeout=30)
    receiver.accept()
    receiver.close()
    return got


def check_death(death, queue, reason, routing_keys, count=1):
    assert list(death) == ["queue", "reason", "count", "first-time", "last-time",
                           "exchange", "routing-keys"]
    assert (death["queue"], death["reason"], death["count"], death["exchange"]) == \
        (queue, reason, count, "")
    assert isinstance(death["reason"], symbol) and isinstance(death["count"], ulong)
    assert isinstance(death["first-time"], timestamp)
    assert death["last-time"] == death["first-time"]
    assert abs(death["first-time"] / 1000 - datetime.now(timezone.utc).timestamp()) < 600
    assert list(death["routing-keys"]) == routing_keys


def test_a_091_message_rejected_over_10_carries_x_opt_deaths(amqp1, channel, unique):
    dead_letter_queues(channel, unique)
    channel.basic_publish("", unique, b"once", pika.BasicProperties(headers={"h": "v"}))
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    receiver.receive(timeout=30)
    receiver.reject()
    got = receive(amqp1, f"/queues/{unique}-dlq")
    assert bytes(got.body) == b"once"
    annotations = got.annotations
    deaths = annotations.pop("x-opt-deaths")
    assert isinstance(deaths, Array) and deaths.type == Data.MAP
    assert len(deaths.elements) == 1
    check_death(deaths.elements[0], unique, "rejected", [unique])
    assert annotations == {
        "x-first-death-reason": "rejected", "x-first-death-queue": unique,
        "x-first-death-exchange": "", "x-last-death-reason": "rejected",
        "x-last-death-queue": unique, "x-last-death-exchange": "",
        "x-exchange": "", "x-routing-key": f"{unique}-dlq"}
    assert got.properties == {"h": "v"}


def test_a_10_message_expired_reaches_pika_with_x_death(amqp1, channel, unique):
    dead_letter_queues(channel, unique)
    amqp1.create_sender(f"/queues/{unique}").send(
        Message(body=b"short-lived", ttl=0.001, inferred=True))
    _method, props, body = eventually(
        lambda: got_one(channel.basic_get(f"{unique}-dlq", auto_ack=True)), "a dead letter")
    assert body == b"short-lived"
    (death,) = props.headers["x-death"]
    assert {k: v for k, v in death.items() if k != "time"} == {
        "count": 1, "reason": "expired", "queue": unique, "exchange": "",
        "routing-keys": [unique], "original-expiration": "1"}
    assert props.headers["x-first-death-reason"] == "expired"
    assert props.expiration is None


def test_an_expired_10_message_tells_a_10_receiver_its_ttl(amqp1, channel, unique):
    dead_letter_queues(channel, unique)
    amqp1.create_sender(f"/queues/{unique}").send(Message(body=b"ttl", ttl=0.001, inferred=True))
    got = receive(amqp1, f"/queues/{unique}-dlq")
    (death,) = got.annotations["x-opt-deaths"].elements
    assert death.pop("ttl") == 1                  # first, as RabbitMQ 4 writes it
    check_death(death, unique, "expired", [unique])
    assert not got.ttl                            # no second expiry on the way


def test_a_10_message_dropped_by_length_then_rejected_has_two_deaths(amqp1, channel,
                                                                      unique):
    # the queue keeps one message: the first is dropped (maxlen) into the dead-letter
    # queue, which dead-letters it once more when rejected: the latest death first
    dead_letter_queues(channel, f"{unique}-dlq")     # into {unique}-dlq-dlq
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": f"{unique}-dlq",
                                             "x-max-length": 1})
    sender = amqp1.create_sender(f"/queues/{unique}")
    sender.send(Message(body=b"first", inferred=True))
    sender.send(Message(body=b"second", inferred=True))
    receiver = amqp1.create_receiver(f"/queues/{unique}-dlq")
    got = receiver.receive(timeout=30)
    assert bytes(got.body) == b"first"
    receiver.reject()
    got = receive(amqp1, f"/queues/{unique}-dlq-dlq")
    latest, first = got.annotations["x-opt-deaths"].elements
    check_death(latest, f"{unique}-dlq", "rejected", [f"{unique}-dlq"])
    check_death(first, unique, "maxlen", [unique])
    assert (got.annotations["x-first-death-reason"],
            got.annotations["x-last-death-reason"]) == ("maxlen", "rejected")


def test_x_opt_deaths_sent_over_10_is_x_death_to_pika(amqp1, channel, unique):
    channel.queue_declare(unique)
    death = {symbol("ttl"): 5000, symbol("queue"): "q", symbol("reason"): symbol("expired"),
             symbol("count"): ulong(2), symbol("first-time"): timestamp(1700000000000),
             symbol("last-time"): timestamp(1700000005000), symbol("exchange"): "x",
             symbol("routing-keys"): Array(UNDESCRIBED, Data.STRING, "k1", "k2")}
    message = Message(body=b"again", inferred=True)
    message.annotations = {symbol("x-opt-deaths"): Array(UNDESCRIBED, Data.MAP, death)}
    amqp1.create_sender(f"/queues/{unique}").send(message)
    _method, props, _body = eventually(
        lambda: got_one(channel.basic_get(unique, auto_ack=True)), "a message")
    assert props.headers == {"x-death": [{
        "original-expiration": "5000", "count": 2, "reason": "expired", "queue": "q",
        "time": datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc), "exchange": "x",
        "routing-keys": ["k1", "k2"]}]}


def test_x_opt_deaths_of_another_shape_is_no_x_death(broker, amqp1, channel, unique):
    # RabbitMQ 4 converts only an array of its maps: a list is kept for 1.0 receivers
    # as sent, and a 0-9-1 consumer gets no x-death from it
    channel.queue_declare(unique)
    sender = amqp1.create_sender(f"/queues/{unique}")
    for odd in ([1, "two"], Array(UNDESCRIBED, Data.MAP, {symbol("queue"): 3})):
        message = Message(body=b"odd", inferred=True)
        message.annotations = {symbol("x-opt-deaths"): odd}
        sender.send(message)
    for _ in range(2):
        _method, props, body = eventually(
            lambda: got_one(channel.basic_get(unique, auto_ack=True)), "a message")
        assert body == b"odd" and "x-death" not in (props.headers or {})
    message = Message(body=b"odd", inferred=True)
    message.annotations = {symbol("x-opt-deaths"): [1, "two"]}
    sender.send(message)
    got = receive(amqp1, f"/queues/{unique}")
    assert got.annotations["x-opt-deaths"] == [1, "two"]
    assert "Traceback" not in broker.log()


def _reject_from(amqp1, address):
    receiver = amqp1.create_receiver(address)
    got = receiver.receive(timeout=30)
    receiver.reject()
    receiver.close()
    return got


def test_a_repeated_death_updates_its_last_time(amqp1, channel, unique):
    # RabbitMQ 4 (mc:record_death): a second death of the same queue and reason counts
    # two and moves its last-time on, its first-time kept; 0-9-1's x-death keeps the first
    dead_letter_queues(channel, unique)
    channel.queue_delete(f"{unique}-dlq")
    channel.queue_declare(f"{unique}-dlq", arguments={       # and back again
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": unique})
    amqp1.create_sender(f"/queues/{unique}").send(Message(body=b"loop", inferred=True))
    _reject_from(amqp1, f"/queues/{unique}")
    got = _reject_from(amqp1, f"/queues/{unique}-dlq")
    (first, ) = [d for d in got.annotations["x-opt-deaths"].elements if d["queue"] == unique]
    # the broker's clock (the same machine's) past that millisecond before the next death
    eventually(lambda: datetime.now(timezone.utc).timestamp() * 1000 > first["first-time"] + 1,
               "the next millisecond")
    _reject_from(amqp1, f"/queues/{unique}")
    got = receive(amqp1, f"/queues/{unique}-dlq")
    latest, other = got.annotations["x-opt-deaths"].elements
    assert (latest["queue"], latest["reason"], latest["count"]) == (unique, "rejected", 2)
    assert latest["first-time"] == first["first-time"]
    assert latest["last-time"] > latest["first-time"]
    assert (other["queue"], other["count"]) == (f"{unique}-dlq", 1)


def test_a_091_clients_x_death_is_history_it_goes_on_from(amqp1, channel, unique):
    # RabbitMQ 3.x (3.10.8 checked) reads the x-death a 0-9-1 publisher sends: the new death
    # goes in front of the entries it had, x-first-death-* stay as sent, and a consumer that
    # republishes a dead letter with the headers it got sees the count go on
    dead_letter_queues(channel, unique)
    sent = [{"count": 7, "reason": "expired", "queue": "elsewhere",
             "time": datetime(2020, 1, 1, tzinfo=timezone.utc), "exchange": "x",
             "routing-keys": ["k"]}]
    headers = {"x-death": sent, "x-first-death-reason": "sent", "x-first-death-queue": "q"}
    for count in (1, 2):
        channel.basic_publish("", unique, b"again", pika.BasicProperties(headers=headers))
        method = eventually(lambda: channel.basic_get(unique)[0], "the message")
        channel.basic_reject(method.delivery_tag, requeue=False)
        _method, props, _body = eventually(
            lambda: got_one(channel.basic_get(f"{unique}-dlq", auto_ack=True)),
            "a dead letter")
        latest, earlier = props.headers["x-death"]
        assert (latest["queue"], latest["reason"], latest["count"]) == \
            (unique, "rejected", count)
        assert (earlier["queue"], earlier["reason"], earlier["count"], earlier["time"]) == \
            ("elsewhere", "expired", 7, datetime(2020, 1, 1, tzinfo=timezone.utc))
        assert (props.headers["x-first-death-reason"],
                props.headers["x-first-death-queue"]) == ("sent", "q")
        headers = props.headers


def test_a_091_history_naming_the_target_closes_a_cycle(broker, amqp1, channel, unique):
    # an x-death saying the message already expired out of the queue it is dead-lettered to
    # is a cycle with no rejection in it: RabbitMQ 3.x drops the message (3.10.8 checked)
    channel.queue_declare(f"{unique}-dlq")
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": f"{unique}-dlq"})
    looped = [{"count": 1, "reason": "expired", "queue": f"{unique}-dlq",
               "time": datetime(2020, 1, 1, tzinfo=timezone.utc), "exchange": "",
               "routing-keys": [f"{unique}-dlq"]}]
    channel.basic_publish("", unique, b"looped", pika.BasicProperties(
        expiration="1", headers={"x-death": looped}))
    channel.basic_publish("", unique, b"fresh", pika.BasicProperties(expiration="1"))
    _method, props, body = eventually(
        lambda: got_one(channel.basic_get(f"{unique}-dlq", auto_ack=True)), "a dead letter")
    assert body == b"fresh"
    assert channel.queue_declare(f"{unique}-dlq", passive=True).method.message_count == 0
    assert "Traceback" not in broker.log()


def test_x_opt_deaths_sent_over_10_is_no_history(amqp1, channel, unique):
    # RabbitMQ 4 trusts no death annotation a 1.0 sender gives: a death naming the target
    # queue closes no cycle, the expired message is dead-lettered with a fresh history
    channel.queue_declare(f"{unique}-dlq")
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": f"{unique}-dlq"})
    death = {symbol("queue"): f"{unique}-dlq", symbol("reason"): symbol("expired"),
             symbol("count"): ulong(1), symbol("first-time"): timestamp(1700000000000),
             symbol("last-time"): timestamp(1700000000000), symbol("exchange"): "",
             symbol("routing-keys"): Array(UNDESCRIBED, Data.STRING, f"{unique}-dlq")}
    message = Message(body=b"kept", inferred=True, ttl=0.001)
    message.annotations = {symbol("x-opt-deaths"): Array(UNDESCRIBED, Data.MAP, death)}
    amqp1.create_sender(f"/queues/{unique}").send(message)
    _method, props, body = eventually(
        lambda: got_one(channel.basic_get(f"{unique}-dlq", auto_ack=True)), "a dead letter")
    assert body == b"kept"
    assert [(d["queue"], d["reason"]) for d in props.headers["x-death"]] == \
        [(unique, "expired")]


def _sent_deaths():
    death = {symbol("queue"): "q", symbol("reason"): symbol("expired"),
             symbol("count"): ulong(2), symbol("first-time"): timestamp(1700000000000),
             symbol("last-time"): timestamp(1700000005123), symbol("exchange"): "x",
             symbol("routing-keys"): Array(UNDESCRIBED, Data.STRING, "k1")}
    return Array(UNDESCRIBED, Data.MAP, death)


def test_x_opt_deaths_sent_over_10_reaches_10_as_sent(amqp1, channel, unique):
    # not dead-lettered, a sender's x-opt-deaths is its annotation, its times exact
    channel.queue_declare(unique)
    message = Message(body=b"as-sent", inferred=True)
    message.annotations = {symbol("x-opt-deaths"): _sent_deaths()}
    amqp1.create_sender(f"/queues/{unique}").send(message)
    (death, ) = receive(amqp1, f"/queues/{unique}").annotations["x-opt-deaths"].elements
    assert (death["first-time"], death["last-time"], death["count"]) == \
        (1700000000000, 1700000005123, 2)


def test_x_opt_deaths_sent_over_10_is_replaced_when_dead_lettered(amqp1, channel, unique):
    dead_letter_queues(channel, unique)
    message = Message(body=b"fresh", inferred=True)
    message.annotations = {symbol("x-opt-deaths"): _sent_deaths()}
    amqp1.create_sender(f"/queues/{unique}").send(message)
    _reject_from(amqp1, f"/queues/{unique}")
    got = receive(amqp1, f"/queues/{unique}-dlq")
    (death, ) = got.annotations["x-opt-deaths"].elements
    check_death(death, unique, "rejected", [unique])
