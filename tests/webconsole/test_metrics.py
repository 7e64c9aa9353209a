"""/metrics parses as Prometheus text and carries rabbitmq_prometheus names and labels."""

from __future__ import annotations

import pika
import requests
from prometheus_client.parser import text_string_to_metric_families


def scrape(broker, path: str = "/metrics") -> dict[str, list]:
    r = requests.get(broker.http_url + path, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def value(samples, name: str, **labels) -> float:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_names_labels_and_values(broker, unique):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = conn.channel()
        ch.queue_declare(unique)
        for _ in range(3):
            ch.basic_publish("", unique, b"x")
        ch.basic_get(unique, auto_ack=False)   # one unacked, two ready
        ch.queue_declare(unique + "-dummy")     # round trip: the publishes are in
        m = scrape(broker)
        ready = m["rabbitmq_queue_messages_ready"]
        assert value(ready, "rabbitmq_queue_messages_ready", vhost="/", queue=unique) == 2
        assert value(m["rabbitmq_queue_messages_unacked"], "rabbitmq_queue_messages_unacked",
                     vhost="/", queue=unique) == 1
        assert value(m["rabbitmq_queue_messages"], "rabbitmq_queue_messages",
                     vhost="/", queue=unique) == 3
        assert value(m["rabbitmq_queue_consumers"], "rabbitmq_queue_consumers",
                     vhost="/", queue=unique) == 0
        assert value(m["rabbitmq_connections"], "rabbitmq_connections") >= 1
        assert value(m["rabbitmq_channels"], "rabbitmq_channels") >= 1
        assert value(m["rabbitmq_queues"], "rabbitmq_queues") >= 2
        assert "rabbitmq_consumers" in m
        assert value(m["rabbitmq_channel_messages_published"],
                     "rabbitmq_channel_messages_published_total") >= 3
        for counter in ("rabbitmq_channel_messages_delivered",
                        "rabbitmq_channel_messages_acked",
                        "rabbitmq_channel_get_ack"):
            assert counter + "_total" in {s.name for s in m[counter]}
        assert value(m["rabbitmq_channel_get_ack"], "rabbitmq_channel_get_ack_total") >= 1
        assert value(m["warren_ha_role"], "warren_ha_role", role="standalone") == 1
        assert value(m["warren_ha_role"], "warren_ha_role", role="master") == 0
        assert value(m["warren_journal_bytes"], "warren_journal_bytes") > 0
        assert "warren_store_fsync_seconds" in m
        assert value(m["rabbitmq_identity_info"], "rabbitmq_identity_info",
                     rabbitmq_node="warren@localhost") == 1
    finally:
        conn.close()


def test_aggregated_leaves_out_per_queue_series(broker):
    m = scrape(broker, "/metrics/aggregated")
    assert all(not s.labels for s in m["rabbitmq_queue_messages_ready"])
    assert scrape(broker, "/metrics/per-object").keys() == scrape(broker).keys()
