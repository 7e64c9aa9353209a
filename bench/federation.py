"""A message crossing one federation link vs a local delivery, and a 5-broker federated mesh
under load: warren vs RabbitMQ's federation plugin between RabbitMQ nodes.

    python -m bench.federation [--messages 20000] [--latency-messages 2000] [--rate 500]
                               [--brokers warren,rabbitmq] [--mesh warren] [--size 64]

Per broker kind two brokers run on free loopback ports (warren: ``warren run`` subprocesses as
the tests start them; RabbitMQ: private nodes of Debian's rabbitmq-server as
``tests/network/rabbitmq.py`` starts them, with ``rabbitmq_federation`` and
``rabbitmq_management``). On both, the topic exchange ``bench.fx`` exists; the downstream D
federates it from the upstream U (``federation-upstream`` ``up``, a policy, defaults:
``on-confirm``, prefetch 1000). ``bench.local`` on U and ``bench.fed`` on D are bound for
``local`` and ``fed``: the same publisher on U reaches the first locally and the second across
the link.

- **throughput**: N transient messages published on U as fast as pika goes (no confirms) while
  a consumer (auto-ack) reads; the rate is N / (last received - first sent);
- **latency**: ``--latency-messages`` published one at a time at ``--rate`` per second, each
  carrying its send time; p50 / p99 of receive - send (same machine, one clock);
- **mesh**: five brokers, each federating ``bench.fx`` from the four others (max-hops 1), a
  consumer on each bound for ``fed``, a publisher on each sending N / 5: every message reaches
  five consumers; the rate is deliveries per second over all of them.

The tables (stdout, Markdown) hold the figures per broker; progress goes to stderr. Speed is
measured, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika
import requests

from bench.shovel import Endpoint, say
from tests.broker_process import BrokerProcess
from tests.network.rabbitmq import RabbitNode

EXCHANGE = "bench.fx"
STAMP = struct.Struct("!d")


def start_warren(workdir: Path) -> Endpoint:
    """A broker named after its directory: federation tells brokers apart by node name."""
    broker = BrokerProcess(workdir, extra_args=["--node-name", f"warren@{workdir.name}"])
    broker.start()
    return Endpoint(broker.amqp_port, broker.http_url, broker.stop)


def start_rabbitmq(workdir: Path) -> Endpoint:
    node = RabbitNode(workdir, plugins=("rabbitmq_federation", "rabbitmq_federation_management",
                                        "rabbitmq_management"))
    node.start()
    return Endpoint(node.amqp_port, node.http, node.stop)


STARTERS = {"warren": start_warren, "rabbitmq": start_rabbitmq}


def api(ep: Endpoint, method: str, path: str, body: dict | None = None) -> requests.Response:
    reply = requests.request(method, ep.http + path, json=body, auth=("guest", "guest"),
                             timeout=30)
    if reply.status_code >= 400:
        raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text}")
    return reply


def federate(down: Endpoint, ups: list[Endpoint]) -> None:
    """D federates ``bench.fx`` from every endpoint of ``ups``; returns once all links run."""
    for i, up in enumerate(ups):
        api(down, "PUT", f"/api/parameters/federation-upstream/%2F/up{i}",
            {"value": {"uri": up.url}})
    api(down, "PUT", "/api/policies/%2F/bench-fed",
        {"pattern": "^bench\\.fx$", "apply-to": "exchanges",
         "definition": {"federation-upstream-set": "all"}})
    deadline = time.monotonic() + 120
    while True:
        rows = api(down, "GET", "/api/federation-links").json()
        if sum(1 for r in rows if r.get("status") == "running") >= len(ups):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"federation links not running: {rows}")
        time.sleep(0.1)


def wait_bound(up: Endpoint, links: int) -> None:
    """Until ``links`` downstreams' internal exchanges are bound to U's ``bench.fx``."""
    deadline = time.monotonic() + 120
    while True:
        rows = api(up, "GET", f"/api/exchanges/%2F/{EXCHANGE}/bindings/source").json()
        if sum(1 for r in rows if r["destination_type"] == "exchange") >= links:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"upstream bindings missing: {rows}")
        time.sleep(0.1)


def declare(ep: Endpoint, queue: str | None = None, key: str = "") -> None:
    conn, ch = ep.channel()
    ch.exchange_declare(EXCHANGE, "topic", durable=True)
    if queue:
        ch.queue_declare(queue, durable=True)
        ch.queue_bind(queue, EXCHANGE, key)
    conn.close()


class Reader(threading.Thread):
    """Consumes a queue (auto-ack) until ``expect`` messages arrived; keeps receive times
    and the send time each body carries."""

    def __init__(self, ep: Endpoint, queue: str, expect: int) -> None:
        super().__init__(daemon=True)
        self.ep, self.queue, self.expect = ep, queue, expect
        self.latencies: list[float] = []
        self.last = 0.0
        self.ready = threading.Event()

    def run(self) -> None:
        conn, ch = self.ep.channel()
        ch.basic_qos(prefetch_count=1000)
        got = 0
        self.ready.set()
        for _m, _p, body in ch.consume(self.queue, auto_ack=True, inactivity_timeout=60):
            if body is None:
                break
            now = time.perf_counter()
            self.latencies.append(now - STAMP.unpack_from(body)[0])
            got += 1
            self.last = now
            if got >= self.expect:
                break
        conn.close()


def publish(ep: Endpoint, key: str, count: int, size: int, rate: float | None) -> float:
    """Publish ``count`` messages; returns the time of the first send."""
    conn, ch = ep.channel()
    pad = b"x" * max(0, size - STAMP.size)
    props = pika.BasicProperties(delivery_mode=1)
    first = time.perf_counter()
    for i in range(count):
        if rate:
            due = first + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        ch.basic_publish(EXCHANGE, key, STAMP.pack(time.perf_counter()) + pad, props)
    conn.close()
    return first


def measure(up: Endpoint, down: Endpoint, queue: str, key: str, args) -> dict:
    reader = Reader(down, queue, args.messages)
    reader.start()
    reader.ready.wait(30)
    first = publish(up, key, args.messages, args.size, None)
    reader.join(args.timeout)
    throughput = args.messages / (reader.last - first) if reader.last else 0.0
    reader = Reader(down, queue, args.latency_messages)
    reader.start()
    reader.ready.wait(30)
    publish(up, key, args.latency_messages, args.size, args.rate)
    reader.join(args.timeout)
    lat = sorted(reader.latencies)
    return {"rate": throughput,
            "p50": 1000 * statistics.median(lat) if lat else 0.0,
            "p99": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else 0.0}


def link_vs_local(kind: str, tmp: Path, args) -> dict[str, dict]:
    say(f"{kind}: starting two brokers")
    up = STARTERS[kind](tmp / f"{kind}-up")
    down = STARTERS[kind](tmp / f"{kind}-down")
    try:
        declare(up, "bench.local", "local")
        declare(down, "bench.fed", "fed")
        federate(down, [up])
        wait_bound(up, 1)
        out = {"local": measure(up, up, "bench.local", "local", args),
               "link": measure(up, down, "bench.fed", "fed", args)}
        for what, row in out.items():
            say(f"  {kind} {what}: {row['rate']:,.0f} msg/s, p50 {row['p50']:.2f} ms, "
                f"p99 {row['p99']:.2f} ms")
        return out
    finally:
        down.stop()
        up.stop()


def mesh(kind: str, tmp: Path, args) -> float:
    say(f"{kind}: starting a mesh of five")
    nodes = [STARTERS[kind](tmp / f"{kind}-mesh{i}") for i in range(5)]
    try:
        for ep in nodes:
            declare(ep, "bench.fed", "fed")
        for i, ep in enumerate(nodes):
            federate(ep, [o for j, o in enumerate(nodes) if j != i])
        per = args.messages // 5
        for ep in nodes:   # every downstream's binding is on every upstream
            wait_bound(ep, 4)
        readers = [Reader(ep, "bench.fed", per * 5) for ep in nodes]
        for r in readers:
            r.start()
            r.ready.wait(30)
        began = time.perf_counter()
        pubs = [threading.Thread(target=publish, args=(ep, "fed", per, args.size, None))
                for ep in nodes]
        for t in pubs:
            t.start()
        for t in pubs:
            t.join(args.timeout)
        for r in readers:
            r.join(args.timeout)
        delivered = sum(len(r.latencies) for r in readers)
        rate = delivered / (max(r.last for r in readers) - began)
        say(f"  {kind} mesh: {delivered} of {per * 25} deliveries "
            f"({[len(r.latencies) for r in readers]}), {rate:,.0f} deliveries/s")
        return rate
    finally:
        for ep in nodes:
            ep.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.federation",
                                description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=20_000, help="throughput messages (20000)")
    p.add_argument("--latency-messages", type=int, default=2000, help="paced messages (2000)")
    p.add_argument("--rate", type=float, default=500.0, help="paced rate, msg/s (500)")
    p.add_argument("--size", type=int, default=64, help="body bytes (64)")
    p.add_argument("--brokers", default="warren,rabbitmq", help="warren,rabbitmq")
    p.add_argument("--mesh", default="warren", help="kinds to run the 5-broker mesh for")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a phase may take")
    args = p.parse_args(argv)
    brokers = [b for b in args.brokers.split(",") if b]
    meshes = [b for b in args.mesh.split(",") if b]
    for b in brokers + meshes:
        if b not in STARTERS:
            p.error(f"unknown broker {b!r}")
    pairs: dict[str, dict] = {}
    mesh_rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-federation-") as tmp:
        for kind in brokers:
            pairs[kind] = link_vs_local(kind, Path(tmp), args)
        for kind in meshes:
            mesh_rates[kind] = mesh(kind, Path(tmp), args)
    print(f"One federation link vs local delivery: {args.messages:,} transient messages of "
          f"{args.size} B for throughput; {args.latency_messages:,} at {args.rate:.0f}/s "
          f"for latency\n")
    print("| broker | path | msg/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for kind, rows in pairs.items():
        for what, row in rows.items():
            print(f"| {kind} | {what} | {row['rate']:,.0f} | {row['p50']:.2f} | "
                  f"{row['p99']:.2f} |")
    if mesh_rates:
        print(f"\nFull mesh of 5, every broker publishing {args.messages // 5:,} "
              f"(each message to 5 consumers)\n")
        print("| broker | deliveries/s |")
        print("|---|---|")
        for kind, rate in mesh_rates.items():
            print(f"| {kind} | {rate:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
