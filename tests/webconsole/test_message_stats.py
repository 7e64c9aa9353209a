"""Statistics users read, one operation at a time, as RabbitMQ counts them: each test drives
one operation with a real client (pika, stomp.py, paho) and reads ``message_stats`` on the
management API and the rabbitmq_prometheus counters of ``/metrics``.

Counters are counted as the operation happens, so the first read after the client saw the
broker's answer (a confirm, a receipt, a PUBACK, a get-ok) must show it: those are read once,
no polling. Rates are sampled every 5 s (RabbitMQ's collect_statistics_interval), so they are
awaited with ``eventually`` while traffic flows. The broker is shared by the module's tests,
which run one after another: broker-wide totals are compared as differences.
"""

from __future__ import annotations

import queue
import uuid
from urllib.parse import quote

import pika
import pytest
import requests
import stomp
from prometheus_client.parser import text_string_to_metric_families

from tests.mqtt.helpers import Client as MqttClient
from tests.polling import eventually
from tests.webconsole.conftest import ApiClient

RATE_TIMEOUT = 90.0    # two 5 s samples on a loaded machine


class Figures:
    """The overview's message_stats and /metrics' channel counters at one moment."""

    def __init__(self, broker) -> None:
        api = ApiClient(broker.http_url)
        self.overview = api.get("/api/overview").json()["message_stats"]
        text = requests.get(broker.http_url + "/metrics", timeout=30).text
        self.metrics = {s.name: s.value for f in text_string_to_metric_families(text)
                        for s in f.samples if not s.labels}

    def diff(self, before: "Figures") -> dict[str, float]:
        """What changed since *before*: message_stats keys and /metrics names."""
        out = {}
        for k, v in self.overview.items():
            if not k.endswith("_details") and v != before.overview.get(k, 0):
                out[k] = v - before.overview.get(k, 0)
        for k, v in self.metrics.items():
            if k.startswith("rabbitmq_channel_") and v != before.metrics.get(k, 0):
                out[k] = v - before.metrics.get(k, 0)
        return out


@pytest.fixture
def api(broker) -> ApiClient:
    return ApiClient(broker.http_url)


@pytest.fixture
def amqp(broker):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()        # a publish returns once the broker has handled it
    yield ch
    if conn.is_open:
        conn.close()


def queue_stats(api: ApiClient, name: str) -> dict:
    r = api.get(f"/api/queues/%2F/{quote(name, safe='')}")
    assert r.status_code == 200, r.text
    return r.json()


def exchange_stats(api: ApiClient, name: str) -> dict:
    r = api.get(f"/api/exchanges/%2F/{quote(name or 'amq.default', safe='')}")
    assert r.status_code == 200, r.text
    return r.json()["message_stats"]


def counters(stats: dict, *keys: str) -> dict[str, int]:
    return {k: stats[k] for k in keys}


def test_auto_ack_get_counts_as_get_no_ack(broker, api, amqp, unique):
    amqp.queue_declare(unique)
    amqp.basic_publish("", unique, b"m")
    before = Figures(broker)
    method, _, body = amqp.basic_get(unique, auto_ack=True)
    assert body == b"m"
    assert Figures(broker).diff(before) == {"get_no_ack": 1, "deliver_get": 1,
                                            "rabbitmq_channel_get_total": 1}
    q = queue_stats(api, unique)["message_stats"]
    assert counters(q, "get", "get_no_ack", "deliver_get") == \
        {"get": 0, "get_no_ack": 1, "deliver_get": 1}


def test_manual_ack_get_ack_and_empty_get(broker, api, amqp, unique):
    amqp.queue_declare(unique)
    amqp.basic_publish("", unique, b"m")
    before = Figures(broker)
    method, _, _ = amqp.basic_get(unique, auto_ack=False)
    assert Figures(broker).diff(before) == {"get": 1, "deliver_get": 1,
                                            "rabbitmq_channel_get_ack_total": 1}
    before = Figures(broker)
    amqp.basic_ack(method.delivery_tag)
    assert amqp.basic_get(unique, auto_ack=False) == (None, None, None)  # a round trip too
    assert Figures(broker).diff(before) == {"ack": 1, "get_empty": 1,
                                            "rabbitmq_channel_messages_acked_total": 1,
                                            "rabbitmq_channel_get_empty_total": 1}
    q = queue_stats(api, unique)["message_stats"]
    assert counters(q, "get", "get_no_ack", "ack", "get_empty") == \
        {"get": 1, "get_no_ack": 0, "ack": 1, "get_empty": 1}


