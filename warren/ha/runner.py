"""HaRunner: be master of a shared-storage pair, or wait to become it; fence when the lock goes.

The life of one broker of a pair (roles as the console and ``warren_ha_role`` show them):

``waiting`` (nothing known yet, or just fenced) / ``slave`` (another broker holds the lock)
    No store is open and no client port listens; only the HTTP port answers, with the role and
    the lock holder (:mod:`warren.ha.standby`). The runner tries the lock — every
    ``FILE_RETRY`` seconds for the file lock, so a slave takes over well within a second of the
    master's death; every ``lease_renew`` seconds for the lease, with a cheap probe of the
    lease's liveness fast path every ``LIVENESS_PROBE`` seconds in between (PostgreSQL, see
    :mod:`warren.ha.lease_locker`) — and logs once per holder "waiting for the lock held by X".
    A lease won by the fast path from a master that still looked alive is used only after
    ``LIVENESS_GRACE``: time for that master, if its process lives on, to see its liveness
    session closed and fence itself.
``master``
    On winning the lock the runner builds a fresh broker service (``warren run`` passes
    :class:`~warren.server.BrokerService` in, so this package sits below the wiring): it
    opens the store, recovers it (queues, unacked messages back to ready with redelivered=true,
    MQTT retained messages, durable subscriptions, scheduled messages — all through
    ``Broker.recover``) and only then opens its listeners. It renews the lock every
    ``lease_renew`` seconds.

Fencing. A master that cannot prove it still holds the lock stops serving *at once*: every
listener closes, every client transport is aborted (buffered output dropped), the broker's
store is swapped for one that refuses writes and the real store is let go without a final
flush — after the lease ended another broker may be writing there. The runner then releases
what it holds and goes back to waiting; a later takeover recovers from the store afresh.
The lease is judged by this process's own monotonic clock (``CLOCK_BOOTTIME`` where it exists,
which also counts a suspended VM): a renewal counts from the moment it was *sent*, and the
lease is over ``lease_ttl`` seconds after the last successful one was sent, whatever arrives
later. A watchdog checks that every ``WATCHDOG`` seconds, and a SIGCONT handler checks it the
moment a stopped process resumes — before the reactor reads any socket that became readable
while it slept. The watchdog also asks a lease locker whether its liveness session is gone
(a non-blocking look at its socket): a master whose session the database closed may already
have a successor, and fences at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any, Callable, Iterator, Protocol

from twisted.application import service
from twisted.internet import defer, task, tcp, threads
from twisted.internet.error import CannotListenError
from twisted.python.threadpool import ThreadPool

from .. import __version__
from ..config import Config
from .locker import Locker, LockUnavailable, new_owner_id
from .standby import make_standby_site

log = logging.getLogger("warren.ha")

#: Seconds between attempts on the file lock (the master's death frees it at once).
FILE_RETRY = 0.15
#: Seconds between checks of the lease deadline while master.
WATCHDOG = 0.1
#: Share of the lease the master gives up early, for clock-rate differences with the database.
LEASE_MARGIN = 0.05
#: Seconds between probes of the lease's liveness fast path while waiting.
LIVENESS_PROBE = 0.25
#: Seconds a broker that took a live-looking master's lease by the fast path waits before it
#: opens the store: five watchdog ticks for that master to notice its session is gone.
LIVENESS_GRACE = 0.5

_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def elapsed_clock() -> float:
    """Seconds on a clock that never jumps and keeps counting while the process is stopped."""
    return time.clock_gettime(_CLOCK)


def make_locker(config: Config) -> Locker:
    """The locker ``config.ha`` names (``shared-file`` or ``shared-db``)."""
    owner = new_owner_id(config.node_name)
    if config.ha == "shared-file":
        from .file_locker import SharedFileLocker
        return SharedFileLocker(config.data_dir, owner=owner)
    if config.ha == "shared-db":
        if config.store != "sql":
            raise ValueError("--ha shared-db needs the SQL store (--store sql --store-url ...)")
        from .lease_locker import LeaseLocker
        return LeaseLocker(config.sql_url, ttl=config.lease_ttl, owner=owner)
    raise ValueError(f"unknown ha mode '{config.ha}' (none, shared-file or shared-db)")


class FencedStore:
    """Stands in for the store of a fenced broker: every write is dropped, every sync fails.

    The dead broker's timers (TTL expiry, scheduled messages, delayed exchanges) may still
    fire after fencing; through this they cannot touch storage another master now owns.
    """

    healthy = False

    def __getattr__(self, name: str) -> Any:
        return self._dropped

    @staticmethod
    def _dropped(*_args: Any, **_kwargs: Any) -> None:
        return None

    @staticmethod
    def sync() -> defer.Deferred:
        from ..store.interface import StoreUnavailable
        return defer.fail(StoreUnavailable("this broker was fenced: it is no longer master"))

    @staticmethod
    def stats() -> dict[str, float]:
        return {}


class MasterService(Protocol):
    """What the runner needs of the broker it runs as master: ``server.BrokerService``.

    The runner starts it, and on fencing stops its components, cuts its children's listening
    ports and transports and swaps its store; it never builds one itself (``make_service``)."""

    broker: Any
    store: Any
    running: Any

    def startService(self) -> None: ...

    def stopService(self) -> defer.Deferred[None] | None: ...

    def stop_components(self) -> object: ...   # (a Deferred the runner does not wait for)

    def __iter__(self) -> Iterator[service.IService]: ...


class HaRunner(service.Service):
    """Runs a broker service, made by ``make_service(config, reactor)``, only while this process
    holds the lock."""

    def __init__(self, config: Config, reactor: Any,
                 make_service: Callable[[Config, Any], MasterService],
                 locker: Locker | None = None) -> None:
        if config.lease_renew <= 0 or config.lease_renew >= config.lease_ttl:
            raise ValueError(f"lease_renew ({config.lease_renew}) must be positive and shorter "
                             f"than lease_ttl ({config.lease_ttl})")
        self.config = config
        self.reactor = reactor
        self.make_service = make_service
        self.locker = locker or make_locker(config)
        self.role = "waiting"
        self.holder: str | None = None          # last known lock holder (ours when master)
        self.broker_service: MasterService | None = None   # the broker while master
        self.takeovers = 0
        self.is_lease = config.ha == "shared-db" or hasattr(self.locker, "ttl")
        self.ttl = float(getattr(self.locker, "ttl", config.lease_ttl))
        self.retry_interval = config.lease_renew if self.is_lease else FILE_RETRY
        #: the locker has a cheap fast path worth probing between full attempts
        self.probes = bool(getattr(self.locker, "liveness", False))
        self._next_full = 0.0                   # elapsed_clock() of the next full attempt
        self._grace_call: Any = None
        self._deadline: float | None = None     # elapsed_clock() by which the lease is over
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="warren-ha-locker")
        self._pool.threadFactory = _DaemonThread
        self._busy = False                      # a locker call is in flight
        self._retry_call: Any = None
        self._renew_loop: task.LoopingCall | None = None
        self._watchdog: task.LoopingCall | None = None
        self._standby: Any = None               # the standby HTTP port while not master
        self._standby_closing: defer.Deferred | None = None
        self._waiting_logged: tuple[str, str | None] | None = None
        self._epoch = 0                         # bumped by every takeover and fence
        self._stopping = False
        #: called with a StartupError when becoming master fails for a reason retrying cannot
        #: cure (a port in use); None: log it and keep waiting
        self.on_fatal: Callable[[Exception], None] | None = None
        self._standby_opened = False            # the standby HTTP port opened once

    # ------------------------------------------------------------------ service
    def startService(self) -> None:
        super().startService()
        self._pool.start()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGCONT, self._on_sigcont)
        log.info("HA %s: this broker is %s; trying the %s", self.config.ha, self.locker.owner,
                 self.locker.description)
        self._open_standby()
        self._schedule_attempt(0)

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self._stopping = True
        self._cancel_timers()
        d: defer.Deferred = defer.succeed(None)
        if self.broker_service is not None:
            svc, self.broker_service = self.broker_service, None
            d = defer.maybeDeferred(svc.stopService)
        d.addBoth(lambda _: self._close_standby())
        d.addBoth(lambda _: self._call_locker(self._release_and_close))
        d.addBoth(lambda _: self._pool.stop())
        return d

    def status(self) -> dict[str, Any]:
        """Role and lock holder, for the standby page and tests."""
        return {"node": self.config.node_name, "ha_role": self.role,
                "ha_lock_holder": self.holder, "ha_lock": self.locker.description,
                "ha_owner": self.locker.owner}

    # ------------------------------------------------------------------ waiting
    def _schedule_attempt(self, delay: float) -> None:
        if self._stopping:
            return
        if self._retry_call is not None and self._retry_call.active():
            return
        self._retry_call = self.reactor.callLater(delay, self._attempt)

    def _attempt(self) -> None:
        self._retry_call = None
        if self._stopping or self.role == "master":
            return
        if self._busy:  # a release or a late renewal still running: come back shortly
            self._schedule_attempt(min(self.retry_interval, FILE_RETRY))
            return
        started = elapsed_clock()
        if self.probes and started < self._next_full:
            work = self._probe_lock
        else:
            self._next_full = started + self.retry_interval
            work = self._try_lock
        d = self._call_locker(work)
        d.addCallbacks(lambda result: self._attempted(result, started), self._attempt_failed)
        d.addErrback(self._unexpected)

    def _try_lock(self) -> tuple[bool, str | None]:
        if self.locker.acquire():
            return True, self.locker.owner
        return False, self.locker.holder()

    def _probe_lock(self) -> tuple[bool, str | None]:
        """The fast path only; the holder stays the one the last full attempt saw."""
        if self.locker.probe():
            return True, self.locker.owner
        return False, self.holder

    def _attempted(self, result: tuple[bool, str | None], started: float) -> None:
        won, holder = result
        if self._stopping:
            if won:
                self._call_locker(self.locker.release)
            return
        self.holder = holder
        if won:
            self._deadline = started + self.ttl * (1 - LEASE_MARGIN) if self.is_lease else None
            displaced = getattr(self.locker, "took_over_from", None)
            if displaced:
                log.info("the liveness session of %s ended: taking over its lease in %.1fs",
                         displaced, LIVENESS_GRACE)
                self._grace_call = self.reactor.callLater(LIVENESS_GRACE, self._after_grace)
                return
            self._take_over()
            return
        role = "slave" if holder else "waiting"
        if (role, holder) != self._waiting_logged:
            self._waiting_logged = (role, holder)
            if holder:
                log.info("waiting for the lock held by %s (%s)", holder,
                         self.locker.description)
            else:
                log.info("the lock is free but not yet ours; retrying (%s)",
                         self.locker.description)
        self._set_role(role)
        self._schedule_attempt(min(LIVENESS_PROBE, self.retry_interval) if self.probes
                               else self.retry_interval)

    def _attempt_failed(self, failure: Any) -> None:
        if self._stopping:
            return
        failure.trap(LockUnavailable)
        if self._waiting_logged != ("waiting", "unavailable"):
            self._waiting_logged = ("waiting", "unavailable")
            log.warning("cannot reach the lock (%s); retrying every %.2fs",
                        failure.getErrorMessage(), self.retry_interval)
        self.holder = None
        self._set_role("waiting")
        self._schedule_attempt(self.retry_interval)

    # ------------------------------------------------------------------ master
    def _after_grace(self) -> None:
        """Renew the lease the grace used up a part of, then start serving."""
        self._grace_call = None
        if self._stopping:
            return
        started = elapsed_clock()

        def renewed(held: bool) -> None:
            if self._stopping:
                return
            if not held:
                log.warning("lost the lease during the take-over grace; waiting again")
                self._back_to_waiting()
                return
            self._deadline = started + self.ttl * (1 - LEASE_MARGIN)
            self._take_over()

        def failed(failure: Any) -> None:
            failure.trap(LockUnavailable)
            log.warning("cannot renew the lease after the take-over grace (%s); waiting again",
                        failure.getErrorMessage())
            self._call_locker(self.locker.release).addBoth(lambda _: self._back_to_waiting())
        d = self._call_locker(self.locker.renew)
        d.addCallbacks(renewed, failed)
        d.addErrback(self._unexpected)

    def _take_over(self) -> None:
        d = self._close_standby()
        d.addCallback(lambda _: self._start_broker())
        d.addErrback(self._unexpected)

    def _start_broker(self) -> None:
        if self._stopping:
            self._call_locker(self.locker.release)
            return
        from ..startup import StartupError
        if self.is_lease and self._deadline is not None and elapsed_clock() >= self._deadline:
            log.warning("the lease ran out before the broker could start; trying again")
            self._back_to_waiting()
            return
        svc = self.make_service(self.config, self.reactor)
        try:
            svc.startService()
        except StartupError as error:  # a port in use: one line, the cause is in it
            self.broker_service = svc
            if self.on_fatal is not None:  # warren run: says so and exits
                self._fence("start-up failed")
                self.on_fatal(error)
                return
            log.error("becoming master failed: %s: releasing the lock and waiting", error)
            self._fence("start-up failed")
            return
        except Exception:
            log.exception("becoming master failed: releasing the lock and waiting")
            self.broker_service = svc
            self._fence("start-up failed")
            return
        self.broker_service = svc
        self._epoch += 1
        self.takeovers += 1
        svc.broker.role = "master"
        svc.broker.ha_lock_holder = self.locker.owner
        previous, self._waiting_logged = self.role, None
        self._set_role("master")
        log.info("role: %s -> master (%s)", previous, self.locker.description)
        log.info("warren %s started (store: %s, data dir: %s) as HA master", __version__,
                 self.config.store, self.config.data_dir)
        self._watchdog = task.LoopingCall(self._check_deadline)
        self._watchdog.clock = self.reactor
        self._watchdog.start(WATCHDOG, now=True)
        if self.role == "master":
            self._renew_loop = task.LoopingCall(self._renew)
            self._renew_loop.clock = self.reactor
            self._renew_loop.start(self.config.lease_renew, now=self.is_lease)

    def _renew(self) -> None:
        if self.role != "master" or self._busy:
            return
        epoch, started = self._epoch, elapsed_clock()
        d = self._call_locker(self.locker.renew)
        d.addCallbacks(lambda held: self._renewed(epoch, started, held),
                       lambda failure: self._renew_failed(epoch, failure))
        d.addErrback(self._unexpected)

    def _renewed(self, epoch: int, started: float, held: bool) -> None:
        if epoch != self._epoch or self.role != "master":
            return
        if not held:
            reason = getattr(self.locker, "loss_reason", None)
            self._fence(f"lost the lock ({reason or self.locker.description})")
            return
        if self.is_lease:
            if not self._check_deadline():
                return  # the answer came after the lease had already ended: too late
            self._deadline = max(self._deadline or 0.0,
                                 started + self.ttl * (1 - LEASE_MARGIN))

    def _renew_failed(self, epoch: int, failure: Any) -> None:
        failure.trap(LockUnavailable)
        if epoch != self._epoch or self.role != "master":
            return
        if not self.is_lease:
            self._fence(f"cannot check the lock: {failure.getErrorMessage()}")
            return
        left = (self._deadline or 0.0) - elapsed_clock()
        log.warning("lease renewal failed (%s); %.1fs of lease left", failure.getErrorMessage(),
                    max(0.0, left))

    def _check_deadline(self) -> bool:
        """True while the lease still holds; fences (and returns False) once it is over."""
        if self.role != "master" or self._deadline is None:
            return self.role == "master"
        liveness_lost = getattr(self.locker, "liveness_lost", None)
        if liveness_lost is not None and liveness_lost():
            self._fence("the database closed this broker's liveness session: another broker "
                        "may take the lease now")
            return False
        if elapsed_clock() < self._deadline:
            return True
        self._fence("the lease expired without a successful renewal")
        return False

    def _on_sigcont(self, _signum: int, _frame: Any) -> None:
        """A stopped master resumes: if its lease ran out meanwhile, stop I/O before any read.

        Runs between two bytecodes of the reactor thread, usually inside its poll call, which
        is retried afterwards: so sockets are dropped here, directly, and the rest of the
        fence follows on the next reactor turn.
        """
        try:
            if (self.role == "master" and self._deadline is not None
                    and elapsed_clock() >= self._deadline):
                self._cut_transports()
                self.reactor.callLater(0, self._check_deadline)
        except Exception:  # never let a signal handler raise into the reactor
            log.exception("SIGCONT lease check failed")

    # ------------------------------------------------------------------ fencing
    def _fence(self, reason: str) -> None:
        """Stop serving at once and go back to waiting (see the module docstring)."""
        previous = self.role
        self._epoch += 1
        self._deadline = None
        for loop in (self._renew_loop, self._watchdog):
            if loop is not None and loop.running:
                loop.stop()
        self._renew_loop = self._watchdog = None
        svc, self.broker_service = self.broker_service, None
        closing: list[defer.Deferred] = []
        if svc is not None:
            svc.stop_components()  # shovels stop moving messages of a fenced broker
            closing = self._cut_transports(svc)
            broker = svc.broker
            if broker is not None:
                broker.role = "waiting"
                if broker.disk_monitor is not None:
                    broker.disk_monitor.stop()
                real_store, broker.store = broker.store, FencedStore()
            else:
                real_store = svc.store
            svc.store = None
            svc.running = False
            if real_store is not None and not isinstance(real_store, FencedStore):
                # nothing more may be written: another master owns the storage. A write in
                # flight may still land (every shared-storage pair has that window, ActiveMQ's
                # too); it holds only writes not yet confirmed to any client
                try:
                    real_store.abandon()
                except Exception:
                    log.exception("letting go of the store failed")
            if broker is not None:
                broker.abandon_streams()   # their logs are the store's kin: let go unwritten
        if previous == "master":
            log.warning("role: master -> waiting (fenced: %s): every listener closed and every "
                        "connection dropped", reason)
        self._set_role("waiting")
        self.holder = None
        self._waiting_logged = None
        d = defer.DeferredList(closing, consumeErrors=True)
        d.addCallback(lambda _: self._call_locker(self.locker.release))
        d.addBoth(lambda _: self._back_to_waiting())

    def _cut_transports(self, svc: Any = None) -> list[defer.Deferred]:
        """Abort every client connection and close every listening port of the broker."""
        svc = svc if svc is not None else self.broker_service
        if svc is None:
            return []
        ports = set()
        listeners = []
        for child in list(svc):
            listening = getattr(child, "listening", None)
            if listening is not None:
                ports.add(listening)
                listeners.append(child)
        transports = {sel for sel in (*self.reactor.getReaders(), *self.reactor.getWriters())
                      if isinstance(sel, tcp.Server) and sel.server in ports}
        broker = svc.broker
        if broker is not None:
            for conn in list(broker.connections.values()):
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transports.add(transport)
        for transport in transports:
            try:
                transport.abortConnection()
            except Exception:  # one odd transport must not keep the others open
                log.debug("aborting %r failed", transport, exc_info=True)
        closing = []
        for child in listeners:
            port, child.listening = child.listening, None
            child.running = False
            try:
                port.stopReading()
                closing.append(defer.maybeDeferred(port.stopListening))
            except Exception:  # keep closing the other listeners
                log.debug("closing %r failed", port, exc_info=True)
            stats = getattr(child.factory, "message_stats", None)
            if stats is not None:
                stats.stop()
        return closing

    def _back_to_waiting(self) -> None:
        if self._stopping:
            return
        self._next_full = 0.0  # first a full attempt, a lease_renew from now: the peer goes first
        self._set_role("waiting")
        self._open_standby()
        self._schedule_attempt(self.retry_interval)

    # ------------------------------------------------------------------ helpers
    def _set_role(self, role: str) -> None:
        self.role = role

    def _call_locker(self, work: Any) -> defer.Deferred:
        """Run one (blocking) locker call on the locker's own thread."""
        self._busy = True

        def done(result: Any) -> Any:
            self._busy = False
            return result
        d = threads.deferToThreadPool(self.reactor, self._pool, work)
        d.addBoth(done)
        return d

    def _release_and_close(self) -> None:
        try:
            self.locker.release()
        finally:
            self.locker.close()

    def _open_standby(self) -> None:
        cfg = self.config
        if not cfg.http_port or self._standby is not None or self._stopping:
            return
        d = _when(self._standby_closing)

        def listen(_: Any) -> None:
            if self.role == "master" or self._standby is not None or self._stopping:
                return
            try:
                self._standby = self.reactor.listenTCP(
                    cfg.http_port, make_standby_site(self.status), interface=cfg.bind)
            except CannotListenError as error:
                if self.on_fatal is not None and not self._standby_opened:
                    # at start-up: a port in use is the operator's to fix, as without --ha
                    from ..startup import listen_problem
                    self.on_fatal(listen_problem(cfg.describe("http_port"),
                                                 cfg.setting("http_port"), cfg.bind, error))
                    return
                log.warning("standby HTTP API not opened on port %d: %s", cfg.http_port, error)
                return
            self._standby_opened = True
        d.addCallback(listen)

    def _close_standby(self) -> defer.Deferred:
        port, self._standby = self._standby, None
        if port is None:
            return _when(self._standby_closing)
        for sel in (*self.reactor.getReaders(), *self.reactor.getWriters()):
            if isinstance(sel, tcp.Server) and sel.server is port:
                sel.abortConnection()
        self._standby_closing = defer.maybeDeferred(port.stopListening)
        return _when(self._standby_closing)

    def _cancel_timers(self) -> None:
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        if self._grace_call is not None and self._grace_call.active():
            self._grace_call.cancel()
        self._grace_call = None
        for loop in (self._renew_loop, self._watchdog):
            if loop is not None and loop.running:
                loop.stop()
        self._renew_loop = self._watchdog = None

    def _unexpected(self, failure: Any) -> None:
        log.error("HA runner error: %s", failure.getTraceback())
        if not self._stopping and self.role != "master":
            self._schedule_attempt(self.retry_interval)


def _when(d: defer.Deferred | None) -> defer.Deferred:
    """A fresh Deferred firing (with None) once ``d`` has fired, leaving ``d``'s result alone."""
    if d is None:
        return defer.succeed(None)
    fresh = defer.DeferredList([d], consumeErrors=False)
    fresh.addCallback(lambda _: None)
    return fresh


class _DaemonThread(threading.Thread):
    """The locker's thread must not keep a process alive that is exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True
