"""/metrics: Prometheus text format, named as RabbitMQ's ``rabbitmq_prometheus`` plugin.

A custom collector reads the broker at each scrape (the message counters are the integers each
operation adds to, ``broker/stats.py``), so Grafana dashboards built for RabbitMQ work. As
rabbitmq_prometheus:

* ``/metrics`` is aggregated: totals (``rabbitmq_queues``, ``rabbitmq_queue_messages_ready``
  without labels, ``rabbitmq_connections``, ``rabbitmq_channel_messages_published_total``...),
  its text and its cost the same whatever the number of queues: the queue totals come from a
  sweep every 5 s done a slice of queues per reactor turn (``QueueTotals``), so they may be
  that old, as RabbitMQ's are; ``/metrics/aggregated`` is the same;
* ``/metrics/per-object`` adds the per-queue series labelled ``vhost`` and ``queue`` (what
  dashboards with per-queue panels must scrape), written a slice of queues per step
  (``metrics_slices.py``), as is ``/metrics/detailed``;
* ``/metrics/detailed?family=queue_coarse_metrics&vhost=/`` gives only the families asked for
  (``queue_coarse_metrics``, ``queue_consumer_count``, ``queue_metrics``,
  ``queue_delivery_metrics``; ``family`` and ``vhost`` may repeat) with the
  ``rabbitmq_detailed_`` prefix, for the vhosts asked for (all when none).

Warren's own series: ``warren_ha_role``, ``warren_store_fsync_seconds``,
``warren_journal_bytes`` and every figure of the store's ``stats()`` as ``warren_store_<name>``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily,
                                    Metric)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector
from twisted.web import resource
from twisted.web.server import NOT_DONE_YET

from ..broker.broker import Broker
from ..broker.definitions import PRODUCT_VERSION, WARREN_VERSION
from ..model.errors import AccessRefused
from ..endpoint import is_loopback
from .metrics_slices import (SLICE, SlicedResponse, Series, families_chunk, queue_chunks,
                             sliced_cooperator)

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
    ("rabbitmq_channel_get_empty", "get_empty", "Total number of times basic.get operations "
     "fetched no message"),
)

#: every role a broker reports: HA brokers master/slave/waiting, the others standalone
HA_ROLES = ("master", "slave", "standalone", "waiting")


class BrokerCollector:
    """Reads the broker at scrape time. ``per_object``: without any queue series, which
    ``per_object_chunks`` writes after this collector's text, a slice at a time."""

    def __init__(self, broker: Broker, *, per_object: bool = True,
                 totals: "QueueTotals | None" = None) -> None:
        self.broker = broker
        self.per_object = per_object
        self.totals = totals or QueueTotals(broker)

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

        conns = list(b.connections.values())
        channels = 0
        for c in conns:
            try:
                channels += len(getattr(c, "channels", {}) or {})
            except TypeError:
                pass
        yield _gauge("rabbitmq_connections", "Connections currently open", len(conns))
        yield _gauge("rabbitmq_channels", "Channels currently open", channels)
        if not self.per_object:
            yield from self._aggregated_queues()
        totals = b.message_totals             # counted as they happen (broker/stats.py)
        for name, key, doc in CHANNEL_COUNTERS:
            yield CounterMetricFamily(name, doc, value=totals.get(key, 0))

        yield _gauge("rabbitmq_resident_memory_limit_bytes",
                     "Memory high watermark in bytes", b.memory_high)
        yield _gauge("rabbitmq_alarms_memory_used_watermark",
                     "is 1 if VM memory watermark alarm is in effect", 1 if b.blocked else 0)
        yield _gauge("rabbitmq_alarms_free_disk_space_watermark",
                     "is 1 if free disk space watermark alarm is in effect",
                     1 if b.disk_alarm else 0)
        if b.disk_monitor is not None and b.disk_monitor.free is not None:
            yield _gauge("rabbitmq_disk_space_available_bytes",
                         "Disk space available in bytes", b.disk_monitor.free)
            yield _gauge("rabbitmq_disk_space_available_limit_bytes",
                         "Free disk space low watermark in bytes", b.disk_monitor.limit)
        role = GaugeMetricFamily("warren_ha_role", "HA role of this broker (1 for the role it "
                                 "has)", labels=["role"])
        current = getattr(b, "role", "standalone")
        _add_state(role, [], HA_ROLES, current)
        yield role
        yield _gauge("warren_memory_used_bytes", "Bytes of message data held by queues",
                     b.memory_used)
        # paging (broker/paging.py): the budget, what it bounds, and the paged-out rows
        yield _gauge("warren_paging_budget_bytes", "Budget for messages kept in memory",
                     b.pager.budget)
        yield _gauge("warren_paging_resident_bytes", "Accounted bytes of messages kept in "
                     "memory (bodies and per-message overhead)", b.pager.resident)
        yield _gauge("warren_paging_index_bytes", "Accounted bytes of the rows of paged-out "
                     "messages", b.index_bytes)
        for series in BRIDGE_SERIES:
            yield from _bridge_metrics(b, series)
        store_stats: dict[str, float] = {}
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


    def _aggregated_queues(self) -> Iterable[Metric]:
        """Totals over all queues from the last sweep of ``QueueTotals``: a scrape costs the
        same whatever the number of queues (as rabbitmq_prometheus reads aggregates the
        broker collected every few seconds). The number of queues is exact."""
        n = sum(len(vh.queues) for vh in list(self.broker.vhosts.values()))
        totals = self.totals.read()
        yield _gauge("rabbitmq_consumers", "Consumers currently connected", totals["consumers"])
        yield _gauge("rabbitmq_queues", "Queues available", n)
        for _family, name, doc, _get in QUEUE_SERIES:
            if name in totals:
                yield _gauge("rabbitmq_queue_" + name, doc, totals[name])


