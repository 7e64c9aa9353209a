"""Message counters and rates for the management API and /metrics.

Every operation is counted where it happens, once, into its vhost's running totals
(``VirtualHost.message_totals``: the broker's are their sum, ``Broker.message_totals``, with
what deleted vhosts counted) and into the object it happened on: a publish by the publish
pipeline (``publish.py``, with the exchange's ``publish_in``/``publish_out``), a delivery, get
or ack by the queue (``Queue.stats``), a confirm by the front end as it writes it (an AMQP
channel's basic.ack, a STOMP SEND's RECEIPT, an accepting MQTT PUBACK/PUBREC: RabbitMQ's STOMP
and MQTT adapters answer those on publisher confirms, and count them so). Counting at the
moment of the operation is what makes a total right at any instant: the totals were once folded
from the live objects every few seconds, and what a connection or queue counted after the last
fold was lost when it went away (a publish followed by a disconnect read 0).

Rates are RabbitMQ's ``*_details.rate``: the change between the last two samples, per second.
:class:`MessageStats` samples on the broker's clock every ``interval`` seconds (RabbitMQ's
default ``collect_statistics_interval`` is 5 s): the totals, and per queue its counters and
depths, per exchange its in/out counts, per channel its counters. A rate needs two samples, so
it is 0 until the second one, as RabbitMQ's are.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterable


#: RabbitMQ's ``message_stats`` counters (overview, channels, queues), in its names
KEYS = ("publish", "confirm", "return_unroutable", "drop_unroutable", "deliver",
        "deliver_no_ack", "get", "get_no_ack", "get_empty", "ack", "redeliver")
#: what RabbitMQ adds up into ``deliver_get``: every message handed to a client
DELIVER_GET = ("deliver", "deliver_no_ack", "get", "get_no_ack")
#: a queue's depths, whose rates are ``messages_details`` etc.
DEPTHS = ("messages", "messages_ready", "messages_unacknowledged")


def new_counts() -> dict[str, int]:
    """A zeroed set of counters, for the broker's totals or one object's."""
    return dict.fromkeys(KEYS, 0)


def add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for k, v in counts.items():
        into[k] = into.get(k, 0) + v


def with_deliver_get(counts: dict[str, int]) -> dict[str, int]:
    out = dict(counts)
    out["deliver_get"] = sum(counts.get(k, 0) for k in DELIVER_GET)
    return out


def queue_depths(q: Any) -> dict[str, int]:
    ready, unacked = q.message_count, q.unacked
    return {"messages": ready + unacked, "messages_ready": ready,
            "messages_unacknowledged": unacked}


def with_rates(counts: dict[str, int], rates: dict[str, float],
               keys: Iterable[str] | None = None) -> dict[str, Any]:
    """RabbitMQ's shape: each counter with ``<name>_details: {"rate": r}``."""
    out: dict[str, Any] = {}
    for k in (keys if keys is not None else counts):
        out[k] = counts.get(k, 0)
        out[f"{k}_details"] = {"rate": rates.get(k, 0.0)}
    return out


#: what a sweep keeps of a queue: its depths and counters, in this order
QUEUE_FIGURES = DEPTHS + ("publish", "deliver", "deliver_no_ack", "get", "get_no_ack",
                          "get_empty", "ack", "redeliver")
EXCHANGE_FIGURES = ("publish_in", "publish_out")
#: objects read per reactor turn by a sweep
SWEEP_SLICE = 5000


class Sample:
    """What one sweep saw: when it began, the broker's and each vhost's totals then, the
    queue depth totals per vhost, and each queue's, exchange's and channel's figures as
    ``(time read, values)``."""

    __slots__ = ("time", "totals", "vhost_totals", "depths", "queues", "exchanges",
                 "channels")

    def __init__(self, time: float, totals: dict[str, int],
                 vhost_totals: dict[str, dict[str, int]]) -> None:
        self.time = time
        self.totals = totals
        self.vhost_totals = vhost_totals
        self.depths: dict[str, dict[str, int]] = {}
        self.queues: dict[tuple[str, str], tuple[float, tuple[int, ...]]] = {}
        self.exchanges: dict[tuple[str, str], tuple[float, tuple[int, ...]]] = {}
        self.channels: dict[str, tuple[float, dict[str, int]]] = {}


def _rate(a: dict[str, int] | None, b: dict[str, int] | None, dt: float) -> dict[str, float]:
    if a is None or b is None:
        return {}
    return {k: round((v - a.get(k, 0)) / dt, 1) for k, v in b.items()}


