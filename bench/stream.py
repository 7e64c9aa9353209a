"""Stream queues: publish and consume rates over AMQP 0-9-1 and over the Stream protocol,
warren side by side with RabbitMQ's streams (Debian's rabbitmq-server, plugin rabbitmq_stream).

    python -m bench.stream [--messages 100000] [--rounds 1] [--size 64]
                           [--brokers warren,rabbitmq] [--window 1000] [--replay 1000000]
                           [--compare PATH ...] [--callgrind]

Per broker, one broker on free loopback ports (warren: ``warren run`` as the tests start it;
RabbitMQ: a private node as ``tests/network/rabbitmq.py`` starts one, with ``rabbitmq_stream``),
the same clients for both. Each round, on a fresh stream:

1. ``amqp-publish``: pika publishes N persistent messages with confirms, ``--window`` in flight
   (``tests/durability/clients.py``); rate = N / time to the last confirm;
2. ``amqp-consume``: pika reads the N back from ``first`` (prefetch ``--window``, an ack with
   multiple every half window); rate = N / time to the last one;
3. ``stream-publish``: rstream publishes N more in batches of 500, confirms counted by its
   callback; rate = N / time to the last confirm;
4. ``stream-replay``: rstream reads all 2N from offset 0 (credit per chunk, as the client
   does; the N of step 1 arrive as AMQP 1.0 messages, converted as RabbitMQ converts them);
   rate = 2N / time to the last one.

The table (stdout, Markdown) has the median rate per broker and step, the broker's CPU
time per message (its process tree, from /proc) and the ratio warren / RabbitMQ; progress
goes to stderr. Speed is measured, never asserted. ``--compare PATH`` (repeatable) runs warren
from another checkout too (a ``git archive`` of an older commit), named after its directory:
all brokers run throughout and their rounds interleave, as a before and an after on a loaded
machine compare only so. ``--callgrind`` runs the warrens under callgrind, instrumentation
off but for each step (``callgrind_control -z``, ``-i on``, the step, ``-i off``, a dump), and
adds each step's instructions per message: a figure the machine's load does not move.

``--replay N`` (after the rounds, N = 1,000,000 for the figure the README quotes) fills a fresh
stream with N messages over the Stream protocol and reads them all back from offset 0 with
rstream, timing both, and takes the broker's resident memory (its process tree's VmRSS)
before the publish, after it and after the replay, and its CPU time (user and system, its
process tree) over the publish and over the replay: the growth per message over the publish is
what the broker keeps per message in memory (warren: the stream's index, 20 bytes a message,
plus whatever the allocator holds), the growth over the replay shows whether reading old data
costs memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pika
from rstream import Consumer, ConsumerOffsetSpecification, OffsetType, Producer

from bench.proc_cpu import process_cpu_seconds
from tests.broker_process import BrokerProcess
from tests.durability.clients import ConfirmedPublisher
from tests.network.rabbitmq import RabbitNode

HOST = "127.0.0.1"
STEPS = ("amqp-publish", "amqp-consume", "stream-publish", "stream-replay")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def amqp_publish(port: int, stream: str, n: int, size: int, window: int) -> float:
    url = f"amqp://guest:guest@{HOST}:{port}/%2F"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    conn.channel().queue_declare(stream, durable=True, arguments={"x-queue-type": "stream"})
    conn.close()
    body = b"x" * size
    start = time.perf_counter()
    publisher = ConfirmedPublisher(url, stream, (body for _ in range(n)), window=window)
    publisher.run(timeout=3600)
    elapsed = time.perf_counter() - start
    if len(publisher.acked) != n:
        raise RuntimeError(f"{len(publisher.acked)} of {n} confirmed: {publisher.error}")
    return n / elapsed


def amqp_consume(port: int, stream: str, n: int, window: int) -> float:
    conn = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@{HOST}:{port}/%2F"))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=window)
    got = 0
    start = time.perf_counter()
    for method, _props, _body in ch.consume(stream, arguments={"x-stream-offset": "first"},
                                            inactivity_timeout=60):
        if method is None:
            raise RuntimeError(f"only {got} of {n} read")
        got += 1
        if got % (window // 2) == 0 or got == n:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if got == n:
            break
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


async def stream_publish(port: int, stream: str, n: int, size: int) -> float:
    body = b"y" * size
    confirmed = 0
    done = asyncio.Event()

    def on_confirm(status) -> None:
        nonlocal confirmed
        confirmed += 1
        if confirmed == n:
            done.set()

    async with Producer(HOST, port=port, username="guest", password="guest") as producer:
        start = time.perf_counter()
        sent = 0
        while sent < n:
            batch = min(500, n - sent)
            await producer.send_batch(stream, [body] * batch, on_publish_confirm=on_confirm)
            sent += batch
        await asyncio.wait_for(done.wait(), 3600)
        return n / (time.perf_counter() - start)


async def stream_replay(port: int, stream: str, n: int) -> float:
    got = 0
    done = asyncio.Event()

    async def on_message(msg, ctx) -> None:
        nonlocal got
        got += 1
        if got == n:
            done.set()

    consumer = Consumer(HOST, port=port, username="guest", password="guest")
    await consumer.start()
    start = time.perf_counter()
    await consumer.subscribe(stream, on_message, offset_specification=ConsumerOffsetSpecification(
        OffsetType.FIRST, None), initial_credit=10)
    await asyncio.wait_for(done.wait(), 3600)
    elapsed = time.perf_counter() - start
    await consumer.close()
    return n / elapsed


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (RabbitMQ's script starts beam.smp)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        found.append(p)
    return found


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` and its descendants: what the broker spent, which
    the load of other processes on the machine does not change as it changes rates."""
    return sum(process_cpu_seconds(p) for p in _tree(pid))


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def replay_figures(broker: "Running", n: int, size: int) -> dict[str, float]:
    """Publish ``n`` to a fresh stream, replay them from 0: rates and memory per message."""
    stream = "bench-replay"
    before = rss_bytes(broker.pid)

    async def create() -> None:
        async with Producer(HOST, port=broker.stream, username="guest",
                            password="guest") as producer:
            await producer.create_stream(stream, exists_ok=True)
    asyncio.run(create())
    cpu_before = cpu_seconds(broker.pid)
    publish = asyncio.run(stream_publish(broker.stream, stream, n, size))
    filled = rss_bytes(broker.pid)
    cpu_filled = cpu_seconds(broker.pid)
    start = time.perf_counter()
    replay = asyncio.run(stream_replay(broker.stream, stream, n))
    seconds = time.perf_counter() - start
    replayed = rss_bytes(broker.pid)
    return {"publish msg/s": publish, "replay msg/s": replay, "replay s": seconds,
            "publish broker CPU s": cpu_filled - cpu_before,
            "replay broker CPU s": cpu_seconds(broker.pid) - cpu_filled,
            "B/msg kept": (filled - before) / n, "replay MB": (replayed - filled) / 1e6}