class QueueTotals:
    """Sums of every queue's figures, refreshed by a sweep every ``interval`` seconds that
    walks the queues ``SWEEP_SLICE`` per reactor turn, so neither a scrape nor the sweep holds
    the reactor for long with 100,000 queues. The first ``read`` sums at once; sweeps run
    from then on."""

    def __init__(self, broker: Broker, interval: float = 5.0) -> None:
        self.broker = broker
        self.clock = broker.clock
        self.interval = interval
        self._totals: dict[str, int] | None = None
        self._call = None

    def read(self) -> dict[str, int]:
        if self._totals is None:
            queues = [q for vh in list(self.broker.vhosts.values()) for q in vh.queues.values()]
            acc = _zero()
            _add(acc, queues, 0, len(queues))
            self._totals = acc
            self._call = self.clock.callLater(self.interval, self._sweep)
        return self._totals

    def _sweep(self) -> None:
        queues = [q for vh in list(self.broker.vhosts.values()) for q in vh.queues.values()]
        self._step(queues, 0, _zero())

    def _step(self, queues: list[Any], start: int, acc: dict[str, int]) -> None:
        end = min(start + SWEEP_SLICE, len(queues))
        _add(acc, queues, start, end)
        if end < len(queues):
            self._call = self.clock.callLater(0, self._step, queues, end, acc)
            return
        self._totals = acc
        self._call = self.clock.callLater(self.interval, self._sweep)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


SWEEP_SLICE = 5000


def _zero() -> dict[str, int]:
    return dict.fromkeys(("messages_ready", "messages_unacked", "messages",
                          "messages_ready_bytes", "messages_unacked_bytes", "messages_bytes",
                          "consumers", "messages_redelivery_held", "messages_ram",
                          "messages_ram_bytes", "messages_paged_out",
                          "messages_paged_out_bytes"), 0)


def _add(acc: dict[str, int], queues: list[Any], start: int, end: int) -> None:
    consumers = ready = unacked = ready_bytes = unacked_bytes = held = paged = paged_bytes = 0
    for i in range(start, end):
        q = queues[i]
        if q.deleted:
            continue
        consumers += len(q.consumers)
        ready += q.message_count
        held += len(q.held)
        unacked += q.unacked
        ready_bytes += q.ready.bytes + q.held.bytes
        unacked_bytes += q.unacked_bytes
        paged += q.ready.paged
        paged_bytes += q.ready.paged_bytes
    acc["consumers"] += consumers
    acc["messages_ready"] += ready
    acc["messages_redelivery_held"] += held
    acc["messages_unacked"] += unacked
    acc["messages"] += ready + unacked
    acc["messages_ready_bytes"] += ready_bytes
    acc["messages_unacked_bytes"] += unacked_bytes
    acc["messages_bytes"] += ready_bytes + unacked_bytes
    acc["messages_ram"] += ready + unacked - paged
    acc["messages_ram_bytes"] += ready_bytes + unacked_bytes - paged_bytes
    acc["messages_paged_out"] += paged
    acc["messages_paged_out_bytes"] += paged_bytes


