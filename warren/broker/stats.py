"""Message counters and rates for the management API and /metrics.

Every operation is counted where it happens, once, into the broker's running totals
(``Broker.message_totals``) and into the object it happened on: a publish by the publish
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

from twisted.internet import task

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


class Sample:
    """What one tick saw: when, the totals, and each queue's, exchange's and channel's
    figures keyed by (vhost, name) or the channel's name."""

    __slots__ = ("time", "totals", "depths", "queues", "exchanges", "channels")

    def __init__(self, time: float, totals: dict[str, int], depths: dict[str, int],
                 queues: dict[tuple[str, str], dict[str, int]],
                 exchanges: dict[tuple[str, str], dict[str, int]],
                 channels: dict[str, dict[str, int]]) -> None:
        self.time = time
        self.totals = totals
        self.depths = depths
        self.queues = queues
        self.exchanges = exchanges
        self.channels = channels


def _rate(a: dict[str, int] | None, b: dict[str, int] | None, dt: float) -> dict[str, float]:
    if a is None or b is None:
        return {}
    return {k: round((v - a.get(k, 0)) / dt, 1) for k, v in b.items()}


class MessageStats:
    def __init__(self, broker: Any, *, interval: float = 5.0, keep: int = 60) -> None:
        self.broker = broker
        self.interval = interval
        self.history: deque[Sample] = deque(maxlen=keep)   # periodic samples, newest last
        self._loop: task.LoopingCall | None = None

    def start(self) -> None:
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self.broker.clock
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    @property
    def totals(self) -> dict[str, int]:
        """The broker's totals now, with ``deliver_get``."""
        return with_deliver_get(self.broker.message_totals)

    # -- sampling ------------------------------------------------------------------------
    def tick(self) -> None:
        queues: dict[tuple[str, str], dict[str, int]] = {}
        exchanges: dict[tuple[str, str], dict[str, int]] = {}
        depths = dict.fromkeys(DEPTHS, 0)
        for vh in list(self.broker.vhosts.values()):
            for q in list(vh.queues.values()):
                figures = queue_depths(q)
                for k, v in figures.items():
                    depths[k] += v
                figures.update(with_deliver_get(q.stats))
                queues[(vh.name, q.name)] = figures
            for ex in list(vh.exchanges.values()):
                exchanges[(vh.name, ex.name)] = {"publish_in": ex.published_in,
                                                 "publish_out": ex.published_out}
        channels: dict[str, dict[str, int]] = {}
        for conn in list(self.broker.connections.values()):
            for name, counts in getattr(conn, "channel_counts", lambda: [])():
                channels[name] = with_deliver_get(counts)
        self.history.append(Sample(self.broker.clock.seconds(), self.totals, depths, queues,
                                   exchanges, channels))

    # -- rates ---------------------------------------------------------------------------
    def _last_two(self) -> tuple[Sample, Sample, float] | None:
        if len(self.history) < 2:
            return None
        a, b = self.history[-2], self.history[-1]
        return a, b, max(b.time - a.time, 1e-9)

    def rates(self) -> dict[str, float]:
        last = self._last_two()
        return _rate(last[0].totals, last[1].totals, last[2]) if last else {}

    def depth_rates(self) -> dict[str, float]:
        """Rates of the queue totals (the overview's ``queue_totals``)."""
        last = self._last_two()
        return _rate(last[0].depths, last[1].depths, last[2]) if last else {}

    def queue_rates(self, vhost: str, name: str) -> dict[str, float]:
        """A queue's counter and depth rates; {} unless both samples saw it."""
        last = self._last_two()
        if not last:
            return {}
        a, b, dt = last
        return _rate(a.queues.get((vhost, name)), b.queues.get((vhost, name)), dt)

    def exchange_rates(self, vhost: str, name: str) -> dict[str, float]:
        last = self._last_two()
        if not last:
            return {}
        a, b, dt = last
        return _rate(a.exchanges.get((vhost, name)), b.exchanges.get((vhost, name)), dt)

    def channel_rates(self, name: str) -> dict[str, float]:
        last = self._last_two()
        if not last:
            return {}
        a, b, dt = last
        return _rate(a.channels.get(name), b.channels.get(name), dt)

    def message_stats(self) -> dict[str, Any]:
        """The overview's ``message_stats``: the totals now, with the last rates."""
        return with_rates(self.totals, self.rates())
