"""/metrics parses as Prometheus text and carries rabbitmq_prometheus names and labels:
aggregated on /metrics, per queue on /metrics/per-object, by family and vhost on
/metrics/detailed."""

from __future__ import annotations

import socket

import pika
import requests
from prometheus_client.parser import text_string_to_metric_families

from warren.webconsole.metrics_slices import SLICE


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
        m = scrape(broker, "/metrics/per-object")
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


def test_metrics_is_aggregated_and_its_size_does_not_grow_with_queues(broker, unique):
    def lines() -> list[str]:
        r = requests.get(broker.http_url + "/metrics", timeout=30)
        assert r.status_code == 200
        return [x for x in r.text.splitlines() if x.startswith("rabbitmq_")]

    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = conn.channel()
        ch.queue_declare(unique + "-0")
        ch.basic_publish("", unique + "-0", b"x")
        before = lines()
        m = scrape(broker)
        for name in ("rabbitmq_queue_messages_ready", "rabbitmq_queue_messages",
                     "rabbitmq_queue_consumers", "rabbitmq_queue_messages_unacked"):
            assert [s.labels for s in m[name]] == [{}], name   # one total, no queue label
        queues = value(m["rabbitmq_queues"], "rabbitmq_queues")
        for i in range(1, 31):
            ch.queue_declare(f"{unique}-{i}")
        after = lines()
        assert value(scrape(broker)["rabbitmq_queues"], "rabbitmq_queues") == queues + 30
        assert len(after) == len(before)
        per_object = scrape(broker, "/metrics/per-object")
        named = {s.labels.get("queue") for s in per_object["rabbitmq_queue_messages_ready"]}
        assert {f"{unique}-{i}" for i in range(31)} <= named
        assert scrape(broker, "/metrics/aggregated").keys() == scrape(broker).keys()
    finally:
        conn.close()


def test_detailed_gives_the_families_and_vhosts_asked_for(broker, unique):
    api = requests.Session()
    api.auth = ("guest", "guest")
    vhost = unique.replace(".", "-")
    assert api.put(f"{broker.http_url}/api/vhosts/{vhost}", timeout=30).status_code in (201, 204)
    try:
        assert api.put(f"{broker.http_url}/api/permissions/{vhost}/guest",
                       json={"configure": ".*", "write": ".*", "read": ".*"},
                       timeout=30).status_code in (201, 204)
        for vh, name in (("%2F", unique + "-root"), (vhost, unique + "-other")):
            r = api.put(f"{broker.http_url}/api/queues/{vh}/{name}", json={}, timeout=30)
            assert r.status_code in (201, 204), r.text
        m = scrape(broker, f"/metrics/detailed?family=queue_coarse_metrics&vhost={vhost}")
        assert "rabbitmq_detailed_queue_messages_ready" in m
        assert "rabbitmq_detailed_queue_consumers" not in m        # another family
        assert "rabbitmq_queue_messages_ready" not in m            # not the aggregated ones
        assert "rabbitmq_connections" not in m
        queues = {(s.labels["vhost"], s.labels["queue"])
                  for s in m["rabbitmq_detailed_queue_messages_ready"]}
        assert queues == {(vhost, unique + "-other")}
        m = scrape(broker, "/metrics/detailed?family=queue_consumer_count"
                           "&family=queue_metrics&vhost=/")
        assert "rabbitmq_detailed_queue_consumers" in m
        assert "rabbitmq_detailed_queue_messages_ready_bytes" in m
        assert "rabbitmq_detailed_queue_messages_ready" not in m
        named = {s.labels["queue"] for s in m["rabbitmq_detailed_queue_consumers"]}
        assert unique + "-root" in named and unique + "-other" not in named
        m = scrape(broker, "/metrics/detailed")    # no family: identity only
        assert not any(k.startswith("rabbitmq_detailed_") for k in m)
    finally:
        api.delete(f"{broker.http_url}/api/vhosts/{vhost}", timeout=30)