#: (rabbitmq_prometheus family, series name after ``<prefix>queue_``, help, value of a queue)
QUEUE_SERIES = (
    ("queue_coarse_metrics", "messages_ready", "Messages ready to be delivered to consumers",
     lambda q: q.message_count),
    ("queue_coarse_metrics", "messages_unacked", "Messages delivered to consumers but not yet "
     "acknowledged", lambda q: q.unacked),
    ("queue_coarse_metrics", "messages", "Sum of ready and unacknowledged messages (queue "
     "depth)", lambda q: q.message_count + q.unacked),
    ("queue_consumer_count", "consumers", "Consumers on a queue", lambda q: q.consumer_count),
    ("queue_metrics", "messages_ready_bytes", "Size in bytes of ready messages",
     lambda q: q.ready.bytes + q.held.bytes),
    ("queue_metrics", "messages_unacked_bytes", "Size in bytes of all unacknowledged messages",
     lambda q: q.unacked_bytes),
    ("queue_metrics", "messages_bytes", "Size in bytes of ready and unacknowledged messages",
     lambda q: q.ready.bytes + q.held.bytes + q.unacked_bytes),
    # paging (``broker/paging.py``): rabbitmq_prometheus's names; "in memory" counts the
    # window at each queue's head, whose bodies are read back in batches ahead of delivery
    ("queue_metrics", "messages_ram", "Ready and unacknowledged messages kept in memory",
     lambda q: q.message_count + q.unacked - q.ready.paged),
    ("queue_metrics", "messages_ram_bytes", "Bytes of the ready and unacknowledged messages "
     "kept in memory", lambda q: q.ready.bytes + q.held.bytes + q.unacked_bytes
     - q.ready.paged_bytes),
    ("queue_metrics", "messages_ready_ram", "Ready messages kept in memory",
     lambda q: q.message_count - q.ready.paged),
    ("queue_metrics", "messages_unacked_ram", "Unacknowledged messages kept in memory",
     lambda q: q.unacked),
    ("queue_metrics", "messages_paged_out", "Messages paged out to the store",
     lambda q: q.ready.paged),
    ("queue_metrics", "messages_paged_out_bytes", "Bytes of the messages paged out to the "
     "store", lambda q: q.ready.paged_bytes),
    # warren's: ready messages held back by the queue's redelivery back-off (ActiveMQ's
    # redelivery policy), and the effective delivery limit (absent when none)
    ("queue_metrics", "messages_redelivery_held", "Returned messages held back for their "
     "redelivery delay (included in messages_ready)", lambda q: len(q.held)),
)
#: the families of /metrics/per-object
QUEUE_FAMILIES = frozenset({"queue_coarse_metrics", "queue_consumer_count", "queue_metrics"})
DETAILED_FAMILIES = QUEUE_FAMILIES | {"queue_delivery_metrics"}


_QUEUE_LABELS = ["vhost", "queue"]


def queue_series(prefix: str, families: frozenset[str] | set[str]) -> list[Series]:
    """The per-queue series (labelled vhost and queue) of the families asked for."""
    out: list[Series] = [
        (partial(GaugeMetricFamily, prefix + "queue_" + name, doc, labels=_QUEUE_LABELS), get)
        for family, name, doc, get in QUEUE_SERIES if family in families]
    if "queue_delivery_metrics" in families or prefix == "rabbitmq_":
        out.append((partial(CounterMetricFamily, prefix + "queue_messages_published",
                            "Total number of messages published to queues",
                            labels=_QUEUE_LABELS),
                    lambda q: q.stats.get("publish", 0)))
    return out


def _queues(broker: Any, vhosts: set[str] | None = None) -> list[tuple[str, Any]]:
    """(vhost, queue) of every queue, or of the queues of *vhosts*; a list of references
    (100,000 queues: a few milliseconds), so the slices walk what the scrape began with."""
    return [(vh.name, q) for vh in list(broker.vhosts.values())
            if not vhosts or vh.name in vhosts for q in list(vh.queues.values())]


def per_object_chunks(head: bytes, broker: Any) -> Iterator[bytes]:
    """``/metrics/per-object``: *head* (the broker's other series), then every queue's, then
    the consumers' total and the streams' series, a slice of queues per chunk."""
    yield head
    queues = _queues(broker)
    yield families_chunk((_gauge("rabbitmq_queues", "Queues available", len(queues)),))
    yield from queue_chunks(queues, queue_series("rabbitmq_", QUEUE_FAMILIES))
    consumers = 0
    streams = []
    for start in range(0, len(queues), SLICE):
        for pair in queues[start:start + SLICE]:
            q = pair[1]
            if not q.deleted:
                consumers += q.consumer_count
                if q.own_log:
                    streams.append(pair)
        yield b""
    yield families_chunk((_gauge("rabbitmq_consumers", "Consumers currently connected",
                                 consumers), *_stream_metrics(streams)))


