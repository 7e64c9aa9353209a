"""`python -m bench.loadgen PROTOCOL --scenario NAME ...`: one run, one JSON line on stdout.

Exit status 0 with the figures, or 1 with ``{"error": ...}`` (a refused connection, a broker
error, a child that did not finish). The scenarios and the output's field names are those of
the workplace load generator warren's figures are compared with, so a run of either can be
read the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from bench.loadgen.driver import Settings, run
from bench.loadgen.measure import latency_ms, listening_pgid

# scenario -> the Settings it changes from the defaults
SCENARIOS: dict[str, dict[str, dict]] = {
    "amqp": {
        "transient": {},
        "persistent-confirm": {"persistent": True, "window": 1000},
        "fanout": {"fanout": True, "streams": 10},
        "latency": {"rate": 1000},
    },
    "stomp": {
        "queue": {},
        "stomp": {},
        "persistent": {"persistent": True, "window": 1000},
        "latency": {"rate": 1000},
    },
    "mqtt": {
        "qos0": {},
        "qos1": {"qos": 1, "window": 1000},
        "latency": {"qos": 1, "window": 1000, "rate": 1000},
        "latency-qos0": {"rate": 1000},
    },
}
DEFAULT_PORTS = {"amqp": 5672, "stomp": 61613, "mqtt": 1883}
SATURATED_PCT = 90.0


def parse_args(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("protocol", choices=sorted(SCENARIOS))
    p.add_argument("--scenario", required=True, help="amqp: " + ", ".join(SCENARIOS["amqp"])
                   + "; stomp: " + ", ".join(SCENARIOS["stomp"])
                   + "; mqtt: " + ", ".join(SCENARIOS["mqtt"]))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, help="default: the protocol's standard port")
    p.add_argument("--user", default="guest")
    p.add_argument("--password", default="guest")
    p.add_argument("--vhost", default="/")
    p.add_argument("--seconds", type=float, default=10.0, help="publish window")
    p.add_argument("--size", type=int, default=100, help="body bytes (at least 24)")
    p.add_argument("--rate", type=float, help="msgs/s, open loop; 0 = as fast as possible")
    p.add_argument("--max-lag", type=int, default=0,
                   help="closed loop: at most this many messages ahead of the slowest consumer")
    p.add_argument("--window", type=int, help="unconfirmed messages allowed (confirm scenarios)")
    p.add_argument("--batch", type=int, default=100, help="messages per socket write")
    p.add_argument("--streams", type=int, help="consumer connections (fanout: queues)")
    p.add_argument("--consumer-procs", type=int, default=1)
    p.add_argument("--prefetch", type=int, default=1000)
    p.add_argument("--autoack", action="store_true", help="AMQP: consume with no-ack")
    p.add_argument("--stomp-ack", choices=("client-individual", "client", "auto"),
                   default="client-individual")
    p.add_argument("--drain", type=float, default=30.0, help="longest drain after the window, s")
    p.add_argument("--idle-timeout", type=float, default=3.0,
                   help="the drain ends when nothing arrived for this long, s")
    p.add_argument("--label", default="", help="copied into the JSON")
    p.add_argument("--broker-pid", type=int,
                   help="broker process (group) for CPU figures; default: whoever listens")
    args = p.parse_args(argv)
    scenario = SCENARIOS[args.protocol].get(args.scenario)
    if scenario is None:
        p.error(f"unknown {args.protocol} scenario {args.scenario!r}")
    if args.size < 24:
        p.error("--size must be at least 24 (the stamp)")
    settings = Settings(protocol=args.protocol, scenario=args.scenario, **scenario)
    for name in ("host", "user", "password", "vhost", "seconds", "size", "max_lag", "batch",
                 "consumer_procs", "prefetch", "autoack", "stomp_ack", "drain", "idle_timeout",
                 "label"):
        setattr(settings, name, getattr(args, name))
    for name in ("rate", "window", "streams"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    settings.port = args.port or DEFAULT_PORTS[args.protocol]
    settings.tag = int.from_bytes(os.urandom(6), "big")
    return settings, args


def report(settings: Settings, raw: dict) -> dict:
    """The JSON result of one run, from the processes' raw figures."""
    publisher, consumers = raw["publisher"], raw["consumers"]
    sent, window_s = publisher["sent"], publisher["window_s"]
    received = sum(c["received"] for c in consumers)
    latencies = [value for c in consumers for value in c["latencies_ns"]]
    last_ns = max((c["last_receive_ns"] for c in consumers), default=0)
    active_s = (last_ns - raw["start_ns"]) / 1e9 if last_ns else 0.0
    expected = sent * settings.streams
    result = {
        "label": settings.label, "protocol": settings.protocol, "scenario": settings.scenario,
        "size": settings.size, "seconds": settings.seconds, "rate": settings.rate,
        "max_lag": settings.max_lag, "streams": settings.streams,
        "sent": sent, "pub_rate": sent / window_s if window_s else 0.0,
        "received": received, "con_rate": received / active_s if active_s > 0 else 0.0,
        "con_rate_window": sum(c["received_in_window"] for c in consumers) / window_s
        if window_s else 0.0,
        "expected": expected, "lost": expected - received,
        "dups": sum(c["dups"] for c in consumers),
        "foreign": sum(c["foreign"] for c in consumers),
        "confirmed": publisher["confirmed"], "nacked": publisher["nacked"],
        "lat_ms": latency_ms(latencies),
        "msgs_per_read": received / max(1, sum(c["reads"] for c in consumers)),
        "drain_s": max(0.0, active_s - window_s),
        "drain_timed_out": any(c["drain_timed_out"] for c in consumers),
    }
    result.update(cpu_figures(raw["samples"], received))
    return result


def cpu_figures(samples: list, received: int) -> dict:
    """Broker, client and whole-machine CPU over the publish window (% of one core)."""
    if len(samples) < 2:
        return {}
    start, end = samples[0], samples[1]
    seconds = end.at - start.at or 1e-9
    clients = [100 * (b - a) / seconds for a, b in zip(start.clients, end.clients)]
    machine = 100 * (end.machine - start.machine) / seconds
    figures = {"client": {"pub_cpu_pct": clients[-1], "con_cpu_pct": clients[:-1],
                          "saturated": any(c > SATURATED_PCT for c in clients)},
               "system_busy_pct_window": machine}
    if start.broker is not None:
        broker = 100 * (end.broker - start.broker) / seconds
        figures["broker"] = {"cpu_pct_window": broker}
        if len(samples) > 2 and samples[2].broker is not None:
            spent = samples[2].broker - start.broker
            figures["broker"]["deliveries_per_cpu_s"] = received / spent if spent else None
        figures["other_cpu_pct_window"] = max(0.0, machine - broker - sum(clients))
    return figures


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_args(argv)
    settings.broker_pgid = (os.getpgid(args.broker_pid) if args.broker_pid
                            else listening_pgid(settings.port))
    raw = run(settings)
    if raw["errors"] or raw["publisher"] is None:
        print(json.dumps({"error": "; ".join(raw["errors"]) or "no publisher result",
                          "label": settings.label}))
        return 1
    print(json.dumps(report(settings, raw)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
