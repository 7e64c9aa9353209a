"""A closed or dropped AMQP 0-9-1, AMQP 1.0 or STOMP connection leaves no cyclic garbage in the broker.

Each connection's objects (its protocol, channels or session, consumers, exclusive queues, the
timers and tables that hold their bound methods) must be freed by reference counting when it
goes: what is left in cycles waits for the cyclic collector, and once ``gc_tuning`` has frozen
it (a connection that lived a while), for a thaw, a scan of the whole heap. Before the
teardown broke them, every AMQP connection below left some 93 objects and every STOMP one 48.

The broker runs ``warren run`` in its own process (``garbage_broker.py``) with a command on
its standard input that waits until no client connection is left, then collects everything
(frozen objects included) and reports what it found. The clients are real ones (pika,
stomp.py) for those that close, raw sockets for those that are dropped mid-work. The bound:
no object of warren's or of a Twisted connection, and fewer unreachable objects in all than
there were connections (nothing that each connection leaves behind).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pika
import pytest
import stomp
from pamqp import commands
from proton import Message
from proton.reactor import Selector
from proton.utils import BlockingConnection

from tests.amqp.raw_client import RawAmqp
from tests.amqp1.raw import Raw
from tests.broker_process import BrokerProcess
from tests.polling import eventually
from warren.amqp1_message.codec import Composite, encode_frame

N = 20          # connections of each kind: closed with the protocol's close, and dropped
SHARED = "garbage.shared"


@pytest.fixture(scope="module")
def garbage_broker(tmp_path_factory):
    proc = BrokerProcess(tmp_path_factory.mktemp("garbage"), stdin=subprocess.PIPE,
                         launcher=("-m", "tests.teardown.garbage_broker"))
    with proc:
        conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
        ch = conn.channel()
        ch.queue_declare(SHARED, durable=True)
        for _ in range(4 * N):
            ch.basic_publish("", SHARED, b"work", pika.BasicProperties(delivery_mode=2))
        conn.close()
        yield proc


def collect(proc: BrokerProcess) -> tuple[int, dict[str, int]]:
    """The broker's full collection once its client connections are gone: how many
    unreachable objects, by type."""
    def reports() -> list[str]:
        return [line for line in proc.lines if line.startswith("GARBAGE")]

    seen = len(reports())
    assert proc.proc is not None and proc.proc.stdin is not None
    proc.proc.stdin.write("collect\n")
    proc.proc.stdin.flush()
    line = eventually(lambda: reports()[seen:], "the broker's GARBAGE line", timeout=60)[0]
    _, found, *kinds = line.split(" ", 2)
    assert found != "timeout", "client connections still open in the broker after 30 s"
    return int(found), json.loads(kinds[0]) if kinds else {}


def assert_none_left(found: int, kinds: dict[str, int]) -> None:
    ours = {kind: n for kind, n in kinds.items()
            if kind.startswith(("warren.", "twisted.internet.tcp.", "twisted.internet.task."))}
    assert not ours and found < N, f"{found} unreachable objects: {kinds}"


def test_closed_and_dropped_amqp_connections_leave_no_cycles(garbage_broker):
    collect(garbage_broker)        # what the set-up left
    for i in range(N):
        conn = pika.BlockingConnection(pika.URLParameters(
            garbage_broker.amqp_url + "?heartbeat=30"))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_qos(prefetch_count=2)
        own = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(own, "amq.topic", f"garbage.{i}.#")
        ch.basic_publish("amq.topic", f"garbage.{i}.x", b"m",
                         pika.BasicProperties(delivery_mode=2))
        assert ch.basic_get(SHARED)[0] is not None          # held unacked
        ch.basic_consume(own, lambda *args: None)
        tx = conn.channel()
        tx.tx_select()
        tx.basic_publish("", SHARED, b"in a transaction")
        tx.tx_commit()
        tx.close()
        conn.close()

        raw = RawAmqp(garbage_broker.amqp_port)
        raw.handshake(heartbeat=30)
        raw.open_channel()
        raw.send_frame(commands.Confirm.Select(), 1)
        raw.expect(commands.Confirm.SelectOk)
        raw.send_frame(commands.Queue.Declare(queue=f"garbage.dropped.{i}", exclusive=True), 1)
        raw.expect(commands.Queue.DeclareOk)
        raw.send_frame(commands.Basic.Consume(queue=SHARED), 1)
        raw.expect(commands.Basic.ConsumeOk)
        raw.expect(commands.Basic.Deliver)                  # unacked when dropped
        raw.close()

    found, kinds = collect(garbage_broker)
    assert_none_left(found, kinds)


def _stomp_frame(command: str, headers: dict[str, str], body: str = "") -> bytes:
    lines = [command, *(f"{k}:{v}" for k, v in headers.items())]
    return ("\n".join(lines) + "\n\n" + body + "\0").encode()


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    deadline = time.monotonic() + 10
    while marker not in data:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = sock.recv(65536)
        assert chunk, f"closed before {marker!r}: {data!r}"
        data += chunk
    return data


def test_closed_and_dropped_stomp_connections_leave_no_cycles(garbage_broker):
    collect(garbage_broker)
    for i in range(N):
        conn = stomp.Connection([("127.0.0.1", garbage_broker.stomp_port)],
                                heartbeats=(2000, 2000))
        conn.connect("guest", "guest", wait=True)
        conn.subscribe(f"/queue/{SHARED}", id=1, ack="client-individual")
        conn.subscribe(f"/topic/garbage.{i}", id=2)
        conn.send(f"/topic/garbage.{i}", "hello")
        conn.begin("tx1")
        conn.send(f"/queue/{SHARED}", "in a transaction", transaction="tx1")
        conn.commit("tx1")
        conn.disconnect(receipt="bye")

        with socket.create_connection(("127.0.0.1", garbage_broker.stomp_port)) as raw:
            raw.sendall(_stomp_frame("CONNECT", {"accept-version": "1.2", "host": "/",
                                                 "login": "guest", "passcode": "guest",
                                                 "heart-beat": "0,0"}))
            _read_until(raw, b"\0")
            raw.sendall(_stomp_frame("SUBSCRIBE", {"id": "1", "ack": "client",
                                                   "destination": f"/queue/{SHARED}"})
                        + _stomp_frame("SEND", {"destination": f"/queue/{SHARED}",
                                                "persistent": "true", "receipt": "r1"},
                                       "stored"))
            _read_until(raw, b"receipt-id:r1")
        # dropped here, with a message unacknowledged and a subscription open

    found, kinds = collect(garbage_broker)
    assert_none_left(found, kinds)


def test_closed_and_dropped_amqp1_connections_leave_no_cycles(garbage_broker):
    collect(garbage_broker)
    url = f"amqp://guest:guest@127.0.0.1:{garbage_broker.amqp_port}"
    for _ in range(N):
        conn = BlockingConnection(url, allowed_mechs="PLAIN", timeout=30, heartbeat=30)
        sender = conn.create_sender(f"/queues/{SHARED}")
        sender.send(Message(body=b"from 1.0", durable=True))      # accepted after the sync
        receiver = conn.create_receiver(f"/queues/{SHARED}", credit=0)
        receiver.receive(timeout=30)
        receiver.accept()
        receiver.receive(timeout=30)                                # unsettled at the close
        conn.create_receiver(None, dynamic=True)                    # a queue of its own
        conn.create_receiver(f"/queues/{SHARED}", name="selective",
                             options=Selector("a = 1")).close()   # detached
        conn.close()

        raw = Raw(garbage_broker.amqp_port)
        raw.open()
        raw.begin()
        raw.attach_receiver(f"/queues/{SHARED}")
        raw.sock.sendall(encode_frame(Composite(
            "flow", next_incoming_id=0, incoming_window=10, next_outgoing_id=0,
            outgoing_window=10, handle=0, delivery_count=0, link_credit=1)))
        assert raw.frame().performative.kind == "transfer"
        raw.sock.close()        # dropped: no detach, end or close, a delivery unsettled
    found, kinds = collect(garbage_broker)
    assert_none_left(found, kinds)
