"""`python -m bench --scenarios latency`: every protocol's fixed-rate run, and the table that
puts each broker's p50 / p99 side by side (issue 21's "p99 at 1,000 msg/s").

The summary rows are given as ``summarize`` makes them; no broker runs here (the smoke test
runs one).
"""

from __future__ import annotations

from bench.run import latency_side_by_side, markdown, parse_args
from bench.scenarios import LOADGEN_SCENARIOS


def row(scenario: str, broker: str, p50: float, p99: float, lost: int = 0) -> dict:
    return {"scenario": scenario, "broker": broker, "loadgen": "bench.loadgen", "runs": 3,
            "errors": 0, "con_rate": 1000.0, "lat_p50_ms": p50, "lat_p99_ms": p99,
            "broker_cpu_pct": 5.0, "other_cpu_pct": 1.0, "lost": lost, "dups": 0}


def test_the_latency_group_names_every_fixed_rate_scenario_once():
    args = parse_args(["--scenarios", "latency,mqtt-latency,amqp-transient"])
    assert args.scenarios == ["amqp-latency", "stomp-latency", "mqtt-latency",
                              "mqtt-latency-qos0", "amqp-transient"]
    assert all(LOADGEN_SCENARIOS[name].latency for name in args.scenarios[:4])


def test_each_protocol_gets_one_row_with_every_broker_beside_warren():
    rows = [row("mqtt-latency", "warren", 0.22, 0.29), row("mqtt-latency", "mosquitto", 0.2,
                                                            0.36, lost=4),
            row("mqtt-latency", "activemq", 0.3, 0.55), row("stomp-latency", "warren", 0.3, 0.5),
            row("stomp-latency", "activemq", 0.4, 1.0), row("amqp-transient", "warren", 9, 20)]

    lines = latency_side_by_side(rows)

    assert lines[1] == ("| latency at 1,000 msg/s, p50 / p99 ms | warren | mosquitto | activemq "
                        "| warren p99 / best other p99 |")
    assert lines[3:] == [
        "| mqtt-latency | 0.22 / 0.29 | 0.20 / 0.36 (4 lost) | 0.30 / 0.55 | 0.81× |",
        "| stomp-latency | 0.30 / 0.50 | – | 0.40 / 1.00 | 0.50× |"]
    assert "\n".join(lines) in markdown(rows)


def test_no_latency_scenario_no_side_by_side_table():
    assert latency_side_by_side([row("amqp-transient", "warren", 9, 20)]) == []
