"""The Link against a real warren broker: confirms, consuming, failures and reconnection.

Each test starts the link in ``tests.network.link_driver`` (its own reactor) and checks the
broker's side with pika. Failures are asserted through the link's ``state``/``reason``, which
is what a shovel status page would show.
"""

from __future__ import annotations

import hashlib
import os
import signal

import pika
import pytest

from tests.broker_process import BrokerProcess, free_port
from tests.network.link_driver import body_for
from tests.network.shovels import GarbageServer
from tests.polling import eventually
from warren.network.link import retry_delay


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def queue_depth(broker: BrokerProcess, queue: str) -> int:
    with pika.BlockingConnection(pika.URLParameters(broker.amqp_url)) as conn:
        return conn.channel().queue_declare(queue, passive=True).method.message_count


def test_publish_confirm_consume_ack(broker, unique, link_driver):
    link = link_driver(broker.amqp_url)
    ready = link.event("ready")
    assert ready["connects"] == 1 and f":{broker.amqp_port}/" in ready["uri"]
    assert link.call("declare_queue", queue=unique)["ok"]
    props = {"content_type": "text/plain", "delivery_mode": 2, "app_id": "link-test",
             "headers": {"x-shovelled": {"src": "a"}, "n": 7}, "timestamp": 1700000000}
    result = link.call("publish", routing_key=unique, count=50, size=100, properties=props)
    assert result == {"reply": "publish", "confirmed": 50, "nacked": 0, "failed": []}
    assert queue_depth(broker, unique) == 50           # confirmed means the broker has them

    got = link.call("consume", queue=unique, count=50, prefetch=10)
    assert got["bodies"] == [sha(body_for(i, 100)) for i in range(50)]
    assert got["properties"][0] == props
    status = link.call("status")
    assert status["state"] == "running"
    assert (status["published"], status["confirmed"], status["delivered"]) == (50, 50, 50)
    assert status["acked"] == 50
    closed = link.call("close")
    assert closed["state"] == "terminated"
    assert queue_depth(broker, unique) == 0            # the acks reached the broker


def test_close_fails_unconfirmed_publishes(broker, unique, link_driver):
    link = link_driver(broker.amqp_url)
    link.event("ready")
    link.call("declare_queue", queue=unique)
    result = link.call("publish", routing_key=unique, count=5, then_close=True)
    assert result["confirmed"] == 0 and result["failed"] == ["link closed"] * 5
    assert link.call("status")["state"] == "terminated"


def test_properties_from_a_pika_publisher_pass_through(broker, unique, link_driver):
    with pika.BlockingConnection(pika.URLParameters(broker.amqp_url)) as conn:
        ch = conn.channel()
        ch.queue_declare(unique)
        ch.basic_publish("", unique, b"from pika", pika.BasicProperties(
            correlation_id="c1", priority=3, expiration="60000", type="t",
            headers={"list": [1, "a"], "bin": b"\x00\x01"}))
    link = link_driver(broker.amqp_url)
    link.event("ready")
    got = link.call("consume", queue=unique, count=1)
    assert got["bodies"] == [sha(b"from pika")]
    props = got["properties"][0]
    assert props["correlation_id"] == "c1" and props["priority"] == 3
    assert props["expiration"] == "60000" and props["type"] == "t"
    assert props["headers"]["list"] == [1, "a"]


def test_bodies_larger_than_frame_max(broker, unique, link_driver):
    link = link_driver(broker.amqp_url + "?frame_max=4096")
    link.event("ready")
    link.call("declare_queue", queue=unique)
    sizes = 100_000
    assert link.call("publish", routing_key=unique, count=3, size=sizes)["confirmed"] == 3
    with pika.BlockingConnection(pika.URLParameters(broker.amqp_url)) as conn:
        _m, _p, body = conn.channel().basic_get(unique, auto_ack=True)
    assert body == body_for(0, sizes)
    got = link.call("consume", queue=unique, count=2)
    assert got["bodies"] == [sha(body_for(i, sizes)) for i in (1, 2)]


