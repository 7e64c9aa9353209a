"""kill -9 in the middle of the journal's long work on deep queues (issue 22): a paging pass,
a compaction, a purge whose messages the index lets go of a slice at a time.

Small counts on a tiny paging budget and tiny journal segments, so each phase runs all the
time while the test works. Whatever instant the kill lands on, after the restart: every
confirmed message is there, once, in publish order; nothing comes back that was settled
durably before the kill (a purge followed by a confirmed publish); acks not yet written may
come back (at-least-once), nothing else; no traceback in the log.
"""

from __future__ import annotations

import threading
import urllib.request

import pika
import psycopg

from tests.broker_process import BrokerProcess
from tests.durability.clients import TRANSIENT, ConfirmedPublisher
from tests.durability.conftest import fresh_database
from tests.durability.test_faults import LimitedBroker, SmallDisk
from tests.durability.test_restart import api
from tests.polling import eventually

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def body(queue: str, i: int, size: int = 100) -> bytes:
    return f"{queue}-{i:07d}-".encode().ljust(size, b"x")


def index_of(payload: bytes) -> int:
    return int(payload.split(b"-")[1])


def declare(channel, *queues: str) -> None:
    for queue in queues:
        channel.queue_declare(queue, durable=True)


def drain(url: str, queue: str) -> list[bytes]:
    """Every message of ``queue`` (as many as it says it holds, each acked), in the order
    the broker hands them."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    count = conn.channel().queue_declare(queue, passive=True).method.message_count
    conn.close()
    return take(url, queue, count) if count else []


def paged_out_rows_bytes(broker: BrokerProcess) -> float:
    """The accounted bytes of paged-out rows: above zero once a paging pass ran."""
    with urllib.request.urlopen(broker.http_url + "/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("warren_paging_index_bytes "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_kill_during_page_out_loses_no_confirmed_message(tmp_path):
    """Publishing under a 64 KiB budget pages out at almost every turn; the kill lands in the
    middle of it."""
    broker = BrokerProcess(tmp_path / "data", extra_args=["--paging-budget", "65536"]).start()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        declare(conn.channel(), "paged")
        conn.close()
        halfway = threading.Event()
        publisher = ConfirmedPublisher(broker.amqp_url, "paged",
                                       (body("paged", i, 300) for i in range(20_000)))
        publisher.on_confirm = lambda p: halfway.set() if len(p.acked) >= 1000 else None
        thread = threading.Thread(target=publisher.run, kwargs={"timeout": 120})
        thread.start()
        try:
            assert halfway.wait(120), publisher.error
            eventually(lambda: paged_out_rows_bytes(broker) > 0, "messages paged out")
            assert thread.is_alive(), "the kill must land while publishing and paging"
            broker.kill()
        finally:
            thread.join(60)
        confirmed = [index_of(b) for b in publisher.acked]
        broker.start(timeout=120)
        got = [index_of(b) for b in drain(broker.amqp_url, "paged")]
        assert got == sorted(set(got)), "in publish order, once each"
        assert set(confirmed) <= set(got)
        assert set(got) <= {index_of(b) for b in publisher.published}
        assert "Traceback" not in broker.log()
    finally:
        broker.stop()
        broker.kill()


def test_kill_during_compaction_keeps_the_live_messages_once_each(tmp_path):
    """One message of eight stays (queue ``keep``), the rest are consumed and acked: on 8 KiB
    segments that leaves most segments under a quarter live, which compaction rewrites at the
    head; the kill lands as soon as the first compaction is logged, acks still flowing."""
    broker = BrokerProcess(tmp_path / "data",
                           env={"WARREN_JOURNAL_SEGMENT_SIZE": str(8 * 1024)}).start()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        declare(conn.channel(), "keep", "churn")
        conn.close()
        keep = [i for i in range(2400) if i % 8 == 0]
        churn = [i for i in range(2400) if i % 8]
        publisher = ConfirmedPublisher(
            broker.amqp_url, lambda b: b.split(b"-")[0].decode(),
            (body("keep" if i % 8 == 0 else "churn", i) for i in range(2400)), window=1000)
        publisher.run(timeout=120)
        assert len(publisher.acked) == 2400, publisher.error
        acked: list[int] = []
        stop = threading.Event()

        def consume_churn() -> None:
            consumer = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
            ch = consumer.channel()
            ch.basic_qos(prefetch_count=50)
            try:
                for method, _props, payload in ch.consume("churn", inactivity_timeout=1):
                    if stop.is_set():
                        break
                    if method is None:
                        continue
                    ch.basic_ack(method.delivery_tag)
                    acked.append(index_of(payload))
            except pika.exceptions.AMQPError:
                pass   # the broker was killed under it

        thread = threading.Thread(target=consume_churn)
        thread.start()
        try:
            eventually(lambda: "compacting segment" in broker.log(), "a compaction",
                       timeout=120)
            broker.kill()
        finally:
            stop.set()
            thread.join(60)
        broker.start(timeout=120)
        assert [index_of(b) for b in drain(broker.amqp_url, "keep")] == keep
        rest = [index_of(b) for b in drain(broker.amqp_url, "churn")]
        assert rest == sorted(set(rest)), "in publish order, once each"
        assert set(churn) - set(acked) <= set(rest), "only acked messages may be gone"
        assert set(rest) <= set(churn)
        assert "Traceback" not in broker.log()
    finally:
        broker.stop()
        broker.kill()


def test_kill_during_a_sliced_purge_neither_loses_nor_resurrects(tmp_path):
    """A purge of 12,000 messages is one PURGE record, released by the journal's index 5,000
    per turn; a publish confirmed right after it is durable behind it. Killed then, the
    purged queue comes back holding that publish alone, and the queue sharing its segments
    everything it had."""
    broker = BrokerProcess(tmp_path / "data",
                           env={"WARREN_JOURNAL_SEGMENT_SIZE": str(64 * 1024)}).start()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        channel = conn.channel()
        declare(channel, "keep", "big")
        keeper = ConfirmedPublisher(broker.amqp_url, "keep",
                                    (body("keep", i) for i in range(500)), window=500)
        big = ConfirmedPublisher(broker.amqp_url, "big",
                                 (body("big", i, 20) for i in range(12_000)), window=2000)
        for publisher in (keeper, big):
            publisher.run(timeout=120)
            assert publisher.error is None and not publisher.nacked, publisher.error
        assert channel.queue_purge("big").method.message_count == 12_000
        channel.confirm_delivery()
        channel.basic_publish("", "big", body("big", 99_999, 20), PERSISTENT)   # confirmed
        broker.kill()
        broker.start(timeout=120)
        assert [index_of(b) for b in drain(broker.amqp_url, "big")] == [99_999]
        assert [index_of(b) for b in drain(broker.amqp_url, "keep")] == list(range(500))
        assert "Traceback" not in broker.log()
    finally:
        broker.stop()
        broker.kill()


def take(url: str, queue: str, count: int) -> list[bytes]:
    """``count`` messages of ``queue``, each acked, in the order the broker hands them."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=50)
    out: list[bytes] = []
    for method, _props, payload in channel.consume(queue, inactivity_timeout=30):
        assert method is not None, f"stalled after {len(out)} of {count} messages"
        channel.basic_ack(method.delivery_tag)
        out.append(payload)
        if len(out) == count:
            break
    channel.cancel()
    conn.close()
    return out