def test_consume_counts_deliveries_and_redeliveries(broker, api, amqp, unique):
    amqp.queue_declare(unique)
    amqp.basic_publish("", unique, b"m")
    before = Figures(broker)
    got = queue.Queue()
    tag = amqp.basic_consume(unique, lambda ch, m, p, b: got.put(m), auto_ack=False)
    first = _next_delivery(amqp, got)
    amqp.basic_reject(first.delivery_tag, requeue=True)
    second = _next_delivery(amqp, got)
    assert second.redelivered
    amqp.basic_ack(second.delivery_tag)
    amqp.basic_cancel(tag)                    # a round trip: the ack is in
    assert Figures(broker).diff(before) == {
        "deliver": 2, "redeliver": 1, "ack": 1, "deliver_get": 2,
        "rabbitmq_channel_messages_delivered_ack_total": 2,
        "rabbitmq_channel_messages_redelivered_total": 1,
        "rabbitmq_channel_messages_acked_total": 1}
    q = queue_stats(api, unique)["message_stats"]
    assert counters(q, "deliver", "deliver_no_ack", "redeliver", "ack", "deliver_get") == \
        {"deliver": 2, "deliver_no_ack": 0, "redeliver": 1, "ack": 1, "deliver_get": 2}

    amqp.basic_publish("", unique, b"n")
    before = Figures(broker)
    tag = amqp.basic_consume(unique, lambda ch, m, p, b: got.put(m), auto_ack=True)
    _next_delivery(amqp, got)
    amqp.basic_cancel(tag)
    assert Figures(broker).diff(before) == {"deliver_no_ack": 1, "deliver_get": 1,
                                            "rabbitmq_channel_messages_delivered_total": 1}


def _next_delivery(ch, got: queue.Queue):
    eventually(lambda: (ch.connection.process_data_events(0.1), not got.empty())[1],
               "a delivery", timeout=30)
    return got.get_nowait()


def test_amqp_publish_counts_once_and_exchanges_count_in_and_out(broker, api, amqp, unique):
    ex = unique + ".fanout"
    amqp.exchange_declare(ex, "fanout")
    for i in range(3):
        amqp.queue_declare(f"{unique}.{i}")
        amqp.queue_bind(f"{unique}.{i}", ex)
    before = Figures(broker)
    amqp.basic_publish(ex, "", b"m")
    assert Figures(broker).diff(before) == {"publish": 1, "confirm": 1,
                                            "rabbitmq_channel_messages_published_total": 1,
                                            "rabbitmq_channel_messages_confirmed_total": 1}
    assert counters(exchange_stats(api, ex), "publish_in", "publish_out") == \
        {"publish_in": 1, "publish_out": 3}
    assert queue_stats(api, f"{unique}.0")["message_stats"]["publish"] == 1

    default_before = exchange_stats(api, "")
    amqp.basic_publish("", f"{unique}.0", b"m")
    default_after = exchange_stats(api, "")
    assert default_after["publish_in"] - default_before["publish_in"] == 1
    assert default_after["publish_out"] - default_before["publish_out"] == 1


def test_unroutable_publishes_are_dropped_or_returned(broker, api, amqp, unique):
    ex = unique + ".direct"
    amqp.exchange_declare(ex, "direct")
    before = Figures(broker)
    amqp.basic_publish(ex, "nowhere", b"m")
    assert Figures(broker).diff(before) == {
        "publish": 1, "drop_unroutable": 1, "confirm": 1,
        "rabbitmq_channel_messages_published_total": 1,
        "rabbitmq_channel_messages_unroutable_dropped_total": 1,
        "rabbitmq_channel_messages_confirmed_total": 1}
    before = Figures(broker)
    with pytest.raises(pika.exceptions.UnroutableError):
        amqp.basic_publish(ex, "nowhere", b"m", mandatory=True)
    assert Figures(broker).diff(before) == {
        "publish": 1, "return_unroutable": 1, "confirm": 1,
        "rabbitmq_channel_messages_published_total": 1,
        "rabbitmq_channel_messages_unroutable_returned_total": 1,
        "rabbitmq_channel_messages_confirmed_total": 1}
    assert counters(exchange_stats(api, ex), "publish_in", "publish_out") == \
        {"publish_in": 2, "publish_out": 0}