class Running:
    """One broker under test: its AMQP and Stream ports, and how to stop it. ``checkout``:
    warren imported from that directory instead of this one (``--compare``); ``callgrind``:
    warren under valgrind's callgrind, instrumentation off until a step turns it on."""

    def __init__(self, kind: str, workdir: Path, checkout: str | None = None,
                 callgrind: bool = False) -> None:
        self.kind = kind
        self.callgrind = callgrind
        self.workdir = workdir / kind
        if kind == "warren" or checkout:
            # it advertises the host of its node name to Stream clients, as the RabbitMQ
            # node advertises the address set for it: both the one the clients connect to,
            # else rstream opens a second connection to the leader by that name
            proc_class = CallgrindBroker if callgrind else BrokerProcess
            env = {"PYTHONPATH": checkout} if checkout else None
            self.proc = proc_class(self.workdir, extra_args=["--node-name", f"warren@{HOST}"],
                                   env=env, cwd=checkout).start(timeout=600)
            self.amqp, self.stream = self.proc.amqp_port, self.proc.stream_port
            self.stop = self.proc.stop
            assert self.proc.proc is not None
            self.pid = self.proc.proc.pid
        else:
            node = RabbitNode(self.workdir, plugins=("rabbitmq_stream",)).start()
            self.amqp, self.stream = node.amqp_port, node.stream_port
            self.stop = node.stop
            assert node.proc is not None
            self.pid = node.proc.pid

    def measure(self, run: Callable[[], float]) -> tuple[float, float, float]:
        """``run()``'s rate, the broker's CPU seconds over it, and (under callgrind) the
        instructions it executed, else 0."""
        if self.callgrind:
            subprocess.run(["callgrind_control", "-z", str(self.pid)], check=True,
                           capture_output=True)
            subprocess.run(["callgrind_control", "-i", "on", str(self.pid)], check=True,
                           capture_output=True)
        cpu = cpu_seconds(self.pid)
        rate = run()
        cpu = cpu_seconds(self.pid) - cpu
        if not self.callgrind:
            return rate, cpu, 0.0
        subprocess.run(["callgrind_control", "-i", "off", str(self.pid)], check=True,
                       capture_output=True)
        before = set(self.workdir.parent.glob(f"callgrind.{self.pid}*"))
        subprocess.run(["callgrind_control", "-d", str(self.pid)], check=True,
                       capture_output=True)
        dumps = set(self.workdir.parent.glob(f"callgrind.{self.pid}*")) - before
        instructions = 0.0
        for dump in dumps:
            for line in dump.read_text(errors="replace").splitlines():
                if line.startswith("summary:") or line.startswith("totals:"):
                    instructions = max(instructions, float(line.split()[1]))
            dump.unlink()
        return rate, cpu, instructions


