"""AMQP 1.0 send and receive: warren beside RabbitMQ 3.10's rabbitmq_amqp1_0 plugin and
ActiveMQ 5.17's AMQP connector.

Run: ``python -m bench.amqp1 [--messages N] [--rounds R] [--brokers warren,rabbitmq,activemq]``.
One python-qpid-proton blocking client per broker, on the same machine in the same run (the
brokers all running, their rounds interleaved, after ``--warmup`` unrecorded ones; the table
gives medians), all over AMQP 1.0
only, to the address all three read as a queue: the bare name ``bench`` (RabbitMQ 3's v1 and
ActiveMQ's default both declare it as a queue; warren does as they do):

- latency: unsettled sends, each waiting for the broker's ``accepted`` (one round trip);
- send rate: settled (at-most-once) sends, all of them out of the client (they wait in the
  link for credit), then one unsettled send whose outcome says the broker has taken every
  one before it (a session's transfers are handled in order);
- unsettled send rate: as many unsettled sends, all handed to the link at once and their
  outcomes awaited at the end (paced only by credit and the session window);
- receive rate: an unsettled receiver with a credit window of 500, accepting each message,
  and the CPU time that costs per message in the client and in the broker's processes.

Bodies are 100 bytes, messages durable (header durable=true); ``--unmarked`` sends proton's
default header, without ``durable``: a transient message to RabbitMQ 3.10, to warren and to
ActiveMQ, as to RabbitMQ 4.2 and later (4.0 and 4.1 took an absent durable as true). Durable
messages are not the same work everywhere: the bare name's queue is non-durable on warren and
RabbitMQ 3.10 (they do not keep its messages across a restart) while ActiveMQ writes them to
KahaDB; ``--durable-queue`` has the links ask for a durable node, so that all three keep them.
A broker that is not installed, or cannot speak AMQP 1.0, is left out with the reason. Debian's
activemq package ships no activemq-amqp module: ``--activemq-lib DIR`` adds the jars in DIR
(activemq-amqp and proton-j of the broker's version) to its classpath, or ``--activemq PATH``
runs an upstream ActiveMQ's launcher instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from proton import Link, Message, Terminus
from proton.reactor import AtMostOnce, LinkOption
from proton.utils import BlockingConnection

from bench.stream import cpu_seconds
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
    """ActiveMQ with an AMQP 1.0 transport connector beside its STOMP and MQTT ones.

    ``lib``: a directory of extra jars (``--activemq-lib``), for an ActiveMQ without its AMQP
    module, as Debian's: activemq-amqp and proton-j of the broker's version. The launcher
    takes them, each by its path, from ACTIVEMQ_USER_CLASSPATH (not from ACTIVEMQ_BASE's lib:
    Debian's launcher resets ACTIVEMQ_BASE from its options file), so the installed broker is
    left as it is.
    """

    protocols = frozenset({"stomp", "mqtt", "amqp"})

    def __init__(self, workdir: Path, *, program: str | None = None,
                 lib: Path | None = None) -> None:
        super().__init__(workdir, program=program)
        self.lib = lib

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if self.lib is not None:
            jars = [str(jar) for jar in sorted(self.lib.resolve().glob("*.jar"))]
            env["ACTIVEMQ_USER_CLASSPATH"] = os.pathsep.join(
                filter(None, [env.get("ACTIVEMQ_USER_CLASSPATH", ""), *jars]))
        return env

    def prepare(self) -> None:
        super().prepare()
        xml = self.workdir / "conf" / "activemq.xml"
        xml.write_text(xml.read_text().replace(
            "</transportConnectors>",
            f'  <transportConnector name="amqp" uri="amqp://{HOST}:{self.ports["amqp"]}"/>\n'
            "    </transportConnectors>"))


BROKERS: dict[str, type[Broker]] = {"warren": Warren, "rabbitmq": RabbitMQAmqp1,
                                    "activemq": ActiveMQAmqp1}


class WarrenFrom(Warren):
    """warren imported from another checkout (``--compare PATH``: a before beside the after
    in the same run, as the figures on a loaded machine are only comparable so)."""

    checkout = ""

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["PYTHONPATH"] = self.checkout
        return env


class DurableNode(LinkOption):
    """The link's terminus asks for a durable node (``durable`` = unsettled-state): warren and
    RabbitMQ 3.10 then declare the bare name's queue durable and keep its durable messages on
    disk, as ActiveMQ keeps a persistent message whatever the terminus says."""

    def apply(self, link: Link) -> None:
        terminus = link.target if link.is_sender else link.source
        terminus.durability = Terminus.DELIVERIES


def measure(port: int, messages: int, durable: bool = True,
            pid: int | None = None, durable_node: bool = False) -> dict[str, float]:
    """The four figures, and the CPU the settled sends and the receive cost per message in
    this client and (given its process ``pid``) in the broker: on a loaded machine the rates
    move with the load, the CPU spent per message much less."""
    conn = BlockingConnection(f"amqp://guest:guest@{HOST}:{port}", allowed_mechs="PLAIN",
                              timeout=120)
    body = b"x" * 100
    node = [DurableNode()] if durable_node else []
    sender = conn.create_sender(ADDRESS, options=node)
    rounds = max(100, messages // 10)
    began = time.perf_counter()
    for _ in range(rounds):
        sender.send(Message(body=body, durable=durable))
    latency_ms = (time.perf_counter() - began) / rounds * 1000
    fast = conn.create_sender(ADDRESS, name="settled", options=[AtMostOnce(), *node])
    send_cpu = cpu_seconds(pid) if pid is not None else 0.0
    send_client_cpu = time.process_time()
    began = time.perf_counter()
    for _ in range(messages):
        fast.send(Message(body=body, durable=durable))
    # a settled send returns at once, credit or not: the rest wait in the link for the
    # broker's credit, and a transfer on the other link would overtake them (then the
    # receive below measured the broker still taking them in); so first until all are out
    conn.wait(lambda: fast.link.queued == 0, timeout=120, msg="settled sends going out")
    # (not closed: RabbitMQ 3.10 leaves a detach of this link unanswered)
    sender.send(Message(body=body, durable=durable))    # its outcome follows the settled ones
    send_rate = messages / (time.perf_counter() - began)
    send_cpu = cpu_seconds(pid) - send_cpu if pid is not None else 0.0
    send_client_cpu = time.process_time() - send_client_cpu
    # unsettled sends all out at once, each outcome awaited only at the end: the link's
    # credit and the session's window are all that pace them (``sender.send`` would wait
    # for each outcome in turn, which is the latency above)
    unsettled_cpu = cpu_seconds(pid) if pid is not None else 0.0
    began = time.perf_counter()
    deliveries = [sender.link.send(Message(body=body, durable=durable))
                  for _ in range(messages)]
    conn.wait(lambda: bool(deliveries[-1].remote_state), timeout=120,
              msg="outcomes of unsettled sends")
    conn.wait(lambda: all(d.remote_state for d in deliveries), timeout=120,
              msg="outcomes of unsettled sends")
    unsettled_rate = messages / (time.perf_counter() - began)
    unsettled_cpu = cpu_seconds(pid) - unsettled_cpu if pid is not None else 0.0
    for d in deliveries:
        d.settle()
    total = rounds + 2 * messages + 1
    receiver = conn.create_receiver(ADDRESS, credit=500, options=node)
    broker_cpu = cpu_seconds(pid) if pid is not None else 0.0
    client_cpu = time.process_time()
    began = time.perf_counter()
    for _ in range(total):
        receiver.receive(timeout=120)
        receiver.accept()
    receive_rate = total / (time.perf_counter() - began)
    client_cpu = time.process_time() - client_cpu
    broker_cpu = cpu_seconds(pid) - broker_cpu if pid is not None else 0.0
    conn.close()
    return {"latency_ms": latency_ms, "send_per_s": send_rate,
            "send_client_us": send_client_cpu / (messages + 1) * 1e6,
            "send_broker_us": send_cpu / (messages + 1) * 1e6,
            "unsettled_send_per_s": unsettled_rate,
            "unsettled_broker_us": unsettled_cpu / messages * 1e6, "receive_per_s": receive_rate,
            "receive_client_us": client_cpu / total * 1e6,
            "receive_broker_us": broker_cpu / total * 1e6}


def start(name: str, workdir: Path, activemq: str | None,
          compare: str | None = None, activemq_lib: Path | None = None) -> Broker | None:
    """The broker started, or None (with the reason printed) when a reference broker cannot
    run here; ``compare``: warren from that checkout; ``activemq_lib``: extra jars for
    ActiveMQ (its AMQP module)."""
    cls = BROKERS.get(name, Warren)
    if name == "compare":
        WarrenFrom.checkout = str(Path(compare or "").resolve())
        broker: Broker = WarrenFrom(workdir, command=Warren.default_command())
    elif cls is Warren:
        broker = Warren(workdir, command=Warren.default_command())
    elif cls is ActiveMQAmqp1:
        broker = ActiveMQAmqp1(workdir, program=activemq, lib=activemq_lib)
    else:
        broker = cls(workdir)
    try:
        broker.start()
    except BrokerStartError as e:
        if name == "warren":
            raise
        lines = str(e).splitlines()
        causes = [line for line in lines if line.startswith("Caused by:")]
        print(f"{name}: left out ({(causes or lines)[-1].strip()})")
        return None
    return broker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds per broker, interleaved (all brokers run throughout); "
                             "the table gives each figure's median")
    parser.add_argument("--warmup", type=int, default=0, metavar="ROUNDS",
                        help="unrecorded rounds per broker first, interleaved as the others: "
                             "ActiveMQ's JIT makes its first two rounds 3-5x dearer in CPU")
    parser.add_argument("--unmarked", action="store_true",
                        help="send proton's default header (durable not set): transient on "
                             "RabbitMQ 3.10, warren and RabbitMQ 4.2+ (durable on 4.0/4.1)")
    parser.add_argument("--durable-queue", action="store_true",
                        help="the links ask for a durable node, so that warren and RabbitMQ "
                             "3.10 keep the durable messages on disk as ActiveMQ does")
    parser.add_argument("--brokers", default=",".join(BROKERS))
    parser.add_argument("--activemq", help="the activemq launcher (default: on PATH)")
    parser.add_argument("--activemq-lib", metavar="DIR", type=Path,
                        help="a directory of jars ActiveMQ loads too: activemq-amqp and "
                             "proton-j of its version, where its own lib has no AMQP module "
                             "(Debian's package)")
    parser.add_argument("--compare", metavar="PATH",
                        help="also run warren from the checkout at PATH (e.g. a `git archive` "
                             "of main) as the broker 'compare', rounds interleaved")
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        running: dict[str, Broker] = {}
        try:
            names = args.brokers.split(",") + (["compare"] if args.compare else [])
            for name in names:
                broker = start(name, Path(tmp) / name, args.activemq, args.compare,
                               args.activemq_lib)
                if broker is not None:
                    running[name] = broker
            for i in range(-args.warmup, args.rounds):
                for name, broker in list(running.items()):
                    try:
                        result = measure(broker.ports["amqp"], args.messages,
                                         durable=not args.unmarked,
                                         durable_node=args.durable_queue,
                                         pid=broker.process.pid if broker.process else None)
                    except Exception as e:      # a reference broker's failure leaves it out
                        if name == "warren":
                            raise
                        print(f"{name}: left out ({type(e).__name__}: {e})", flush=True)
                        running.pop(name).stop()
                        continue
                    if i < 0:
                        print(f"warm-up {name}: {result}", flush=True)
                        continue
                    rounds.setdefault(name, []).append(result)
                    print(f"round {i + 1} {name}: {result}", flush=True)
        finally:
            for broker in running.values():
                broker.stop()
    results = {name: {key: statistics.median(r[key] for r in got) for key in got[0]}
               for name, got in rounds.items()}
    others = [name for name in results if name != "warren"]
    print(f"{'':22}{'warren':>12}" + "".join(f"{n:>12}{'ratio':>8}" for n in others))
    for key in ("latency_ms", "send_per_s", "send_client_us", "send_broker_us",
                "unsettled_send_per_s", "unsettled_broker_us", "receive_per_s",
                "receive_client_us", "receive_broker_us"):
        w = results["warren"][key]
        line = f"{key:22}{w:12.2f}"
        for name in others:
            r = results[name][key]
            line += f"{r:12.2f}{w / r:8.2f}"
        print(line)


if __name__ == "__main__":
    main()
