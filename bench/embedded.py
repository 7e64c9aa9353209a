"""What a test suite waits for: warren's embedded broker vs a private RabbitMQ node, started,
used by Celery, stopped.

    python -m bench.embedded [--rounds 3] [--tasks 100] [--group 500] [--brokers warren,rabbitmq]

Each round starts the broker (warren: ``warren.embedded.Broker``; RabbitMQ: a private node of
Debian's rabbitmq-server as ``tests/network/rabbitmq.py`` starts it, installing the package
when missing) and measures:

- ``start s``: from the start call until the broker accepts clients (warren: its ready line;
  RabbitMQ: the node answers);
- ``task ms``: the median round trip of ``--tasks`` Celery tasks sent one after the other
  (``add.delay(i, i).get()``, worker in this process with ``start_worker``, pool ``solo``,
  results over ``rpc://``);
- ``group /s``: tasks per second of one group of ``--group`` tasks;
- ``stop s``: from the stop call until the broker process has ended.

The table (stdout, Markdown) has the medians of the rounds and the ratio warren / RabbitMQ
(below 1 is faster for the times, above 1 for the rate); progress goes to stderr. Celery's
test worker spends about 10 s leaving its loop at each round's end with either broker; that
is not in any figure. Speed is measured, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid

from celery import Celery, group
from celery.contrib.testing.worker import start_worker

from tests.network.rabbitmq import RabbitNode
from warren.embedded import Broker

FIGURES = ("start s", "task ms", "group /s", "stop s")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def celery_figures(url: str, tasks: int, group_size: int) -> tuple[float, float]:
    app = Celery(f"bench-{uuid.uuid4().hex[:6]}", broker=url, backend="rpc://")

    @app.task(name=f"{app.main}.add")
    def add(x, y):
        return x + y

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=120):
        add.delay(0, 0).get(timeout=60)   # the worker's queue and the reply queue exist now
        trips = []
        for i in range(tasks):
            began = time.perf_counter()
            add.delay(i, i).get(timeout=60)
            trips.append(time.perf_counter() - began)
        began = time.perf_counter()
        group(add.s(i, i) for i in range(group_size))().get(timeout=600)
        rate = group_size / (time.perf_counter() - began)
    return statistics.median(trips) * 1000, rate


def warren_round(args) -> dict[str, float]:
    began = time.perf_counter()
    broker = Broker().start()
    started = time.perf_counter() - began
    try:
        trip, rate = celery_figures(broker.amqp_url, args.tasks, args.group)
    finally:
        began = time.perf_counter()
        broker.stop()
        stopped = time.perf_counter() - began
    return dict(zip(FIGURES, (started, trip, rate, stopped)))


def rabbitmq_round(args) -> dict[str, float]:
    node = RabbitNode()
    began = time.perf_counter()
    node.start()
    started = time.perf_counter() - began
    if node.install_seconds:
        say(f"  installed rabbitmq-server in {node.install_seconds:.0f} s (not counted)")
        started -= node.install_seconds
    try:
        trip, rate = celery_figures(node.url, args.tasks, args.group)
    finally:
        began = time.perf_counter()
        node.stop()
        stopped = time.perf_counter() - began
    return dict(zip(FIGURES, (started, trip, rate, stopped)))


ROUNDS = {"warren": warren_round, "rabbitmq": rabbitmq_round}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.embedded",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds per broker (3)")
    p.add_argument("--tasks", type=int, default=100, help="tasks sent one by one (100)")
    p.add_argument("--group", type=int, default=500, help="tasks in the group (500)")
    p.add_argument("--brokers", default="warren,rabbitmq", help="warren,rabbitmq")
    args = p.parse_args(argv)
    brokers = [b for b in args.brokers.split(",") if b]
    for b in brokers:
        if b not in ROUNDS:
            p.error(f"unknown broker {b!r}: give warren, rabbitmq or both")
    results: dict[str, list[dict[str, float]]] = {b: [] for b in brokers}
    for n in range(args.rounds):
        for b in brokers:
            say(f"round {n + 1}/{args.rounds}: {b}")
            results[b].append(ROUNDS[b](args))
    medians = {b: {f: statistics.median(r[f] for r in rounds) for f in FIGURES}
               for b, rounds in results.items()}
    print("| broker | " + " | ".join(FIGURES) + " |")
    print("|---|" + "---:|" * len(FIGURES))
    for b in brokers:
        print(f"| {b} | " + " | ".join(f"{medians[b][f]:.2f}" for f in FIGURES) + " |")
    if len(brokers) == 2:
        print("| warren / rabbitmq | " + " | ".join(
            f"{medians['warren'][f] / medians['rabbitmq'][f]:.2f}" for f in FIGURES) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
