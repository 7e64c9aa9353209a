"""`python -m bench.deep` from the repository root: its steps run and give figures on a small
queue (fill, kill -9, first delivery, drain while publishing), every recovered message counted,
and a broker that cannot start makes it exit non-zero with the reason. Speed is not asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.deep", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_deep_bench_recovers_and_drains_every_message_on_warren(tmp_path):
    out = tmp_path / "rows.json"
    done = run("--messages", "3000", "--brokers", "warren", "--out", str(out))
    assert done.returncode == 0, done.stderr
    [row] = json.loads(out.read_text())
    assert "error" not in row, row
    assert (row["broker"], row["messages"], row["drained"], row["dups"]) == (
        "warren", 3000, 3000, 0)
    assert 0 < row["port_s"] <= row["first_delivery_s"], row
    assert row["fill_rate"] > 0 and row["drain_rate"] > 0 and row["drain_rate_publishing"] > 0, row
    assert row["publish_rate_draining"] > 0 and row["rss_queued_mb"] > 0, row
    assert any(line.startswith("| warren | 3,000 | ") and "| 0 / 0 |" in line
               for line in done.stdout.splitlines()), done.stdout
    assert "Traceback" not in done.stderr


def test_deep_bench_exits_non_zero_when_a_broker_cannot_start():
    done = run("--messages", "10", "--brokers", "rabbitmq-lazy",
               "--rabbitmq-server", "no-such-program")
    assert done.returncode == 1
    assert ("| rabbitmq-lazy | 10 | FAILED: 'no-such-program' (--rabbitmq-server) not found: "
            "install rabbitmq-server or pass --rabbitmq-server PATH |") in done.stdout


def test_deep_bench_refuses_an_unknown_broker():
    done = run("--brokers", "warren,activemq")
    assert done.returncode == 2
    assert "unknown broker 'activemq'" in done.stderr and "usage:" in done.stderr