def detailed_chunks(broker: Any, families: set[str], vhosts: set[str]) -> Iterator[bytes]:
    """``/metrics/detailed?family=F&vhost=V``: only the families asked for (``family`` may be
    repeated), only the queues of the vhosts asked for (all when none), with the
    ``rabbitmq_detailed_`` prefix, as rabbitmq_prometheus."""
    node = broker.node_name
    info = InfoMetricFamily("rabbitmq_identity", "RabbitMQ node & cluster identity info")
    info.add_metric([], {"rabbitmq_node": node, "rabbitmq_cluster": node,
                         "rabbitmq_endpoint": "detailed"})
    yield families_chunk((info,))
    wanted = families & DETAILED_FAMILIES
    if wanted:
        yield from queue_chunks(_queues(broker, vhosts),
                                queue_series("rabbitmq_detailed_", wanted))


def _stream_metrics(queues: list[tuple[str, Any]]) -> Iterable[Metric]:
    """Per stream (``/metrics/per-object``): where its log starts and ends, its size and
    segments, and each consumer's next offset and how far behind the end it is."""
    labels = ["vhost", "queue"]
    families = {key: GaugeMetricFamily(f"warren_stream_{key}", doc, labels=labels)
                for key, doc in (("first_offset", "Oldest offset still in the stream"),
                                 ("last_offset", "Newest offset in the stream (-1: empty)"),
                                 ("size_bytes", "Bytes of the stream's segment files"),
                                 ("segments", "Segment files of the stream"))}
    offset = GaugeMetricFamily("warren_stream_consumer_offset", "Next offset a stream "
                               "consumer reads", labels=[*labels, "consumer"])
    lag = GaugeMetricFamily("warren_stream_consumer_lag", "Messages appended to the stream "
                            "that a consumer has not read yet", labels=[*labels, "consumer"])
    for vhost, q in queues:
        if not q.own_log:
            continue
        info = q.stream_info()
        for key, family in families.items():
            family.add_metric([vhost, q.name], info[key])
        for tag, next_offset in info["consumer_offsets"].items():
            offset.add_metric([vhost, q.name, tag], next_offset)
            lag.add_metric([vhost, q.name, tag], max(0, info["last_offset"] + 1 - next_offset))
    yield from families.values()
    yield offset
    yield lag


def _add_state(family: GaugeMetricFamily, labels: list[str], known: Iterable[str],
               current: str) -> None:
    """One series per state a link can be in (and the one it is in, if unforeseen): 1 for
    the current state, 0 for the others, so a dashboard sees the state change, not a gap."""
    for name in sorted(set(known) | {current}):
        family.add_metric(labels + [name], 1 if name == current else 0)


@dataclass(frozen=True)
class BridgeSeries:
    """The /metrics series of one kind of bridge (shovels, federation links, network
    connectors): one set per entry of its runtime-parameter component's ``counters()``."""

    component: str                       # the runtime-parameter component that runs them
    labels: tuple[tuple[str, str], ...]  # (label, counters key) naming one bridge
    state: tuple[str, str, str]          # (metric, help, counters key) of its state gauge
    states: tuple[str, ...]              # the states it may be in (each gets a series)
    values: tuple[tuple[str, str, str, str], ...]   # (metric, help, counters key, kind)


FEDERATION_STATES = ("starting", "running", "error")

BRIDGE_SERIES = (
    BridgeSeries(
        "shovel", (("vhost", "vhost"), ("shovel", "name")),
        ("warren_shovel_state", "Shovel state (1 for the state it is in)", "state"),
        ("starting", "running", "blocked", "terminated"),
        (("warren_shovel_messages_forwarded", "Messages a shovel moved (confirmed by the "
          "destination with on-confirm)", "forwarded", "counter"),
         ("warren_shovel_messages_pending", "Messages published by a shovel and not yet "
          "confirmed", "pending", "gauge"),
         ("warren_shovel_restarts", "Times a shovel restarted after a failure or on request",
          "restarts", "counter"))),
    # one per federated exchange or queue and upstream
    BridgeSeries(
        "federation-upstream",
        (("vhost", "vhost"), ("type", "type"), ("name", "name"), ("upstream", "upstream")),
        ("warren_federation_link_state", "Federation link state (1 for the state it is in)",
         "status"),
        FEDERATION_STATES,
        (("warren_federation_messages_forwarded", "Messages a federation link published into "
          "this broker", "forwarded", "counter"),
         ("warren_federation_link_failures", "Connection attempts of a federation link that "
          "failed or were lost", "failures", "counter"))),
    # one per [[network]] table of the config file
    BridgeSeries(
        "network-connector", (("name", "name"), ("peer", "peer")),
        ("warren_network_connector_state", "Network connector state (1 for the state it is "
         "in)", "status"),
        FEDERATION_STATES,
        (("warren_network_connector_messages_forwarded", "Messages a network connector "
          "forwarded to its peer, confirmed", "forwarded_out", "counter"),
         ("warren_network_connector_messages_received", "Messages a duplex network connector "
          "brought from its peer", "forwarded_in", "counter"),
         ("warren_network_connector_failures", "Connection attempts of a network connector "
          "that failed or were lost", "failures", "counter"))),
)