def test_aggregated_totals_follow_the_queues(broker, unique):
    """The totals come from a periodic sweep: a published message shows up within a sweep
    (a bounded poll: each try is one scrape)."""
    import time

    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = conn.channel()
        ch.queue_declare(unique)
        before = value(scrape(broker)["rabbitmq_queue_messages_ready"],
                       "rabbitmq_queue_messages_ready")
        for _ in range(5):
            ch.basic_publish("", unique, b"x")
        ch.queue_declare(unique, passive=True)   # a round trip: the publishes are in
        deadline = time.monotonic() + 60
        while True:
            ready = value(scrape(broker)["rabbitmq_queue_messages_ready"],
                          "rabbitmq_queue_messages_ready")
            if ready >= before + 5 or time.monotonic() > deadline:
                break
        assert ready >= before + 5
    finally:
        conn.close()


def test_per_queue_series_written_in_slices_are_whole(broker, api, unique):
    """/metrics/per-object and /metrics/detailed are written a slice of queues per step
    (``metrics_slices.SLICE``): over several slices each family still comes once with every
    queue once, and a queue name with a quote, a backslash and a newline is escaped as
    prometheus_client escapes it."""
    vhost = unique.replace(".", "-")
    assert api.put(f"/api/vhosts/{vhost}").status_code in (201, 204)
    try:
        odd = 'odd "name" \\ and\nnewline'
        names = [f"q-{i}" for i in range(2 * SLICE + 1)] + [odd]
        r = api.post(f"/api/definitions/{vhost}", {"queues": [
            {"name": n, "durable": False, "auto_delete": False, "arguments": {}}
            for n in names]}, timeout=120)
        assert r.status_code == 204, r.text
        r = api.post(f"/api/exchanges/{vhost}/amq.default/publish",
                     {"properties": {}, "routing_key": odd, "payload": "x",
                      "payload_encoding": "string"})
        assert r.json() == {"routed": True}
        for path, series in (("/metrics/per-object", "rabbitmq_queue_messages_ready"),
                             (f"/metrics/detailed?family=queue_coarse_metrics&vhost={vhost}",
                              "rabbitmq_detailed_queue_messages_ready")):
            text = requests.get(broker.http_url + path, timeout=60).text
            assert text.count(f"# TYPE {series} gauge\n") == 1
            samples = {f.name: f.samples
                       for f in text_string_to_metric_families(text)}[series]
            ours = [s.labels["queue"] for s in samples if s.labels["vhost"] == vhost]
            assert sorted(ours) == sorted(names)
            assert value(samples, series, vhost=vhost, queue=odd) == 1
    finally:
        api.delete(f"/api/vhosts/{vhost}")


def test_a_scrape_left_half_read_ends_quietly(broker):
    """A client that closes while /metrics/per-object is being written stops the writing;
    the broker answers the next scrape and logs no traceback."""
    with socket.create_connection(("127.0.0.1", broker.http_port), timeout=30) as sock:
        sock.sendall(b"GET /metrics/per-object HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    assert "rabbitmq_queues" in scrape(broker, "/metrics/per-object")
    assert not [line for line in broker.lines if "Traceback" in line or "Unhandled" in line]


def test_per_queue_text_is_prometheus_clients():
    """The per-queue samples, written by ``metrics_slices`` itself for speed, are byte for
    byte what prometheus_client's generate_latest writes for the same families (labels
    sorted and escaped, values as Go prints floats), for odd names and big values too."""
    from twisted.internet.task import Clock

    from warren.amqp.properties import CODEC
    from warren.broker.broker import Broker
    from warren.webconsole.metrics import QUEUE_FAMILIES, queue_series
    from warren.webconsole.metrics_slices import families_chunk, queue_chunks

    core = Broker(clock=Clock(), codec=CODEC)
    core.ensure_defaults()
    vh = core.vhost("/")
    for name in [f"q{i}" for i in range(SLICE + 3)] + ['odd "n" \\ x\ny', "ünï", "a=b,c}"]:
        vh.declare_queue(name)
    vh.queues["q1"].stats["publish"] = 1_234_567      # printed as 1.234567e+06
    queues = [("/", q) for q in vh.queues.values()]
    series = queue_series("rabbitmq_", QUEUE_FAMILIES)
    reference = []
    for new, get in series:
        family = new()
        for vhost, q in queues:
            family.add_metric([vhost, q.name], get(q))
        reference.append(family)
    assert b"".join(queue_chunks(queues, series)) == families_chunk(reference)
