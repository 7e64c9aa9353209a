"""The client-side failover recipes the README gives, run against a shared-file pair.

Each client connects to the master (broker a), a is killed, and the client's own failover
mechanism carries the next message to the slave (broker b) that took over.
"""

from __future__ import annotations

import threading

import pytest

from tests.ha.conftest import connect, drain


@pytest.fixture
def running_pair(file_pair):
    a, b = file_pair.brokers
    a.start()
    b.start(wait=False)
    b.wait_for_line("waiting for the lock held by")
    return a, b


def declare(b, queue: str, bind_key: str | None = None) -> None:
    with connect(b) as conn:
        ch = conn.channel()
        ch.queue_declare(queue, durable=True)
        if bind_key is not None:
            ch.queue_bind(queue, "amq.topic", bind_key)


def test_kombu_failover_urls(running_pair, unique):
    from kombu import Connection, Queue
    a, b = running_pair
    queue = unique + "q"
    declare(a, queue)
    urls = ";".join(f"amqp://guest:guest@127.0.0.1:{x.amqp_port}//" for x in (a, b))
    with Connection(urls, failover_strategy="round-robin",
                    transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        publish = conn.ensure(producer, producer.publish, max_retries=20, interval_start=0.2,
                              interval_step=0.2, interval_max=0.5)
        publish(b"one", routing_key=queue, delivery_mode=2, declare=[Queue(queue, durable=True)])
        a.kill()
        b.wait_ready(10)
        publish(b"two", routing_key=queue, delivery_mode=2, declare=[Queue(queue, durable=True)])
    assert [body for body, _ in drain(b, queue)] == [b"one", b"two"]


def test_stomp_py_host_list(running_pair, unique):
    import stomp
    a, b = running_pair
    queue = unique + "q"
    declare(a, queue)
    conn = stomp.Connection([("127.0.0.1", a.stomp_port), ("127.0.0.1", b.stomp_port)],
                            reconnect_attempts_max=50, reconnect_sleep_initial=0.1,
                            reconnect_sleep_increase=0.0, reconnect_sleep_max=0.2,
                            heartbeats=(0, 0))
    receipts = ReceiptListener()
    conn.set_listener("receipts", receipts)
    conn.connect("guest", "guest", wait=True)
    receipts.send(conn, f"/queue/{queue}", "one")
    a.kill()
    b.wait_ready(10)
    conn.connect("guest", "guest", wait=True)     # walks the host list to the new master
    receipts.send(conn, f"/queue/{queue}", "two")
    conn.disconnect()
    assert [body for body, _ in drain(b, queue)] == [b"one", b"two"]


class ReceiptListener:
    """Waits for the RECEIPT of each SEND (persistent messages are on disk by then)."""

    def __init__(self) -> None:
        self.receipts: dict[str, threading.Event] = {}

    def on_receipt(self, frame) -> None:
        event = self.receipts.get(frame.headers.get("receipt-id"))
        if event is not None:
            event.set()

    def send(self, conn, destination: str, body: str) -> None:
        receipt = f"r-{body}"
        self.receipts[receipt] = threading.Event()
        conn.send(destination, body, headers={"persistent": "true", "receipt": receipt})
        assert self.receipts[receipt].wait(10), f"no receipt for {body}"


def test_paho_reconnects_to_the_other_broker(running_pair, unique):
    import paho.mqtt.client as mqtt
    a, b = running_pair
    queue = unique + "q"
    topic = unique.replace(".", "-") + "/t"
    declare(a, queue, bind_key=topic.replace("/", "."))
    hosts = [("127.0.0.1", a.mqtt_port), ("127.0.0.1", b.mqtt_port)]
    connected = threading.Event()
    state = {"next": 0}

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique[-20:])
    client.username_pw_set("guest", "guest")
    client.reconnect_delay_set(min_delay=1, max_delay=1)

    def on_connect(client, userdata, flags, reason, properties):
        if not reason.is_failure:
            connected.set()

    def on_disconnect(client, userdata, flags, reason, properties):
        connected.clear()
        # paho retries the address it was given; point it at the other broker of the pair
        state["next"] = (state["next"] + 1) % len(hosts)
        client.connect_async(*hosts[state["next"]])

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.connect(*hosts[0])
    client.loop_start()
    try:
        assert connected.wait(10)
        client.publish(topic, b"one", qos=1).wait_for_publish(10)
        a.kill()
        b.wait_ready(10)
        assert _wait_cleared_then_set(connected, 20), "paho did not reconnect to the slave"
        info = client.publish(topic, b"two", qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.loop_stop()
        client.disconnect()
    assert [body for body, _ in drain(b, queue)] == [b"one", b"two"]


def _wait_cleared_then_set(event: threading.Event, timeout: float) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while event.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    return event.wait(max(0.0, deadline - time.monotonic()))
