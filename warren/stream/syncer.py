"""Making stream logs durable: one fsync per log per reactor turn, off the reactor thread.

Every publish into a stream asks ``Broker.sync`` before its confirm. The syncer gathers the
logs appended to (:meth:`LogSyncer.add`) and every caller of a turn (:meth:`LogSyncer.sync`),
and at the end of the turn writes what the logs hold in memory (reactor thread), then fsyncs
on the journal's kind of disk thread (``DiskThread``: jobs in order, results back on the
reactor), so the reactor keeps reading and routing while the disk works. With a clock that
has no threads (a test's ``task.Clock``) the fsyncs run inline.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from twisted.internet.defer import Deferred

from ..store.interface import StoreUnavailable
from ..store.journal.log import DiskThread
from .log import StreamLog, sync_files

log = logging.getLogger("warren.stream")


class LogSyncer:
    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.unsynced: set[StreamLog] = set()
        self._waiters: list[Deferred] | None = None
        self._disk: DiskThread | None = None
        self.in_flight = 0            # fsync jobs on the disk thread not answered yet

    @property
    def busy(self) -> bool:
        """Something appended is not known to be on disk yet: a sync must wait for it."""
        return bool(self.unsynced) or self.in_flight > 0

    def add(self, stream_log: StreamLog) -> None:
        self.unsynced.add(stream_log)

    def discard(self, stream_log: StreamLog) -> None:
        self.unsynced.discard(stream_log)

    def sync(self) -> Deferred:
        """Fires once every log appended to so far is on disk (errback: StoreUnavailable)."""
        d: Deferred = Deferred()
        if self._waiters is None:
            self._waiters = []
            self.clock.callLater(0, self._sync_now)
        self._waiters.append(d)
        return d

    def _sync_now(self) -> None:
        waiters, self._waiters = self._waiters or [], None
        logs = list(self.unsynced)
        self.unsynced.clear()
        jobs = []
        try:
            for stream_log in logs:
                job = stream_log.prepare_sync()
                if job is not None:
                    jobs.append(job)
        except OSError as e:
            for fds, _ in jobs:
                for fd in fds:
                    os.close(fd)
            self._answer(waiters, e)
            return
        if not hasattr(self.clock, "callFromThread"):
            try:
                sync_files(jobs)
            except OSError as e:
                self._answer(waiters, e)
            else:
                self._answer(waiters, None)
            return
        if self._disk is None:
            self._disk = DiskThread(self.clock)
        # submitted even with no jobs: it answers after the jobs before it (the thread runs
        # them in order), so a caller never overtakes an fsync still under way
        self.in_flight += 1
        d = self._disk.submit(sync_files, jobs)
        d.addCallbacks(lambda _: self._done(waiters, None),
                       lambda f: self._done(waiters, f.value))

    def _done(self, waiters: list[Deferred], problem: BaseException | None) -> None:
        self.in_flight -= 1
        self._answer(waiters, problem)

    @staticmethod
    def _answer(waiters: list[Deferred], problem: BaseException | None) -> None:
        if problem is not None:
            log.error("stream logs: sync failed: %s", problem)
        for d in waiters:
            if problem is None:
                d.callback(None)
            else:
                d.errback(StoreUnavailable(f"stream log sync failed: {problem}"))

    def stop(self) -> None:
        """The broker stops: the fsyncs asked for finish first (the thread runs in order)."""
        if self._disk is not None:
            self._disk.stop()
            self._disk = None