def test_disk_full_while_paging_stores_or_refuses_and_keeps_serving(tmp_path):
    """Every file of the broker stops growing at 2 MiB (``RLIMIT_FSIZE``: EFBIG, as a full
    disk's ENOSPC) under a 64 KiB paging budget. A queue of transient messages pages out into
    its paging file until that fails: the rest stays in memory and all are delivered. The
    journal fills next: the publisher is blocked by the store alarm and gets no confirm for
    what was not written, while a consumer keeps draining the paged queue. Killed and
    started without the limit ("space returns"), every confirmed message not consumed is
    there, once, in order."""
    disk = SmallDisk(tmp_path / "disk", 2 * 1024 * 1024)
    broker = LimitedBroker(disk.path / "data", prefix=disk.broker_args(),
                           extra_args=["--disk-free-limit", "0", "--paging-budget", "65536"])
    disk.broker = broker
    try:
        broker.start()
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        declare(conn.channel(), "deep", "transient")
        conn.close()
        # 4.8 MB of transient messages, past the 256 kept at the head: more than the paging
        # file may hold
        transient = ConfirmedPublisher(broker.amqp_url, "transient",
                                       (body("transient", i, 8192) for i in range(600)),
                                       window=100, properties=TRANSIENT)
        transient.run(timeout=60)
        assert len(transient.acked) == 600, transient.error
        broker.wait_for_line("cannot write its paging file")
        assert [index_of(b) for b in take(broker.amqp_url, "transient", 600)] == \
            list(range(600))

        publisher = ConfirmedPublisher(broker.amqp_url, "deep",
                                       (body("deep", i, 1024) for i in range(10_000)),
                                       window=200)
        thread = threading.Thread(target=publisher.run, kwargs={"timeout": 120}, daemon=True)
        thread.start()
        try:
            assert publisher.blocked.wait(60), "publisher never blocked:\n" + broker.log()
            assert "store unavailable" in publisher.block_reasons
            broker.wait_for_line("write failed")
            assert paged_out_rows_bytes(broker) > 0, "nothing was paged out"
            # the store alarm holds the publisher; the consumer still drains
            taken = [index_of(b) for b in take(broker.amqp_url, "deep", 500)]
            assert taken == list(range(500))
            assert not publisher.unblocked.is_set()
        finally:
            broker.kill()   # a blocked connection is not read, not even its close
            thread.join(60)
        assert len(publisher.acked) < 10_000
        assert "Traceback" not in "\n".join(broker.lines), broker.log()
        if disk.tmpfs:
            disk.grow()
        broker.prefix = []
        broker.start(timeout=120)
        got = [index_of(b) for b in drain(broker.amqp_url, "deep")]
        assert got == sorted(set(got)), "in publish order, once each"
        confirmed = {index_of(b) for b in publisher.acked}
        assert confirmed - set(taken) <= set(got), "a confirmed message was lost"
        assert set(got) <= {index_of(b) for b in publisher.published}
        assert "Traceback" not in broker.log()
    finally:
        broker.stop()
        broker.kill()
        disk.remove()


