"""The free-disk alarm, as RabbitMQ's ``rabbit_disk_monitor``.

Every ``interval`` seconds (and at once when the limit changes) the free space of the file
system holding the data directory is read; below the limit the broker's disk alarm is raised
and publishers of every protocol are blocked exactly as by the memory alarm
(``Broker.set_disk_alarm``: AMQP connection.blocked "low on disk", STOMP and MQTT publishers
no longer read); at or above it the alarm clears. A store that is not on that file system
(PostgreSQL) still gets its data directory watched, as RabbitMQ watches its own.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

log = logging.getLogger("warren.broker.disk")

#: seconds between checks (RabbitMQ checks every 10 s at most)
DEFAULT_INTERVAL = 10.0


class DiskMonitor:
    def __init__(self, broker: Any, path: str, limit: int, *,
                 interval: float = DEFAULT_INTERVAL) -> None:
        self.broker = broker
        self.path = path
        self.limit = limit
        self.interval = interval
        self.free: int | None = None     # bytes, as of the last check; None before it
        self._call: Any = None
        self._unreadable = False

    def start(self) -> None:
        self.check()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def set_limit(self, limit: int) -> None:
        """A new limit at run time (``warren ctl set_disk_free_limit``): checked at once."""
        log.info("free disk limit set to %d bytes", limit)
        self.limit = limit
        self.check()

    def check(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        try:
            self.free = shutil.disk_usage(self.path).free
            self._unreadable = False
        except OSError as e:
            # the alarm keeps its state; said once, not every interval
            if not self._unreadable:
                log.warning("cannot read the free space of %s: %s", self.path, e)
            self._unreadable = True
        if self.free is not None:
            self.broker.set_disk_alarm(self.free < self.limit, self.free, self.limit)
        self._call = self.broker.clock.callLater(self.interval, self.check)