def test_publishes_of_a_closed_connection_are_in_the_next_overview(broker):
    """The first overview after a publish shows it, even when the publisher has gone: the
    totals once missed what a connection counted since the last 5 s sample."""
    before = Figures(broker)
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    for _ in range(4):
        ch.basic_publish("", "no-such-queue-" + uuid.uuid4().hex, b"m")
    conn.close()
    diff = Figures(broker).diff(before)
    assert diff["publish"] == 4 and diff["rabbitmq_channel_messages_published_total"] == 4
    assert diff["confirm"] == 4


def test_channel_message_stats(broker, api, amqp, unique):
    amqp.queue_declare(unique)
    for _ in range(2):
        amqp.basic_publish("", unique, b"m")
    amqp.basic_get(unique, auto_ack=True)
    mine = [c for c in api.get("/api/channels").json()
            if c["message_stats"]["publish"] == 2 and c["confirm"]]
    assert len(mine) == 1, mine
    stats = mine[0]["message_stats"]
    assert counters(stats, "publish", "confirm", "get_no_ack", "get", "deliver_get") == \
        {"publish": 2, "confirm": 2, "get_no_ack": 1, "get": 0, "deliver_get": 1}
    assert isinstance(stats["publish_details"]["rate"], float)
    one = api.get(f"/api/channels/{quote(mine[0]['name'], safe='')}").json()
    assert one["message_stats"]["publish"] == 2


