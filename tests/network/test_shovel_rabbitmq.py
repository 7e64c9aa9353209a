"""Shovels between warren and a real RabbitMQ (the private node of ``tests/network/rabbitmq.py``).

- RabbitMQ -> warren: a shovel in warren drains a RabbitMQ queue of persistent messages while a
  pika producer keeps publishing to it with confirms; every confirmed message arrives in warren
  exactly once (ids are unique; duplicates would show as extra messages).
- warren -> RabbitMQ with ``dest-add-forward-headers``: the ``x-shovelled`` table that arrives
  at RabbitMQ has the keys and value types of the one RabbitMQ's own shovel plugin writes.
- A definitions file exported by RabbitMQ's management plugin, with a shovel in it, imports
  into warren through ``POST /api/definitions`` and the shovel runs there.
- Headers reach the far end as they were sent (order, types) through RabbitMQ -> warren ->
  RabbitMQ; with forward headers the top-level table is sorted, as RabbitMQ's shovel does.
- Faults at RabbitMQ: the source queue deleted under the shovel's consumer, the memory alarm
  (connection.blocked) on the destination, the node killed -9 and restarted mid-stream.

Waiting is polling with deadlines (queue depths, shovel status): nothing else signals.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from decimal import Decimal
from urllib.parse import quote

import pika
import pytest

from tests.polling import eventually
from tests.webconsole.conftest import ApiClient

#: messages pre-filled at RabbitMQ for the drain test (the issue asks for 100k)
DRAIN_COUNT = int(os.environ.get("WARREN_SHOVEL_DRAIN_COUNT", "100000"))
PERSISTENT = pika.BasicProperties(delivery_mode=2)


def wait_until(check, timeout: float, what: str, every: float = 0.1):
    return eventually(check, what, timeout=timeout, every=every)


def connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0, blocked_connection_timeout=None))


def depth(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


@pytest.fixture(scope="module")
def warren_api(broker) -> ApiClient:
    return ApiClient(f"http://127.0.0.1:{broker.http_port}")


@pytest.fixture(scope="module")
def rabbit_api(rabbitmq_node) -> ApiClient:
    return ApiClient(rabbitmq_node.http)


def put_shovel(api: ApiClient, name: str, value: dict, vhost: str = "/") -> None:
    reply = api.put(f"/api/parameters/shovel/{quote(vhost, safe='')}/{name}", {"value": value})
    assert reply.status_code in (201, 204), reply.text


def delete_shovel(api: ApiClient, name: str, vhost: str = "/") -> None:
    api.delete(f"/api/parameters/shovel/{quote(vhost, safe='')}/{name}")


def shovel_state(api: ApiClient, name: str) -> str | None:
    for status in api.get("/api/shovels").json():
        if status.get("name") == name:
            return status.get("state")
    return None


class Producer(threading.Thread):
    """Publishes persistent messages with ids from ``first`` on, each confirmed, until stopped."""

    def __init__(self, port: int, queue: str, first: int) -> None:
        super().__init__(daemon=True)
        self.port, self.queue, self.next_id = port, queue, first
        self.confirmed: list[int] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = connect(self.port)
            channel = conn.channel()
            channel.confirm_delivery()
            while not self.stopping.is_set():
                channel.basic_publish("", self.queue, str(self.next_id).encode(), PERSISTENT)
                self.confirmed.append(self.next_id)   # basic_publish returned: confirmed
                self.next_id += 1
            conn.close()
        except (pika.exceptions.AMQPError, OSError) as error:  # reported by the test
            self.error = error


def test_drain_rabbitmq_queue_into_warren_while_producing(rabbitmq_node, broker, warren_api,
                                                          unique):
    src, dst = f"{unique}.src", f"{unique}.dst"
    rabbit = connect(rabbitmq_node.amqp_port)
    rch = rabbit.channel()
    rch.queue_declare(src, durable=True)
    began = time.monotonic()
    for i in range(DRAIN_COUNT):   # pre-fill; the depth check below shows every one arrived
        rch.basic_publish("", src, str(i).encode(), PERSISTENT)
    wait_until(lambda: depth(rch, src) == DRAIN_COUNT, 120, "the pre-fill at RabbitMQ")

    shovelled = time.monotonic()
    producer = Producer(rabbitmq_node.amqp_port, src, DRAIN_COUNT)
    producer.start()
    wait_until(lambda: len(producer.confirmed) > 0 or producer.error, 30, "a first confirm")
    warren = connect(broker.amqp_port)
    wch = warren.channel()
    wch.queue_declare(dst, durable=True)
    put_shovel(warren_api, unique, {"src-uri": rabbitmq_node.url, "src-queue": src,
                                    "dest-uri": "amqp://", "dest-queue": dst,
                                    "src-prefetch-count": 1000, "ack-mode": "on-confirm"})
    try:
        # the producer runs until warren holds as many messages as were pre-filled
        wait_until(lambda: producer.error or depth(wch, dst) >= DRAIN_COUNT, 600,
                   "the shovel to move the pre-filled count")
        producer.stopping.set()
        producer.join(30)
        assert producer.error is None, producer.error
        sent = set(range(DRAIN_COUNT)) | set(producer.confirmed)
        wait_until(lambda: depth(rch, src) == 0 and depth(wch, dst) >= len(sent), 300,
                   "RabbitMQ's queue empty and warren holding every message")
        # a message is acked at RabbitMQ only after warren's store confirmed it: wait for the
        # last acks while the shovel runs (stopping it earlier would hand the last few back to
        # RabbitMQ, which on-confirm allows, as duplicates)
        wait_until(lambda: (rabbit_queue(rabbitmq_node, src) or [None])[1:] == ["0", "0"],
                   120, "every message acked at RabbitMQ", every=0.5)
        assert shovel_state(warren_api, unique) == "running"
    finally:
        delete_shovel(warren_api, unique)
    # once the shovel is gone nothing comes back and its consumer is gone
    wait_until(lambda: rabbit_queue(rabbitmq_node, src) == ["0", "0", "0"], 120,
               "RabbitMQ's queue without consumers, unacked or ready messages", every=0.5)
    drained = time.monotonic()
    expected_total = depth(wch, dst)
    received = [int(body) for _m, _p, body in _drain(wch, dst, expected_total)]
    assert depth(wch, dst) == 0
    duplicates = len(received) - len(set(received))
    lost = sent - set(received)
    assert (duplicates, len(lost)) == (0, 0), f"{duplicates} duplicated, lost e.g. {sorted(lost)[:10]}"
    assert set(received) <= sent | set(range(producer.next_id))
    print(f"\ndrain test: pre-fill {shovelled - began:.1f} s, shovel {drained - shovelled:.1f} s "
          f"({DRAIN_COUNT} pre-filled + {len(producer.confirmed)} produced meanwhile), "
          f"check {time.monotonic() - drained:.1f} s")
    rabbit.close()
    warren.close()


def rabbit_queue(node, queue: str) -> list[str] | None:
    """consumers, messages_unacknowledged, messages of a RabbitMQ queue (rabbitmqctl: exact,
    where the management API's figures lag behind)."""
    out = node.ctl("list_queues", "-q", "--no-table-headers", "name", "consumers",
                   "messages_unacknowledged", "messages")
    for line in out.splitlines():
        fields = line.split("\t")
        if fields[0] == queue:
            return fields[1:]
    return None


def _drain(channel, queue: str, count: int):
    """Consume ``count`` messages (auto-ack); fewer when the queue runs dry."""
    for message in channel.consume(queue, auto_ack=True, inactivity_timeout=5):
        if message[0] is None:
            break
        yield message
        count -= 1
        if count == 0:
            break
    channel.cancel()


def _forward_header(channel, queue: str, tags: list | None = None) -> list:
    """The x-shovelled header of the next message in ``queue``; ``tags`` gets the wire type
    of every header field value pika decoded for it (pika itself turns b/s/I/l all to int)."""
    decode_value = pika.data.decode_value

    def spy(encoded, offset):
        value, end = decode_value(encoded, offset)
        if tags is not None:
            tags.append((bytes(encoded[offset:offset + 1]), value))
        return value, end

    def got():
        if tags is not None:
            tags.clear()
        method, props, _body = channel.basic_get(queue, auto_ack=True)
        return props if method is not None else None
    pika.data.decode_value = spy
    try:
        props = wait_until(got, 60, f"a message in {queue}")
    finally:
        pika.data.decode_value = decode_value
    if tags is not None:
        stamp = props.headers["x-shovelled-timestamp"]
        tags[:] = [tag for tag, value in tags if value == stamp and not isinstance(value, bool)]
    return props.headers["x-shovelled"]


def _shape(value):
    """The layout of a decoded header value: table keys and the type of every leaf."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def test_forward_headers_match_rabbitmq_shovel(rabbitmq_node, rabbit_api, broker,
                                                warren_api, unique):
    rabbit = connect(rabbitmq_node.amqp_port)
    rch = rabbit.channel()
    for q in ("r1", "r2", "r3"):
        rch.queue_declare(f"{unique}.{q}", durable=True)
    # RabbitMQ's own shovel plugin, between two of its own queues
    put_shovel(rabbit_api, f"{unique}-rabbit", {
        "src-uri": "amqp://", "src-queue": f"{unique}.r1",
        "dest-uri": "amqp://", "dest-queue": f"{unique}.r2",
        "dest-add-forward-headers": True, "dest-add-timestamp-header": True})
    rch.basic_publish("", f"{unique}.r1", b"via rabbitmq", PERSISTENT)
    their_stamp: list = []
    theirs = _forward_header(rch, f"{unique}.r2", their_stamp)
    delete_shovel(rabbit_api, f"{unique}-rabbit")

    # warren's shovel, from a local queue to the RabbitMQ node
    warren = connect(broker.amqp_port)
    wch = warren.channel()
    wch.queue_declare(f"{unique}.w1", durable=True)
    put_shovel(warren_api, f"{unique}-warren", {
        "src-uri": "amqp://", "src-queue": f"{unique}.w1",
        "dest-uri": rabbitmq_node.url, "dest-queue": f"{unique}.r3",
        "dest-add-forward-headers": True, "dest-add-timestamp-header": True})
    wch.basic_publish("", f"{unique}.w1", b"via warren", PERSISTENT)
    our_stamp: list = []
    ours = _forward_header(rch, f"{unique}.r3", our_stamp)
    delete_shovel(warren_api, f"{unique}-warren")

    assert _shape(ours) == _shape(theirs), (ours, theirs)
    assert [list(e) for e in ours] == [list(e) for e in theirs]   # the same field order
    assert our_stamp == their_stamp == [b"l"]    # x-shovelled-timestamp: a 64-bit integer
    assert len(ours) == 1
    for key in ("shovel-type", "shovel-vhost", "src-uri"):   # src-uri: both "amqp://"
        assert ours[0][key] == theirs[0][key]
    assert ours[0]["shovel-name"] == f"{unique}-warren"
    assert ours[0]["src-queue"] == f"{unique}.w1"
    assert ours[0]["dest-queue"] == f"{unique}.r3"
    assert "guest:guest" not in ours[0]["dest-uri"]
    rabbit.close()
    warren.close()


def test_rabbitmq_definitions_with_a_shovel_import_into_warren(rabbitmq_node, rabbit_api,
                                                                broker, warren_api, unique):
    name = f"{unique}-defs"
    src, dst = f"{unique}.defs.src", f"{unique}.defs.dst"
    put_shovel(rabbit_api, name, {"src-uri": "amqp://", "src-queue": src,
                                  "dest-uri": "amqp://", "dest-queue": dst,
                                  "src-prefetch-count": 50, "ack-mode": "on-confirm"})
    exported = rabbit_api.get("/api/definitions")
    assert exported.status_code == 200
    definitions = exported.json()
    delete_shovel(rabbit_api, name)
    assert any(p["component"] == "shovel" and p["name"] == name
               for p in definitions["parameters"])

    reply = warren_api.post("/api/definitions", definitions)   # the whole file, as exported
    assert reply.status_code in (200, 201, 204), reply.text
    try:
        wait_until(lambda: shovel_state(warren_api, name) == "running", 60,
                   "the imported shovel to run in warren")
        warren = connect(broker.amqp_port)
        wch = warren.channel()
        wch.confirm_delivery()
        for i in range(10):
            wch.basic_publish("", src, str(i).encode(), PERSISTENT)
        wait_until(lambda: depth(wch, dst) == 10, 60, "the imported shovel to move 10")
        assert depth(wch, src) == 0
        warren.close()
    finally:
        delete_shovel(warren_api, name)


def test_source_queue_deleted_at_rabbitmq_is_redeclared_and_shovelling_resumes(
        rabbitmq_node, broker, warren_api, unique):
    """RabbitMQ cancels the consumer (basic.cancel) when its queue is deleted; the shovel
    starts over, declares the queue again (RabbitMQ's shovel does the same) and moves on."""
    src, dst = f"{unique}.src", f"{unique}.dst"
    rabbit = connect(rabbitmq_node.amqp_port)
    rch = rabbit.channel()
    rch.confirm_delivery()
    rch.queue_declare(src, durable=True)
    warren = connect(broker.amqp_port)
    wch = warren.channel()
    wch.queue_declare(dst, durable=True)
    put_shovel(warren_api, unique, {"src-uri": rabbitmq_node.url, "src-queue": src,
                                    "dest-uri": "amqp://", "dest-queue": dst,
                                    "reconnect-delay": 1})
    try:
        rch.basic_publish("", src, b"before", PERSISTENT)
        wait_until(lambda: depth(wch, dst) == 1, 60, "the first message at warren")
        rch.queue_delete(src)

        def declared_again() -> bool:
            probe = rabbit.channel()
            try:
                probe.queue_declare(src, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                return False
            probe.close()
            return True
        wait_until(declared_again, 60, "the shovel to declare its source queue again")
        wait_until(lambda: shovel_state(warren_api, unique) == "running", 60, "running again")
        rch.basic_publish("", src, b"after", PERSISTENT)
        wait_until(lambda: depth(wch, dst) == 2, 60, "the second message at warren")
    finally:
        delete_shovel(warren_api, unique)
    rabbit.close()
    warren.close()


def test_rabbitmq_memory_alarm_blocks_the_shovel_until_it_clears(
        rabbitmq_node, broker, warren_api, unique):
    """warren -> RabbitMQ: RabbitMQ's memory alarm sends connection.blocked; the shovel
    reports ``blocked``, moves nothing, and delivers everything once the alarm clears."""
    src, dst = f"{unique}.src", f"{unique}.dst"
    rabbit = connect(rabbitmq_node.amqp_port)
    rch = rabbit.channel()
    rch.queue_declare(dst, durable=True)
    warren = connect(broker.amqp_port)
    wch = warren.channel()
    wch.confirm_delivery()
    wch.queue_declare(src, durable=True)
    put_shovel(warren_api, unique, {"src-uri": "amqp://", "src-queue": src,
                                    "dest-uri": rabbitmq_node.url, "dest-queue": dst,
                                    "src-prefetch-count": 10})
    try:
        wait_until(lambda: shovel_state(warren_api, unique) == "running", 60, "running")
        rabbitmq_node.ctl("set_vm_memory_high_watermark", "0.0000001")
        try:
            # RabbitMQ blocks a connection at its first publish after the alarm
            for i in range(50):
                wch.basic_publish("", src, str(i).encode(), PERSISTENT)
            wait_until(lambda: shovel_state(warren_api, unique) == "blocked", 60,
                       "the shovel to report blocked")
            moved = depth(rch, dst)
            assert moved < 50
        finally:
            rabbitmq_node.ctl("set_vm_memory_high_watermark", "0.4")
        wait_until(lambda: depth(rch, dst) == 50, 60, "every message at RabbitMQ")
        wait_until(lambda: shovel_state(warren_api, unique) == "running", 60, "running again")
        assert depth(wch, src) == 0
    finally:
        delete_shovel(warren_api, unique)
    rabbit.close()
    warren.close()


def test_rabbitmq_killed_and_restarted_mid_stream(tmp_path, broker, warren_api, unique):
    """RabbitMQ -> warren, on-confirm: the RabbitMQ node is killed (-9) while the shovel
    drains it and started again on its data; every message RabbitMQ committed reaches warren,
    and duplicates are only of messages RabbitMQ delivered before it died."""
    from tests.network.rabbitmq import RabbitNode
    count, prefetch = 20000, 100
    src, dst = f"{unique}.src", f"{unique}.dst"
    node = RabbitNode(tmp_path / "rabbitmq", plugins=())
    node.start()
    try:
        rabbit = connect(node.amqp_port)
        rch = rabbit.channel()
        rch.queue_declare(src, durable=True)
        rch.tx_select()   # Commit-Ok: every message is on RabbitMQ's disk
        for i in range(count):
            rch.basic_publish("", src, str(i).encode(), PERSISTENT)
        rch.tx_commit()
        rabbit.close()
        warren = connect(broker.amqp_port)
        wch = warren.channel()
        wch.queue_declare(dst, durable=True)
        put_shovel(warren_api, unique, {"src-uri": node.url, "src-queue": src,
                                        "dest-uri": "amqp://", "dest-queue": dst,
                                        "src-prefetch-count": prefetch, "reconnect-delay": 1})
        wait_until(lambda: depth(wch, dst) >= count // 20, 120, "the shovel to be moving",
                   every=0.01)
        node.kill()
        moved_before = depth(wch, dst)
        node.start()
        try:
            wait_until(lambda: depth(wch, dst) >= count, 120, "every message at warren")
            wait_until(lambda: shovel_state(warren_api, unique) == "running", 60, "running")
            rabbit = connect(node.amqp_port)
            wait_until(lambda: depth(rabbit.channel(), src) == 0, 60, "RabbitMQ's queue empty")
            rabbit.close()
        finally:
            delete_shovel(warren_api, unique)
        received = [int(body) for _m, _p, body in _drain(wch, dst, depth(wch, dst))]
        warren.close()
    finally:
        node.stop()
    assert moved_before < count, "the kill came after the shovel was done"
    assert set(received) == set(range(count)), f"lost {sorted(set(range(count)) - set(received))[:10]}"
    # Duplicates only of messages RabbitMQ had handed out before it died: the unacked window,
    # and acked ones whose acks it had not yet written to disk (RabbitMQ does not sync acks).
    counts = collections.Counter(received)
    duplicated = sorted(i for i, n in counts.items() if n > 1)
    print(f"\nkilled after {moved_before} moved; {len(received) - count} duplicates")
    assert all(i < moved_before + prefetch for i in duplicated), duplicated[-10:]


HEADERS = {"zeta": 1, "alpha": Decimal("0.1"), "big": 2**40, "text": "t", "bytes": b"\x00\xff",
           "nested": {"b": 2, "a": -5}, "list": [3, "x"], "flag": True, "none": None}


@pytest.mark.parametrize("forward", [False, True], ids=["plain", "forward-headers"])
def test_headers_survive_a_shovel_from_and_to_rabbitmq(rabbitmq_node, broker, warren_api,
                                                      unique, forward):
    """pika's headers (decimals, 64-bit integers, nested tables, in their order) reach the far
    end with the same values and order: RabbitMQ -> warren -> RabbitMQ through two shovels."""
    r_src, w_mid, r_dst = f"{unique}.r-src", f"{unique}.w-mid", f"{unique}.r-dst"
    rabbit = connect(rabbitmq_node.amqp_port)
    rch = rabbit.channel()
    rch.queue_declare(r_src, durable=True)
    rch.queue_declare(r_dst, durable=True)
    warren = connect(broker.amqp_port)
    wch = warren.channel()
    wch.queue_declare(w_mid, durable=True)
    extra = {"dest-add-forward-headers": True} if forward else {}
    put_shovel(warren_api, f"{unique}-in", {"src-uri": rabbitmq_node.url, "src-queue": r_src,
                                            "dest-uri": "amqp://", "dest-queue": w_mid, **extra})
    put_shovel(warren_api, f"{unique}-out", {"src-uri": "amqp://", "src-queue": w_mid,
                                             "dest-uri": rabbitmq_node.url, "dest-queue": r_dst,
                                             **extra})
    try:
        rch.basic_publish("", r_src, b"h", pika.BasicProperties(delivery_mode=2,
                                                                 headers=dict(HEADERS)))

        def got():
            method, props, _body = rch.basic_get(r_dst, auto_ack=True)
            return props if method is not None else None
        props = wait_until(got, 60, "the message back at RabbitMQ")
    finally:
        delete_shovel(warren_api, f"{unique}-in")
        delete_shovel(warren_api, f"{unique}-out")
    headers = dict(props.headers)
    shovelled = headers.pop("x-shovelled", None)
    assert headers == HEADERS
    # RabbitMQ's shovel passes headers on as they are, and sorts the top-level table by name
    # when it adds x-shovelled; nested tables keep their order either way
    assert list(headers) == (sorted(HEADERS) if forward else list(HEADERS))
    assert list(headers["nested"]) == list(HEADERS["nested"])
    if forward:
        assert [e["shovel-name"] for e in shovelled] == [f"{unique}-out", f"{unique}-in"]
    else:
        assert shovelled is None
    rabbit.close()
    warren.close()
