"""What bench/ measures: named load generator runs, plus warren's crash-recovery time.

A run is one subprocess of bench's own load generator (``python -m bench.loadgen``; it forks
its own publisher and consumer processes and prints one JSON line). The scenario names and
arguments are those of the workplace load generator the reference brokers' figures were taken
with; `Loadgen` can run that one instead, from a directory given on the command line, so both
can be run on the same scenarios and their figures cross-checked.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pika

from bench.brokers import HOST, Broker, wait_until_accepting
from bench.proc_memory import group_bytes

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Loadgen:
    """Which load generator a run uses: bench's own, or the ``loadgen`` package found in
    `directory` (same command line and JSON fields), for cross-checking."""

    directory: Path | None = None

    @property
    def name(self) -> str:
        return f"loadgen in {self.directory}" if self.directory else "bench.loadgen"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "loadgen" if self.directory else "bench.loadgen"]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        path = str(self.directory or REPO)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
        return env


@dataclass(frozen=True, slots=True)
class LoadgenScenario:
    """One loadgen invocation; `latency` marks a fixed-rate run, compared by latency, not rate."""

    name: str
    protocol: str
    args: tuple[str, ...]
    latency: bool = False

    def run(self, broker: Broker, seconds: float, loadgen: Loadgen) -> dict:
        """Run the load generator once against `broker`: its JSON result, or {"error": …}
        when it failed or delivered nothing (a run that measured nothing is no figure)."""
        argv = [*loadgen.command(), self.protocol, "--host", HOST,
                "--port", str(broker.ports[self.protocol]), "--seconds", str(seconds),
                "--label", broker.name, *self.args]
        # loadgen bounds itself (seconds + drain + set-up time-outs); this is the backstop.
        try:
            done = subprocess.run(argv, env=loadgen.environment(), capture_output=True,
                                  text=True, timeout=seconds + 180)
        except subprocess.TimeoutExpired:
            return {"error": "loadgen timed out"}
        lines = done.stdout.strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            return {"error": f"loadgen exit {done.returncode}: {done.stderr.strip()[-500:]}"}
        if "error" not in result and done.returncode != 0:
            result["error"] = f"loadgen exit {done.returncode}"
        if "error" not in result and not result.get("received"):
            result["error"] = f"nothing delivered ({result.get('sent', 0)} sent)"
        return result


LOADGEN_SCENARIOS = {s.name: s for s in [
    LoadgenScenario("amqp-transient", "amqp", ("--scenario", "transient", "--max-lag", "2000")),
    LoadgenScenario("amqp-fanout", "amqp", ("--scenario", "fanout", "--max-lag", "2000")),
    LoadgenScenario("amqp-persistent", "amqp", ("--scenario", "persistent-confirm")),
    LoadgenScenario("amqp-latency", "amqp", ("--scenario", "latency"), latency=True),
    LoadgenScenario("stomp-queue", "stomp", ("--scenario", "queue", "--max-lag", "2000")),
    LoadgenScenario("stomp-persistent", "stomp", ("--scenario", "persistent")),
    LoadgenScenario("stomp-latency", "stomp", ("--scenario", "latency"), latency=True),
    LoadgenScenario("mqtt-qos0", "mqtt", ("--scenario", "qos0", "--max-lag", "2000")),
    LoadgenScenario("mqtt-qos1", "mqtt", ("--scenario", "qos1", "--max-lag", "2000")),
    LoadgenScenario("mqtt-latency", "mqtt", ("--scenario", "latency"), latency=True),
    LoadgenScenario("mqtt-latency-qos0", "mqtt", ("--scenario", "latency-qos0"), latency=True),
]}

#: names that stand for several scenarios on the command line: ``latency`` is issue 21's "p99
#: at 1,000 msg/s" for every protocol, each broker's p50/p99 side by side (``run.py``)
SCENARIO_GROUPS = {
    "latency": tuple(name for name, s in LOADGEN_SCENARIOS.items() if s.latency),
}

RECOVERY_QUEUE = "bench.recovery"
RECOVERY_BROKERS = frozenset({"warren", "rabbitmq"})


def recovery(make_broker: Callable[[], Broker], messages: int, timeout: float = 900.0) -> dict:
    """Publish `messages` confirmed persistent messages, kill -9 the broker, restart it on the
    same data, and time how long until the AMQP port accepts and until the queue holds them all.

    `make_broker` gives a fresh instance (own data directory), which this function stops.
    """
    broker = make_broker()
    try:
        broker.start()
        began = time.monotonic()
        publish_confirmed(broker.ports["amqp"], RECOVERY_QUEUE, messages)
        publish_s = time.monotonic() - began
        queued_rss = group_rss(broker)
        broker.kill()
        began = time.monotonic()
        port_s = broker.start()
        count = wait_for_queue_depth(broker.ports["amqp"], RECOVERY_QUEUE, messages,
                                     deadline=began + timeout)
        ready_s = time.monotonic() - began
        recovered_rss = group_rss(broker)
        recovered_peak = group_rss(broker, "VmHWM")
        began = time.monotonic()
        drained = drain(broker.ports["amqp"], RECOVERY_QUEUE, count)
        drain_s = time.monotonic() - began
    finally:
        broker.stop()
    return {"messages": messages, "publish_s": publish_s, "publish_rate": messages / publish_s,
            "port_s": port_s, "ready_s": ready_s, "recovered": count, "lost": messages - count,
            "queued_rss_mb": queued_rss / 1e6, "recovered_rss_mb": recovered_rss / 1e6,
            "recovery_peak_rss_mb": recovered_peak / 1e6,
            "drain_rate": drained / drain_s if drain_s > 0 else None}


def drain(port: int, queue: str, count: int, prefetch: int = 1000) -> int:
    """Consume `count` messages after the recovery (acks of 500 at a time); returns how many
    came. The recovered queue is deep: this is the read-back rate from the store."""
    got = 0
    with pika.BlockingConnection(pika.ConnectionParameters(HOST, port)) as connection:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=prefetch)
        for method, _props, _body in channel.consume(queue, inactivity_timeout=60):
            if method is None:
                break
            got += 1
            if got % 500 == 0 or got == count:
                channel.basic_ack(method.delivery_tag, multiple=True)
            if got >= count:
                break
        channel.cancel()
    return got


def group_rss(broker: Broker, field: str = "VmRSS") -> int:
    """Bytes of `field` (VmRSS: resident now, VmHWM: peak) summed over the broker's process
    group (a broker may run several processes: RabbitMQ's epmd and beam)."""
    return group_bytes(os.getpgid(broker.process.pid), field)


def publish_confirmed(port: int, queue: str, count: int, window: int = 1000) -> None:
    """Publish `count` persistent 100-byte messages to a durable queue, ≤ `window` unconfirmed,
    and return once the broker confirmed them all (pika's async connection: the blocking one
    waits for each confirm in turn)."""
    body, props = b"r" * 100, pika.BasicProperties(delivery_mode=2)
    outstanding: collections.deque[int] = collections.deque()  # delivery tags, ascending
    sent = 0
    failure: list[str] = []

    def fill(channel) -> None:
        nonlocal sent
        while sent < count and len(outstanding) < window:
            channel.basic_publish("", queue, body, props)
            sent += 1
            outstanding.append(sent)

    def on_confirm(channel, frame) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            failure.append(f"broker nacked delivery tag {method.delivery_tag}")
            channel.connection.close()
            return
        if method.multiple:
            while outstanding and outstanding[0] <= method.delivery_tag:
                outstanding.popleft()
        elif outstanding and outstanding[0] == method.delivery_tag:
            outstanding.popleft()
        else:
            outstanding.remove(method.delivery_tag)
        if sent == count and not outstanding:
            channel.connection.close()
        else:
            fill(channel)

    def on_channel(channel) -> None:
        channel.confirm_delivery(lambda frame: on_confirm(channel, frame), callback=lambda _: (
            channel.queue_declare(queue, durable=True, callback=lambda _: fill(channel))))

    def on_open_error(connection, error) -> None:
        failure.append(f"cannot connect: {error!r}")
        connection.ioloop.stop()

    def on_close(connection, reason) -> None:
        if sent < count or outstanding:
            failure.append(f"connection closed early: {reason!r}")
        connection.ioloop.stop()

    connection = pika.SelectConnection(
        pika.ConnectionParameters(HOST, port, heartbeat=0),
        on_open_callback=lambda conn: conn.channel(on_open_callback=on_channel),
        on_open_error_callback=on_open_error, on_close_callback=on_close)
    connection.ioloop.start()
    if failure:
        raise RuntimeError(failure[0])


def wait_for_queue_depth(port: int, queue: str, expected: int, deadline: float) -> int:
    """Poll a passive queue.declare until the queue reports `expected` messages (or the deadline
    passes); return the last count. Connection errors while the broker recovers are retried."""
    count = -1
    while True:
        try:
            with pika.BlockingConnection(pika.ConnectionParameters(HOST, port)) as connection:
                channel = connection.channel()
                while True:
                    count = channel.queue_declare(queue, passive=True).method.message_count
                    if count >= expected or time.monotonic() > deadline:
                        return count
                    time.sleep(0.1)
        except pika.exceptions.AMQPError:
            if time.monotonic() > deadline:
                return count
            wait_until_accepting([port], lambda: True, max(0.0, deadline - time.monotonic()))
            time.sleep(0.1)


def failover(*args, **kwargs) -> dict:
    """Time for clients to resume on the slave after the master of a shared-store pair dies:
    kill -9 -> first confirmed publish on the new master, for the file lock and the lease
    (``bench/failover.py``; ``python -m bench.failover`` runs it alone). The figures by
    locker."""
    from bench.failover import failover as measure
    return measure(*args, **kwargs)
