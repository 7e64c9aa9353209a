"""Messages per second moved by a dynamic shovel: warren -> warren vs RabbitMQ's own shovel
plugin between two RabbitMQ nodes, persistent and transient, ack-mode on-confirm.

    python -m bench.shovel [--messages 50000] [--rounds 3] [--brokers warren,rabbitmq]
                           [--modes persistent,transient] [--size 64] [--prefetch 1000]

Per broker kind two brokers run on free loopback ports (warren: ``warren run`` subprocesses as
the tests start them; RabbitMQ: two private nodes of Debian's rabbitmq-server, as
``tests/network/rabbitmq.py`` starts them, installing the package when missing, with the
``rabbitmq_shovel`` and ``rabbitmq_management`` plugins). Each round:

1. a fresh durable queue on the source broker is pre-filled with N messages by pika with
   publisher confirms (delivery mode 2 or 1), and an empty durable queue made on the destination;
2. the shovel is set on the source broker through ``PUT /api/parameters/shovel/%2F/NAME``
   (``src-uri`` ``amqp://`` = that broker itself, ``dest-uri`` the other one, ``ack-mode``
   ``on-confirm``, ``src-prefetch-count`` ``--prefetch``): the clock starts here;
3. the clock stops when the destination queue holds N (its depth polled every 20 ms with a
   passive declare), and the rate is N / elapsed.

The table (stdout, Markdown) has the median rate of the rounds per broker and mode, and the
ratio warren / RabbitMQ; progress goes to stderr. Speed is measured, never asserted.

``--start`` measures the start instead: the seconds from the PUT to the first message in a
destination queue that does not exist yet (one message waits in the source queue; the
shovel's passive declare finds the destination missing and declares it), with RabbitMQ's
default ``reconnect-delay`` (5 s), which a shovel that needed a second connection waits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pika
import requests

from tests.broker_process import BrokerProcess
from tests.network.rabbitmq import RabbitNode

HOST = "127.0.0.1"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Endpoint:
    """What a round needs of a broker: its AMQP port, its HTTP API, its URI for a shovel."""

    def __init__(self, amqp_port: int, http: str, stop) -> None:
        self.amqp_port = amqp_port
        self.http = http
        self.url = f"amqp://guest:guest@{HOST}:{amqp_port}/%2F"
        self.stop = stop

    def channel(self, confirm: bool = False):
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            HOST, self.amqp_port, credentials=pika.PlainCredentials("guest", "guest"),
            heartbeat=0))
        ch = conn.channel()
        if confirm:
            ch.confirm_delivery()
        return conn, ch

    def shovel(self, method: str, name: str, value: dict | None = None) -> None:
        reply = requests.request(method, f"{self.http}/api/parameters/shovel/%2F/{name}",
                                 json={"value": value} if value is not None else None,
                                 auth=("guest", "guest"), timeout=30)
        if reply.status_code not in (201, 204):
            raise RuntimeError(f"{method} shovel {name}: {reply.status_code} {reply.text}")


def start_warren(workdir: Path) -> Endpoint:
    broker = BrokerProcess(workdir)
    broker.start()

    def stop() -> None:
        broker.stop()
    return Endpoint(broker.amqp_port, f"http://{HOST}:{broker.http_port}", stop)


def start_rabbitmq(workdir: Path) -> Endpoint:
    node = RabbitNode(workdir)
    node.start()
    if node.install_seconds:
        say(f"  installed rabbitmq-server in {node.install_seconds:.0f} s")
    return Endpoint(node.amqp_port, node.http, node.stop)


STARTERS = {"warren": start_warren, "rabbitmq": start_rabbitmq}


def one_round(src: Endpoint, dest: Endpoint, name: str, args, persistent: bool) -> float:
    queue = f"bench.shovel.{name}"
    conn, ch = src.channel(confirm=True)
    ch.queue_declare(queue, durable=True)
    props = pika.BasicProperties(delivery_mode=2 if persistent else 1)
    body = b"x" * args.size
    for _ in range(args.messages):
        ch.basic_publish("", queue, body, props)   # returns once confirmed
    dconn, dch = dest.channel()
    dch.queue_declare(queue, durable=True)
    began = time.monotonic()
    src.shovel("PUT", name, {"src-uri": "amqp://", "src-queue": queue,
                             "dest-uri": dest.url, "dest-queue": queue,
                             "ack-mode": "on-confirm", "src-prefetch-count": args.prefetch})
    deadline = began + args.timeout
    while dch.queue_declare(queue, passive=True).method.message_count < args.messages:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: destination short of {args.messages} after "
                               f"{args.timeout:.0f} s")
        time.sleep(0.02)
    elapsed = time.monotonic() - began
    src.shovel("DELETE", name)
    ch.queue_delete(queue)
    dch.queue_delete(queue)
    conn.close()
    dconn.close()
    return args.messages / elapsed


def start_round(src: Endpoint, dest: Endpoint, name: str, args) -> float:
    """Seconds from the PUT to the first message in a destination queue made by the shovel."""
    queue = f"bench.shovel.{name}"
    conn, ch = src.channel(confirm=True)
    ch.queue_declare(queue, durable=True)
    ch.basic_publish("", queue, b"first", pika.BasicProperties(delivery_mode=2))
    began = time.monotonic()
    src.shovel("PUT", name, {"src-uri": "amqp://", "src-queue": queue,
                             "dest-uri": dest.url, "dest-queue": queue})
    deadline = began + args.timeout
    while not _arrived(dest, queue):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: nothing at the destination after {args.timeout:.0f} s")
        time.sleep(0.02)
    elapsed = time.monotonic() - began
    src.shovel("DELETE", name)
    ch.queue_delete(queue)
    conn.close()
    dconn, dch = dest.channel()
    dch.queue_delete(queue)
    dconn.close()
    return elapsed


def _arrived(broker: Endpoint, queue: str) -> bool:
    """A Basic.Get on a connection of its own: a missing queue closes the channel."""
    conn, ch = broker.channel()
    try:
        return ch.basic_get(queue, auto_ack=True)[0] is not None
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.shovel",
                                description=__doc__.split("\n")[0].rstrip(":,"))
    p.add_argument("--messages", type=int, default=50_000, help="messages per round (50000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per broker and mode (3)")
    p.add_argument("--brokers", default="warren,rabbitmq", help="warren,rabbitmq")
    p.add_argument("--modes", default="persistent,transient", help="persistent,transient")
    p.add_argument("--size", type=int, default=64, help="body bytes (64)")
    p.add_argument("--prefetch", type=int, default=1000, help="src-prefetch-count (1000)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a round may take")
    p.add_argument("--out", help="write every round's rate here as JSON")
    p.add_argument("--start", action="store_true",
                   help="measure the seconds to the first message at a missing destination "
                        "queue instead of the rate")
    args = p.parse_args(argv)
    brokers = [b for b in args.brokers.split(",") if b]
    modes = [m for m in args.modes.split(",") if m]
    for b in brokers:
        if b not in STARTERS:
            p.error(f"unknown broker {b!r}")
    for m in modes:
        if m not in ("persistent", "transient"):
            p.error(f"unknown mode {m!r}")

    if args.start:
        modes = ["start"]
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-shovel-") as tmp:
        for kind in brokers:
            say(f"{kind}: starting two brokers")
            src = STARTERS[kind](Path(tmp) / f"{kind}-src")
            try:
                dest = STARTERS[kind](Path(tmp) / f"{kind}-dest")
                try:
                    for mode in modes:
                        for r in range(args.rounds):
                            if args.start:
                                rate = start_round(src, dest, f"{kind}-start-{r}", args)
                                say(f"  {kind} start round {r + 1}: {rate:.3f} s")
                            else:
                                rate = one_round(src, dest, f"{kind}-{mode}-{r}", args,
                                                 mode == "persistent")
                                say(f"  {kind} {mode} round {r + 1}: {rate:,.0f} msg/s")
                            rates.setdefault((kind, mode), []).append(rate)
                finally:
                    dest.stop()
            finally:
                src.stop()

    if args.start:
        print(f"Shovel start to a missing destination queue, median of {args.rounds} rounds "
              f"(seconds from the PUT to the first message there)\n")
    else:
        print(f"Shovel, ack-mode on-confirm, {args.messages:,} messages of {args.size} B, "
              f"prefetch {args.prefetch}, median of {args.rounds} rounds (msg/s)\n")
    print("| mode | " + " | ".join(brokers) + (" | warren / RabbitMQ |"
                                               if len(brokers) == 2 else " |"))
    print("|---" * (len(brokers) + 1 + (len(brokers) == 2)) + "|")
    for mode in modes:
        medians = [statistics.median(rates[(b, mode)]) for b in brokers]
        row = f"| {mode} | " + " | ".join(f"{m:.3f}" if args.start else f"{m:,.0f}"
                                           for m in medians)
        if len(brokers) == 2:
            w = medians[brokers.index("warren")] if "warren" in brokers else 0
            o = medians[1 - brokers.index("warren")] if "warren" in brokers else 1
            row += f" | {w / o:.2f}"
        print(row + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"config": vars(args), "rates": {f"{b}/{m}": v for (b, m), v in rates.items()}},
            indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