class CallgrindBroker(BrokerProcess):
    """warren under ``valgrind --tool=callgrind --instr-atstart=no``: each step is counted
    alone (``callgrind_control -z``, ``-i on``, the step, ``-i off``, a dump), so its
    instructions per message compare commits on a loaded machine, where rates do not."""

    def command(self) -> list[str]:
        out = Path(self.data_dir).parent / "callgrind.%p"
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={out}"] + super().command()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--brokers", default="warren,rabbitmq")
    ap.add_argument("--compare", metavar="PATH", action="append", default=[],
                    help="also run warren from the checkout at PATH (e.g. a `git archive` of "
                         "main), named after its directory; repeatable; all brokers run "
                         "throughout, their rounds interleaved")
    ap.add_argument("--callgrind", action="store_true",
                    help="run warren (and the --compare checkouts) under callgrind and give "
                         "the instructions per message of each step (keep --messages small: "
                         "~50x slower)")
    ap.add_argument("--replay", type=int, default=0,
                    help="then publish this many to a fresh stream and replay them from 0")
    args = ap.parse_args(argv)
    checkouts = {Path(path).resolve().name: str(Path(path).resolve())
                 for path in args.compare}
    kinds = args.brokers.split(",") + list(checkouts)
    rates: dict[tuple[str, str], list[float]] = {}
    cpu_us: dict[tuple[str, str], list[float]] = {}
    instructions: dict[tuple[str, str], list[float]] = {}
    replays: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="warren-bench-stream-") as tmp:
        running: dict[str, Running] = {}
        try:
            for kind in kinds:
                say(f"starting {kind}")
                running[kind] = Running(kind, Path(tmp), checkouts.get(kind),
                                        args.callgrind and kind != "rabbitmq")
            for r in range(args.rounds):
                for kind, broker in running.items():
                    stream = f"bench-{r}"
                    n = args.messages
                    for step, count, run in (
                            ("amqp-publish", n, lambda: amqp_publish(broker.amqp, stream, n,
                                                                     args.size, args.window)),
                            ("amqp-consume", n, lambda: amqp_consume(broker.amqp, stream, n,
                                                                     args.window)),
                            ("stream-publish", n, lambda: asyncio.run(stream_publish(
                                broker.stream, stream, n, args.size))),
                            ("stream-replay", 2 * n, lambda: asyncio.run(stream_replay(
                                broker.stream, stream, 2 * n)))):
                        rate, cpu, instr = broker.measure(run)
                        rates.setdefault((kind, step), []).append(rate)
                        cpu_us.setdefault((kind, step), []).append(cpu / count * 1e6)
                        figures = f"{rate:,.0f} msg/s, broker CPU {cpu / count * 1e6:.1f} us/msg"
                        if instr:
                            instructions.setdefault((kind, step), []).append(instr / count)
                            figures += f", {instr / count:,.0f} instructions/msg"
                        say(f"{kind} round {r + 1} {step}: {figures}")
            if args.replay:
                for kind, broker in running.items():
                    replays[kind] = replay_figures(broker, args.replay, args.size)
                    say(f"{kind} replay of {args.replay:,}: {replays[kind]}")
        finally:
            for broker in running.values():
                broker.stop()
    print(f"\n{args.messages:,} messages of {args.size} bytes, median of {args.rounds} "
          "round(s): msg/s, broker CPU us per message"
          + (", instructions per message (callgrind)" if instructions else "") + "\n")
    ratio_head = " | warren / rabbitmq" if {"warren", "rabbitmq"} <= set(kinds) else ""
    print("| step | " + " | ".join(kinds) + " | " + " | ".join(f"{k} us" for k in kinds)
          + "".join(f" | {k} instr" for k in kinds if (k, STEPS[0]) in instructions)
          + ratio_head + " |")
    print("|---" * (1 + 2 * len(kinds) + sum((k, STEPS[0]) in instructions for k in kinds)
                    + bool(ratio_head)) + "|")
    for step in STEPS:
        medians = {k: statistics.median(rates[(k, step)]) for k in kinds if (k, step) in rates}
        cells = [f"{medians[k]:,.0f}" if k in medians else "-" for k in kinds]
        cells += [f"{statistics.median(cpu_us[(k, step)]):.1f}" if (k, step) in cpu_us
                  else "-" for k in kinds]
        cells += [f"{statistics.median(instructions[(k, step)]):,.0f}" for k in kinds
                  if (k, step) in instructions]
        ratio = ""
        if ratio_head and "warren" in medians and "rabbitmq" in medians:
            ratio = f" | {medians['warren'] / medians['rabbitmq']:.2f}"
        print(f"| {step} | " + " | ".join(cells) + ratio + " |")
    if replays:
        print(f"\n{args.replay:,} messages of {args.size} bytes published to a fresh stream "
              "and replayed from offset 0 (Stream protocol, rstream)\n")
        shown = [k for k in kinds if k in replays]
        print("| | " + " | ".join(shown) + " |")
        print("|---" * (len(shown) + 1) + "|")
        for figure in ("publish msg/s", "replay msg/s", "replay s", "publish broker CPU s",
                       "replay broker CPU s", "B/msg kept", "replay MB"):
            cells = [f"{replays[k][figure]:,.0f}" if figure.endswith("msg/s")
                     else f"{replays[k][figure]:,.1f}" for k in shown]
            print(f"| {figure} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
