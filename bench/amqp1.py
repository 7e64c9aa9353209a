"""AMQP 1.0 send and receive: warren beside RabbitMQ 3.10's rabbitmq_amqp1_0 plugin and
ActiveMQ 5.17's AMQP connector.

Run: ``python -m bench.amqp1 [--messages N] [--brokers warren,rabbitmq,activemq]``. One
python-qpid-proton blocking client per broker, on the same machine in the same run, all over
AMQP 1.0 only, to the address all three read as a queue: the bare name ``bench`` (RabbitMQ 3's
v1 and ActiveMQ's default both declare it as a queue; warren does as they do):

- latency: unsettled sends, each waiting for the broker's ``accepted`` (one round trip);
- send rate: settled (at-most-once) sends, then one unsettled send whose outcome says the
  broker has taken every one before it (a link's transfers are handled in order);
- receive rate: an unsettled receiver with a credit window of 500, accepting each message.

Bodies are 100 bytes, messages not durable. A broker that is not installed, or cannot speak
AMQP 1.0 (Debian's activemq package ships no activemq-amqp module; ``--activemq PATH`` runs
an upstream ActiveMQ's launcher instead), is left out with the reason.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from proton import Message
from proton.reactor import AtMostOnce
from proton.utils import BlockingConnection

from bench.brokers import HOST, ActiveMQ, Broker, BrokerStartError, RabbitMQ, Warren

ADDRESS = "bench"


class RabbitMQAmqp1(RabbitMQ):
    """RabbitMQ with its AMQP 1.0 plugin enabled too (3.x: a plugin; 4.x: built in)."""

    def prepare(self) -> None:
        super().prepare()
        plugins = str(Path(self.server).with_name("rabbitmq-plugins"))
        subprocess.run([plugins, "enable", "--offline", "rabbitmq_amqp1_0"],
                       env=self.environment(), cwd=self.workdir, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120)


class ActiveMQAmqp1(ActiveMQ):
    """ActiveMQ with an AMQP 1.0 transport connector beside its STOMP and MQTT ones."""

    protocols = frozenset({"stomp", "mqtt", "amqp"})

    def prepare(self) -> None:
        super().prepare()
        xml = self.workdir / "conf" / "activemq.xml"
        xml.write_text(xml.read_text().replace(
            "</transportConnectors>",
            f'  <transportConnector name="amqp" uri="amqp://{HOST}:{self.ports["amqp"]}"/>\n'
            "    </transportConnectors>"))


BROKERS: dict[str, type[Broker]] = {"warren": Warren, "rabbitmq": RabbitMQAmqp1,
                                    "activemq": ActiveMQAmqp1}


def measure(port: int, messages: int) -> dict[str, float]:
    conn = BlockingConnection(f"amqp://guest:guest@{HOST}:{port}", allowed_mechs="PLAIN",
                              timeout=120)
    body = b"x" * 100
    sender = conn.create_sender(ADDRESS)
    rounds = max(100, messages // 10)
    began = time.perf_counter()
    for _ in range(rounds):
        sender.send(Message(body=body))
    latency_ms = (time.perf_counter() - began) / rounds * 1000
    fast = conn.create_sender(ADDRESS, name="settled", options=AtMostOnce())
    began = time.perf_counter()
    for _ in range(messages):
        fast.send(Message(body=body))
    # (not closed: RabbitMQ 3.10 leaves a detach of this link unanswered)
    sender.send(Message(body=body))          # its outcome comes after all the settled ones
    send_rate = messages / (time.perf_counter() - began)
    total = rounds + messages + 1
    receiver = conn.create_receiver(ADDRESS, credit=500)
    began = time.perf_counter()
    for _ in range(total):
        receiver.receive(timeout=120)
        receiver.accept()
    receive_rate = total / (time.perf_counter() - began)
    conn.close()
    return {"latency_ms": latency_ms, "send_per_s": send_rate, "receive_per_s": receive_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--brokers", default=",".join(BROKERS))
    parser.add_argument("--activemq", help="the activemq launcher (default: on PATH)")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.brokers.split(","):
            cls = BROKERS[name]
            if cls is Warren:
                broker: Broker = Warren(Path(tmp) / name, command=Warren.default_command())
            elif cls is ActiveMQAmqp1:
                broker = ActiveMQAmqp1(Path(tmp) / name, program=args.activemq)
            else:
                broker = cls(Path(tmp) / name)
            try:
                broker.start()
            except BrokerStartError as e:
                if name == "warren":
                    raise
                lines = str(e).splitlines()
                causes = [line for line in lines if line.startswith("Caused by:")]
                print(f"{name}: left out ({(causes or lines)[-1].strip()})")
                continue
            try:
                results[name] = measure(broker.ports["amqp"], args.messages)
                print(f"{name}: {results[name]}", flush=True)
            except Exception as e:          # a reference broker's failure leaves it out
                if name == "warren":
                    raise
                print(f"{name}: left out ({type(e).__name__}: {e})", flush=True)
            finally:
                broker.stop()
    others = [name for name in results if name != "warren"]
    print(f"{'':16}{'warren':>12}" + "".join(f"{n:>12}{'ratio':>8}" for n in others))
    for key in ("latency_ms", "send_per_s", "receive_per_s"):
        w = results["warren"][key]
        line = f"{key:16}{w:12.2f}"
        for name in others:
            r = results[name][key]
            line += f"{r:12.2f}{w / r:8.2f}"
        print(line)


if __name__ == "__main__":
    main()