def test_wrong_password_reports_access_refused_and_retries(broker, link_driver):
    link = link_driver(f"amqp://guest:wrong@127.0.0.1:{broker.amqp_port}/%2F")
    first = link.event("state", reason=lambda r: "ACCESS_REFUSED" in (r or ""))
    assert first["state"] == "starting"
    assert "Login was refused" in first["reason"] and "wrong" not in first["reason"]
    link.event("state", failures=lambda n: n >= first["failures"] + 2)   # it keeps trying
    status = link.call("status")
    assert status["connects"] == 0 and "ACCESS_REFUSED" in status["reason"]
    assert link.call("close")["state"] == "terminated"
    # one log line for the failure however often it is retried, and no traceback
    logged = [line for line in link.stderr if "ACCESS_REFUSED" in line]
    assert len(logged) == 1 and "WARNING" in logged[0], link.stderr
    assert not any("Traceback" in line for line in link.stderr)


def test_channel_error_fails_the_request_and_the_link_reconnects(broker, unique, link_driver):
    link = link_driver(broker.amqp_url)
    link.event("ready")
    mark = link.mark()
    reply = link.call("declare_queue", queue=unique, passive=True)
    assert reply["error"].startswith("RemoteClosed: 404 NOT_FOUND - no queue")
    down = link.event("down", start=mark)
    assert down["reason"].startswith("channel closed by server: NOT_FOUND - no queue")
    link.event("ready", start=mark, connects=2)
    assert link.call("declare_queue", queue=unique)["ok"]


def test_connection_timeout_bounds_a_silent_handshake(link_driver):
    server = GarbageServer(b"", keep_open=True)   # accepts TCP, then says nothing
    try:
        link = link_driver(f"amqp://127.0.0.1:{server.port}?connection_timeout=300")
        line = link.event("state", reason=lambda r: "timed out" in (r or ""))
        assert line["reason"] == f"handshake with 127.0.0.1:{server.port} timed out"
    finally:
        server.close()


def test_first_uri_dead_second_used(broker, link_driver):
    dead = f"amqp://127.0.0.1:{free_port()}"
    link = link_driver(dead, broker.amqp_url)
    ready = link.event("ready")
    assert f":{broker.amqp_port}/" in ready["uri"]
    status = link.call("status")
    assert status["failures"] == 1 and status["state"] == "running"


def test_all_uris_dead_state_says_refused(link_driver):
    port = free_port()
    link = link_driver(f"amqp://u:secret@127.0.0.1:{port}")
    line = link.event("state", reason=lambda r: "refused" in (r or ""))
    assert line["state"] == "starting"
    assert line["reason"] == f"connection refused to 127.0.0.1:{port}"
    assert link.call("close")["state"] == "terminated"
    assert not any("secret" in line for line in link.stderr)


def test_broker_killed_and_restarted(tmp_path, unique, link_driver):
    broker = BrokerProcess(tmp_path / "b")
    broker.start()
    try:
        link = link_driver(broker.amqp_url + "?heartbeat=2")
        link.event("ready")
        link.call("declare_queue", queue=unique, durable=True)
        props = {"delivery_mode": 2}
        assert link.call("publish", routing_key=unique, count=10, properties=props)[
            "confirmed"] == 10
        mark = link.mark()
        broker.kill()
        down = link.event("down", start=mark)
        assert down["reason"].startswith(f"connection to 127.0.0.1:{broker.amqp_port} lost: ")
        # while the broker is away, publishing fails at once rather than hanging
        failed = link.call("publish", routing_key=unique, count=2, via="link")
        assert failed["confirmed"] == 0 and len(failed["failed"]) == 2
        broker.start()
        link.event("ready", start=mark, connects=2)
        link.call("declare_queue", queue=unique, durable=True)
        assert link.call("publish", routing_key=unique, count=10, size=20,
                         properties=props, via="link")["confirmed"] == 10
        got = link.call("consume", queue=unique, count=20)
        assert sorted(got["bodies"]) == sorted(
            [sha(body_for(i, 10)) for i in range(10)] + [sha(body_for(i, 20)) for i in range(10)])
        status = link.call("status")
        assert status["connects"] == 2 and status["reconnects"] == 1
        link.call("close")
    finally:
        broker.stop()
        broker.kill()


