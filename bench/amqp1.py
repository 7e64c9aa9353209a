"""AMQP 1.0 send and receive, warren beside RabbitMQ 3.10's rabbitmq_amqp1_0 plugin.

Run: ``python -m bench.amqp1 [--messages N]``. One python-qpid-proton blocking client per
broker, on the same machine in the same run, the queue declared over 0-9-1 first and reached
as ``/amq/queue/bench`` (the address both brokers know):

- latency: unsettled sends, each waiting for the broker's ``accepted`` (one round trip);
- send rate: settled (at-most-once) sends, until the queue holds them all;
- receive rate: an unsettled receiver with a credit window of 500, accepting each message.

A first cut: the send rate is measured while the blocking client polls the queue depth over
0-9-1 between its I/O turns, which RabbitMQ 3.10's plugin answers far slower than it takes
messages; trust the latency and receive figures more than that one.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import pika
from proton import Message
from proton.reactor import AtMostOnce
from proton.utils import BlockingConnection

from bench.brokers import HOST, RabbitMQ, Warren


class RabbitMQAmqp1(RabbitMQ):
    """RabbitMQ with its AMQP 1.0 plugin enabled too (3.x: a plugin; 4.x: built in)."""

    def prepare(self) -> None:
        super().prepare()
        plugins = str(Path(self.server).with_name("rabbitmq-plugins"))
        subprocess.run([plugins, "enable", "--offline", "rabbitmq_amqp1_0"],
                       env=self.environment(), cwd=self.workdir, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120)


def depth(channel) -> int:
    return channel.queue_declare("bench", passive=True).method.message_count


def measure(port: int, messages: int) -> dict[str, float]:
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        HOST, port, credentials=pika.PlainCredentials("guest", "guest")))
    channel = conn.channel()
    channel.queue_declare("bench")
    channel.queue_purge("bench")
    amqp1 = BlockingConnection(f"amqp://guest:guest@{HOST}:{port}", allowed_mechs="PLAIN",
                               timeout=60)
    body = b"x" * 100
    sender = amqp1.create_sender("/amq/queue/bench")
    rounds = max(100, messages // 10)
    began = time.perf_counter()
    for _ in range(rounds):
        sender.send(Message(body=body))
    latency_ms = (time.perf_counter() - began) / rounds * 1000
    fast = amqp1.create_sender("/amq/queue/bench", name="settled", options=AtMostOnce())
    began = time.perf_counter()
    for _ in range(messages):
        fast.send(Message(body=body))
    # settled sends are not waited for: the client's I/O runs while it waits for the queue
    amqp1.wait(lambda: depth(channel) >= rounds + messages, timeout=300)
    send_rate = messages / (time.perf_counter() - began)
    receiver = amqp1.create_receiver("/amq/queue/bench", credit=500)
    began = time.perf_counter()
    for _ in range(rounds + messages):
        receiver.receive(timeout=60)
        receiver.accept()
    receive_rate = (rounds + messages) / (time.perf_counter() - began)
    amqp1.close()
    conn.close()
    return {"latency_ms": latency_ms, "send_per_s": send_rate, "receive_per_s": receive_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for broker in (Warren(Path(tmp) / "warren", command=Warren.default_command()),
                       RabbitMQAmqp1(Path(tmp) / "rabbitmq")):
            broker.start()
            try:
                results[broker.name] = measure(broker.ports["amqp"], args.messages)
            finally:
                broker.stop()
    print(f"{'':24}{'warren':>12}{'rabbitmq':>12}{'ratio':>8}")
    for key in ("latency_ms", "send_per_s", "receive_per_s"):
        w, r = results["warren"][key], results["rabbitmq"][key]
        print(f"{key:24}{w:12.2f}{r:12.2f}{w / r:8.2f}")


if __name__ == "__main__":
    main()