def _object_rates(a: tuple[float, Any] | None, b: tuple[float, Any] | None,
                  names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Rates of one object between two sweeps, over the time between its two readings."""
    if a is None or b is None:
        return {}
    dt = max(b[0] - a[0], 1e-9)
    if names is None:
        return _rate(a[1], b[1], dt)
    return {k: round((vb - va) / dt, 1) for k, va, vb in zip(names, a[1], b[1])}


class MessageStats:
    """Samples every ``interval`` seconds by a sweep that reads ``SWEEP_SLICE`` objects per
    reactor turn, so 100,000 queues never hold the reactor for a whole sweep."""

    def __init__(self, broker: Any, *, interval: float = 5.0, keep: int = 60) -> None:
        self.broker = broker
        self.clock = broker.clock
        self.interval = interval
        self.history: deque[Sample] = deque(maxlen=keep)   # finished sweeps, newest last
        self._call: Any = None

    def start(self) -> None:
        """The first sweep now, the next ones ``interval`` after each one's start."""
        self._sweep()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    @property
    def totals(self) -> dict[str, int]:
        """The broker's totals now, with ``deliver_get``."""
        return with_deliver_get(self.broker.message_totals)

    def vhost_totals(self, vhosts: Iterable[str]) -> dict[str, int]:
        """The totals of *vhosts* now, with ``deliver_get``: what a user who sees only those
        vhosts is shown, as RabbitMQ shows it."""
        totals = new_counts()
        for name in vhosts:
            vh = self.broker.vhosts.get(name)
            if vh is not None:
                add_counts(totals, vh.message_totals)
        return with_deliver_get(totals)

    # -- sampling ------------------------------------------------------------------------
    def _sweep(self) -> None:
        began = self.clock.seconds()
        items: list[tuple[str, Any]] = []
        for vh in list(self.broker.vhosts.values()):
            items.extend((vh.name, q) for q in vh.queues.values())
            items.extend((vh.name, ex) for ex in vh.exchanges.values())
        sample = Sample(began, self.totals, {
            name: dict(vh.message_totals) for name, vh in list(self.broker.vhosts.items())})
        for conn in list(self.broker.connections.values()):
            for name, counts in getattr(conn, "channel_counts", lambda: [])():
                sample.channels[name] = (began, with_deliver_get(counts))
        self._step(sample, items, 0)

    def _step(self, sample: Sample, items: list[tuple[str, Any]], start: int) -> None:
        end = min(start + SWEEP_SLICE, len(items))
        now = self.clock.seconds()
        for i in range(start, end):
            vhost, obj = items[i]
            if obj.kind == "queue":
                if obj.deleted:
                    continue
                ready, unacked = obj.message_count, obj.unacked
                st = obj.stats
                depths = sample.depths.get(vhost)
                if depths is None:
                    depths = sample.depths[vhost] = dict.fromkeys(DEPTHS, 0)
                depths["messages"] += ready + unacked
                depths["messages_ready"] += ready
                depths["messages_unacknowledged"] += unacked
                sample.queues[(vhost, obj.name)] = (now, (
                    ready + unacked, ready, unacked, st["publish"], st["deliver"],
                    st["deliver_no_ack"], st["get"], st["get_no_ack"], st["get_empty"],
                    st["ack"], st["redeliver"]))
            else:
                sample.exchanges[(vhost, obj.name)] = (now, (obj.published_in,
                                                             obj.published_out))
        if end < len(items):
            self._call = self.clock.callLater(0, self._step, sample, items, end)
            return
        self.history.append(sample)
        delay = max(0.0, sample.time + self.interval - self.clock.seconds())
        self._call = self.clock.callLater(delay, self._sweep)

    # -- rates ---------------------------------------------------------------------------
    def _last_two(self) -> tuple[Sample, Sample] | None:
        if len(self.history) < 2:
            return None
        return self.history[-2], self.history[-1]

    def rates(self, vhosts: Iterable[str] | None = None) -> dict[str, float]:
        """Rates of the broker's totals, or of those of *vhosts*."""
        last = self._last_two()
        if not last:
            return {}
        a, b = last
        if vhosts is None:
            return _rate(a.totals, b.totals, max(b.time - a.time, 1e-9))
        before, after = new_counts(), new_counts()
        for name in vhosts:
            if name in a.vhost_totals and name in b.vhost_totals:
                add_counts(before, a.vhost_totals[name])
                add_counts(after, b.vhost_totals[name])
        return _rate(with_deliver_get(before), with_deliver_get(after),
                     max(b.time - a.time, 1e-9))

    def depth_rates(self, vhosts: Iterable[str]) -> dict[str, float]:
        """Rates of the queue totals of *vhosts* (the overview's ``queue_totals``, of the
        vhosts its user may see)."""
        last = self._last_two()
        if not last:
            return {}
        a, b = last
        before, after = dict.fromkeys(DEPTHS, 0), dict.fromkeys(DEPTHS, 0)
        for vhost in vhosts:
            for total, sample in ((before, a), (after, b)):
                for k, v in sample.depths.get(vhost, {}).items():
                    total[k] += v
        return _rate(before, after, max(b.time - a.time, 1e-9))

    def queue_rates(self, vhost: str, name: str) -> dict[str, float]:
        """A queue's counter and depth rates (with ``deliver_get``); {} unless both of the
        last sweeps saw it."""
        last = self._last_two()
        if not last:
            return {}
        a, b = last
        rates = _object_rates(a.queues.get((vhost, name)), b.queues.get((vhost, name)),
                              QUEUE_FIGURES)
        if rates:
            rates["deliver_get"] = round(sum(rates[k] for k in DELIVER_GET), 1)
        return rates

    def exchange_rates(self, vhost: str, name: str) -> dict[str, float]:
        last = self._last_two()
        if not last:
            return {}
        a, b = last
        return _object_rates(a.exchanges.get((vhost, name)), b.exchanges.get((vhost, name)),
                             EXCHANGE_FIGURES)

    def channel_rates(self, name: str) -> dict[str, float]:
        last = self._last_two()
        if not last:
            return {}
        a, b = last
        return _object_rates(a.channels.get(name), b.channels.get(name))

    def message_stats(self, vhosts: Iterable[str] | None = None) -> dict[str, Any]:
        """The overview's ``message_stats``: the broker's totals now (or those of *vhosts*,
        for a user who sees only those), with the last rates."""
        if vhosts is None:
            return with_rates(self.totals, self.rates())
        names = list(vhosts)
        return with_rates(self.vhost_totals(names), self.rates(names))