@pytest.mark.parametrize("reply,expect", [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "protocol error"),
    (b"AMQP\x00\x00\x08\x00", "does not speak AMQP 0-9-1"),
    (b"\x01\x00\x00\x00\x00\x00\x05\x00\x0a\x00\x0a\x00\xce", "malformed Connection.Start"),
    (b"\x01\x00\x00\x00\x00\x00\x09\x00\x3c\x00\x28\x00\x00\x00\x00\x00\xce",
     "unexpected Basic.Publish"),
], ids=["http", "amqp-0-8", "short-start", "wrong-method"])
def test_garbage_server_gives_a_clean_error_state(link_driver, reply, expect):
    server = GarbageServer(reply, keep_open=True)
    try:
        link = link_driver(f"amqp://127.0.0.1:{server.port}")
        line = link.event("state", reason=lambda r: expect in (r or ""))
        assert line["state"] == "starting"
        assert line["reason"].startswith(f"protocol error from 127.0.0.1:{server.port}: ")
        assert link.call("close")["state"] == "terminated"
        assert not any("Traceback" in s for s in link.stderr), "\n".join(link.stderr)
    finally:
        server.close()


def test_blocked_by_server_holds_publishes_until_unblocked(tmp_path, unique, link_driver):
    with BrokerProcess(tmp_path, extra_args=["--memory-high-watermark", "2000000"]) as b:
        link = link_driver(b.amqp_url)
        link.event("ready")
        link.call("declare_queue", queue=unique)
        size = 65536
        first = link.send("publish", routing_key=unique, count=60, size=size)   # ~3.9 MB
        blocked = link.event("state", state="blocked", start=first)
        assert "low on memory" in blocked["reason"]
        before = link.call("status")["published"]
        held = link.send("publish", routing_key=unique, count=3, size=size)
        status = link.call("status")
        # nothing more goes out while blocked (a full socket buffer may have held some of
        # the first 60 back already: the transport's producer API pauses the link too)
        assert status["state"] == "blocked" and status["published"] == before <= 60
        # a consumer drains the queue; the broker unblocks and every publish is confirmed
        received = 0
        with pika.BlockingConnection(pika.URLParameters(b.amqp_url)) as conn:
            ch = conn.channel()

            def on_message(_ch, method, _props, _body):
                nonlocal received
                received += 1

            ch.basic_consume(unique, on_message, auto_ack=True)

            def all_received() -> bool:
                conn.process_data_events(time_limit=0.2)
                return received >= 63

            eventually(all_received, "63 deliveries", every=0)
        link.event("state", state="running", start=held)
        for count in (60, 3):
            reply = link.wait_for(lambda x, n=count: x.get("reply") == "publish"
                                  and x["confirmed"] + len(x["failed"]) == n, start=first)
            assert reply["confirmed"] == count
        assert link.call("status")["published"] == 63


def test_frozen_broker_is_detected_by_missed_heartbeats(tmp_path, link_driver):
    broker = BrokerProcess(tmp_path / "b")
    broker.start()
    try:
        link = link_driver(broker.amqp_url + "?heartbeat=1")
        link.event("ready")
        mark = link.mark()
        os.killpg(broker.proc.pid, signal.SIGSTOP)     # TCP stays up, the broker goes silent
        try:
            down = link.event("down", start=mark, timeout=30)
        finally:
            os.killpg(broker.proc.pid, signal.SIGCONT)
        assert down["reason"] == f"missed heartbeats from 127.0.0.1:{broker.amqp_port}, timeout: 1s"
        link.event("ready", start=mark, connects=2)    # and it comes back once the broker does
    finally:
        broker.stop()
        broker.kill()


@pytest.mark.parametrize("base,cap,rounds,expected", [
    (5, 60, 1, 5), (5, 60, 2, 10), (5, 60, 4, 40), (5, 60, 5, 60), (5, 60, 500, 60),
    (0, 60, 3, 0), (90, 60, 1, 90)])
def test_retry_delay_doubles_up_to_the_cap(base, cap, rounds, expected):
    assert retry_delay(base, cap, rounds) == expected


def test_close_while_a_tcp_connect_is_pending():
    """Closing a link whose TCP connect is still under way (a remote being retried) fires
    the close once: cancelling the connect already finished it (was AlreadyCalledError)."""
    from twisted.internet import defer
    from twisted.internet.task import Clock

    from warren.network.link import Link

    class PendingConnect:
        def connect(self, factory):
            return defer.Deferred()   # cancelled -> errback with CancelledError at once

    class User:
        def on_ready(self, channel):
            pass

        def on_down(self, reason):
            pass

    class PendingLink(Link):
        def _endpoint(self, uri):
            return PendingConnect()

    link = PendingLink(["amqp://127.0.0.1:1"], User(), reactor=Clock())
    link.start()
    closed = link.close()
    assert closed.called and link.state.value == "terminated"
