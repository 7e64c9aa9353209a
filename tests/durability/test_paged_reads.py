"""Reads of paged-out bodies that answer a client now (issue 22): basic.get, a move of the
management API, dead-lettering; on SQLite and PostgreSQL, whose reads go to a reader thread
so that a slow or gone database holds no other client.

Small counts under a 64 KiB paging budget: past the queue's head (256 messages in memory)
every message is paged out, so the 257th basic.get finds its body in the store only.
"""

from __future__ import annotations

import threading

import pika
from pamqp import commands, frame as pamqp_frame

from tests.amqp.raw_client import RawAmqp

from tests.broker_process import BrokerProcess
from tests.durability.conftest import fresh_database
from tests.durability.test_deep_faults import (body, database_reachable, declare, drain,
                                               index_of, publish_until_paged)
from tests.durability.test_restart import api
from tests.polling import eventually

HEAD_KEEP = 256         # warren.broker.paging.HEAD_KEEP: the head keeps its bodies
READ_AHEAD = 256        # warren.broker.paging.READ_AHEAD: bodies read with the one wanted
TOTAL = 900


def get_head(channel, queue: str, count: int) -> list[int]:
    """``count`` basic.gets (auto-ack): the messages' numbers."""
    got = []
    for _ in range(count):
        method, _props, payload = channel.basic_get(queue, auto_ack=True)
        assert method is not None, f"get-empty after {len(got)} gets"
        got.append(index_of(payload))
    return got


def pipelined_gets(port: int, queue: str) -> list[int]:
    """basic.get, basic.get, queue.declare (passive) in one write on one channel: the
    numbers of the two messages got, checked to come before the declare's answer."""
    raw = RawAmqp(port)
    try:
        raw.handshake()
        raw.open_channel(1)
        raw.send(b"".join(pamqp_frame.marshal(method, 1) for method in (
            commands.Basic.Get(queue=queue, no_ack=True),
            commands.Basic.Get(queue=queue, no_ack=True),
            commands.Queue.Declare(queue=queue, passive=True))))
        got = []
        for _ in range(2):
            raw.expect(commands.Basic.GetOk)
            raw.read_frame()   # the content header
            _channel, content = raw.read_frame()
            got.append(index_of(content.value))
        raw.expect(commands.Queue.DeclareOk)
        return got
    finally:
        raw.close()


def test_get_move_and_dead_letter_of_paged_messages_carry_their_bodies(tmp_path):
    """On SQLite, basic.get of a paged-out head returns that message (not get-empty, not
    another); a move of the API and a dead-lettering of paged messages carry the right
    bodies, in order. (PostgreSQL's get: the next test.)"""
    broker = BrokerProcess(tmp_path / "data", store="sql",
                           extra_args=["--paging-budget", "65536"]).start()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        channel = conn.channel()
        declare(channel, "moved", "dead")
        channel.queue_declare("src", durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
        publish_until_paged(broker, "src", TOTAL)
        assert get_head(channel, "src", HEAD_KEEP) == list(range(HEAD_KEEP))
        # two gets of paged-out heads and a declare, sent at once: the channel answers them
        # in order, each get once its message's body is read off the reactor thread
        assert pipelined_gets(broker.amqp_port, "src") == [HEAD_KEEP, HEAD_KEEP + 1]
        # a move of 300 reads the paged bodies back batch by batch
        status, answer = api(broker, "POST", "/api/queues/%2F/src/actions/move",
                             {"destination": "moved", "count": 300})
        assert (status, answer) == (200, {"moved": 300})
        # the rest dropped by a length limit: dead-lettered once their bodies are in
        status, _ = api(broker, "PUT", "/api/policies/%2F/drop",
                        {"pattern": "^src$", "definition": {"max-length": 0},
                         "apply-to": "queues"})
        assert status in (201, 204)
        left = TOTAL - HEAD_KEEP - 2 - 300
        eventually(lambda: channel.queue_declare("dead", passive=True).method.message_count
                   == left, "every dropped message dead-lettered", timeout=60)
        conn.close()
        moved = drain(broker.amqp_url, "moved")
        assert moved == [body("src", i, 1024) for i in range(HEAD_KEEP + 2, HEAD_KEEP + 302)]
        dead = drain(broker.amqp_url, "dead")
        assert dead == [body("src", i, 1024) for i in range(HEAD_KEEP + 302, TOTAL)]
        assert "Traceback" not in broker.log(), broker.log()
    finally:
        broker.stop()
        broker.kill()


def test_database_gone_a_get_waits_for_its_message_and_others_are_served(tmp_path, pg_url):
    """On PostgreSQL, basic.gets of paged-out heads return their messages; then the
    database stops answering while the next get's message is paged out (past the bodies
    read ahead): that get is neither answered get-empty nor with another message, and
    meanwhile another connection's round trips complete (the reactor is not held). When the
    database is back the get gets the head; every confirmed message is still there, once,
    in order."""
    url = fresh_database(pg_url)
    broker = BrokerProcess(tmp_path / "data", store="sql", store_url=url,
                           extra_args=["--paging-budget", "65536"]).start()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        channel = conn.channel()
        declare(channel, "deep")
        publish_until_paged(broker, "deep", TOTAL)
        # the head, then a paged-out one whose read brings the next READ_AHEAD along
        first = HEAD_KEEP + 1 + READ_AHEAD
        assert get_head(channel, "deep", first) == list(range(first))
        answered: list[object] = []
        database_reachable(url, False)
        try:
            def get() -> None:
                try:
                    method, _props, payload = channel.basic_get("deep", auto_ack=False)
                    answered.append(None if method is None else
                                    (index_of(payload), method.delivery_tag))
                except Exception as error:   # told in the assertion below
                    answered.append(error)

            getter = threading.Thread(target=get, daemon=True)
            getter.start()
            broker.wait_for_line("reading paged-out bodies failed", timeout=60)
            # the reactor answers another client meanwhile
            other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
            other_channel = other.channel()
            for _ in range(3):
                other_channel.queue_declare("deep", passive=True)
            other.close()
        finally:
            database_reachable(url, True)
        getter.join(60)
        assert len(answered) == 1 and answered[0] is not None, answered
        got, tag = answered[0]   # type: ignore[misc]
        assert got == first, "the head, after the outage"
        channel.basic_ack(tag)
        conn.close()
        rest = drain(broker.amqp_url, "deep")
        assert [index_of(b) for b in rest] == list(range(first + 1, TOTAL))
        log = broker.log()
        assert "reading paged-out bodies works again" in log
        assert "Traceback" not in log, log
    finally:
        broker.stop()
        broker.kill()
