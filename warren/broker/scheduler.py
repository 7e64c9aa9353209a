"""ActiveMQ scheduled delivery: ``AMQ_SCHEDULED_DELAY``, ``_PERIOD`` and ``_REPEAT``.

A message carrying these is not routed when published; it is held here and published into its
destination exchange after DELAY ms, then REPEAT more times every PERIOD ms (ActiveMQ's
``ScheduledMessage``: REPEAT counts the extra deliveries; PERIOD without REPEAT delivers once;
CRON is not supported). Each delivery is a fresh copy of the message (new broker id).

Durability: a *persistent* scheduled message is kept as a broker runtime parameter
(``broker.parameters``, saved through ``save_definition("parameter", …)``) until its last
delivery, so it survives a restart; the caller waits for ``broker.sync()`` before it confirms
the publish, like any stored message. Times are kept as wall-clock epoch seconds, so a restart
fires overdue deliveries at once. Transient scheduled messages live in memory only. What is
left: no CRON, no management of scheduled jobs (ActiveMQ's ``ActiveMQ.Scheduler.Management``).
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

from ..model.message import Message

log = logging.getLogger("warren.scheduler")

__all__ = ["DELAY_HEADER", "PERIOD_HEADER", "REPEAT_HEADER", "ScheduledDelivery"]

DELAY_HEADER = "AMQ_SCHEDULED_DELAY"
PERIOD_HEADER = "AMQ_SCHEDULED_PERIOD"
REPEAT_HEADER = "AMQ_SCHEDULED_REPEAT"

_PARAMETER_PREFIX = "scheduled-message/"


class ScheduledDelivery:
    """Holds scheduled messages of one broker and publishes them when due."""

    def __init__(self, broker: Any, wall_clock: Any = time.time) -> None:
        self.broker = broker
        self.clock = broker.clock
        self.wall_clock = wall_clock       # epoch seconds, for what is persisted
        self._next = 0
        self._calls: dict[str, Any] = {}  # key -> pending IDelayedCall
        self._jobs: dict[str, dict[str, Any]] = {}  # key -> job (see schedule())

    def __len__(self) -> int:
        return len(self._jobs)

    def schedule(self, vhost: str, message: Message, delay_ms: int, period_ms: int = 0,
                 repeat: int = 0) -> bool:
        """Hold *message*; True when it was persisted (the publisher must await sync)."""
        self._next += 1
        micros = int(self.wall_clock() * 1e6)
        key = f"{_PARAMETER_PREFIX}{self.broker.node_name}/{micros}-{self._next}"
        job = {
            "vhost": vhost, "exchange": message.exchange, "routing_key": message.routing_key,
            "props": base64.b64encode(message.encoded_props()).decode("ascii"),
            "body": base64.b64encode(bytes(message.body)).decode("ascii"),
            "due": self.wall_clock() + max(0, delay_ms) / 1000.0,
            "period": max(0, period_ms), "repeat": max(0, repeat),
            "persistent": bool(message.persistent),
        }
        self._jobs[key] = job
        stored = self._save(key, job)
        self._arm(key)
        return stored

    def recover(self) -> int:
        """Re-arm persisted jobs found in ``broker.parameters`` (after ``broker.recover()``)."""
        count = 0
        for key, job in list(self.broker.parameters.items()):
            if key.startswith(_PARAMETER_PREFIX) and key not in self._jobs and \
                    isinstance(job, dict) and "due" in job:
                self._jobs[key] = dict(job)
                self._arm(key)
                count += 1
        return count

    def stop(self) -> None:
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()

    # ------------------------------------------------------------------ internals
    def _save(self, key: str, job: dict[str, Any] | None) -> bool:
        persistent = job["persistent"] if job is not None else \
            self.broker.parameters.get(key) is not None
        if not persistent or self.broker.store is None:
            return False
        if job is None:
            self.broker.parameters.pop(key, None)
        else:
            self.broker.parameters[key] = job
        self.broker.save_definition("parameter", key, job)
        return True

    def _arm(self, key: str) -> None:
        delay = max(0.0, self._jobs[key]["due"] - self.wall_clock())
        self._calls[key] = self.clock.callLater(delay, self._fire, key)

    def _fire(self, key: str) -> None:
        self._calls.pop(key, None)
        job = self._jobs.get(key)
        if job is None:
            return
        try:
            self._publish(job)
        except Exception:
            log.exception("scheduled message %s could not be published", key)
        if job["repeat"] > 0:
            job["repeat"] -= 1
            job["due"] = self.wall_clock() + job["period"] / 1000.0
            self._save(key, job)
            self._arm(key)
        else:
            del self._jobs[key]
            if job["persistent"]:
                self._save(key, None)

    def _publish(self, job: dict[str, Any]) -> None:
        vhost = self.broker.vhosts.get(job["vhost"])
        if vhost is None:
            return
        exchange = vhost.exchanges.get(job["exchange"])
        if exchange is None:
            log.info("scheduled message dropped: exchange '%s' is gone", job["exchange"])
            return
        message = Message(job["exchange"], job["routing_key"], base64.b64decode(job["body"]),
                          codec=self.broker.codec, raw_props=base64.b64decode(job["props"]))
        # checked when it was sent; routed as any publish (reply addresses included)
        self.broker.publisher(vhost, None).route(exchange, message)
