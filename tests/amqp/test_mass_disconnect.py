"""Hundreds of AMQP connections dropped at once (a network failure, a load balancer restart).

The broker serves the hang-ups a slice per reactor turn (``warren/poll_slices.py``), so this
checks what must not change with that: every message a dropped connection held unacked is back
in its queue once, in its place; the dropped consumers are gone from the counts; the dropped
connections' exclusive queues are deleted; a client connected meanwhile declares one of
their names as its own and consumes; the log has no traceback. The connections speak the
protocol by hand (``RawAmqp``): hundreds of them open in well under a second. One more
connection closes with connection.close meanwhile: its exclusive queue is gone once it has
close-ok, so another client declares that name at once.
"""

from __future__ import annotations

import pika
import requests
from pamqp import commands, frame

from tests.amqp.raw_client import PROTOCOL_HEADER, RawAmqp
from tests.polling import eventually

CONNECTIONS = 200


def _holding(port: int, work: str, prefix: str, count: int) -> list[RawAmqp]:
    """``count`` connections, each with an exclusive queue of its own (``prefix`` and its
    index) and one unacked message of ``work``; each step is sent on every connection before
    the answers are read, so the round trips overlap."""
    raws = [RawAmqp(port) for _ in range(count)]
    for raw in raws:
        raw.send(PROTOCOL_HEADER)
    for raw in raws:
        raw.expect(commands.Connection.Start)
        raw.send_frame(commands.Connection.StartOk(
            client_properties={"product": "mass disconnect test"}, mechanism="PLAIN",
            response="\0guest\0guest", locale="en_US"))
    for i, raw in enumerate(raws):
        raw.expect(commands.Connection.Tune)
        raw.send(b"".join(frame.marshal(method, number) for number, method in (
            (0, commands.Connection.TuneOk(frame_max=131072)),
            (0, commands.Connection.Open(virtual_host="/")),
            (1, commands.Channel.Open()),
            (1, commands.Basic.Qos(prefetch_count=1)),
            (1, commands.Queue.Declare(queue=f"{prefix}{i}", exclusive=True)),
            (1, commands.Basic.Consume(queue=work)))))
    for raw in raws:
        for answer in (commands.Connection.OpenOk, commands.Channel.OpenOk,
                       commands.Basic.QosOk, commands.Queue.DeclareOk,
                       commands.Basic.ConsumeOk, commands.Basic.Deliver):
            raw.expect(answer)
    return raws


def _queues(broker, prefix: str) -> dict[str, dict]:
    r = requests.get(f"http://127.0.0.1:{broker.http_port}/api/queues/%2F",
                     auth=("guest", "guest"), timeout=30)
    r.raise_for_status()
    return {q["name"]: q for q in r.json() if q["name"].startswith(prefix)}


def test_connections_dropped_at_once_requeue_release_and_leave_no_trace(broker, unique):
    work = f"{unique}.work"
    bodies = [f"m{i}".encode() for i in range(CONNECTIONS)]
    other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = other.channel()
        ch.queue_declare(work)
        for body in bodies:
            ch.basic_publish("", work, body)
        dropped = _holding(broker.amqp_port, work, f"{unique}.excl", CONNECTIONS)
        declared = ch.queue_declare(work, passive=True).method
        assert (declared.message_count, declared.consumer_count) == (0, CONNECTIONS)
        owner = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        owner.channel().queue_declare(f"{unique}.owned", exclusive=True)
        for raw in dropped:                 # all at once, no connection.close
            raw.close()
        # closed with connection.close among them: once it has close-ok its exclusive queue
        # is gone, whatever teardowns the broker still has to do
        owner.close()
        ch.queue_declare(f"{unique}.owned", exclusive=True)

        def settled():
            q = ch.queue_declare(work, passive=True).method
            gone = not any(".excl" in name for name in _queues(broker, unique))
            return (q.message_count, q.consumer_count) == (CONNECTIONS, 0) and gone
        eventually(settled, "the dropped connections' messages requeued, consumers and "
                            "exclusive queues gone", timeout=60)

        # every message back once, in its place, marked redelivered
        got = []
        for method, _props, body in ch.consume(work, auto_ack=True):
            got.append((body, method.redelivered))
            if len(got) == CONNECTIONS:
                break
        ch.cancel()
        assert got == [(body, True) for body in bodies]
        assert ch.queue_declare(work, passive=True).method.message_count == 0

        # a client connected all along takes a dropped connection's exclusive name and uses it
        name = f"{unique}.excl0"
        ch.queue_declare(name, exclusive=True)
        ch.basic_publish("", name, b"mine")
        method, _props, body = ch.basic_get(name, auto_ack=True)
        assert (body, method.redelivered) == (b"mine", False)
    finally:
        other.close()
    assert not any("Traceback" in line for line in broker.lines)