class StompReceipts(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.receipts: queue.Queue = queue.Queue()

    def on_receipt(self, frame) -> None:
        self.receipts.put(frame.headers.get("receipt-id"))


def test_stomp_send_counts_as_a_publish(broker, api, unique):
    conn = stomp.Connection12([("127.0.0.1", broker.stomp_port)])
    listener = StompReceipts()
    conn.set_listener("r", listener)
    conn.connect("guest", "guest", wait=True)
    try:
        before = Figures(broker)
        default_before = exchange_stats(api, "")
        conn.send(f"/queue/{unique}", "m", headers={"receipt": "r1"})
        assert listener.receipts.get(timeout=30) == "r1"
        # a SEND's receipt is a publisher confirm, as RabbitMQ's STOMP adapter counts it
        assert Figures(broker).diff(before) == {"publish": 1, "confirm": 1,
                                                "rabbitmq_channel_messages_published_total": 1,
                                                "rabbitmq_channel_messages_confirmed_total": 1}
        default_after = exchange_stats(api, "")
        assert default_after["publish_in"] - default_before["publish_in"] == 1
        assert default_after["publish_out"] - default_before["publish_out"] == 1
        assert queue_stats(api, unique)["message_stats"]["publish"] == 1

        before = Figures(broker)
        topic_before = exchange_stats(api, "amq.topic")
        conn.send(f"/topic/{unique}.nobody", "m")                   # no receipt: no confirm
        conn.send(f"/topic/{unique}.nobody", "m", headers={"receipt": "r2"})
        assert listener.receipts.get(timeout=30) == "r2"
        assert Figures(broker).diff(before) == {
            "publish": 2, "drop_unroutable": 2, "confirm": 1,
            "rabbitmq_channel_messages_published_total": 2,
            "rabbitmq_channel_messages_unroutable_dropped_total": 2,
            "rabbitmq_channel_messages_confirmed_total": 1}
        topic_after = exchange_stats(api, "amq.topic")
        assert topic_after["publish_in"] - topic_before["publish_in"] == 2
        assert topic_after["publish_out"] == topic_before["publish_out"]
    finally:
        conn.disconnect()


def test_mqtt_publish_counts_as_a_publish(broker, api, unique):
    topic = unique.replace(".", "/")
    subscriber = MqttClient(broker.mqtt_port)
    publisher = MqttClient(broker.mqtt_port)
    try:
        subscriber.subscribe(topic, 1)
        before = Figures(broker)
        topic_before = exchange_stats(api, "amq.topic")
        assert publisher.publish(topic, b"m", qos=1).value == 0     # PUBACK: handled
        diff = Figures(broker).diff(before)
        # the PUBACK is a publisher confirm, as RabbitMQ's MQTT adapter counts it
        assert (diff["publish"], diff["confirm"]) == (1, 1), diff
        assert diff["rabbitmq_channel_messages_published_total"] == 1
        assert diff["rabbitmq_channel_messages_confirmed_total"] == 1
        assert "drop_unroutable" not in diff
        topic_after = exchange_stats(api, "amq.topic")
        assert topic_after["publish_in"] - topic_before["publish_in"] == 1
        assert topic_after["publish_out"] - topic_before["publish_out"] == 1
        assert subscriber.get().payload == b"m"

        before = Figures(broker)
        publisher.publish(topic, b"q0", qos=0)
        assert subscriber.get().payload == b"q0"                    # it went through
        assert publisher.publish(topic, b"q2", qos=2).value == 0    # PUBREC, PUBCOMP
        assert subscriber.get().payload == b"q2"
        diff = Figures(broker).diff(before)
        assert (diff["publish"], diff["confirm"]) == (2, 1), diff     # QoS 0: no confirm
    finally:
        subscriber.paho.disconnect()
        publisher.paho.disconnect()


def test_rates_are_real_while_traffic_flows(broker, api, amqp, unique):
    """Queue depth rates, counter rates, exchange in/out rates and the overview's queue
    totals rates: above 0 while messages keep arriving (and staying unacked)."""
    ex = unique + ".direct"
    amqp.exchange_declare(ex, "direct")
    amqp.queue_declare(unique)
    amqp.queue_bind(unique, ex, "k")
    amqp.basic_qos(prefetch_count=0)
    amqp.basic_consume(unique, lambda *a: None, auto_ack=False)   # holds what it gets
    ready = unique + ".ready"
    amqp.queue_declare(ready)
    amqp.queue_bind(ready, ex, "k")

    seen: dict[str, float] = {}

    def flowing() -> bool:
        amqp.basic_publish(ex, "k", b"m")
        amqp.connection.process_data_events(0)
        held = queue_stats(api, unique)
        waiting = queue_stats(api, ready)
        x = exchange_stats(api, ex)
        totals = api.get("/api/overview").json()
        vhost = api.get("/api/vhosts/%2F").json()
        seen.update({
            "messages": waiting["messages_details"]["rate"],
            "messages_ready": waiting["messages_ready_details"]["rate"],
            "messages_unacknowledged": held["messages_unacknowledged_details"]["rate"],
            "publish": waiting["message_stats"]["publish_details"]["rate"],
            "deliver": held["message_stats"]["deliver_details"]["rate"],
            "publish_in": x["publish_in_details"]["rate"],
            "publish_out": x["publish_out_details"]["rate"],
            "overview publish": totals["message_stats"]["publish_details"]["rate"],
            "overview messages": totals["queue_totals"]["messages_details"]["rate"],
            "vhost messages": vhost["messages_details"]["rate"],
            "vhost publish": vhost["message_stats"]["publish_details"]["rate"],
        })
        return all(v > 0 for v in seen.values())

    try:
        eventually(flowing, "every rate above 0", timeout=RATE_TIMEOUT, every=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; rates: {seen}") from None


def test_a_user_sees_its_vhosts_message_stats_and_totals_survive_a_deleted_vhost(
        broker, api, make_user, unique):
    """As RabbitMQ: monitoring and administrator users see the broker's message_stats, other
    users those of the vhosts they may use; a deleted vhost's counts stay in the broker's."""
    vhost = unique
    assert api.put(f"/api/vhosts/{quote(vhost, safe='')}").status_code in (201, 204)
    name, password = make_user("management", vhost=vhost)
    user_api = ApiClient(broker.http_url, auth=(name, password))

    def user_stats() -> dict:
        return user_api.get("/api/overview").json()["message_stats"]

    user_before, before = user_stats(), Figures(broker)
    params = pika.ConnectionParameters("127.0.0.1", broker.amqp_port, vhost,
                                       pika.PlainCredentials(name, password))
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(unique)
        for _ in range(2):
            ch.basic_publish("", unique, b"m")
    finally:
        conn.close()
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))   # guest, in /
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("", "no-such-queue-" + unique, b"m")
    finally:
        conn.close()
    user_after = user_stats()
    assert user_after["publish"] - user_before.get("publish", 0) == 2
    assert user_after["confirm"] - user_before.get("confirm", 0) == 2
    assert user_after.get("drop_unroutable", 0) == user_before.get("drop_unroutable", 0)
    diff = Figures(broker).diff(before)
    assert (diff["publish"], diff["confirm"], diff["drop_unroutable"]) == (3, 3, 1), diff
    own = api.get(f"/api/vhosts/{quote(vhost, safe='')}").json()
    assert (own["message_stats"]["publish"], own["message_stats"]["confirm"]) == (2, 2)
    assert own["messages"] == 2

    before = Figures(broker)
    assert api.delete(f"/api/vhosts/{quote(vhost, safe='')}").status_code == 204
    assert Figures(broker).diff(before) == {}            # nothing went down
