"""`python -m bench` from the repository root, as CI runs it from a fresh clone: bench's own
load generator against a warren it starts itself, for a second per scenario.

Figures are never asserted (speed is bench/'s to measure, not the tests'); what is asserted is
that a run gives figures at all (messages delivered, none lost or duplicated), that a failure
(a broker that cannot start, a refused connection, refused credentials, bad arguments) makes
the command exit non-zero with the reason, and that warren logs no traceback for any of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.broker_process import BrokerProcess, free_port
from tests.polling import eventually

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_bench_runs_warren_and_prints_figures(tmp_path):
    out = tmp_path / "results.json"
    done = run("bench", "--brokers", "warren", "--scenarios", "amqp-transient,mqtt-qos1",
               "--seconds", "1", "--rounds", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = {row["scenario"]: row for row in json.loads(out.read_text())["summary"]}
    assert set(rows) == {"amqp-transient", "mqtt-qos1"}
    for scenario, row in rows.items():
        assert (row["broker"], row["runs"], row["errors"]) == ("warren", 1, 0), row
        assert row["con_rate"] > 0 and row["lat_p50_ms"] is not None, row
        assert (row["lost"], row["dups"]) == (0, 0), row
        table_row = next(line for line in done.stdout.splitlines()
                         if line.startswith(f"| {scenario} | warren | 1 |"))
        assert table_row.split("|")[4].strip().replace(",", "").isdigit(), table_row
    assert "FAILED" not in done.stderr


def test_bench_exits_non_zero_when_the_broker_cannot_start(tmp_path):
    exits_at_once = f"{sys.executable} -c 'raise SystemExit(3)'"
    done = run("bench", "--brokers", "warren", "--scenarios", "amqp-transient", "--seconds",
               "1", "--rounds", "1", "--out", str(tmp_path / "r.json"), "--warren-cmd",
               exits_at_once)
    assert done.returncode == 1
    assert "FAILED: start warren: warren: exited before its ports opened" in done.stderr
    assert "| amqp-transient |" not in done.stdout


@pytest.mark.parametrize("broker, flag, scenario", [
    ("rabbitmq", "rabbitmq-server", "amqp-transient"),
    ("mosquitto", "mosquitto", "mqtt-qos0"),
    ("activemq", "activemq", "stomp-queue"),
])
def test_bench_exits_non_zero_when_a_reference_broker_is_missing(tmp_path, broker, flag,
                                                                 scenario):
    done = run("bench", "--brokers", broker, "--scenarios", scenario,
               "--out", str(tmp_path / "r.json"), f"--{flag}", "no-such-program")
    assert done.returncode == 1
    assert (f"FAILED: start {broker}: 'no-such-program' (--{flag}) not found: "
            f"install {flag} or pass --{flag} PATH") in done.stderr


@pytest.mark.parametrize("args, message", [
    (("bench", "--scenarios", "no-such"), "unknown scenario 'no-such'"),
    (("bench", "--brokers", "activemq5"), "unknown broker 'activemq5'"),
    (("bench.loadgen", "amqp", "--scenario", "qos1"), "unknown amqp scenario 'qos1'"),
    (("bench.loadgen", "mqtt", "--scenario", "qos0", "--size", "23"),
     "--size must be at least 24"),
])
def test_bad_arguments_are_refused_with_usage(args, message):
    done = run(*args)
    assert done.returncode == 2
    assert message in done.stderr and "usage:" in done.stderr


@pytest.mark.parametrize("protocol", ["amqp", "stomp", "mqtt"])
def test_loadgen_reports_a_refused_connection(protocol):
    done = run("bench.loadgen", protocol, "--scenario", "latency", "--port", str(free_port()),
               "--seconds", "1")
    assert done.returncode == 1
    assert "Connect call failed" in json.loads(done.stdout)["error"]


@pytest.mark.parametrize("protocol, port, refusal", [
    ("amqp", "amqp_port", "AMQP 403 ACCESS_REFUSED"),
    ("stomp", "stomp_port", "STOMP ERROR"),
    ("mqtt", "mqtt_port", "CONNACK"),
])
def test_loadgen_reports_refused_credentials(broker, protocol, port, refusal):
    done = run("bench.loadgen", protocol, "--scenario", "latency", "--seconds", "1",
               "--port", str(getattr(broker, port)), "--password", "wrong")
    assert done.returncode == 1
    assert refusal in json.loads(done.stdout)["error"]
    assert not any("Traceback" in line for line in broker.lines)


def test_loadgen_fails_when_the_broker_dies_mid_run(tmp_path):
    """A run whose broker goes away is an error (exit 1, the reason), not a row of figures."""
    broker = BrokerProcess(tmp_path / "data").start()
    try:
        loadgen = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", "amqp", "--scenario", "latency",
             "--port", str(broker.amqp_port), "--seconds", "600"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def both_connected():
            answer = requests.get(f"{broker.http_url}/api/connections", auth=("guest", "guest"),
                                  timeout=10)
            return len(answer.json()) >= 2
        try:
            eventually(both_connected, "the consumer and the publisher connections", timeout=60)
            broker.kill()
            out, err = loadgen.communicate(timeout=90)
        finally:
            if loadgen.poll() is None:
                loadgen.kill()
                loadgen.wait()
    finally:
        broker.stop()
    assert loadgen.returncode == 1, err
    assert "connection closed by the broker" in json.loads(out)["error"]
