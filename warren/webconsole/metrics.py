"""/metrics: Prometheus text format, named as RabbitMQ's ``rabbitmq_prometheus`` plugin.

A custom collector reads the broker at each scrape (nothing is updated on the hot path), so
Grafana dashboards built for RabbitMQ work: aggregated totals (``rabbitmq_queues``,
``rabbitmq_connections``, ``rabbitmq_channel_messages_published_total``...) plus per-queue
series labelled ``vhost`` and ``queue`` as on RabbitMQ's ``/metrics/per-object`` (served on
both ``/metrics`` and ``/metrics/per-object`` here; a broker with very many queues can point
Prometheus at ``/metrics/aggregated``, which leaves them out). Warren's own series:
``warren_ha_role``, ``warren_store_fsync_seconds``, ``warren_journal_bytes`` and every figure
of the store's ``stats()`` as ``warren_store_<name>``.
"""

from __future__ import annotations

from typing import Any, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily,
                                    Metric)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector
from twisted.web import resource

from ..broker.definitions import PRODUCT_VERSION, WARREN_VERSION

#: counter name (without _total) -> MessageStats key, help text
CHANNEL_COUNTERS = (
    ("rabbitmq_channel_messages_published", "publish", "Total number of messages published "
     "into an exchange on a channel"),
    ("rabbitmq_channel_messages_confirmed", "confirm", "Total number of messages published "
     "into an exchange and confirmed on the channel"),
    ("rabbitmq_channel_messages_unroutable_dropped", "drop_unroutable", "Total number of "
     "messages published as non-mandatory into an exchange and dropped as unroutable"),
    ("rabbitmq_channel_messages_unroutable_returned", "return_unroutable", "Total number of "
     "messages published as mandatory into an exchange and returned to the publisher as "
     "unroutable"),
    ("rabbitmq_channel_messages_delivered_ack", "deliver", "Total number of messages delivered "
     "to consumers in manual acknowledgement mode"),
    ("rabbitmq_channel_messages_delivered", "deliver_no_ack", "Total number of messages "
     "delivered to consumers in automatic acknowledgement mode"),
    ("rabbitmq_channel_messages_redelivered", "redeliver", "Total number of messages "
     "redelivered to consumers"),
    ("rabbitmq_channel_messages_acked", "ack", "Total number of messages acknowledged by "
     "consumers"),
    ("rabbitmq_channel_get_ack", "get", "Total number of messages fetched with basic.get in "
     "manual acknowledgement mode"),
    ("rabbitmq_channel_get", "get_no_ack", "Total number of messages fetched with basic.get "
     "in automatic acknowledgement mode"),
)

#: every role a broker reports: HA brokers master/slave/waiting, the others standalone
HA_ROLES = ("master", "slave", "standalone", "waiting")


