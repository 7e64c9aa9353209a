"""Poison-message scenarios run against RabbitMQ (Debian's rabbitmq-server, a quorum queue) and
warren (a classic queue) side by side; prints what each broker did. Not part of the test run:
``python -m tests.compat.poison_messages``. ``tests/queues/test_delivery_limit.py`` asserts what
this showed RabbitMQ 3.10.8 doing. Known differences: 3.10 accepts any ``x-delivery-limit`` at
declare (warren answers 406 as RabbitMQ's ``check_non_neg_int_arg`` words it), and it sets no
``x-last-death-*`` headers yet (warren does, as RabbitMQ 3.13+).
"""

from __future__ import annotations

import json
import tempfile

import pika
import requests
from pika.exceptions import ChannelClosedByBroker

from tests.broker_process import BrokerProcess
from tests.network.rabbitmq import RabbitNode, ensure_rabbitmq


def _get(ch, queue):
    for _ in range(200):
        method, props, body = ch.basic_get(queue)
        if method is not None:
            return method, props, body
        ch.connection.process_data_events(time_limit=0.02)
    raise AssertionError(f"nothing on {queue}")


def scenarios(url: str, http: str, queue_type: str) -> dict:
    out: dict = {}
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    typed = {"x-queue-type": queue_type} if queue_type == "quorum" else {}
    ch.exchange_declare("pc.dlx", "fanout")
    ch.queue_declare("pc.dlq", durable=True, arguments=typed)
    ch.queue_bind("pc.dlq", "pc.dlx")
    ch.queue_declare("pc.work", durable=True, arguments={
        **typed, "x-delivery-limit": 2, "x-dead-letter-exchange": "pc.dlx"})
    ch.basic_publish("", "pc.work", b"poison", pika.BasicProperties(headers={"k": "v"}))
    seen = []
    for _ in range(3):
        method, props, _ = _get(ch, "pc.work")
        seen.append({"redelivered": method.redelivered, "headers": props.headers})
        ch.basic_nack(method.delivery_tag, requeue=True)
    out["deliveries, limit 2"] = seen
    _, props, _ = _get(ch, "pc.dlq")
    h = props.headers
    out["dead-lettered"] = {k: h.get(k) for k in ("x-first-death-reason", "x-last-death-reason",
                                                  "x-delivery-count")}
    out["x-death"] = [{k: d.get(k) for k in ("reason", "count", "queue")} for d in h["x-death"]]
    other = conn.channel()
    ch.basic_publish("", "pc.work", b"closed")
    _get(other, "pc.work")
    other.close()
    method, props, _ = _get(ch, "pc.work")
    out["after a channel closed with it unacked"] = props.headers
    ch.basic_ack(method.delivery_tag)
    for i, value in enumerate(("three", -1)):
        try:
            conn.channel().queue_declare(f"pc.bad{i}", durable=True,
                                         arguments={**typed, "x-delivery-limit": value})
            out[f"x-delivery-limit {value!r}"] = "accepted"
        except ChannelClosedByBroker as e:
            out[f"x-delivery-limit {value!r}"] = [e.reply_code, e.reply_text]
    for value in (-1, "5"):
        r = requests.put(f"{http}/api/policies/%2F/pc-bad", auth=("guest", "guest"),
                         json={"pattern": "^pc", "definition": {"delivery-limit": value}},
                         timeout=30)
        out[f"policy delivery-limit {value!r}"] = [r.status_code, r.json()]
    conn.close()
    return out


def main() -> None:
    ensure_rabbitmq()
    with RabbitNode() as rabbit:
        reference = scenarios(rabbit.url, rabbit.http, "quorum")
    with BrokerProcess(tempfile.mkdtemp(prefix="warren-compat-")) as warren:
        ours = scenarios(warren.amqp_url, warren.http_url, "classic")
    for key in reference:
        same = "same" if reference[key] == ours.get(key) else "DIFFERS"
        print(f"== {key}: {same}")
        print("  RabbitMQ:", json.dumps(reference[key], default=str))
        print("  warren:  ", json.dumps(ours.get(key), default=str))


if __name__ == "__main__":
    main()
