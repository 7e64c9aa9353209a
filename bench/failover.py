"""Failover time of a warren master/slave pair: kill -9 of the master -> first confirmed
publish on the slave, for the shared-file lock and the database lease; and how fast a lease
changes hands when the master's database session ends.

    python -m bench.failover [--lockers file,lease,fence,probe] [--cycles 3] [--lease-ttl 10]
                             [--lease-renew 2] [--pg-url postgresql+psycopg://...]

The HA tests check only that these happen (no message lost, the fast path taken); the times
are measured here, never asserted.

Two brokers run on one store (a shared data directory, or one database: the given PostgreSQL,
else a private throw-away cluster when the PostgreSQL binaries are there, else one SQLite file).
A publisher thread sends confirmed persistent messages through a host list (pika, reconnecting
every 50 ms to whichever broker answers). Each cycle kills the current master, restarts it as
the new slave, and records:

- ``takeover_s``: kill -> the slave logs that it started as master (store recovered, ports open);
- ``failover_s``: kill -> the first publish confirmed by the new master (what clients see).

At the end every confirmed message must be in the queue (``lost`` counts those that are not).

``fence`` (PostgreSQL only) is the lease pair again, but the master is not killed: the database
ends its liveness session (``pg_terminate_backend``), the master fences itself and the slave
takes over; ``takeover_s`` is then the end of that session -> the slave started as master.
``probe`` (PostgreSQL only) is the lease locker alone: a process holding a 30 s lease is
killed, and ``probe_s`` is the kill -> another locker's ``probe()`` taking the lease over.

Lease figures: on PostgreSQL a killed master's liveness session ends with its process, so the
slave takes the lease through the fast path (``fast_path`` counts the cycles that did) without
waiting for the TTL: expect one probe (<= 0.25 s) + the 0.5 s take-over grace + start-up +
the client's reconnect. On SQLite (no fast path) the lease must run out first:
``lease_ttl - (time since the last renewal)`` + one ``lease_renew`` retry + start-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika

from tests.broker_process import BrokerProcess

QUEUE = "bench.failover"


class Publisher(threading.Thread):
    """Confirmed persistent publishes through a host list; remembers when each was confirmed."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__(daemon=True)
        self.ports = ports
        self.confirmed: list[tuple[float, bytes]] = []
        self.confirmed_by: list[int] = []    # the AMQP port of the broker of each confirm
        self.port = 0                        # the broker this publisher is connected to
        self.stopping = threading.Event()

    def _channel(self):
        while not self.stopping.is_set():
            for port in self.ports:
                try:
                    conn = pika.BlockingConnection(pika.ConnectionParameters(
                        "127.0.0.1", port, connection_attempts=1, socket_timeout=2))
                    ch = conn.channel()
                    ch.queue_declare(QUEUE, durable=True)
                    ch.confirm_delivery()
                    self.port = port
                    return conn, ch
                except pika.exceptions.AMQPError:
                    continue
            time.sleep(0.05)
        return None, None

    def run(self) -> None:
        n = 0
        conn, ch = self._channel()
        while not self.stopping.is_set():
            body = str(n).encode()
            try:
                ch.basic_publish("", QUEUE, body, pika.BasicProperties(delivery_mode=2))
            except (pika.exceptions.AMQPError, OSError):
                if conn.is_open:
                    conn.close()
                conn, ch = self._channel()
                continue
            self.confirmed.append((time.monotonic(), body))
            self.confirmed_by.append(self.port)
            n += 1
            time.sleep(0.002)  # ~ a few hundred messages/s: a steady client, not a flood

    def first_after(self, moment: float, port: int, timeout: float = 120.0) -> float:
        """When the first publish after ``moment`` was confirmed by the broker on ``port``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [at for (at, _), by in zip(self.confirmed, self.confirmed_by)
                     if at > moment and by == port]
            if later:
                return later[0]
            time.sleep(0.005)
        raise RuntimeError("no publish confirmed after the kill")


def _count(broker: BrokerProcess, text: str) -> int:
    return sum(text in line for line in broker.lines)


def _wait_count(broker: BrokerProcess, text: str, more_than: int, timeout: float) -> None:
    """Until ``broker`` has logged ``text`` more than ``more_than`` times."""
    deadline = time.monotonic() + timeout
    while _count(broker, text) <= more_than:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no new {text!r} line in {timeout:g} s")
        time.sleep(0.005)


def _owner(broker: BrokerProcess) -> str:
    """The lock owner id the broker logged at start ("this broker is <owner>; ...")."""
    return broker.wait_for_line("this broker is ").split("this broker is ")[1].split(";")[0]


def run_pair(locker: str, cycles: int, workdir: Path, *, store_url: str = "",
             lease_ttl: float = 10.0, lease_renew: float = 2.0, fence: bool = False) -> dict:
    if locker == "file":
        shared = workdir / "shared"
        brokers = [BrokerProcess(shared, extra_args=["--ha", "shared-file", "--http-port", "0"])
                   for _ in range(2)]
    else:
        brokers = [BrokerProcess(workdir / f"node{i}", store="sql", store_url=store_url,
                                 extra_args=["--ha", "shared-db", "--http-port", "0",
                                             "--lease-ttl", str(lease_ttl),
                                             "--lease-renew", str(lease_renew)])
                   for i in range(2)]
    master, slave = brokers
    publisher = Publisher([b.amqp_port for b in brokers])
    takeovers, failovers = [], []
    fast_path = 0
    try:
        master.start()
        slave.start(wait=False)
        slave.wait_for_line("waiting for the lock held by")
        publisher.start()
        for _ in range(cycles):
            count = len(publisher.confirmed)
            while len(publisher.confirmed) < count + 50:
                time.sleep(0.01)
            fast_before = _fast_path_lines(slave)
            if fence:
                from tests.ha.test_lockers import terminate_liveness
                masters_before = _count(slave, "-> master (")
                waits_before = _count(master, "waiting for the lock held by")
                killed = time.monotonic()
                if terminate_liveness(store_url, _owner(master)) != 1:
                    raise RuntimeError("the master's liveness session was not found")
                _wait_count(slave, "-> master (", masters_before, lease_ttl + 60)
                takeovers.append(time.monotonic() - killed)
                failovers.append(publisher.first_after(killed, slave.amqp_port) - killed)
                _wait_count(master, "waiting for the lock held by", waits_before, 60)
            else:
                killed = time.monotonic()
                master.kill()
                slave.wait_ready(lease_ttl + 60)
                takeovers.append(time.monotonic() - killed)
                failovers.append(publisher.first_after(killed, slave.amqp_port) - killed)
                master.start(wait=False)
                master.wait_for_line("waiting for the lock held by")
            fast_path += _fast_path_lines(slave) > fast_before
            master, slave = slave, master
        publisher.stopping.set()
        publisher.join(30)
        got = set()
        with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", master.amqp_port)) as c:
            ch = c.channel()
            while True:
                method, _props, body = ch.basic_get(QUEUE, auto_ack=True)
                if method is None:
                    break
                got.add(body)
        lost = sum(1 for _, body in publisher.confirmed if body not in got)
    finally:
        publisher.stopping.set()
        for b in brokers:
            b.stop(10)
            b.kill()
    return {"locker": locker, "cycles": cycles, "cause": "fenced" if fence else "kill -9",
            "lease_ttl": lease_ttl if locker == "lease" else None,
            "takeover_s": _figures(takeovers), "failover_s": _figures(failovers),
            "fast_path": fast_path if locker == "lease" else None,
            "confirmed": len(publisher.confirmed), "lost": lost}


def probe_takeover(store_url: str, cycles: int) -> dict:
    """The lease locker alone: kill -9 of a process holding a 30 s lease -> ``probe()`` of
    another locker takes it over (the liveness fast path; without it, 30 s)."""
    from warren.ha.lease_locker import LeaseLocker
    times = []
    for i in range(cycles):
        holder = subprocess.Popen(
            [sys.executable, "-c",
             ("import time; from warren.ha.lease_locker import LeaseLocker; "
              f"l = LeaseLocker({store_url!r}, ttl=30, owner='holder{i}'); assert l.acquire(); "
              "print('locked', flush=True); time.sleep(120)")],
            stdout=subprocess.PIPE, text=True)
        me = LeaseLocker(store_url, ttl=30, owner=f"prober{i}")
        try:
            if holder.stdout.readline().strip() != "locked":
                raise RuntimeError("the holder did not take the lease")
            holder.kill()
            holder.wait(10)
            killed = time.monotonic()
            deadline = killed + 60
            while not me.probe():
                if time.monotonic() > deadline:
                    raise RuntimeError("the lease was not taken over in 60 s")
                time.sleep(0.005)
            times.append(time.monotonic() - killed)
            me.release()
        finally:
            holder.kill()
            me.close()
    return {"locker": "probe", "cycles": cycles, "probe_s": _figures(times), "lost": 0}


def _fast_path_lines(broker: BrokerProcess) -> int:
    """How many times the broker took a lease over through the liveness fast path."""
    return sum("liveness session of" in line for line in broker.lines)


def _figures(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3),
            "all": [round(v, 3) for v in values]}


def _lease_url(workdir: Path, pg_url: str | None):
    """(url, cleanup): the given URL, a private PostgreSQL, or an SQLite file."""
    if pg_url:
        return pg_url, lambda: None
    try:
        from tests.store.pg import PostgresUnavailable, start_postgres
        try:
            return start_postgres(workdir)
        except PostgresUnavailable:
            pass
    except ImportError:
        pass
    return f"sqlite:///{workdir / 'shared.db'}", lambda: None


def failover(lockers: tuple[str, ...] = ("file", "lease"), cycles: int = 3,
             lease_ttl: float = 10.0, lease_renew: float = 2.0,
             pg_url: str | None = None) -> dict:
    """Run the failover measurement for each locker; results by locker name."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="warren-failover-") as tmp:
        for locker in lockers:
            workdir = Path(tmp) / locker
            workdir.mkdir()
            if locker in ("lease", "fence", "probe"):
                url, cleanup = _lease_url(workdir, pg_url)
                try:
                    if locker != "lease" and not url.startswith("postgresql"):
                        results[locker] = {"skipped": "needs PostgreSQL (--pg-url)", "lost": 0}
                    elif locker == "probe":
                        results[locker] = probe_takeover(url, cycles)
                    else:
                        results[locker] = run_pair("lease", cycles, workdir, store_url=url,
                                                   lease_ttl=lease_ttl, lease_renew=lease_renew,
                                                   fence=locker == "fence")
                    results[locker]["database"] = url.split(":", 1)[0]
                finally:
                    cleanup()
            else:
                results[locker] = run_pair(locker, cycles, workdir)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n")[0])
    p.add_argument("--lockers", default="file,lease")
    p.add_argument("--cycles", type=int, default=3)
    p.add_argument("--lease-ttl", type=float, default=10.0)
    p.add_argument("--lease-renew", type=float, default=2.0)
    p.add_argument("--pg-url")
    args = p.parse_args(argv)
    results = failover(tuple(args.lockers.split(",")), args.cycles, args.lease_ttl,
                       args.lease_renew, args.pg_url)
    print(json.dumps(results, indent=2))
    return 0 if all(r["lost"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