class BrokerCollector:
    """Reads the broker at scrape time; ``per_object`` adds the per-queue series."""

    def __init__(self, broker: Any, stats: Any, *, per_object: bool = True) -> None:
        self.broker = broker
        self.stats = stats
        self.per_object = per_object

    def collect(self) -> Iterable[Metric]:
        b = self.broker
        node = b.node_name
        info = InfoMetricFamily("rabbitmq_identity", "RabbitMQ node & cluster identity info")
        info.add_metric([], {"rabbitmq_node": node, "rabbitmq_cluster": node})
        yield info
        build = InfoMetricFamily("rabbitmq_build", "RabbitMQ & Erlang/OTP version info")
        build.add_metric([], {"rabbitmq_version": PRODUCT_VERSION, "product_name": "warren",
                              "product_version": WARREN_VERSION})
        yield build

        vhosts = list(b.vhosts.values())
        queues = [(vh.name, q) for vh in vhosts for q in list(vh.queues.values())]
        conns = list(b.connections.values())
        channels = 0
        for c in conns:
            try:
                channels += len(getattr(c, "channels", {}) or {})
            except TypeError:
                pass
        yield _gauge("rabbitmq_connections", "Connections currently open", len(conns))
        yield _gauge("rabbitmq_channels", "Channels currently open", channels)
        yield _gauge("rabbitmq_consumers", "Consumers currently connected",
                     sum(q.consumer_count for _, q in queues))
        yield _gauge("rabbitmq_queues", "Queues available", len(queues))
        yield _gauge("rabbitmq_queue_messages_ready", "Messages ready to be delivered to "
                     "consumers", None, per_queue=[(vh, q.name, q.message_count)
                                                   for vh, q in queues] if self.per_object
                     else None, total=sum(q.message_count for _, q in queues))
        yield _gauge("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but "
                     "not yet acknowledged", None,
                     per_queue=[(vh, q.name, q.unacked) for vh, q in queues]
                     if self.per_object else None,
                     total=sum(q.unacked for _, q in queues))
        yield _gauge("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages "
                     "(queue depth)", None,
                     per_queue=[(vh, q.name, q.message_count + q.unacked) for vh, q in queues]
                     if self.per_object else None,
                     total=sum(q.message_count + q.unacked for _, q in queues))
        yield _gauge("rabbitmq_queue_messages_ready_bytes", "Size in bytes of ready messages",
                     None, per_queue=[(vh, q.name, q.ready.bytes) for vh, q in queues]
                     if self.per_object else None,
                     total=sum(q.ready.bytes for _, q in queues))
        yield _gauge("rabbitmq_queue_messages_unacked_bytes", "Size in bytes of all "
                     "unacknowledged messages", None,
                     per_queue=[(vh, q.name, q.unacked_bytes) for vh, q in queues]
                     if self.per_object else None,
                     total=sum(q.unacked_bytes for _, q in queues))
        yield _gauge("rabbitmq_queue_consumers", "Consumers on a queue", None,
                     per_queue=[(vh, q.name, q.consumer_count) for vh, q in queues]
                     if self.per_object else None,
                     total=sum(q.consumer_count for _, q in queues))
        if self.per_object:
            c = CounterMetricFamily("rabbitmq_queue_messages_published",
                                    "Total number of messages published to queues",
                                    labels=["vhost", "queue"])
            for vh, q in queues:
                c.add_metric([vh, q.name], q.stats.get("publish", 0))
            yield c
        totals = self.stats.sample() if self.stats is not None else {}
        for name, key, doc in CHANNEL_COUNTERS:
            yield CounterMetricFamily(name, doc, value=totals.get(key, 0))

        yield _gauge("rabbitmq_resident_memory_limit_bytes",
                     "Memory high watermark in bytes", b.memory_high)
        yield _gauge("rabbitmq_alarms_memory_used_watermark",
                     "is 1 if VM memory watermark alarm is in effect", 1 if b.blocked else 0)
        role = GaugeMetricFamily("warren_ha_role", "HA role of this broker (1 for the role it "
                                 "has)", labels=["role"])
        current = getattr(b, "role", "standalone")
        for r in sorted(set(HA_ROLES) | {current}):
            role.add_metric([r], 1 if r == current else 0)
        yield role
        yield _gauge("warren_memory_used_bytes", "Bytes of message data held by queues",
                     b.memory_used)
        yield from _shovel_metrics(b)
        yield from _federation_metrics(b)
        yield from _connector_metrics(b)
        store_stats = {}
        if b.store is not None:
            try:
                store_stats = b.store.stats() or {}
            except Exception:
                store_stats = {}
        fsync = store_stats.get("journal_fsync_seconds", store_stats.get(
            "sql_last_commit_seconds"))
        if fsync is not None:
            yield _gauge("warren_store_fsync_seconds", "Duration of the store's last fsync "
                         "(journal) or commit (SQL), in seconds", float(fsync))
        if "journal_bytes" in store_stats:
            yield _gauge("warren_journal_bytes", "Bytes of journal segments on disk",
                         float(store_stats["journal_bytes"]))
        for key, value in sorted(store_stats.items()):
            name = "warren_store_" + "".join(ch if ch.isalnum() else "_" for ch in key)
            if name.endswith("_total"):
                yield CounterMetricFamily(name, f"store figure '{key}'", value=float(value))
            else:
                yield _gauge(name, f"store figure '{key}'", float(value))


SHOVEL_STATES = ("starting", "running", "blocked", "terminated")


def _shovel_metrics(broker: Any) -> Iterable[Metric]:
    """Per-shovel series (a broker runs few): state, messages moved, in flight, restarts."""
    component = broker.runtime_parameters.component("shovel")
    shovels = component.counters() if component is not None else []
    state = GaugeMetricFamily("warren_shovel_state", "Shovel state (1 for the state it is in)",
                              labels=["vhost", "shovel", "state"])
    moved = CounterMetricFamily("warren_shovel_messages_forwarded", "Messages a shovel moved "
                                "(confirmed by the destination with on-confirm)",
                                labels=["vhost", "shovel"])
    pending = GaugeMetricFamily("warren_shovel_messages_pending", "Messages published by a "
                                "shovel and not yet confirmed", labels=["vhost", "shovel"])
    restarts = CounterMetricFamily("warren_shovel_restarts", "Times a shovel restarted after a "
                                   "failure or on request", labels=["vhost", "shovel"])
    for s in shovels:
        labels = [s["vhost"], s["name"]]
        for name in sorted(set(SHOVEL_STATES) | {s["state"]}):
            state.add_metric(labels + [name], 1 if name == s["state"] else 0)
        moved.add_metric(labels, s["forwarded"])
        pending.add_metric(labels, s["pending"])
        restarts.add_metric(labels, s["restarts"])
    yield from (state, moved, pending, restarts)


