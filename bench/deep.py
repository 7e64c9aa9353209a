"""One deep queue on warren and on RabbitMQ 3.10, side by side in one run (issue 22).

    python -m bench.deep --messages 1000000 [--brokers warren,rabbitmq,rabbitmq-lazy,warren-sqlite]

``warren-sqlite`` and ``warren-postgres`` are warren on its SQL store: an SQLite file in its
data directory, or a private PostgreSQL 15 cluster started for the run (``tests/store/pg.py``,
as the store tests start theirs: fsync and synchronous_commit on) and removed after it.

For each broker in turn (each a fresh instance in its own temp directory, started by
``bench.brokers``), the same steps with bench's own AMQP load generator (``bench.loadgen``:
its publisher and consumer, stamped 100-byte bodies):

1. **fill**: a durable queue bound to ``loadgen.direct`` (for ``rabbitmq-lazy`` declared with
   ``x-queue-mode: lazy``), N persistent messages published with confirms (at most 1000
   unconfirmed); the rate is N over the time to the last confirm;
2. **resident memory while queued**: VmRSS right after the fill (and, for comparison, once
   started, before the queue is declared), of the broker's process group
   (warren and any child it forked), for RabbitMQ of its ``beam.smp`` process (the group also
   holds the launcher's shell and ``erl_child_setup``: a few MB); and from them **B/msg
   beyond the window**: (PSS queued - PSS idle - the window's bytes) / the messages not in
   it, issue 22's target (200 at most), by PSS (``proportional_mb``: warren's forked
   checkpoint writer, often alive during a fill, shares most of its pages with the
   broker, which VmRSS counts twice), two ways: *accounted*, the window being what the
   broker says it holds in memory; *2nd half*, the fill being two halves, the growth of
   PSS over the second (less the growth of the window's bytes) per message of it, when the
   window was full already at half the depth (else "–"): what a message beyond the window
   costs whatever the window's accounting misses. The window is what the broker says it
   holds in memory at that moment: warren's paging accounting (``warren_paging_resident_bytes`` of
   ``/metrics``: bodies and per-message overhead) and its queue's ``messages_ram`` (the
   management API); RabbitMQ's ``messages_ram`` and ``message_bytes_ram`` (bodies only: it
   reports no overhead) from ``rabbitmqctl list_queues``;
3. **kill -9** of the broker's process group and a start on the same data: the seconds until
   the AMQP port accepts, and until a consumer (prefetch 1000, one ``multiple`` ack per 100)
   gets its first delivery (the consumer retries while the broker refuses it or the queue is
   not there yet); for warren also the records its start replayed after the checkpoint (from
   its log: what the fill left after the last one) and its peak resident memory (VmHWM) at
   the first delivery;
4. **drain, then drain while publishing**: that consumer takes the first half of the N
   recovered messages alone (the drain rate, and the broker's CPU per message over it: its
   process group's user + system time from /proc, which moves far less than the rate with
   other work on the machine), then the second half while a publisher in
   another process (so the client's two halves use both cores) publishes more persistent,
   confirmed messages to the same queue: the drain rate meanwhile and the publisher's
   confirmed rate over the same time. The queue is FIFO, so the first N deliveries are the
   recovered ones; the consumer keeps one bit per sequence number, so the recovered messages
   lost (``lost``) and delivered twice (``dups``) are exact.

``--drain-seconds`` bounds each half of step 4 (for 10M: the rates over what was
drained by then). The
brokers run one after another in the order given (``--rounds`` repeats the whole order, so
warren and RabbitMQ interleave); the load average is printed with each row, as other work on
the machine moves every figure. Nothing is asserted: figures for the report. Exit status 1 when
a broker failed to start, a step failed, or a recovered message was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from pamqp import commands

from bench.brokers import Broker, BrokerStartError, RabbitMQ, Warren, free_port, port_accepts
from bench.deep_restart import status_kb
from bench.rabbitmq_scripts import find_rabbitmq
from bench.loadgen.amqp import DIRECT_EXCHANGE, Consumer, Publisher, routing_key
from bench.loadgen.connection import ProtocolError
from bench.loadgen.driver import Settings
from bench.proc_cpu import group_cpu_seconds
from bench.proc_memory import group_bytes
from bench.scenarios import group_rss
from tests.store.pg import PostgresUnavailable, start_cluster

WINDOW = 1000   # unconfirmed messages a publisher may have (as loadgen's persistent-confirm)
#: seconds a start (recovery included) may take; RabbitMQ's message store scan at 10M is slow
START_TIMEOUT = 3600.0
#: the consumer gives up when nothing arrives for this long
IDLE_TIMEOUT = 300.0


@dataclass(frozen=True)
class Variant:
    """A broker as measured: which program, which store, which queue arguments."""

    name: str
    kind: str                    # "warren" or "rabbitmq"
    store: str = "journal"       # warren's --store
    arguments: dict = field(default_factory=dict)   # the deep queue's x-arguments
    postgres: bool = False       # the SQL store on a private PostgreSQL (else SQLite)

    def make(self, root: Path, rabbitmq_server: str | None,
             store_url: str | None = None) -> Broker:
        workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=root))
        if self.kind == "warren":
            broker: Broker = WarrenWithApi(workdir, command=Warren.default_command(),
                                           store=self.store, store_url=store_url)
        else:
            broker = RabbitMQ(workdir, program=rabbitmq_server)
        broker.start_timeout = START_TIMEOUT
        return broker


class WarrenWithApi(Warren):
    """warren with its HTTP API on (``Warren`` turns it off): the window's figures; run from
    another checkout when ``CHECKOUT`` is set (``--warren-from``: a before/after table)."""

    CHECKOUT: str | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.http_port = free_port()

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if self.CHECKOUT:
            env["PYTHONPATH"] = self.CHECKOUT
        return env

    def command(self) -> list[str]:
        argv = super().command()
        argv[argv.index("--http-port") + 1] = str(self.http_port)
        return argv


VARIANTS = {v.name: v for v in (
    Variant("warren", "warren"),
    Variant("warren-sqlite", "warren", store="sql"),
    Variant("warren-postgres", "warren", store="sql", postgres=True),
    Variant("rabbitmq", "rabbitmq"),
    Variant("rabbitmq-lazy", "rabbitmq", arguments={"x-queue-mode": "lazy"}),
)}


class DeepQueue(Consumer):
    """loadgen's AMQP consumer on the run's queue (``loadgen.<tag>.q0``), split in two: the
    declaration before the fill, with the variant's arguments, and the subscription after the
    restart, without loadgen's re-declaration (without arguments: RabbitMQ compares a
    re-declaration's arguments with the queue's)."""

    async def declare(self, arguments: dict) -> None:
        s = self.settings
        await self.start(s)
        await self.call(commands.Exchange.Declare(exchange=DIRECT_EXCHANGE, exchange_type="direct",
                                                  durable=True), commands.Exchange.DeclareOk)
        await self.call(commands.Queue.Declare(queue=self.queue, durable=True,
                                               arguments=arguments), commands.Queue.DeclareOk)
        await self.call(commands.Queue.Bind(queue=self.queue, exchange=DIRECT_EXCHANGE,
                                            routing_key=routing_key(s)), commands.Queue.BindOk)
        await self.close()

    async def subscribe(self) -> None:
        await self.start(self.settings)
        await self.call(commands.Basic.Qos(prefetch_count=self.settings.prefetch),
                        commands.Basic.QosOk)
        await self.call(commands.Basic.Consume(queue=self.queue, consumer_tag="loadgen"),
                        commands.Basic.ConsumeOk)
        self.running = True

    def recovered(self, count: int) -> int:
        """How many of sequence numbers 0 .. count-1 (the fill's) were received."""
        whole, rest = divmod(count, 8)
        seen = self.tally.seen
        got = int.from_bytes(seen[:whole], "big").bit_count()
        if rest and len(seen) > whole:
            got += (seen[whole] & ((1 << rest) - 1)).bit_count()
        return got


def settings_for(port: int, tag: int) -> Settings:
    return Settings(protocol="amqp", scenario="deep", port=port, persistent=True,
                    window=WINDOW, tag=tag)


async def publish(settings: Settings, first: int, count: int | None, go=None,
                  stop=None) -> dict:
    """Publish persistent messages ``first``, ``first + 1``, ... with confirms (≤ WINDOW
    unconfirmed): ``count`` of them, or from ``go`` until ``stop`` is set (at least one
    batch); then await the last confirms. Returns how many were confirmed and the seconds from
    the first publish to the last confirm (``window_s``: to when publishing stopped)."""
    client = await Publisher.open(settings.host, settings.port, settings, settings.tag)
    await client.setup()
    client.running = True
    while go is not None and not go.wait(0.01):   # connected: only the go is awaited
        client.check()
    sent, end = 0, count if count is not None else float("inf")
    began = time.monotonic()
    while sent < end and not (sent and stop is not None and stop.is_set()):
        client.check()
        room = min(settings.batch, WINDOW - (sent - client.confirmed), end - sent)
        if room <= 0:
            client.progress.clear()
            try:
                await asyncio.wait_for(client.progress.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            continue
        client.publish(range(first + sent, first + sent + room))
        sent += room
        await client.drain()
        await asyncio.sleep(0)   # let confirms in
    window_s = time.monotonic() - began
    deadline = time.monotonic() + 600
    while client.confirmed + client.nacked < sent and time.monotonic() < deadline:
        client.check()
        client.progress.clear()
        try:
            await asyncio.wait_for(client.progress.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
    seconds = time.monotonic() - began
    await client.close()
    return {"sent": sent, "confirmed": client.confirmed, "nacked": client.nacked,
            "seconds": seconds, "window_s": window_s}


def _publisher_process(settings: Settings, first: int, go, stop, results) -> None:
    """The drain's publisher, in its own process: connects, then publishes from ``go`` until
    ``stop``."""
    try:
        results.put(asyncio.run(publish(settings, first, None, go, stop)))
    except BaseException as error:   # the parent must hear of it, not wait forever
        results.put({"error": f"publisher: {error}"})


def proportional_mb(broker: Broker) -> float:
    """MB of the broker's process group by PSS (``smaps_rollup``): pages a forked child
    (warren's checkpoint writer) shares with the broker count once, split between them,
    where VmRSS counts them in each (the writer of a 10M index shows 1.4 GB of VmRSS);
    RabbitMQ's ``beam.smp`` alone, as ``resident_mb``."""
    if isinstance(broker, RabbitMQ):
        return resident_mb(broker)
    return group_bytes(os.getpgid(broker.process.pid), "Pss", "smaps_rollup") / 1e6


def cpu_seconds(broker: Broker) -> float:
    """User + system CPU seconds so far of the broker's process group (every thread of
    warren and of any child it forked; RabbitMQ's beam.smp and its helpers)."""
    return group_cpu_seconds(os.getpgid(broker.process.pid))


def resident_mb(broker: Broker) -> float:
    """MB resident: RabbitMQ's beam.smp, else the broker's whole process group."""
    if isinstance(broker, RabbitMQ):
        found = subprocess.run(["pgrep", "-g", str(broker.process.pid), "-x", "beam.smp"],
                               capture_output=True, text=True).stdout.split()
        if found:
            return status_kb(int(found[0]), "VmRSS") / 1024
    return group_rss(broker) / 1e6


def window(broker: Broker, queue_name: str) -> tuple[int, int] | None:
    """(messages, bytes) the broker holds in memory for the queue now (see the module doc),
    or None when it cannot say."""
    try:
        if isinstance(broker, WarrenWithApi):
            base, auth = f"http://127.0.0.1:{broker.http_port}", ("guest", "guest")
            info = requests.get(f"{base}/api/queues/%2F/{queue_name}", auth=auth,
                                timeout=60).json()
            for line in requests.get(f"{base}/metrics", auth=auth, timeout=60).text.splitlines():
                if line.startswith("warren_paging_resident_bytes "):
                    return int(info["messages_ram"]), int(float(line.split()[1]))
            return None
        if isinstance(broker, RabbitMQ):
            scripts = find_rabbitmq(broker.server)
            if scripts is None:
                return None
            out = subprocess.run(
                [scripts.ctl, "-n", broker.nodename, "list_queues", "-q", "--no-table-headers",
                 "name", "messages_ram", "message_bytes_ram"], env=broker.environment(),
                capture_output=True, text=True, timeout=120).stdout
            for line in out.splitlines():
                name, messages, nbytes = line.split()
                if name == queue_name:
                    return int(messages), int(nbytes)
    except (OSError, ValueError, KeyError, requests.RequestException,
            subprocess.SubprocessError):
        pass
    return None


def beyond_window(row: dict) -> float | None:
    """Bytes of resident memory per message beyond the window (the module doc's step 2)."""
    if "window_messages" not in row or "pss_queued_mb" not in row:
        return None
    beyond = row["messages"] - row["window_messages"]
    if beyond <= 0:
        return None
    grown = (row["pss_queued_mb"] - row["pss_idle_mb"]) * 1e6 - row["window_bytes"]
    return grown / beyond


async def serve_first(settings: Settings, deadline: float) -> tuple[DeepQueue, float]:
    """Subscribe as soon as the broker lets us (it may refuse the connection or not have the
    queue yet while it recovers) and return at the first delivery, with its time."""
    while True:
        consumer = None
        try:
            consumer = await DeepQueue.open(settings.host, settings.port, settings, settings.tag, 0)
            first = asyncio.get_running_loop().create_future()
            consumer.on_read = lambda tally: (tally.received and not first.done()
                                              and first.set_result(time.monotonic()))
            await consumer.subscribe()
            return consumer, await asyncio.wait_for(first, IDLE_TIMEOUT)
        except (OSError, ProtocolError, asyncio.TimeoutError) as error:
            if consumer is not None:
                consumer.close_transport()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no delivery after the restart: {error}") from None
            await asyncio.sleep(0.05)


async def drain(consumer: DeepQueue, count: int, seconds: float | None) -> tuple[float, int]:
    """Wait until the consumer received ``count`` messages (or ``seconds`` passed, or nothing
    came for IDLE_TIMEOUT); when the last one came and how many had come then."""
    done = asyncio.get_running_loop().create_future()
    last = [time.monotonic(), consumer.tally.received]

    def on_read(tally) -> None:
        last[:] = time.monotonic(), tally.received
        if tally.received >= count and not done.done():
            done.set_result(None)
    consumer.on_read = on_read
    on_read(consumer.tally)
    limit = time.monotonic() + seconds if seconds else float("inf")
    while not done.done():
        consumer.check()
        await asyncio.wait([done], timeout=1.0)
        now = time.monotonic()
        if now >= limit or now - last[0] > IDLE_TIMEOUT:
            break
    return last[0], last[1]


def rate(count: int, began: float, ended: float) -> float | None:
    return count / (ended - began) if ended > began else None


def measure(variant: Variant, count: int, root: Path, rabbitmq_server: str | None,
            drain_seconds: float | None) -> dict:
    """The four steps of the module doc on a fresh instance of ``variant``, on a fresh
    PostgreSQL cluster when it needs one (the database stays up across the broker's kill -9,
    as a database server would, and is removed after the row)."""
    if not variant.postgres:
        return _measure(variant.make(root, rabbitmq_server), variant, count, drain_seconds)
    try:
        cluster = start_cluster(root)
    except (PostgresUnavailable, RuntimeError) as error:
        print(f"{variant.name}: {error}", file=sys.stderr, flush=True)
        return {"broker": variant.name, "messages": count, "error": str(error).splitlines()[0],
                "load_average": os.getloadavg()[0]}
    try:
        return _measure(variant.make(root, rabbitmq_server, cluster.url), variant, count,
                        drain_seconds)
    finally:
        cluster.destroy()


def _measure(broker: Broker, variant: Variant, count: int, drain_seconds: float | None) -> dict:
    tag = int.from_bytes(os.urandom(6), "big")
    settings = settings_for(broker.ports["amqp"], tag)
    queue_name = f"loadgen.{tag:x}.q0"
    row: dict = {"broker": variant.name, "messages": count}
    try:
        broker.start()
        row["rss_idle_mb"] = resident_mb(broker)
        row["pss_idle_mb"] = proportional_mb(broker)
        asyncio.run(_declare(settings, variant.arguments))
        half = count // 2
        first = asyncio.run(publish(settings, 0, half))
        half_pss, half_held = proportional_mb(broker), window(broker, queue_name)
        second = asyncio.run(publish(settings, half, count - half))
        for fill in (first, second):
            if fill["confirmed"] != fill["sent"] or fill["nacked"]:
                raise RuntimeError(f"fill: {fill}")
        row["fill_rate"] = count / (first["seconds"] + second["seconds"])
        row["rss_queued_mb"] = resident_mb(broker)
        row["pss_queued_mb"] = proportional_mb(broker)
        held = window(broker, queue_name)
        if held is not None:
            row["window_messages"], row["window_bytes"] = held
            row["beyond_window_b_per_msg"] = beyond_window(row)
        if held is not None and half_held is not None and half_held[0] >= 0.98 * held[0]:
            # the window was full at half the depth: the second half is all beyond it
            row["beyond_window_slope_b_per_msg"] = (
                (row["pss_queued_mb"] - half_pss) * 1e6 - (held[1] - half_held[1])) / (
                count - half)
        broker.kill()
        logged = broker.log_path.stat().st_size if isinstance(broker, Warren) else 0
        row.update(asyncio.run(_restart_and_drain(broker, settings, count, drain_seconds)))
        if isinstance(broker, Warren):
            row.update(_recovery_of(broker, logged))
        row["rss_draining_mb"] = resident_mb(broker)
    except (BrokerStartError, OSError, RuntimeError, ProtocolError) as error:
        row["error"] = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"{variant.name}: {error}", file=sys.stderr, flush=True)
    finally:
        broker.stop(timeout=600)
    row["load_average"] = os.getloadavg()[0]
    return row


_REPLAYED = re.compile(r"from the checkpoint at segment \d+ offset \d+ and (\d+) records")


def _recovery_of(broker: Warren, logged: int) -> dict:
    """What warren's start after the kill replayed (its log after ``logged`` bytes: records
    after the checkpoint, -1 when it did not start from one) and its peak resident memory
    (VmHWM of the broker's process: the recovery's peak, or the drain's if higher)."""
    with open(broker.log_path, "rb") as log:
        log.seek(logged)
        text = log.read().decode(errors="replace")
    found = _REPLAYED.search(text)
    out = {"replayed": int(found.group(1)) if found else -1}
    if broker.process is not None and broker.process.poll() is None:
        out["recovery_peak_mb"] = status_kb(broker.process.pid, "VmHWM") / 1024
    return out


async def _declare(settings: Settings, arguments: dict) -> None:
    deep = await DeepQueue.open(settings.host, settings.port, settings, settings.tag, 0)
    await deep.declare(arguments)


async def _restart_and_drain(broker: Broker, settings: Settings, count: int,
                             drain_seconds: float | None) -> dict:
    failure: list[BaseException] = []

    def start() -> None:
        try:
            broker.start()
        except BaseException as error:   # noqa: BLE001 - reported below
            failure.append(error)
    began = time.monotonic()
    starter = threading.Thread(target=start, daemon=True)
    starter.start()
    while not port_accepts(settings.port):
        if failure:
            raise failure[0]
        if time.monotonic() - began > START_TIMEOUT:
            raise RuntimeError("the AMQP port did not open after the restart")
        await asyncio.sleep(0.01)
    port_s = time.monotonic() - began
    consumer, first_at = await serve_first(settings, began + START_TIMEOUT)
    first_cpu = cpu_seconds(broker)
    first_s = first_at - began
    peak = (status_kb(broker.process.pid, "VmHWM") / 1024
            if isinstance(broker, Warren) and broker.process is not None else None)
    ctx = multiprocessing.get_context("fork")   # connected while the first half drains
    go, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    publisher = ctx.Process(target=_publisher_process,
                            args=(settings, count, go, stop, results), daemon=True)
    publisher.start()
    half_at, half = await drain(consumer, count // 2, drain_seconds)
    half_cpu = cpu_seconds(broker)
    go.set()
    done_at, received = await drain(consumer, count, drain_seconds)
    stop.set()
    try:
        published = await asyncio.get_running_loop().run_in_executor(None, results.get, True,
                                                                     900)
    except queue.Empty:
        raise RuntimeError("the publisher gave no result within 900 s") from None
    publisher.join(30)
    drained = consumer.recovered(count)
    figures = {"port_s": port_s, "first_delivery_s": first_s, "first_delivery_peak_mb": peak,
               "drained": drained, "dups": consumer.tally.dups,
               "drain_rate": rate(half - 1, first_at, half_at),
               "drain_cpu_us": ((half_cpu - first_cpu) / (half - 1) * 1e6
                                if half > 1 else None),
               "drain_rate_publishing": rate(received - half, half_at, done_at)}
    if drained < count and not drain_seconds:
        figures["lost"] = count - drained
    consumer.close_transport()
    starter.join(START_TIMEOUT)
    if failure:
        raise failure[0]
    if "error" in published:
        raise RuntimeError(published["error"])
    figures["publish_rate_draining"] = published["confirmed"] / published["seconds"]
    return figures


def _num(value, fmt: str = "{:,.0f}") -> str:
    return "–" if value is None else fmt.format(value)


HEADER = ("| broker | messages | fill msg/s | RSS idle MB | RSS queued MB | PSS queued MB "
          "| window msgs / MB | B/msg beyond the window: accounted / 2nd half "
          "| kill -9 → port s "
          "| kill -9 → first delivery s | drain msg/s | drain: broker CPU us/msg "
          "| drain msg/s while publishing "
          "| publish msg/s while draining "
          "| RSS draining MB | lost / dups | load avg |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")


def _window(row: dict) -> str:
    if "window_messages" not in row:
        return "–"
    return f"{row['window_messages']:,} / {row['window_bytes'] / 1e6:,.0f}"


def markdown_row(row: dict) -> str:
    if "error" in row and "drain_rate" not in row:
        return f"| {row['broker']} | {row['messages']:,} | FAILED: {row['error']} |"
    lost = row.get("lost", 0)
    drained = "" if row.get("drained", 0) >= row["messages"] else f" ({row['drained']:,} drained)"
    return (f"| {row['broker']} | {row['messages']:,} | {_num(row.get('fill_rate'))} "
            f"| {_num(row.get('rss_idle_mb'))} | {_num(row.get('rss_queued_mb'))} "
            f"| {_num(row.get('pss_queued_mb'))} | {_window(row)} "
            f"| {_num(row.get('beyond_window_b_per_msg'))} "
            f"/ {_num(row.get('beyond_window_slope_b_per_msg'))} "
            f"| {_num(row.get('port_s'), '{:.1f}')} "
            f"| {_num(row.get('first_delivery_s'), '{:.1f}')} | {_num(row.get('drain_rate'))} "
            f"| {_num(row.get('drain_cpu_us'), '{:.1f}')} "
            f"| {_num(row.get('drain_rate_publishing'))}{drained} "
            f"| {_num(row.get('publish_rate_draining'))} | {_num(row.get('rss_draining_mb'))} "
            f"| {lost} / {row.get('dups', 0)} | {row['load_average']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.deep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--brokers", default="warren,rabbitmq,rabbitmq-lazy",
                   help=f"comma-separated, in this order, of: {', '.join(VARIANTS)}")
    p.add_argument("--rounds", type=int, default=1, help="how often the whole order is run")
    p.add_argument("--drain-seconds", type=float, default=None,
                   help="stop the drain after this long (the rate is over what was drained)")
    p.add_argument("--rabbitmq-server", default=None,
                   help="the rabbitmq-server script (default: rabbitmq-server on PATH)")
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    p.add_argument("--warren-from", default=None,
                   help="run warren from this checkout (before/after tables in one sitting)")
    a = p.parse_args(argv)
    WarrenWithApi.CHECKOUT = a.warren_from
    names = a.brokers.split(",")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        p.error(f"unknown broker {unknown[0]!r}")
    rows = []
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-deep-") as root:
        for count in a.messages:
            for _ in range(a.rounds):
                for name in names:
                    row = measure(VARIANTS[name], count, Path(root), a.rabbitmq_server,
                                  a.drain_seconds)
                    rows.append(row)
                    print(markdown_row(row), flush=True)
                    if "replayed" in row:
                        print(f"  after kill -9: {row['replayed']:,} records replayed after the "
                              f"checkpoint (-1: none used), peak RSS "
                              f"{_num(row.get('first_delivery_peak_mb'))} MB at the first "
                              f"delivery, {_num(row.get('recovery_peak_mb'))} MB after the "
                              f"drain", flush=True)
                    if a.out:
                        a.out.write_text(json.dumps(rows, indent=1))
    failed = [row for row in rows if "error" in row or row.get("lost")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
