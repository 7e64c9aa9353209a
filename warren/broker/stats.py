"""Message counters and rates for the management API and /metrics.

Queues count what happens to them (``Queue.stats``: publish, deliver, deliver_no_ack, get, ack,
redeliver) and front-end connections count publishes (``stats_publish``). Those counters vanish
with their object, but a broker-wide total must not go down when a queue is deleted, so
:class:`MessageStats` folds the *increase* of every live counter into running totals each time
it samples (a deleted object keeps what was folded before it went). Sampling runs on the
broker's clock every ``interval`` seconds (RabbitMQ's default sample interval is 5 s) and on
demand; rates are the change between the last two periodic samples, per second, as RabbitMQ's
``*_details.rate``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet import task

#: Overview counters, RabbitMQ's ``message_stats`` names.
KEYS = ("publish", "deliver", "deliver_no_ack", "get", "get_no_ack", "ack", "redeliver",
        "deliver_get", "confirm", "return_unroutable", "drop_unroutable")


class MessageStats:
    def __init__(self, broker: Any, *, interval: float = 5.0, keep: int = 60) -> None:
        self.broker = broker
        self.interval = interval
        self.totals: dict[str, int] = {k: 0 for k in KEYS}   # broker-wide, never decreasing
        self._seen: dict[tuple, dict[str, int]] = {}          # object key -> counters folded
        # (time, totals, per-queue totals) of periodic samples, newest last
        self.history: deque[tuple[float, dict[str, int], dict[tuple, dict[str, int]]]] = \
            deque(maxlen=keep)
        self._loop: task.LoopingCall | None = None

    def start(self) -> None:
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self.broker.clock
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def count(self, key: str, n: int = 1) -> None:
        """Counted by the API itself (publishes through /api/exchanges/.../publish)."""
        self.totals[key] = self.totals.get(key, 0) + n

    # -- sampling ------------------------------------------------------------------------
    def sample(self) -> dict[str, int]:
        """Fold every live counter's increase into the totals; returns the totals."""
        seen: dict[tuple, dict[str, int]] = {}
        for vh in list(self.broker.vhosts.values()):
            for q in list(vh.queues.values()):
                key = ("queue", vh.name, q.name, id(q))
                now = dict(q.stats)
                self._fold(key, now, queue=True)
                seen[key] = now
        for cid, conn in list(self.broker.connections.items()):
            key = ("conn", cid, id(conn))
            now = {"publish": int(getattr(conn, "stats_publish", 0) or 0),
                   "confirm": int(getattr(conn, "stats_confirm", 0) or 0)}
            self._fold(key, now, queue=False)
            seen[key] = now
        self._seen = seen
        return dict(self.totals)

    def _fold(self, key: tuple, now: dict[str, int], *, queue: bool) -> None:
        before = self._seen.get(key, {})
        for k, v in now.items():
            d = v - before.get(k, 0)
            if d <= 0:
                continue
            if queue and k == "publish":
                continue        # a fanout publish counts once, at the channel, as RabbitMQ
            self.totals[k] = self.totals.get(k, 0) + d
            if queue and k in ("deliver", "deliver_no_ack", "get"):
                self.totals["deliver_get"] += d

    def tick(self) -> None:
        totals = self.sample()
        per_queue = {(k[1], k[2]): dict(v) for k, v in self._seen.items() if k[0] == "queue"}
        self.history.append((self.broker.clock.seconds(), totals, per_queue))

    # -- rates ---------------------------------------------------------------------------
    def rates(self) -> dict[str, float]:
        if len(self.history) < 2:
            return {k: 0.0 for k in self.totals}
        (t0, a, _), (t1, b, _) = self.history[-2], self.history[-1]
        dt = max(t1 - t0, 1e-9)
        return {k: round((b.get(k, 0) - a.get(k, 0)) / dt, 1) for k in b}

    def queue_rates(self, vhost: str, name: str) -> dict[str, float]:
        if len(self.history) < 2:
            return {}
        (t0, _, a), (t1, _, b) = self.history[-2], self.history[-1]
        qa, qb = a.get((vhost, name)), b.get((vhost, name))
        if qa is None or qb is None:
            return {}
        dt = max(t1 - t0, 1e-9)
        return {k: round((qb.get(k, 0) - qa.get(k, 0)) / dt, 1) for k in qb}

    def message_stats(self) -> dict[str, Any]:
        """RabbitMQ's ``message_stats`` object: each counter with ``<name>_details.rate``."""
        totals = self.sample()
        rates = self.rates()
        out: dict[str, Any] = {}
        for k, v in totals.items():
            out[k] = v
            out[f"{k}_details"] = {"rate": rates.get(k, 0.0)}
        return out