FEDERATION_STATES = ("starting", "running", "error")


def _federation_metrics(broker: Any) -> Iterable[Metric]:
    """Per federation link (one per federated exchange or queue and upstream): state,
    messages brought into this broker, connection failures."""
    component = broker.runtime_parameters.component("federation-upstream")
    links = component.counters() if component is not None else []
    names = ["vhost", "type", "name", "upstream"]
    state = GaugeMetricFamily("warren_federation_link_state", "Federation link state (1 for "
                              "the state it is in)", labels=names + ["state"])
    moved = CounterMetricFamily("warren_federation_messages_forwarded", "Messages a "
                                "federation link published into this broker",
                                labels=names)
    failures = CounterMetricFamily("warren_federation_link_failures", "Connection attempts "
                                   "of a federation link that failed or were lost",
                                   labels=names)
    for link in links:
        labels = [link["vhost"], link["type"], link["name"], link["upstream"]]
        for name in sorted(set(FEDERATION_STATES) | {link["status"]}):
            state.add_metric(labels + [name], 1 if name == link["status"] else 0)
        moved.add_metric(labels, link["forwarded"])
        failures.add_metric(labels, link["failures"])
    yield from (state, moved, failures)


def _connector_metrics(broker: Any) -> Iterable[Metric]:
    """Per network connector of the config file: state, messages sent to the peer and
    brought from it (duplex), connection failures."""
    component = broker.runtime_parameters.component("network-connector")
    rows = component.counters() if component is not None else []
    names = ["name", "peer"]
    state = GaugeMetricFamily("warren_network_connector_state", "Network connector state "
                              "(1 for the state it is in)", labels=names + ["state"])
    out = CounterMetricFamily("warren_network_connector_messages_forwarded", "Messages a "
                              "network connector forwarded to its peer, confirmed",
                              labels=names)
    into = CounterMetricFamily("warren_network_connector_messages_received", "Messages a "
                               "duplex network connector brought from its peer",
                               labels=names)
    failures = CounterMetricFamily("warren_network_connector_failures", "Connection "
                                   "attempts of a network connector that failed or were lost",
                                   labels=names)
    for row in rows:
        labels = [row["name"], row["peer"]]
        for name in sorted(set(FEDERATION_STATES) | {row["status"]}):
            state.add_metric(labels + [name], 1 if name == row["status"] else 0)
        out.add_metric(labels, row["forwarded_out"])
        into.add_metric(labels, row["forwarded_in"])
        failures.add_metric(labels, row["failures"])
    yield from (state, out, into, failures)


def _gauge(name: str, doc: str, value: float | None, *, per_queue=None,
           total: float | None = None) -> GaugeMetricFamily:
    if per_queue is None:
        return GaugeMetricFamily(name, doc, value=value if value is not None else total)
    g = GaugeMetricFamily(name, doc, labels=["vhost", "queue"])
    for vh, qname, v in per_queue:
        g.add_metric([vh, qname], v)
    return g


class MetricsResource(resource.Resource):
    """GET /metrics (per-object), /metrics/per-object and /metrics/aggregated."""

    isLeaf = True

    def __init__(self, broker: Any, stats: Any) -> None:
        super().__init__()
        self.registries = {}
        for per_object in (True, False):
            reg = CollectorRegistry(auto_describe=False)
            reg.register(BrokerCollector(broker, stats, per_object=per_object))
            reg.register(ProcessCollector(registry=None))
            self.registries[per_object] = reg

    def render_GET(self, request) -> bytes:
        path = request.path.rstrip(b"/")
        if path not in (b"/metrics", b"/metrics/per-object", b"/metrics/aggregated"):
            request.setResponseCode(404)
            request.setHeader("content-type", "text/plain")
            return b"not found\n"
        reg = self.registries[path != b"/metrics/aggregated"]
        request.setHeader("content-type", CONTENT_TYPE_LATEST)
        return generate_latest(reg)
