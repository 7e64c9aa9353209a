"""A SUBACK or UNSUBACK to a persistent session is a promise: the broker killed (SIGKILL) the
moment the client reads it must come back with the subscriptions that packet made, and
without those it ended, on the journal as on SQLite. The session's record
(``session_records.py``) is written over the turns after the packet is handled, so the
answer waits for it to be on disk, as a PUBACK waits for its message's.

The client is a raw socket that kills the broker as the answer's first byte arrives. Many
filters make the record some ten parts, written over several turns (some 20 ms), so without
the wait the kill came before the record's head every time (in 8 runs of 8). paho's
``on_subscribe`` is no such trigger: it decodes the 10,000 reason codes first, some 400 ms,
long after the record is written."""

from __future__ import annotations

import os
import signal

import pytest

from tests.broker_process import BrokerProcess
from tests.mqtt.helpers import cid, deliveries_until, session_raw
from warren.mqtt.codec import (PubAck, Publish, SubAck, Subscribe, Subscription, UnsubAck,
                               Unsubscribe, encode)

#: filters in the packet: ten parts of the session's record (PART_SIZE 1000)
FILTERS = 10_000
TOPICS = [f"durable/{i}" for i in range(FILTERS)]
EXPIRY = 3600   # a 5.0 session's Session Expiry Interval: persistent


def _answered_then_killed(broker: BrokerProcess, level: int, client_id: str,
                          packet: Subscribe | Unsubscribe) -> None:
    """Send ``packet`` on the session and SIGKILL the broker the moment its answer starts
    to arrive; then check it was the answer and start the broker again."""
    raw, _ = session_raw(broker.mqtt_port, client_id, clean=False, level=level, expiry=EXPIRY)
    raw.send(packet)
    first = raw.sock.recv(1)
    assert broker.proc is not None
    os.killpg(broker.proc.pid, signal.SIGKILL)
    rest = b""
    try:
        while chunk := raw.sock.recv(65536):
            rest += chunk
    except ConnectionResetError:
        pass
    raw.close()
    answer = list(raw.parser.feed(first + rest))[0]
    assert isinstance(answer, SubAck if isinstance(packet, Subscribe) else UnsubAck), answer
    broker.kill()      # reaps the process
    broker.start()


def _delivered(broker: BrokerProcess, level: int, client_id: str) -> set[str]:
    """Back on the session (it is present): the topics of ``TOPICS`` it gets a message on,
    each published once, then one on ``durable/end``, which it subscribed to first."""
    sub, ack = session_raw(broker.mqtt_port, client_id, clean=False, level=level,
                           expiry=EXPIRY)
    assert ack.session_present
    pub, _ = session_raw(broker.mqtt_port, cid("pub"), clean=True)
    pub.send_raw(b"".join(encode(Publish(t, t.encode(), 0), 4) for t in TOPICS))
    pub.send(Publish("durable/end", b"end", 1, packet_id=1))
    assert isinstance(pub.recv(), PubAck)
    pub.close()
    got = set(deliveries_until(sub, "durable/end"))
    sub.close()
    assert not [line for line in broker.lines if "Traceback" in line]
    return got


def _subscribed_first(broker: BrokerProcess, level: int, client_id: str,
                      topics: list[str]) -> None:
    raw, _ = session_raw(broker.mqtt_port, client_id, clean=False, level=level, expiry=EXPIRY)
    raw.send(Subscribe(1, tuple(Subscription(t, 1) for t in ["durable/end", *topics])))
    assert isinstance(raw.recv(), SubAck)
    raw.close()


def _broker(tmp_path, store: str) -> BrokerProcess:
    if store == "sqlite":
        return BrokerProcess(tmp_path / "data", store="sql",
                             store_url=f"sqlite:///{tmp_path}/warren.db")
    return BrokerProcess(tmp_path)


@pytest.mark.parametrize("level,store", [(4, "journal"), (5, "journal"), (4, "sqlite")],
                         ids=["3.1.1", "5.0", "3.1.1-sqlite"])
def test_subscriptions_acked_before_a_kill_come_back(tmp_path, level, store):
    broker = _broker(tmp_path, store)
    broker.start()
    try:
        client_id = cid("suback")
        _subscribed_first(broker, level, client_id, [])
        _answered_then_killed(broker, level, client_id,
                              Subscribe(2, tuple(Subscription(t, 0) for t in TOPICS)))
        assert _delivered(broker, level, client_id) == set(TOPICS)
    finally:
        broker.stop()
        broker.kill()


@pytest.mark.parametrize("level,store", [(4, "journal"), (5, "journal"), (4, "sqlite")],
                         ids=["3.1.1", "5.0", "3.1.1-sqlite"])
def test_unsubscriptions_acked_before_a_kill_stay_gone(tmp_path, level, store):
    broker = _broker(tmp_path, store)
    broker.start()
    try:
        client_id = cid("unsuback")
        _subscribed_first(broker, level, client_id, TOPICS)
        _answered_then_killed(broker, level, client_id, Unsubscribe(2, tuple(TOPICS)))
        assert _delivered(broker, level, client_id) == set()
    finally:
        broker.stop()
        broker.kill()
