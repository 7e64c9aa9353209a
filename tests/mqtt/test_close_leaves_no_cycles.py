"""A closed MQTT connection leaves nothing for the cyclic collector: the session lets go of the
connection (a stand-in takes its place), of its consumers (their ``deliver`` partials referred
back) and the retained delivery, its handlers are the class's, and a deleted queue lets go of
its redelivery timer's callback. Before, each connection with a subscription left some 90
objects in cycles: a drop of 10,000 connections was a full collection's worth of work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

N = 1000


def test_closed_connections_leave_no_cycles():
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-m", "tests.mqtt.gc_after_close", str(N)], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["connections"] == N
    assert result["unreachable"] == 0, result["kinds"]
    assert "Traceback" not in run.stderr