def publish_until_paged(broker: BrokerProcess, queue: str, total: int) -> None:
    """``total`` confirmed 1 KiB messages into ``queue``, then until a paging pass ran."""
    publisher = ConfirmedPublisher(broker.amqp_url, queue,
                                   (body(queue, i, 1024) for i in range(total)), window=500)
    publisher.run(timeout=120)
    assert len(publisher.acked) == total, publisher.error
    eventually(lambda: paged_out_rows_bytes(broker) > 0, "messages paged out")


def database_reachable(url: str, allowed: bool) -> None:
    """Open or shut the database behind ``url`` (the session's PostgreSQL, shared with other
    tests, goes on serving theirs): shut, its sessions are cut and new ones refused, as when
    the server is gone."""
    admin, name = url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)
    with psycopg.connect(admin + "/postgres", autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {str(allowed).lower()}")
        if not allowed:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


def test_database_gone_while_reading_ahead_delivers_each_message_once(tmp_path, pg_url):
    """A deep queue on PostgreSQL under a 64 KiB budget is read back in batches off the
    reactor thread while a consumer drains it; the database goes away in the middle. The
    broker logs it once, delivers nothing it has not read (no empty or repeated message),
    and resumes by itself when the database is back; every message comes once, in order, and
    the acks made meanwhile are kept (after a restart the queue is empty)."""
    url = fresh_database(pg_url)
    broker = BrokerProcess(tmp_path / "data", store="sql", store_url=url,
                           extra_args=["--paging-budget", "65536"]).start()
    total = 3000
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        declare(conn.channel(), "deep")
        conn.close()
        publish_until_paged(broker, "deep", total)

        got: list[int] = []
        paused, go = threading.Event(), threading.Event()

        def consume() -> None:
            consumer = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
            channel = consumer.channel()
            channel.basic_qos(prefetch_count=50)
            for method, _props, payload in channel.consume("deep", inactivity_timeout=60):
                if method is None:
                    break   # stalled: the assertions below say where
                got.append(index_of(payload))
                channel.basic_ack(method.delivery_tag)
                if len(got) == 600:
                    paused.set()
                    go.wait(60)
                if len(got) == total:
                    break
            channel.cancel()
            consumer.close()

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        try:
            assert paused.wait(60), f"only {len(got)} delivered"
            database_reachable(url, False)
            go.set()
            broker.wait_for_line("reading paged-out bodies failed", timeout=60)
        finally:
            go.set()
            database_reachable(url, True)
        thread.join(120)
        assert got == list(range(total)), "each message once, in order"
        log = "\n".join(broker.lines)
        assert log.count("reading paged-out bodies failed") == 1
        assert "reading paged-out bodies works again" in log
        assert "Traceback" not in log, broker.log()
        broker.restart(timeout=120)
        assert drain(broker.amqp_url, "deep") == []
    finally:
        broker.stop()
        broker.kill()


def test_database_gone_when_paged_messages_are_dropped_dead_letters_them_later(tmp_path, pg_url):
    """Paged-out messages of a queue with a dead-letter queue are dropped from its head
    (max-length) while the database is gone: their bodies cannot be read back for the
    dead-letter copy. They are kept (not lost, as they once were) and dead-lettered when the
    database is back: every message reaches the dead-letter queue once, no traceback."""
    url = fresh_database(pg_url)
    broker = BrokerProcess(tmp_path / "data", store="sql", store_url=url,
                           extra_args=["--paging-budget", "65536"]).start()
    total = 1500
    try:
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        channel = conn.channel()
        declare(channel, "dead")
        channel.queue_declare("expiring", durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
        conn.close()
        publish_until_paged(broker, "expiring", total)
        database_reachable(url, False)
        try:
            # max-length 0 drops every queued message at once, dead-lettering each
            status, _ = api(broker, "PUT", "/api/policies/%2F/drop",
                            {"pattern": "^expiring$", "definition": {"max-length": 0},
                             "apply-to": "queues"})
            assert status in (201, 204)
            broker.wait_for_line("reading paged-out bodies failed", timeout=60)
        finally:
            database_reachable(url, True)
        eventually(lambda: queue_count(broker, "dead") == total,
                   "every dropped message dead-lettered", timeout=60)
        got = drain(broker.amqp_url, "dead")
        assert sorted(index_of(b) for b in got) == list(range(total))
        log = broker.log()
        assert "not dead-lettered" not in log
        assert "Traceback" not in log, log
    finally:
        broker.stop()
        broker.kill()


def queue_count(broker: BrokerProcess, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()
