"""Publisher throttling: over the memory watermark publishers get connection.blocked, and
connection.unblocked once consumers drain the queues below the low watermark.

A private broker with a 2 MB watermark; the publisher (pika SelectConnection, since blocking
is an asynchronous event) sends 64 KiB messages until it is told it is blocked; a consumer on
another connection then drains the queue and the publisher must see unblocked.
"""

from __future__ import annotations

import pika

from tests.broker_process import BrokerProcess


def test_publisher_blocked_over_watermark_and_unblocked_after_drain(tmp_path):
    with BrokerProcess(tmp_path, extra_args=["--memory-high-watermark", "2000000"]) as b:
        params = pika.URLParameters(b.amqp_url)
        queue = "t.flow"
        events: list[str] = []
        state: dict = {"published": 0}
        body = b"x" * 65536

        def on_open(conn):
            conn.add_on_connection_blocked_callback(lambda c, m: on_blocked(c, m))
            conn.add_on_connection_unblocked_callback(lambda c, m: on_unblocked(c))
            conn.channel(on_open_callback=on_channel)

        def on_channel(ch):
            state["ch"] = ch
            ch.queue_declare(queue, callback=lambda _: publish_some())

        def publish_some():
            if "blocked" in events:
                return
            ch = state["ch"]
            for _ in range(8):
                ch.basic_publish("", queue, body)
                state["published"] += 1
            assert state["published"] < 200, "never blocked"
            state["conn"].ioloop.call_later(0.01, publish_some)

        def on_blocked(conn, method):
            if state.get("closing"):
                # publishes already in the socket when the first unblock came are read
                # while the close is under way and may cross the mark again: not this test's
                return
            events.append("blocked")
            assert method.method.reason == "low on memory"
            drain(conn)

        def drain(conn):
            # a consumer on its own connection empties the queue (its acks free memory)
            consumer = pika.BlockingConnection(params)
            cch = consumer.channel()
            while True:
                m, _, _ = cch.basic_get(queue, auto_ack=True)
                if m is None:
                    break
                state["drained"] = state.get("drained", 0) + 1
            consumer.close()

        def on_unblocked(conn):
            if state.get("closing"):
                return
            events.append("unblocked")
            state["closing"] = True
            conn.close()

        conn = pika.SelectConnection(params, on_open_callback=on_open,
                                     on_close_callback=lambda c, r: c.ioloop.stop())
        state["conn"] = conn
        conn.ioloop.call_later(20, conn.ioloop.stop)
        conn.ioloop.start()
        assert events == ["blocked", "unblocked"]
        assert state["published"] * len(body) > 2000000 * 0.8
        assert state["drained"] > 0