def _bridge_metrics(broker: Broker, series: BridgeSeries) -> Iterable[Metric]:
    """A broker runs few bridges: each gets its own series."""
    component = broker.runtime_parameters.running(series.component)
    rows = component.counters() if component is not None else []
    names = [label for label, _key in series.labels]
    metric, doc, state_key = series.state
    state = GaugeMetricFamily(metric, doc, labels=names + ["state"])
    values = [(GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(
        metric, doc, labels=names) for metric, doc, _key, kind in series.values]
    for row in rows:
        labels = [row[key] for _label, key in series.labels]
        _add_state(state, labels, series.states, row[state_key])
        for family, (_metric, _doc, key, _kind) in zip(values, series.values):
            family.add_metric(labels, row[key])
    yield state
    yield from values


def _gauge(name: str, doc: str, value: float | None, *, per_queue=None,
           total: float | None = None) -> GaugeMetricFamily:
    if per_queue is None:
        return GaugeMetricFamily(name, doc, value=value if value is not None else total)
    g = GaugeMetricFamily(name, doc, labels=["vhost", "queue"])
    for vh, qname, v in per_queue:
        g.add_metric([vh, qname], v)
    return g


class MetricsResource(resource.Resource):
    """GET /metrics (aggregated: cost independent of the number of queues), /metrics/per-object
    (every queue's series), /metrics/detailed?family=...&vhost=..., as rabbitmq_prometheus.
    ``/metrics/aggregated`` is kept as another name of ``/metrics``."""

    isLeaf = True

    def __init__(self, broker: Broker, *, require_auth: bool = False) -> None:
        super().__init__()
        self.broker = broker
        self.require_auth = require_auth   # as prometheus.authentication.enabled
        self.registries = {}
        self.totals = QueueTotals(broker)
        self.cooperator = sliced_cooperator(broker.clock)
        for per_object in (True, False):
            reg = CollectorRegistry(auto_describe=False)
            reg.register(BrokerCollector(broker, per_object=per_object,
                                         totals=self.totals))
            reg.register(ProcessCollector(registry=None))
            self.registries[per_object] = reg

    def render_GET(self, request) -> Any:
        if self.require_auth and not self._authenticated(request):
            request.setResponseCode(401)
            request.setHeader("www-authenticate", 'Basic realm="RabbitMQ Prometheus"')
            request.setHeader("content-type", "text/plain")
            return b"authentication required\n"
        path = request.path.rstrip(b"/")
        if path == b"/metrics/detailed":
            args = request.args or {}
            families = {f.decode("utf-8", "replace") for f in args.get(b"family", [])}
            vhosts = {v.decode("utf-8", "replace") for v in args.get(b"vhost", [])}
            chunks = detailed_chunks(self.broker, families, vhosts)
        elif path in (b"/metrics", b"/metrics/aggregated"):
            request.setHeader("content-type", CONTENT_TYPE_LATEST)
            return generate_latest(self.registries[False])
        elif path == b"/metrics/per-object":
            chunks = per_object_chunks(generate_latest(self.registries[True]), self.broker)
        else:
            request.setResponseCode(404)
            request.setHeader("content-type", "text/plain")
            return b"not found\n"
        request.setHeader("content-type", CONTENT_TYPE_LATEST)
        SlicedResponse(request, chunks, self.cooperator)
        return NOT_DONE_YET

    def _authenticated(self, request) -> bool:
        """HTTP Basic with any user of the broker (loopback-only users from loopback)."""
        header = request.getHeader("authorization") or ""
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip(),
                                                 validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        host = getattr(request.getClientAddress(), "host", "") or ""
        try:
            self.broker.authenticate(user, password, loopback=is_loopback(host))
        except AccessRefused:
            return False
        return True
